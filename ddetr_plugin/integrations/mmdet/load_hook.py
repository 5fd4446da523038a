"""Loading mmdet's, ours and PluginDeformableDETR's checkpoints into a PluginDeformableDETR.

mmengine's ``load_from`` loads with ``strict=False``: a checkpoint in a layout the model does not
know would load nothing and only log a warning. This pre-hook runs before any weight is copied:
it recognises the layout (``checkpoint.mmdet.state_dict_layout``), renames the keys to the
model's, and raises when keys are still missing or left over, so a wrong checkpoint fails loudly.
Shape mismatches (e.g. another number of classes, to fine-tune) are left to the loader, which
reports them and keeps those parameters.
"""
import logging
from typing import Any, Dict, List, Mapping

from torch import nn

from ddetr_plugin.checkpoint.mmdet import (
    OURS,
    PLUGIN_PREFIX,
    category_ids_to_coco_classes,
    fit_input_proj_biases,
    state_dict_layout,
    to_ours,
)
from ddetr_plugin.checkpoint.variant import COCO_CATEGORY_ID_CLASSES

logger = logging.getLogger(__name__)
COCO_CLASSES = 80


class CheckpointMismatchError(ValueError):
    """A checkpoint whose keys, once renamed, are not the model's."""


def convert_on_load(module: nn.Module, state_dict: Dict[str, Any], prefix: str, local_metadata: Mapping,
                    strict: bool, missing_keys: List[str], unexpected_keys: List[str], error_msgs: List[str]) -> None:
    """A ``register_load_state_dict_pre_hook`` hook of a PluginDeformableDETR: rewrites ``state_dict``
    (the part under ``prefix``) into the model's layout in place.

    Accepts mmengine checkpoints of mmdet's own DeformableDETR or of a PluginDeformableDETR, our
    state dicts, and our whole checkpoint files (mmengine passes a file without "state_dict" as is:
    ours keep the weights under "model").

    Raises:
        UnknownKeysError: the layout is none of these.
        CheckpointMismatchError: after renaming, the keys differ from the model's (named).
    """
    own = [key for key in state_dict if key.startswith(prefix)]
    local = {key[len(prefix):]: state_dict[key] for key in own}
    if isinstance(local.get("model"), Mapping):
        local = dict(local["model"])
    layout = state_dict_layout(local)
    ours = _fit_to(module.detector, to_ours(local), layout)
    expected = set(module.detector.state_dict())
    missing = sorted(PLUGIN_PREFIX + key for key in expected - set(ours) if not key.endswith(".num_batches_tracked"))
    unexpected = sorted(PLUGIN_PREFIX + key for key in set(ours) - expected)
    if missing or unexpected:
        raise CheckpointMismatchError(
            f"PluginDeformableDETR: the checkpoint ({layout} layout) is not this model: "
            f"missing {_shown(missing)}; unexpected {_shown(unexpected)}")
    for key in own:
        del state_dict[key]
    state_dict.update({f"{prefix}{PLUGIN_PREFIX}{key}": value for key, value in ours.items()})


def _fit_to(detector: nn.Module, ours: Dict[str, Any], layout: str) -> Dict[str, Any]:
    """``ours`` adapted to ``detector``: its input-projection biases, its batch-norm counters, and
    COCO's 80 classes for our 91-output category_id checkpoints."""
    with_bias = detector.input_proj[0][0].bias is not None
    ours = fit_input_proj_biases(ours, with_bias)
    expected = detector.state_dict()
    ours = {key: value for key, value in ours.items()
            if not key.endswith(".num_batches_tracked") or key in expected}
    head = ours.get("class_embed.0.weight")
    model_classes = expected["class_embed.0.weight"].shape[0]
    if layout == OURS and head is not None and head.shape[0] == COCO_CATEGORY_ID_CLASSES \
            and model_classes == COCO_CLASSES:
        logger.info("class heads of the %d-class checkpoint (COCO category ids) cut to mmdet's %d COCO classes",
                    COCO_CATEGORY_ID_CLASSES, COCO_CLASSES)
        ours = category_ids_to_coco_classes(ours, detector.two_stage, not detector.with_box_refine)
    return ours


def _shown(keys: List[str]) -> str:
    if not keys:
        return "none"
    return ", ".join(keys[:8]) + (f" and {len(keys) - 8} more" if len(keys) > 8 else "")
