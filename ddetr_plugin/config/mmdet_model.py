"""MMDetection's ``DeformableDETR`` model config (a plain dict) as our config keys.

mmdet describes the model as nested dicts (``encoder.layer_cfg.self_attn_cfg`` ...) with
each class's own defaults. ``mmdet_model_settings`` reads every field of such a dict,
fills the defaults of mmdet 3.x / mmcv 2.x, and returns the dotted config keys that build
the same network from our components, plus what the MMDetection integration builds with
mmdet's own registry (the backbone). A field we cannot honour is refused with a
``MMDetConfigError`` naming it: an unknown key, a loss or cost we do not have, settings
that our single key cannot hold (e.g. different dropouts in different places).

Nothing here imports mmdet: the checkpoint converter maps the model config that mmengine
stores in a checkpoint's ``meta["cfg"]`` (read by ``config_text.parse_config_text``) without it.

One difference is accepted, not refused: with dropout p, our decoder also drops after its
self-attention (as the official implementation); mmdet's leaves that one out. It changes
training noise only, never a prediction.
"""
import math
from typing import Any, Dict, List, Mapping, NamedTuple, Optional

_MSDA_DEFAULTS = dict(embed_dims=256, num_heads=8, num_levels=4, num_points=4, im2col_step=64, dropout=0.1,
                      batch_first=False, norm_cfg=None, init_cfg=None, value_proj_ratio=1.0)
_FFN_DEFAULTS = dict(embed_dims=256, feedforward_channels=1024, num_fcs=2, act_cfg=dict(type="ReLU", inplace=True),
                     ffn_drop=0.0, dropout_layer=None, add_identity=True, init_cfg=None, layer_scale_init_value=0.0)
_MHA_DEFAULTS = dict(embed_dims=256, num_heads=8, attn_drop=0.0, proj_drop=0.0,
                     dropout_layer=dict(type="Dropout", drop_prob=0.0), init_cfg=None, batch_first=False)
_ACTIVATIONS = {"ReLU": "relu", "GELU": "gelu"}
_NECK_XAVIER = dict(type="Xavier", layer="Conv2d", distribution="uniform")
# the fields of a DeformableDETR model dict this module reads; the plugin reads the others
MODEL_FIELDS = ("num_queries", "num_feature_levels", "with_box_refine", "as_two_stage", "neck", "encoder",
                "decoder", "positional_encoding", "bbox_head", "train_cfg", "test_cfg")


class MMDetConfigError(ValueError):
    """An mmdet model config field that our Deformable DETR cannot honour."""


class MMDetModelSettings(NamedTuple):
    """values: dotted config keys -> values; in_channels: the backbone channels the neck reads
    (one per backbone output); neck_bias: whether the neck's convs have a bias."""

    values: Dict[str, Any]
    in_channels: List[int]
    neck_bias: bool


class _Fields:
    """The keys of one config dict with their defaults; ``close()`` refuses any key not read."""

    def __init__(self, cfg: Optional[Mapping], where: str, defaults: Mapping[str, Any]):
        if cfg is not None and not isinstance(cfg, Mapping):
            raise MMDetConfigError(f"{where} must be a dict, got {cfg!r}")
        self.cfg = dict(cfg or {})
        self.where = where
        self.defaults = dict(defaults)
        self.read = set()

    def __call__(self, key: str) -> Any:
        self.read.add(key)
        if key in self.cfg:
            return self.cfg[key]
        if key not in self.defaults:
            raise MMDetConfigError(f"{self.where}.{key} is required")
        return self.defaults[key]

    def expect(self, key: str, *allowed: Any) -> Any:
        value = self(key)
        if not any(_same(value, choice) for choice in allowed):
            choices = " or ".join(repr(choice) for choice in allowed)
            raise MMDetConfigError(f"{self.where}.{key} is {value!r}; only {choices} is supported")
        return value

    def close(self) -> None:
        unread = sorted(set(self.cfg) - self.read)
        if unread:
            raise MMDetConfigError(f"{self.where} has fields that are not supported: {', '.join(unread)}")


def _same(value: Any, choice: Any) -> bool:
    if isinstance(choice, Mapping):
        return isinstance(value, Mapping) and dict(value) == dict(choice)
    if isinstance(choice, float) and isinstance(value, (int, float)) and not isinstance(value, bool):
        return math.isclose(value, choice)
    return value == choice


def mmdet_model_settings(model: Mapping[str, Any], where: str = "model") -> MMDetModelSettings:
    """Our config values for the fields ``MODEL_FIELDS`` of mmdet's ``DeformableDETR`` config ``model``.

    The other fields (``type``, ``backbone``, ``data_preprocessor``, ``init_cfg``) are the caller's;
    ``resnet_backbone_values`` maps a ResNet ``backbone``.

    Raises:
        MMDetConfigError: naming the first field that cannot be honoured.
    """
    top = _Fields({key: model[key] for key in MODEL_FIELDS if key in model}, where,
                  dict(num_queries=100, num_feature_levels=4, with_box_refine=False, as_two_stage=False,
                       positional_encoding={}, train_cfg=None, test_cfg=None))
    levels = top("num_feature_levels")
    values: Dict[str, Any] = {
        "MODEL.NUM_QUERIES": top("num_queries"),
        "MODEL.NUM_FEATURE_LEVELS": levels,
        "MODEL.WITH_BOX_REFINE": bool(top("with_box_refine")),
        "MODEL.TWO_STAGE": bool(top("as_two_stage")),
    }
    encoder = _encoder_values(top("encoder"), f"{where}.encoder", levels)
    decoder = _decoder_values(top("decoder"), f"{where}.decoder", levels)
    for key in ("d_model", "nheads", "dim_feedforward", "activation"):
        if encoder[key] != decoder[key]:
            raise MMDetConfigError(f"the encoder's {key} ({encoder[key]}) differs from the decoder's "
                                   f"({decoder[key]}); our transformer has one value for both")
    dropouts = {**encoder["dropouts"], **decoder["dropouts"]}
    if len(set(dropouts.values())) > 1:
        shown = ", ".join(f"{name} {value}" for name, value in dropouts.items())
        raise MMDetConfigError(f"the dropouts differ ({shown}); MODEL.TRANSFORMER.DROPOUT sets them all")
    d_model = encoder["d_model"]
    values.update({
        "MODEL.TRANSFORMER.D_MODEL": d_model,
        "MODEL.TRANSFORMER.NHEADS": encoder["nheads"],
        "MODEL.TRANSFORMER.ENC_LAYERS": encoder["num_layers"],
        "MODEL.TRANSFORMER.DEC_LAYERS": decoder["num_layers"],
        "MODEL.TRANSFORMER.DIM_FEEDFORWARD": encoder["dim_feedforward"],
        "MODEL.TRANSFORMER.ACTIVATION": encoder["activation"],
        "MODEL.TRANSFORMER.DROPOUT": float(next(iter(dropouts.values()))),
        "MODEL.TRANSFORMER.ENC_N_POINTS": encoder["n_points"],
        "MODEL.TRANSFORMER.DEC_N_POINTS": decoder["n_points"],
    })
    values.update(_position_encoding_values(top("positional_encoding"), f"{where}.positional_encoding", d_model))
    values.update(_head_values(top("bbox_head"), f"{where}.bbox_head", d_model))
    values.update(_matcher_values(top("train_cfg"), f"{where}.train_cfg", values["MODEL.CRITERION.FOCAL_ALPHA"],
                                  values["MODEL.CRITERION.FOCAL_GAMMA"]))
    test = _Fields(top("test_cfg"), f"{where}.test_cfg", dict(max_per_img=100))
    values["TEST.DETECTIONS_PER_IMAGE"] = test("max_per_img")
    test.close()
    in_channels, neck_bias = _neck(top("neck"), f"{where}.neck", d_model, levels)
    top.close()
    return MMDetModelSettings(values, in_channels, neck_bias)


def _attention(cfg: Optional[Mapping], where: str, levels: int) -> Dict[str, Any]:
    """A MultiScaleDeformableAttention config."""
    f = _Fields(cfg, where, _MSDA_DEFAULTS)
    f.expect("num_levels", levels)
    f.expect("batch_first", True)
    f.expect("norm_cfg", None)
    f.expect("init_cfg", None)
    f.expect("value_proj_ratio", 1.0)
    result = dict(d_model=f("embed_dims"), nheads=f("num_heads"), n_points=f("num_points"),
                  dropout=f("dropout"))
    f("im2col_step")  # a performance hint that none of our kernels needs
    f.close()
    return result


def _ffn(cfg: Optional[Mapping], where: str, d_model: int) -> Dict[str, Any]:
    f = _Fields(cfg, where, _FFN_DEFAULTS)
    f.expect("embed_dims", d_model)
    f.expect("num_fcs", 2)
    f.expect("dropout_layer", None)
    f.expect("add_identity", True)
    f.expect("init_cfg", None)
    f.expect("layer_scale_init_value", 0.0)
    act = f("act_cfg")
    if not isinstance(act, Mapping) or act.get("type") not in _ACTIVATIONS or set(act) - {"type", "inplace"}:
        raise MMDetConfigError(f"{where}.act_cfg is {act!r}; only ReLU or GELU is supported")
    result = dict(dim_feedforward=f("feedforward_channels"), activation=_ACTIVATIONS[act["type"]],
                  dropout=f("ffn_drop"))
    f.close()
    return result


def _layer_stack(cfg: Optional[Mapping], where: str, defaults: Mapping[str, Any]) -> _Fields:
    f = _Fields(cfg, where, defaults)
    f.expect("init_cfg", None)
    return f


def _encoder_values(cfg: Optional[Mapping], where: str, levels: int) -> Dict[str, Any]:
    stack = _layer_stack(cfg, where, dict(num_cp=-1, init_cfg=None))
    if stack("num_cp") > 0:
        raise MMDetConfigError(f"{where}.num_cp is {stack('num_cp')}; activation checkpointing is not supported")
    layer = _Fields(stack("layer_cfg"), f"{where}.layer_cfg", dict(self_attn_cfg=None, ffn_cfg=None,
                                                                     norm_cfg=dict(type="LN"), init_cfg=None))
    layer.expect("norm_cfg", dict(type="LN"))
    layer.expect("init_cfg", None)
    attention = _attention(layer("self_attn_cfg"), f"{where}.layer_cfg.self_attn_cfg", levels)
    ffn = _ffn(layer("ffn_cfg"), f"{where}.layer_cfg.ffn_cfg", attention["d_model"])
    layer.close()
    dropouts = {"encoder self-attention": attention.pop("dropout"), "encoder FFN": ffn.pop("dropout")}
    result = dict(num_layers=stack("num_layers"), **attention, **ffn, dropouts=dropouts)
    stack.close()
    return result


def _decoder_values(cfg: Optional[Mapping], where: str, levels: int) -> Dict[str, Any]:
    stack = _layer_stack(cfg, where, dict(post_norm_cfg=dict(type="LN"), return_intermediate=True, init_cfg=None))
    stack.expect("post_norm_cfg", None)
    stack.expect("return_intermediate", True)
    layer = _Fields(stack("layer_cfg"), f"{where}.layer_cfg", dict(self_attn_cfg=None, cross_attn_cfg=None,
                                                                     ffn_cfg=None, norm_cfg=dict(type="LN"),
                                                                     init_cfg=None))
    layer.expect("norm_cfg", dict(type="LN"))
    layer.expect("init_cfg", None)
    cross = _attention(layer("cross_attn_cfg"), f"{where}.layer_cfg.cross_attn_cfg", levels)
    self_attention = _Fields(layer("self_attn_cfg"), f"{where}.layer_cfg.self_attn_cfg", _MHA_DEFAULTS)
    self_attention.expect("embed_dims", cross["d_model"])
    self_attention.expect("num_heads", cross["nheads"])
    self_attention.expect("batch_first", True)
    self_attention.expect("proj_drop", 0.0)
    self_attention.expect("dropout_layer", dict(type="Dropout", drop_prob=0.0))
    self_attention.expect("init_cfg", None)
    # mmcv reads the older name "dropout" as attn_drop
    attn_drop = self_attention("dropout") if "dropout" in self_attention.cfg else self_attention("attn_drop")
    self_attention.close()
    ffn = _ffn(layer("ffn_cfg"), f"{where}.layer_cfg.ffn_cfg", cross["d_model"])
    layer.close()
    dropouts = {"decoder self-attention": attn_drop, "decoder cross-attention": cross.pop("dropout"),
                "decoder FFN": ffn.pop("dropout")}
    result = dict(num_layers=stack("num_layers"), **cross, **ffn, dropouts=dropouts)
    stack.close()
    return result


def _position_encoding_values(cfg: Optional[Mapping], where: str, d_model: int) -> Dict[str, Any]:
    f = _Fields(cfg, where, dict(temperature=10000, normalize=False, scale=2 * math.pi, eps=1e-6, offset=0.0,
                                 init_cfg=None))
    f.expect("num_feats", d_model // 2)
    f.expect("eps", 1e-6)
    f.expect("init_cfg", None)
    values = {"MODEL.POSITION_ENCODING.NAME": "PositionEmbeddingSine",
              "MODEL.POSITION_ENCODING.TEMPERATURE": f("temperature"),
              "MODEL.POSITION_ENCODING.NORMALIZE": bool(f("normalize")),
              "MODEL.POSITION_ENCODING.SCALE": float(f("scale")),
              "MODEL.POSITION_ENCODING.OFFSET": float(f("offset"))}
    f.close()
    return values


def _head_values(cfg: Optional[Mapping], where: str, d_model: int) -> Dict[str, Any]:
    f = _Fields(cfg, where, dict(embed_dims=256, num_reg_fcs=2, sync_cls_avg_factor=False, init_cfg=None,
                                 loss_bbox=dict(type="L1Loss", loss_weight=5.0),
                                 loss_iou=dict(type="GIoULoss", loss_weight=2.0)))
    f.expect("type", "DeformableDETRHead")
    f.expect("embed_dims", d_model)
    f.expect("num_reg_fcs", 2)
    f.expect("init_cfg", None)
    # the official averages every term over the boxes of all processes
    f.expect("sync_cls_avg_factor", True)
    focal = _Fields(f("loss_cls"), f"{where}.loss_cls", dict(use_sigmoid=True, gamma=2.0, alpha=0.25,
                                                             reduction="mean", loss_weight=1.0, activated=False))
    focal.expect("type", "FocalLoss")
    focal.expect("use_sigmoid", True)
    focal.expect("reduction", "mean")
    focal.expect("activated", False)
    values = {"MODEL.NUM_CLASSES": f("num_classes"),
              "MODEL.CRITERION.LOSS_CLASS_WEIGHT": float(focal("loss_weight")),
              "MODEL.CRITERION.FOCAL_ALPHA": float(focal("alpha")),
              "MODEL.CRITERION.FOCAL_GAMMA": float(focal("gamma"))}
    focal.close()
    for field, loss_type, key, extra in (("loss_bbox", "L1Loss", "MODEL.CRITERION.LOSS_BBOX_WEIGHT", {}),
                                         ("loss_iou", "GIoULoss", "MODEL.CRITERION.LOSS_GIOU_WEIGHT",
                                          dict(eps=1e-6))):
        loss = _Fields(f(field), f"{where}.{field}", dict(reduction="mean", loss_weight=1.0, **extra))
        loss.expect("type", loss_type)
        loss.expect("reduction", "mean")
        if extra:
            loss.expect("eps", 1e-6)
        values[key] = float(loss("loss_weight"))
        loss.close()
    f.close()
    return values


def _matcher_values(cfg: Optional[Mapping], where: str, focal_alpha: float, focal_gamma: float) -> Dict[str, Any]:
    """Matching costs; without train_cfg (inference only) our defaults stay. The focal cost must use the
    loss's ``focal_alpha`` and ``focal_gamma``: our matcher and criterion share them."""
    if cfg is None:
        return {}
    train = _Fields(cfg, where, {})
    assigner = _Fields(train("assigner"), f"{where}.assigner", {})
    assigner.expect("type", "HungarianAssigner")
    costs = assigner("match_costs")
    assigner.close()
    train.close()
    costs = [costs] if isinstance(costs, Mapping) else list(costs)
    values = {"MODEL.MATCHER.COST_CLASS": 0.0, "MODEL.MATCHER.COST_BBOX": 0.0, "MODEL.MATCHER.COST_GIOU": 0.0}
    for index, cost_cfg in enumerate(costs):
        cost_where = f"{where}.assigner.match_costs[{index}]"
        kind = cost_cfg.get("type") if isinstance(cost_cfg, Mapping) else None
        if kind == "FocalLossCost":
            cost = _Fields(cost_cfg, cost_where, dict(alpha=0.25, gamma=2, eps=1e-12, binary_input=False, weight=1.0))
            cost.expect("binary_input", False)
            cost("eps")  # keeps log(0) finite, as ours does with its own small constant
            cost.expect("alpha", focal_alpha)
            cost.expect("gamma", focal_gamma)
            values["MODEL.MATCHER.COST_CLASS"] = float(cost("weight"))
        elif kind == "BBoxL1Cost":
            cost = _Fields(cost_cfg, cost_where, dict(box_format="xyxy", weight=1.0))
            # "xywh": L1 between normalized (cx, cy, w, h), as the official
            cost.expect("box_format", "xywh")
            values["MODEL.MATCHER.COST_BBOX"] = float(cost("weight"))
        elif kind == "IoUCost":
            cost = _Fields(cost_cfg, cost_where, dict(iou_mode="giou", weight=1.0))
            cost.expect("iou_mode", "giou")
            values["MODEL.MATCHER.COST_GIOU"] = float(cost("weight"))
        else:
            raise MMDetConfigError(f"{cost_where} is {cost_cfg!r}; only FocalLossCost, BBoxL1Cost and IoUCost "
                                   f"are supported")
        cost("type")
        cost.close()
    return values


def _neck(cfg: Optional[Mapping], where: str, d_model: int, levels: int) -> tuple:
    """(backbone channels, conv bias) of the ChannelMapper that is our input projection."""
    f = _Fields(cfg, where, dict(kernel_size=3, conv_cfg=None, norm_cfg=None, act_cfg=dict(type="ReLU"),
                                 bias="auto", num_outs=None, init_cfg=_NECK_XAVIER))
    f.expect("type", "ChannelMapper")
    f.expect("kernel_size", 1)
    f.expect("conv_cfg", None)
    f.expect("norm_cfg", dict(type="GN", num_groups=32))
    f.expect("act_cfg", None)
    f.expect("out_channels", d_model)
    # our projections are initialised as mmdet's default: xavier-uniform convs, zero biases
    f.expect("init_cfg", _NECK_XAVIER, None)
    in_channels = list(f("in_channels"))
    num_outs = f("num_outs")
    if (len(in_channels) if num_outs is None else num_outs) != levels:
        raise MMDetConfigError(f"{where}.num_outs is {num_outs} but num_feature_levels is {levels}; the neck "
                               f"makes the feature levels")
    if len(in_channels) > levels:
        raise MMDetConfigError(f"{where}.in_channels has {len(in_channels)} entries, more than the {levels} levels")
    bias = f.expect("bias", "auto", True, False)
    f.close()
    # "auto": a conv followed by a norm has no bias
    return in_channels, bias is True


def resnet_backbone_values(backbone: Mapping[str, Any], where: str = "model.backbone") -> Dict[str, Any]:
    """Our MODEL.BACKBONE keys for an mmdet ``ResNet`` backbone config (the converter's case).

    Raises:
        MMDetConfigError: another backbone, or a ResNet option ours does not have.
    """
    f = _Fields(backbone, where, dict(in_channels=3, stem_channels=None, base_channels=64, num_stages=4,
                                      strides=(1, 2, 2, 2), dilations=(1, 1, 1, 1), out_indices=(0, 1, 2, 3),
                                      style="pytorch", deep_stem=False, avg_down=False, frozen_stages=-1,
                                      conv_cfg=None, norm_cfg=dict(type="BN", requires_grad=True), norm_eval=True,
                                      dcn=None, stage_with_dcn=(False, False, False, False), plugins=None,
                                      with_cp=False, zero_init_residual=True, pretrained=None, init_cfg=None))
    f.expect("type", "ResNet")
    for key, value in (("in_channels", 3), ("stem_channels", None), ("base_channels", 64), ("num_stages", 4),
                       ("style", "pytorch"), ("deep_stem", False), ("avg_down", False), ("conv_cfg", None),
                       ("dcn", None), ("plugins", None), ("with_cp", False)):
        f.expect(key, value)
    f.expect("strides", (1, 2, 2, 2), [1, 2, 2, 2])
    f.expect("stage_with_dcn", (False,) * 4, [False] * 4)
    dilations = tuple(f("dilations"))
    if dilations not in ((1, 1, 1, 1), (1, 1, 1, 2)):
        raise MMDetConfigError(f"{where}.dilations is {dilations}; (1, 1, 1, 1) or DC5's (1, 1, 1, 2) only")
    # weights and initialisation come from the checkpoint being converted
    f("zero_init_residual"), f("pretrained"), f("init_cfg")
    norm = dict(f("norm_cfg"))
    frozen = not norm.get("requires_grad", True) and f("norm_eval")
    trainable_bn = norm.get("requires_grad", True) and not f("norm_eval")
    known_norm = norm.get("type") in ("BN", "SyncBN") and not set(norm) - {"type", "requires_grad"}
    if not known_norm or not (frozen or trainable_bn):
        raise MMDetConfigError(f"{where}.norm_cfg {norm} with norm_eval {f('norm_eval')}: only frozen batch norm "
                               f"(requires_grad False, norm_eval True) or trained batch norm (requires_grad True, "
                               f"norm_eval False) is supported")
    frozen_stages = f("frozen_stages")
    stages = ["layer1", "layer2", "layer3", "layer4"]
    train_layers = (["conv1", "bn1"] if frozen_stages < 0 else []) + stages[max(frozen_stages, 0):]
    values = {"MODEL.BACKBONE.NAME": "ResNetBackbone",
              "MODEL.BACKBONE.DEPTH": f("depth"),
              "MODEL.BACKBONE.NORM": "FrozenBN" if frozen else norm["type"],
              "MODEL.BACKBONE.TRAIN_LAYERS": train_layers,
              "MODEL.BACKBONE.OUT_FEATURES": [stages[index] for index in f("out_indices")],
              "MODEL.BACKBONE.DILATION": dilations[-1] == 2}
    f.close()
    return values


def data_preprocessor_values(preprocessor: Optional[Mapping], where: str = "model.data_preprocessor") -> Dict:
    """MODEL.PIXEL_MEAN/STD of a DetDataPreprocessor config: our models read RGB images."""
    preprocessor = dict(preprocessor or {})
    if not preprocessor.get("bgr_to_rgb", False):
        raise MMDetConfigError(f"{where}.bgr_to_rgb is not True: the model reads BGR images, ours read RGB")
    return {"MODEL.PIXEL_MEAN": [float(v) for v in preprocessor.get("mean", (0.0, 0.0, 0.0))],
            "MODEL.PIXEL_STD": [float(v) for v in preprocessor.get("std", (1.0, 1.0, 1.0))]}
