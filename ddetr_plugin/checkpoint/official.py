"""Checkpoints of the official implementation (fundamentalvision/Deformable-DETR) to ours and back.

An official checkpoint is a dict with "model" (the state dict), "optimizer",
"lr_scheduler", "epoch" and "args" (an ``argparse.Namespace`` of main.py's options).
Its state dict differs from ours in two ways:

- ``backbone.0.body.*`` is our ``backbone.body.*`` (``backbone.1.*``, the learned
  position encoding when used, is our ``position_encoding.*``);
- the decoder's references to the heads are saved again: with box refinement
  ``transformer.decoder.bbox_embed.*``, with two-stage ``transformer.decoder.class_embed.*``.

The variant is read from the weights; heads, DC5 and the two-stage query count come
from "args" (defaults 8 heads, no dilation, 300 queries when the file has none).
Refinement shows in the aliases. Matcher costs, loss coefficients, dropout and the
auxiliary-loss switch also come from "args".
"""
import argparse
import logging
import re
from typing import Any, Dict, Mapping, Optional

from ..config.dotted import config_value
from .checkpointer import load_checkpoint_file, state_dict_entry
from .renaming import KeyRule, RenameTable, StateDict, heads_differ, same_names
from .variant import ConvertedCheckpoint, ModelVariant, variant_for_export

logger = logging.getLogger(__name__)

OFFICIAL_TABLE = RenameTable(
    "official",
    [KeyRule("backbone.body", "backbone.0.body"), KeyRule("position_encoding", "backbone.1"),
     *same_names("input_proj", "transformer", "query_embed", "class_embed", "bbox_embed")],
    alias_prefix="transformer.decoder.",
    batch_norm_counters=False,  # the official ResNet's batch norm is frozen
)

# main.py option -> our config key, for the settings that shape training but not the weights
ARGS_TO_CONFIG = {
    "dropout": "MODEL.TRANSFORMER.DROPOUT",
    "aux_loss": "MODEL.AUX_LOSS",
    "position_embedding_scale": "MODEL.POSITION_ENCODING.SCALE",
    "set_cost_class": "MODEL.MATCHER.COST_CLASS",
    "set_cost_bbox": "MODEL.MATCHER.COST_BBOX",
    "set_cost_giou": "MODEL.MATCHER.COST_GIOU",
    "cls_loss_coef": "MODEL.CRITERION.LOSS_CLASS_WEIGHT",
    "bbox_loss_coef": "MODEL.CRITERION.LOSS_BBOX_WEIGHT",
    "giou_loss_coef": "MODEL.CRITERION.LOSS_GIOU_WEIGHT",
    "focal_alpha": "MODEL.CRITERION.FOCAL_ALPHA",
}
# main.py option -> ModelVariant field, for the architecture
ARGS_TO_VARIANT = {
    "hidden_dim": "d_model",
    "nheads": "nheads",
    "enc_layers": "enc_layers",
    "dec_layers": "dec_layers",
    "dim_feedforward": "dim_feedforward",
    "num_feature_levels": "num_feature_levels",
    "enc_n_points": "enc_n_points",
    "dec_n_points": "dec_n_points",
    "num_queries": "num_queries",
    "with_box_refine": "with_box_refine",
    "two_stage": "two_stage",
    "dilation": "dilation",
}
# main.py --position_embedding values ("v2"/"v3" are its aliases)
POSITION_EMBEDDINGS = {"sine": "PositionEmbeddingSine", "v2": "PositionEmbeddingSine",
                       "learned": "PositionEmbeddingLearned", "v3": "PositionEmbeddingLearned"}


def load_official_checkpoint(path: str) -> ConvertedCheckpoint:
    """Read an official ``.pth`` (``weights_only``, only ``argparse.Namespace`` allowed) and convert it."""
    return official_to_ours(load_checkpoint_file(path))


def official_to_ours(checkpoint: Mapping[str, Any]) -> ConvertedCheckpoint:
    """Our state dict and config values from an official checkpoint dict (or a bare state dict).

    Raises:
        UnknownKeysError: keys of another model (e.g. a segmentation head).
        ValueError: shapes that fit no variant, or "args" contradicting the weights.
    """
    state_dict = state_dict_entry(checkpoint, ("model",), "an official checkpoint")
    args = checkpoint.get("args")
    has_box_aliases = "bbox_embed" in OFFICIAL_TABLE.aliased_heads(state_dict)
    ours = OFFICIAL_TABLE.rename_to_ours(state_dict)

    two_stage = "transformer.enc_output.weight" in ours
    num_queries = _arg(args, "num_queries")
    if two_stage and num_queries is None:
        num_queries = 300
        logger.warning("two-stage checkpoint without 'args': assuming the official 300 queries")
    # refinement: the decoder aliases its box heads; trained refined heads also differ from each other
    with_box_refine = has_box_aliases or heads_differ(ours)
    variant = ModelVariant.from_state_dict(
        ours, nheads=_arg(args, "nheads", 8), with_box_refine=with_box_refine,
        dilation=bool(_arg(args, "dilation", False)), num_queries=num_queries,
    )
    claims = {field: _arg(args, option) for option, field in ARGS_TO_VARIANT.items()}
    claims["backbone_depth"] = _backbone_depth_arg(_arg(args, "backbone"))
    position = _arg(args, "position_embedding")
    claims["position_encoding"] = POSITION_EMBEDDINGS.get(position, position)
    variant.check_claims(claims, "the checkpoint's 'args'")

    values = variant.config_values()
    for option, key in ARGS_TO_CONFIG.items():
        if _arg(args, option) is not None:
            values[key] = _arg(args, option)
    return ConvertedCheckpoint.with_label_space(ours, variant, values)


def ours_to_official(state_dict: StateDict, cfg) -> Dict[str, Any]:
    """An official-style checkpoint ``{"model", "args"}`` of our ``state_dict``, the model ``cfg`` builds.

    Raises:
        ValueError: the weights are not the model of ``cfg``, or ``cfg`` uses something the official
            code does not have (GroupNorm backbone, another activation or position-encoding form).
    """
    variant = variant_for_export(state_dict, cfg, "official", (
        "MODEL.TRANSFORMER.ACTIVATION", "MODEL.POSITION_ENCODING.TEMPERATURE", "MODEL.POSITION_ENCODING.NORMALIZE",
        "MODEL.POSITION_ENCODING.OFFSET"))
    official = OFFICIAL_TABLE.rename_from_ours(state_dict, variant.decoder_head_references)
    return {"model": official, "args": argparse.Namespace(**official_args(variant, cfg))}


def official_args(variant: ModelVariant, cfg) -> Dict[str, Any]:
    """main.py's options for ``variant`` trained as ``cfg`` says."""
    args = {option: getattr(variant, field) for option, field in ARGS_TO_VARIANT.items()}
    args.update({option: config_value(cfg, key) for option, key in ARGS_TO_CONFIG.items()})
    args["backbone"] = f"resnet{variant.backbone_depth}"
    args["position_embedding"] = "learned" if variant.position_encoding == "PositionEmbeddingLearned" else "sine"
    args["masks"] = False
    return args


def _arg(args: Optional[argparse.Namespace], name: str, default: Any = None) -> Any:
    return getattr(args, name, default) if args is not None else default


def _backbone_depth_arg(name: Optional[str]) -> Optional[int]:
    if name is None:
        return None
    match = re.fullmatch(r"resnet(\d+)", name)
    if not match:
        raise ValueError(f"the checkpoint's args.backbone is {name!r}; only ResNets ('resnet50', ...) convert")
    return int(match.group(1))
