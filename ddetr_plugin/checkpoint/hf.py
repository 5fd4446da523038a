"""HF transformers ``DeformableDetrForObjectDetection`` directories to ours and back.

A ``save_pretrained`` directory holds config.json and model.safetensors (or shards with
an index, or an older pytorch_model.bin). Reading accepts the key names of
transformers 5 and of 4.x; writing uses transformers 5's. Differences from our layout:

- the decoder's self-attention has separate ``q_proj``/``k_proj``/``v_proj`` (ours:
  ``nn.MultiheadAttention``'s stacked ``in_proj_weight``/``in_proj_bias``) and ``o_proj``;
- norms and FFNs are named by role: encoder ``self_attn_layer_norm``/``final_layer_norm``
  are our ``norm1``/``norm2``; decoder ``self_attn_layer_norm``/``encoder_attn_layer_norm``/
  ``final_layer_norm`` are ``norm2``/``norm1``/``norm3``; ``mlp.fc1``/``mlp.fc2`` are
  ``linear1``/``linear2``; ``encoder_attn`` is ``cross_attn``;
- ``model.backbone.model.*`` (a timm ResNet, whose parameter names are torchvision's)
  is ``backbone.body.*``; ``model.query_position_embeddings`` is ``query_embed``;
- heads shared between decoder layers are saved once (``class_embed.0``): HF ties
  class heads across layers unless two-stage and box heads unless box refinement
  (transformers 5 ties the class heads even with box refinement, where the official
  model has one per layer); the decoder's references ``model.decoder.{bbox,class}_embed``
  may be the only copy of a head.

The variant comes from config.json. Configs converted from HF keep HF's training settings,
which differ from the official ones: class loss weight 1 (official 2), its matcher
costs (class cost 1 by default, official 2), no encoder-proposal loss, its
``auxiliary_loss`` switch (off by default) and ``dropout``. HF's separate
``attention_dropout`` and ``activation_dropout`` (default 0) have no key of their own here.
"""
import json
import logging
import os
import re
from typing import Any, Dict, Optional, Sequence, Tuple

from ..config.dotted import config_value
from ..data.class_names import check_class_names
from .checkpointer import load_checkpoint_file
from .hf_preprocessor import PREPROCESSOR_FILE
from .renaming import HEADS, KeyRule, RenameTable, StackRule, StateDict, heads_differ, module_rules, same_names
from .variant import ConvertedCheckpoint, ModelVariant, variant_for_export

logger = logging.getLogger(__name__)

_TRANSFORMERS_4 = [("linear1", "fc1"), ("linear2", "fc2")]  # before the FFN moved into "mlp"
HF_TABLE = RenameTable(
    "HF transformers",
    [
        KeyRule("backbone.body", "model.backbone.model"),
        KeyRule("backbone.body", "model.backbone.conv_encoder.model"),  # transformers 4
        *module_rules("position_encoding", "model.position_embedding",
                      [("row_embed", "row_embeddings"), ("col_embed", "column_embeddings")]),
        *module_rules("position_encoding", "model.backbone.position_embedding",  # transformers 4
                      [("row_embed", "row_embeddings"), ("col_embed", "column_embeddings")]),
        *module_rules("", "model", [("input_proj", "input_proj"), ("query_embed", "query_position_embeddings")]),
        *module_rules("transformer", "model", [(name, name) for name in (
            "level_embed", "reference_points", "enc_output", "enc_output_norm", "pos_trans", "pos_trans_norm")]),
        *module_rules("transformer.encoder.layers.{i}", "model.encoder.layers.{i}", [
            ("self_attn", "self_attn"), ("norm1", "self_attn_layer_norm"), ("linear1", "mlp.fc1"),
            ("linear2", "mlp.fc2"), *_TRANSFORMERS_4, ("norm2", "final_layer_norm")]),
        *module_rules("transformer.decoder.layers.{i}", "model.decoder.layers.{i}", [
            ("self_attn.out_proj", "self_attn.o_proj"),
            ("self_attn.out_proj", "self_attn.out_proj"),  # transformers 4
            # in_proj_weight / in_proj_bias: HF's q/k/v projections, stacked before renaming
            ("self_attn", "self_attn"), ("norm2", "self_attn_layer_norm"), ("cross_attn", "encoder_attn"),
            ("norm1", "encoder_attn_layer_norm"), ("linear1", "mlp.fc1"), ("linear2", "mlp.fc2"), *_TRANSFORMERS_4,
            ("norm3", "final_layer_norm")]),
        *same_names("class_embed", "bbox_embed"),
    ],
    alias_prefix="model.decoder.",
    stack_rules=[StackRule("model.decoder.layers.{i}.self_attn", ("q_proj", "k_proj", "v_proj"), "in_proj")],
    batch_norm_counters=False,  # HF's ResNet has frozen batch norm
)

# config.json defaults of transformers (used when a key is absent)
HF_DEFAULTS = {
    "class_cost": 1, "bbox_cost": 5, "giou_cost": 2, "bbox_loss_coefficient": 5, "giou_loss_coefficient": 2,
    "focal_alpha": 0.25, "auxiliary_loss": False, "dropout": 0.1, "activation_function": "relu",
    "encoder_attention_heads": 8, "decoder_attention_heads": 8, "num_queries": 300,
    "two_stage_num_proposals": 300, "with_box_refine": False, "two_stage": False, "dilation": False,
    "position_embedding_type": "sine", "tie_word_embeddings": True,
}
# config.json key -> our config key, for the settings that shape training but not the weights
HF_TO_CONFIG = {
    "class_cost": "MODEL.MATCHER.COST_CLASS",
    "bbox_cost": "MODEL.MATCHER.COST_BBOX",
    "giou_cost": "MODEL.MATCHER.COST_GIOU",
    "bbox_loss_coefficient": "MODEL.CRITERION.LOSS_BBOX_WEIGHT",
    "giou_loss_coefficient": "MODEL.CRITERION.LOSS_GIOU_WEIGHT",
    "focal_alpha": "MODEL.CRITERION.FOCAL_ALPHA",
    "auxiliary_loss": "MODEL.AUX_LOSS",
    "dropout": "MODEL.TRANSFORMER.DROPOUT",
    "activation_function": "MODEL.TRANSFORMER.ACTIVATION",
}
# transformers 5 types these as int (a float such as 2.0 fails its validation)
HF_INT_KEYS = ("class_cost", "bbox_cost", "giou_cost", "bbox_loss_coefficient", "giou_loss_coefficient")
# what HF's loss does that has no config.json key
HF_FIXED = {"MODEL.CRITERION.LOSS_CLASS_WEIGHT": 1.0, "MODEL.CRITERION.ENC_LOSS": False}


# ------------------------------------------------------------------ HF -> ours
def load_hf_directory(directory: str) -> ConvertedCheckpoint:
    """Read a ``save_pretrained`` directory and convert it."""
    config_path = os.path.join(directory, "config.json")
    if not os.path.isfile(config_path):
        raise FileNotFoundError(f"{directory} is not a save_pretrained directory: no config.json")
    with open(config_path) as f:
        config = json.load(f)
    return hf_to_ours(read_hf_weights(directory), config)


def read_hf_weights(directory: str) -> StateDict:
    """The state dict of model.safetensors, its shards (model.safetensors.index.json) or pytorch_model.bin."""
    single = os.path.join(directory, "model.safetensors")
    index = os.path.join(directory, "model.safetensors.index.json")
    if os.path.isfile(single) or os.path.isfile(index):
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise ImportError("reading HF weights needs the safetensors package: pip install safetensors") from None
        if os.path.isfile(single):
            return load_file(single)
        with open(index) as f:
            shards = sorted(set(json.load(f)["weight_map"].values()))
        state_dict: StateDict = {}
        for shard in shards:
            state_dict.update(load_file(os.path.join(directory, shard)))
        return state_dict
    legacy = os.path.join(directory, "pytorch_model.bin")
    if os.path.isfile(legacy):
        return load_checkpoint_file(legacy)
    raise FileNotFoundError(f"{directory} has no model.safetensors, model.safetensors.index.json or pytorch_model.bin")


def hf_to_ours(hf_state_dict: StateDict, config: Dict[str, Any]) -> ConvertedCheckpoint:
    """Our state dict and config values from an HF state dict and its config.json.

    Raises:
        ValueError: a backbone other than a timm ResNet, config.json contradicting the
            weights, or a head missing.
        UnknownKeysError: keys of another model.
    """
    if config.get("model_type", "deformable_detr") != "deformable_detr":
        raise ValueError(f"config.json has model_type {config.get('model_type')!r}, expected 'deformable_detr'")
    setting = {**HF_DEFAULTS, **{key: value for key, value in config.items() if value is not None}}
    depth, dilation = _hf_backbone(config)
    if setting["encoder_attention_heads"] != setting["decoder_attention_heads"]:
        raise ValueError(f"encoder_attention_heads {setting['encoder_attention_heads']} differs from "
                         f"decoder_attention_heads {setting['decoder_attention_heads']}; MODEL.TRANSFORMER.NHEADS "
                         f"sets both")
    two_stage = bool(setting["two_stage"])
    num_queries = setting["two_stage_num_proposals"] if two_stage else setting["num_queries"]

    ours = HF_TABLE.rename_to_ours(hf_state_dict)
    variant = ModelVariant.from_state_dict(
        ours, nheads=setting["encoder_attention_heads"], with_box_refine=bool(setting["with_box_refine"]),
        dilation=dilation, num_queries=num_queries,
    )
    ours = _untie_heads(ours, variant.num_heads_per_kind, allow=bool(setting["tie_word_embeddings"]))
    claims = {
        "d_model": config.get("d_model"), "enc_layers": config.get("encoder_layers"),
        "dec_layers": config.get("decoder_layers"), "dim_feedforward": config.get("encoder_ffn_dim"),
        "enc_n_points": config.get("encoder_n_points"), "dec_n_points": config.get("decoder_n_points"),
        "num_feature_levels": config.get("num_feature_levels"), "two_stage": two_stage,
        "num_classes": len(config["id2label"]) if config.get("id2label") else None,
        "backbone_depth": depth,
        "position_encoding": {"sine": "PositionEmbeddingSine", "learned": "PositionEmbeddingLearned"}.get(
            setting["position_embedding_type"], setting["position_embedding_type"]),
    }
    variant.check_claims(claims, "config.json")
    if config.get("decoder_ffn_dim") not in (None, variant.dim_feedforward):
        raise ValueError(f"decoder_ffn_dim {config['decoder_ffn_dim']} differs from encoder_ffn_dim "
                         f"{variant.dim_feedforward}; MODEL.TRANSFORMER.DIM_FEEDFORWARD sets both")

    values = variant.config_values()
    values.update({key: setting[name] for name, key in HF_TO_CONFIG.items()})
    values.update(HF_FIXED)
    names = hf_class_names(config.get("id2label"), variant.num_classes)
    if names is not None:
        values["MODEL.CLASS_NAMES"] = names
    return ConvertedCheckpoint.with_label_space(ours, variant, values, config.get("id2label"))


def hf_class_names(id2label: Optional[Dict[str, Any]], num_classes: int) -> Optional[list]:
    """The names of ``id2label``, in label order, or None when it gives none beyond HF's ``LABEL_<i>``
    placeholders (or misses a label)."""
    names = [str((id2label or {}).get(str(i), (id2label or {}).get(i, ""))) for i in range(num_classes)]
    if not all(names) or names == [f"LABEL_{i}" for i in range(num_classes)]:
        return None
    return names


def _hf_backbone(config: Dict[str, Any]) -> Tuple[int, bool]:
    """(ResNet depth, DC5) of config.json's timm backbone (transformers 5 ``backbone_config`` or 4.x keys)."""
    backbone_config = config.get("backbone_config") or {}
    if backbone_config:
        kind = backbone_config.get("model_type")
    else:
        kind = "timm_backbone" if config.get("use_timm_backbone", True) else "transformers"
    name = backbone_config.get("backbone") or config.get("backbone") or "resnet50"
    match = re.fullmatch(r"(?:timm/)?resnet(\d+)(?:\.\w+)?", str(name))
    if kind != "timm_backbone" or not match:
        raise ValueError(f"config.json describes a {kind} backbone {name!r}; only timm ResNets "
                         f"('resnet50', ...) convert")
    dilation = bool(config.get("dilation")) or backbone_config.get("output_stride") == 16
    return int(match.group(1)), dilation


def _untie_heads(state_dict: StateDict, num_heads: int, allow: bool) -> StateDict:
    """Copy head 0 to the indices HF saved only once (tied heads)."""
    completed = dict(state_dict)
    for head in HEADS:
        first = {key[len(f"{head}.0"):]: value for key, value in state_dict.items() if key.startswith(f"{head}.0.")}
        for index in range(1, num_heads):
            if any(key.startswith(f"{head}.{index}.") for key in state_dict):
                continue
            if not allow:
                raise ValueError(f"{head}.{index} is missing and config.json has tie_word_embeddings false")
            completed.update({f"{head}.{index}{rest}": value for rest, value in first.items()})
    return completed


# ------------------------------------------------------------------ ours -> HF
def ours_to_hf(
    state_dict: StateDict, cfg, class_names: Optional[Sequence[str]] = None
) -> Tuple[StateDict, Dict[str, Any]]:
    """HF state dict and config.json of our ``state_dict``, the model ``cfg`` builds; ``class_names``
    (one per label) become ``id2label`` (default ``LABEL_<i>``).

    Every head is written under every index, with the decoder's references. HF ties
    class heads across layers (unless two-stage); when a box-refinement model's class
    heads differ, ``tie_word_embeddings`` is written false so that HF keeps each one.

    Raises:
        ValueError: the weights are not the model of ``cfg``, or ``cfg`` uses something HF's
            model does not have (two-stage without box refinement, GroupNorm backbone, another
            sine encoding).
    """
    variant = variant_for_export(state_dict, cfg, "HF transformers", (
        "MODEL.POSITION_ENCODING.TEMPERATURE", "MODEL.POSITION_ENCODING.NORMALIZE", "MODEL.POSITION_ENCODING.OFFSET",
        "MODEL.POSITION_ENCODING.SCALE"))
    if variant.two_stage and not variant.with_box_refine:
        raise ValueError("HF transformers has two-stage only with box refinement (MODEL.WITH_BOX_REFINE True)")
    for key, value in HF_FIXED.items():
        if config_value(cfg, key) != value:
            logger.warning("%s is %r but HF's loss uses %r; config.json cannot store it",
                           key, config_value(cfg, key), value)
    hf = HF_TABLE.rename_from_ours(state_dict, variant.decoder_head_references)
    tie = variant.two_stage or not heads_differ(state_dict, ["class_embed"])
    return hf, hf_config(variant, cfg, tie_word_embeddings=tie, class_names=class_names)


def hf_config(
    variant: ModelVariant, cfg, tie_word_embeddings: bool = True, class_names: Optional[Sequence[str]] = None
) -> Dict[str, Any]:
    """config.json (transformers 5 keys) of ``variant`` trained as ``cfg`` says, labels named ``class_names``
    (a name given to several labels, such as COCO's unused "N/A", maps back to the first in ``label2id``).

    Raises:
        ValueError: ``class_names`` has not one name per class.
    """
    names = [f"LABEL_{i}" for i in range(variant.num_classes)] if class_names is None else \
        check_class_names(class_names, variant.num_classes, "the class names")
    dropout = cfg.MODEL.TRANSFORMER.DROPOUT
    backbone_config = {
        "model_type": "timm_backbone", "backbone": f"resnet{variant.backbone_depth}", "num_channels": 3,
        "features_only": True, "use_pretrained_backbone": False,
        "out_indices": [int(stage[-1]) for stage in variant.backbone_out_features],
    }
    if variant.dilation:
        backbone_config["output_stride"] = 16
    config = {
        "architectures": ["DeformableDetrForObjectDetection"],
        "model_type": "deformable_detr",
        "backbone_config": backbone_config,
        "dilation": variant.dilation,
        "num_channels": 3,
        "d_model": variant.d_model,
        "encoder_layers": variant.enc_layers,
        "decoder_layers": variant.dec_layers,
        "encoder_attention_heads": variant.nheads,
        "decoder_attention_heads": variant.nheads,
        "encoder_ffn_dim": variant.dim_feedforward,
        "decoder_ffn_dim": variant.dim_feedforward,
        "encoder_n_points": variant.enc_n_points,
        "decoder_n_points": variant.dec_n_points,
        "num_feature_levels": variant.num_feature_levels,
        "num_queries": variant.num_queries,
        "two_stage": variant.two_stage,
        "two_stage_num_proposals": variant.num_queries,
        "with_box_refine": variant.with_box_refine,
        "position_embedding_type": "learned" if variant.position_encoding == "PositionEmbeddingLearned" else "sine",
        # ours applies one dropout to residuals, attention weights and the FFN, as the official
        "attention_dropout": dropout,
        "activation_dropout": dropout,
        "id2label": {str(i): name for i, name in enumerate(names)},
        "label2id": {name: i for i, name in reversed(list(enumerate(names)))},
        "tie_word_embeddings": tie_word_embeddings,
        "is_encoder_decoder": True,
    }
    for name, key in HF_TO_CONFIG.items():
        value = config_value(cfg, key)
        config[name] = int(value) if name in HF_INT_KEYS and float(value).is_integer() else value
    return config


def save_hf_directory(
    directory: str, hf_state_dict: StateDict, config: Dict[str, Any], preprocessor: Optional[Dict[str, Any]] = None
) -> None:
    """Write config.json and model.safetensors (what ``from_pretrained`` reads) into ``directory``, and
    ``preprocessor`` (``hf_preprocessor.preprocessor_config``) as preprocessor_config.json, which
    ``AutoImageProcessor`` and ``pipeline`` read."""
    try:
        from safetensors.torch import save_file
    except ImportError:
        raise ImportError("writing HF weights needs the safetensors package: pip install safetensors") from None
    os.makedirs(directory, exist_ok=True)
    # safetensors stores no shared tensors: every entry gets its own copy
    tensors = {key: value.detach().clone().contiguous() for key, value in hf_state_dict.items()}
    save_file(tensors, os.path.join(directory, "model.safetensors"), metadata={"format": "pt"})
    files = {"config.json": config, PREPROCESSOR_FILE: preprocessor}
    for name, content in files.items():
        if content is not None:
            with open(os.path.join(directory, name), "w") as f:
                json.dump(content, f, indent=2, sort_keys=True)
                f.write("\n")
