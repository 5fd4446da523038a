"""MMDetection 3.x ``DeformableDETR`` checkpoints to ours and back (no mmdet import).

mmengine saves ``{"meta", "state_dict", "message_hub", "optimizer", ...}``; ``meta["cfg"]``
is the config text of the run. Three state-dict layouts are read:

- mmdet's own model: ``backbone.*`` (an mmdet ResNet, torchvision's names) is our
  ``backbone.body.*``; the ``neck`` (ChannelMapper) is our ``input_proj``:
  ``neck.convs.{l}.{conv,gn}`` and, for the extra levels, ``neck.extra_convs.{j}.{conv,gn}``
  are ``input_proj.{l}.{0,1}`` (its convs have no bias by default: ours are then zero);
  ``encoder.*``/``decoder.*`` are ``transformer.{encoder,decoder}.*`` with mmcv's names
  (``ffn.layers.0.0``/``ffn.layers.1`` = ``linear1``/``linear2``; encoder ``norms.{0,1}`` =
  ``norm1``/``norm2``; decoder ``norms.{0,1,2}`` = ``norm2``/``norm1``/``norm3``, its
  ``self_attn.attn`` = ``self_attn``); ``bbox_head.cls_branches.{i}`` = ``class_embed.{i}``,
  ``bbox_head.reg_branches.{i}.{0,2,4}`` = ``bbox_embed.{i}.layers.{0,1,2}``;
  ``query_embedding``, ``reference_points_fc``, ``memory_trans_{fc,norm}``, ``pos_trans_{fc,norm}``
  = ``query_embed``, ``transformer.{reference_points,enc_output,enc_output_norm,pos_trans,pos_trans_norm}``;
- ``PluginDeformableDETR`` (ddetr_plugin.integrations.mmdet): our layout under ``detector.``;
- ours (``transformer.level_embed`` ...), e.g. one of our files given as mmengine's ``load_from``.

mmdet numbers a dataset's classes 0..C-1 (80 for COCO). Our checkpoints in the COCO
``category_id`` label space (91 outputs) get their class heads cut to those 80 rows.
"""
import logging
import re
from typing import Any, Dict, Mapping, Tuple

from ..config import load_config
from ..config.config_text import parse_config_text
from ..config.dotted import config_value, typed
from ..config.mmdet_model import (
    MMDetConfigError,
    data_preprocessor_values,
    mmdet_model_settings,
    resnet_backbone_values,
)
from ..data.label_space import CATEGORY_ID, CONTIGUOUS
from .checkpointer import UnsafeCheckpointError, load_checkpoint_file, state_dict_entry
from .class_rows import COCO_CATEGORY_IDS, is_class_head_key, select_class_rows
from .renaming import (
    RenameTable,
    StateDict,
    UnknownKeysError,
    count_indices,
    drop_batch_norm_counters,
    heads_differ,
    module_rules,
)
from .variant import ConvertedCheckpoint, ModelVariant, variant_for_export

logger = logging.getLogger(__name__)

# PluginDeformableDETR holds our DeformableDETR as its attribute "detector"
PLUGIN_PREFIX = "detector."
OURS, MMDET, PLUGIN = "ours", "mmdet", "PluginDeformableDETR"
# mmdet's get_proposal_pos_embed defaults to 128 features per box coordinate: 4 x 128 = 2 x 256
MMDET_TWO_STAGE_D_MODEL = 256
_FFN = [("linear1", "ffn.layers.0.0"), ("linear2", "ffn.layers.1")]
_FIXED_RULES = [
    *module_rules("", "", [("backbone.body", "backbone"), ("transformer.level_embed", "level_embed")]),
    *module_rules("transformer.encoder.layers.{i}", "encoder.layers.{i}",
                  [("self_attn", "self_attn"), *_FFN, ("norm1", "norms.0"), ("norm2", "norms.1")]),
    *module_rules("transformer.decoder.layers.{i}", "decoder.layers.{i}", [
        ("self_attn", "self_attn.attn"), ("cross_attn", "cross_attn"), *_FFN,
        ("norm2", "norms.0"), ("norm1", "norms.1"), ("norm3", "norms.2")]),
    *module_rules("", "", [("query_embed", "query_embedding"), ("transformer.reference_points", "reference_points_fc"),
                           ("transformer.enc_output", "memory_trans_fc"),
                           ("transformer.enc_output_norm", "memory_trans_norm"),
                           ("transformer.pos_trans", "pos_trans_fc"),
                           ("transformer.pos_trans_norm", "pos_trans_norm"),
                           ("class_embed.{i}", "bbox_head.cls_branches.{i}")]),
    # mmdet's box head is a Sequential of Linear, ReLU, Linear, ReLU, Linear
    *module_rules("bbox_embed.{i}.layers", "bbox_head.reg_branches.{i}", [("0", "0"), ("1", "2"), ("2", "4")]),
]


def mmdet_table(num_inputs: int, num_levels: int) -> RenameTable:
    """The table of a model whose neck projects ``num_inputs`` backbone outputs and adds
    ``num_levels - num_inputs`` extra levels (``neck.extra_convs`` continue our level index)."""
    conv_and_norm = [("0", "conv"), ("1", "gn")]
    extra = [rule for j in range(num_levels - num_inputs)
             for rule in module_rules(f"input_proj.{num_inputs + j}", f"neck.extra_convs.{j}", conv_and_norm)]
    return RenameTable("MMDetection", extra + module_rules("input_proj.{l}", "neck.convs.{l}", conv_and_norm)
                       + _FIXED_RULES)


def state_dict_layout(state_dict: Mapping[str, Any]) -> str:
    """OURS, MMDET or PLUGIN.

    Raises:
        UnknownKeysError: none of them (another model, or not a state dict).
    """
    if f"{PLUGIN_PREFIX}transformer.level_embed" in state_dict:
        return PLUGIN
    if "transformer.level_embed" in state_dict:
        return OURS
    if "level_embed" in state_dict and "bbox_head.cls_branches.0.weight" in state_dict:
        return MMDET
    keys = sorted(map(str, state_dict))
    shown = ", ".join(repr(key) for key in keys[:8]) + (f" and {len(keys) - 8} more" if len(keys) > 8 else "")
    raise UnknownKeysError(
        f"not a Deformable DETR state dict in MMDetection's, PluginDeformableDETR's or our layout (no "
        f"'level_embed', 'detector.transformer.level_embed' or 'transformer.level_embed'); its keys: {shown}")


def to_ours(state_dict: StateDict) -> StateDict:
    """Our layout of a state dict in any of the three layouts (tensors shared, not copied)."""
    layout = state_dict_layout(state_dict)
    if layout == OURS:
        return dict(state_dict)
    if layout == PLUGIN:
        stray = [key for key in state_dict if not key.startswith(PLUGIN_PREFIX)]
        if stray:
            raise UnknownKeysError(f"PluginDeformableDETR state dict with keys outside {PLUGIN_PREFIX!r}: {stray[:10]}")
        return {key[len(PLUGIN_PREFIX):]: value for key, value in state_dict.items()}
    num_inputs = count_indices(state_dict, "neck.convs.")
    return mmdet_table(num_inputs, state_dict["level_embed"].shape[0]).rename_to_ours(state_dict)


def ours_to_mmdet_state_dict(state_dict: StateDict) -> StateDict:
    """mmdet's layout of our ``state_dict``: the renaming alone (biases and class rows as given)."""
    num_levels = state_dict["transformer.level_embed"].shape[0]
    num_inputs = sum(1 for level in range(num_levels) if state_dict[f"input_proj.{level}.0.weight"].shape[-1] == 1)
    return mmdet_table(num_inputs, num_levels).rename_from_ours(state_dict)


def input_proj_biases_zero(state_dict: StateDict) -> bool:
    """Whether every input-projection conv bias in our ``state_dict`` is zero (or absent)."""
    return all(not value.any() for key, value in state_dict.items() if _is_input_proj_bias(key))


def fit_input_proj_biases(state_dict: StateDict, with_bias: bool) -> StateDict:
    """Our ``state_dict`` with input-projection conv biases for a model that has them (zeros where the
    checkpoint has none: mmdet's bias-free convs) or not (zero biases dropped).

    Raises:
        ValueError: the model has no biases but the checkpoint's are not zero.
    """
    fitted = {key: value for key, value in state_dict.items() if with_bias or not _is_input_proj_bias(key)}
    if not with_bias and not input_proj_biases_zero(state_dict):
        raise ValueError("the checkpoint's input projections (neck convs) have non-zero biases but the model's "
                         "convs have none: set the neck's bias=True")
    if with_bias:
        for key, value in state_dict.items():
            match = re.fullmatch(r"input_proj\.(\d+)\.0\.weight", key)
            if match:
                fitted.setdefault(f"input_proj.{match.group(1)}.0.bias", value.new_zeros(value.shape[0]))
    return fitted


def category_ids_to_coco_classes(state_dict: StateDict, two_stage: bool, shared_heads: bool) -> StateDict:
    """Class heads of our 91-output COCO ``category_id`` model cut to COCO's 80 classes in id order.

    A two-stage model scores its proposals with logit 0 of its last class head (the encoder's,
    trained with every object as class 0), so that head keeps row 0 first.

    Args:
        shared_heads: one class head for all layers (no box refinement).

    Raises:
        ValueError: two-stage with shared heads: decoder and encoder would need different rows.
    """
    if not two_stage:
        return select_class_rows(state_dict, COCO_CATEGORY_IDS)
    if shared_heads:
        raise ValueError("a two-stage model whose class heads are shared (no box refinement) cannot keep both the "
                         "decoder's COCO rows and the encoder's proposal logit 0 in 80 classes")
    heads = sorted({int(key.split(".")[1]) for key in state_dict if is_class_head_key(key)})
    encoder_head = f"class_embed.{heads[-1]}."
    decoder = select_class_rows({k: v for k, v in state_dict.items() if not k.startswith(encoder_head)},
                                COCO_CATEGORY_IDS)
    encoder = select_class_rows({k: v for k, v in state_dict.items() if k.startswith(encoder_head)},
                                (0,) + COCO_CATEGORY_IDS[1:])
    return {key: (encoder if key.startswith(encoder_head) else decoder)[key] for key in state_dict}


def split_mmengine_checkpoint(checkpoint: Any) -> Tuple[StateDict, Dict[str, Any]]:
    """(state dict, meta) of an mmengine checkpoint dict, one of ours, or a bare state dict."""
    state_dict = state_dict_entry(checkpoint, ("state_dict", "model"), "an MMDetection checkpoint")
    meta = checkpoint.get("meta") if isinstance(checkpoint.get("meta"), Mapping) else {}
    # mmengine strips a DDP wrapper's prefix when loading; do the same
    if state_dict and all(key.startswith("module.") for key in state_dict):
        state_dict = {key[len("module."):]: value for key, value in state_dict.items()}
    return state_dict, dict(meta)


def load_mmdet_checkpoint(path: str) -> ConvertedCheckpoint:
    """Read an mmengine checkpoint (``weights_only``) and convert it.

    Checkpoints that mmengine's Runner writes pickle its message hub (HistoryBuffer objects with
    numpy arrays): importing ddetr_plugin.integrations.mmdet allow-lists exactly those types.
    """
    try:
        checkpoint = load_checkpoint_file(path)
    except UnsafeCheckpointError as e:
        raise UnsafeCheckpointError(
            f"{e}\nCheckpoints written by mmengine's Runner hold its message hub (mmengine HistoryBuffer, numpy "
            f"arrays): `import ddetr_plugin.integrations.mmdet` (pip install 'ddetr_plugin[mmdet]') allow-lists "
            f"exactly those types.") from None
    return mmdet_to_ours(checkpoint)


def mmdet_to_ours(checkpoint: Mapping[str, Any]) -> ConvertedCheckpoint:
    """Our state dict and config values of an mmengine checkpoint dict (or a bare state dict).

    The settings come from the model config in ``meta["cfg"]`` (mmengine's Runner stores it); without
    it (or for a PluginDeformableDETR built from our YAML) the official ones: 8 heads, 300 two-stage
    queries, refinement when the per-layer heads differ.

    Raises:
        UnknownKeysError: keys of another model. MMDetConfigError: a config field ours cannot honour.
        ValueError: weights that contradict the config, or fit no variant.
    """
    state_dict, meta = split_mmengine_checkpoint(checkpoint)
    layout = state_dict_layout(state_dict)
    ours = fit_input_proj_biases(drop_batch_norm_counters(to_ours(state_dict)), with_bias=True)
    settings, notes = _settings_of(meta, layout)
    two_stage = "transformer.enc_output.weight" in ours
    num_queries = settings.get("MODEL.NUM_QUERIES")
    if two_stage and num_queries is None:
        num_queries = 300
        notes.append("two-stage checkpoint without a model config: assuming the official 300 queries")
    refine = settings.get("MODEL.WITH_BOX_REFINE")
    variant = ModelVariant.from_state_dict(
        ours, nheads=settings.get("MODEL.TRANSFORMER.NHEADS", 8),
        with_box_refine=heads_differ(ours) if refine is None else refine,
        dilation=settings.get("MODEL.BACKBONE.DILATION", False), num_queries=num_queries)
    claims = {field: settings.get(key) for field, key in _VARIANT_KEYS.items()}
    variant.check_claims(claims, "the checkpoint's model config (meta['cfg'])")
    values = {**settings, **variant.config_values(), "MODEL.LABEL_SPACE": CONTIGUOUS}
    for note in notes:
        logger.warning(note)
    return ConvertedCheckpoint(ours, variant, typed(values), notes=tuple(notes))


_VARIANT_KEYS = {
    "num_classes": "MODEL.NUM_CLASSES", "num_queries": "MODEL.NUM_QUERIES",
    "num_feature_levels": "MODEL.NUM_FEATURE_LEVELS", "two_stage": "MODEL.TWO_STAGE",
    "d_model": "MODEL.TRANSFORMER.D_MODEL", "enc_layers": "MODEL.TRANSFORMER.ENC_LAYERS",
    "dec_layers": "MODEL.TRANSFORMER.DEC_LAYERS", "dim_feedforward": "MODEL.TRANSFORMER.DIM_FEEDFORWARD",
    "enc_n_points": "MODEL.TRANSFORMER.ENC_N_POINTS", "dec_n_points": "MODEL.TRANSFORMER.DEC_N_POINTS",
    "backbone_depth": "MODEL.BACKBONE.DEPTH",
}


def _settings_of(meta: Mapping[str, Any], layout: str) -> Tuple[Dict[str, Any], list]:
    """Config values from the checkpoint's stored model config, and notes on what was assumed."""
    text = meta.get("cfg") or meta.get("config")
    model = parse_config_text(text).get("model") if isinstance(text, str) else None
    if not isinstance(model, Mapping):
        return {}, ["no model config in the checkpoint's meta: assuming the official settings (8 heads)"]
    if model.get("ddetr_config"):
        try:
            cfg = load_config(model["ddetr_config"], list(model.get("ddetr_options") or ()))
        except FileNotFoundError:
            return {}, [f"the model was built from {model['ddetr_config']}, which is not here: assuming the "
                        f"official settings (8 heads)"]
        return {key: config_value(cfg, key) for key in (*_VARIANT_KEYS.values(), "MODEL.TRANSFORMER.NHEADS",
                                                        "MODEL.WITH_BOX_REFINE")}, []
    settings = mmdet_model_settings(model)
    values = dict(settings.values)
    values.update(data_preprocessor_values(model.get("data_preprocessor")))
    if model.get("backbone", {}).get("type") == "ResNet":
        values.update(resnet_backbone_values(model["backbone"]))
    else:
        raise MMDetConfigError(f"model.backbone is {model.get('backbone', {}).get('type')!r}; the conversion to our "
                               f"model handles mmdet's ResNet only (PluginDeformableDETR runs any mmdet backbone)")
    return values, []


def ours_to_mmdet(state_dict: StateDict, cfg) -> Dict[str, Any]:
    """An mmengine-style checkpoint ``{"meta", "state_dict"}`` for mmdet's ``DeformableDETR`` of our model.

    A model in the ``category_id`` label space (91 COCO outputs) gets mmdet's 80 COCO classes. Non-zero
    input-projection biases are kept: the mmdet config then needs ``model.neck.bias=True``.

    Raises:
        ValueError: the weights are not the model of ``cfg``, or ``cfg`` uses something mmdet's model lacks.
    """
    variant = variant_for_export(state_dict, cfg, "MMDetection", ("MODEL.BACKBONE.DILATION",))
    if variant.position_encoding != "PositionEmbeddingSine":
        raise ValueError(f"MODEL.POSITION_ENCODING.NAME is {variant.position_encoding!r}; mmdet's DeformableDETR "
                         f"has the sine encoding only")
    if variant.two_stage and variant.d_model != MMDET_TWO_STAGE_D_MODEL:
        raise ValueError(f"MODEL.TRANSFORMER.D_MODEL is {variant.d_model}: mmdet's two-stage DeformableDETR embeds its "
                         f"proposals with 128 features per coordinate whatever its width, so it runs only with "
                         f"d_model {MMDET_TWO_STAGE_D_MODEL} (PluginDeformableDETR runs this model in mmdet)")
    notes = []
    if cfg.MODEL.LABEL_SPACE == CATEGORY_ID:
        if cfg.MODEL.NUM_CLASSES != 91:
            raise ValueError(f"MODEL.LABEL_SPACE category_id with {cfg.MODEL.NUM_CLASSES} classes: only COCO's 91 "
                             f"category ids convert to mmdet's contiguous labels")
        state_dict = category_ids_to_coco_classes(state_dict, variant.two_stage, not variant.with_box_refine)
        notes.append("class heads cut from COCO's 91 category ids to mmdet's 80 classes")
    with_bias = not input_proj_biases_zero(state_dict)
    if with_bias:
        notes.append("the input projections have biases: set model.neck.bias=True in the mmdet config")
    mmdet_state_dict = ours_to_mmdet_state_dict(fit_input_proj_biases(state_dict, with_bias))
    for note in notes:
        logger.warning(note)
    return {"meta": {"converted_by": "ddetr_plugin tools/convert_checkpoint.py --to mmdet", "notes": notes},
            "state_dict": mmdet_state_dict}


def _is_input_proj_bias(key: str) -> bool:
    return re.fullmatch(r"input_proj\.\d+\.0\.bias", key) is not None

