"""Our checkpoints and configs as detectron2's, and back.

The weights convert by renaming (``ddetr_plugin/checkpoint/detectron2.py``). The config of the
detectron2 model is our config through ``KEY_MAP``, plus our ResNet as detectron2's
``build_resnet_backbone`` (``STRIDE_IN_1X1: False``, the torchvision layout) and RGB input with
our pixel statistics. detectron2 numbers a dataset's classes 0..C-1: a checkpoint in our
``category_id`` label space (the official and HF COCO models) gets its class head cut to the
dataset's categories in id order (``checkpoint/class_rows.py``).
"""
import logging
from typing import Any

import yaml
from detectron2.config import CfgNode
from detectron2.config import get_cfg as get_detectron2_cfg

from ddetr_plugin.checkpoint.class_rows import COCO_CATEGORY_IDS, select_class_rows
from ddetr_plugin.checkpoint.detectron2 import DETECTRON2_TABLE, STAGE_NAMES
from ddetr_plugin.checkpoint.renaming import StateDict
from ddetr_plugin.checkpoint.variant import ConvertedCheckpoint, variant_of_weights
from ddetr_plugin.config.dotted import config_with, typed
from ddetr_plugin.config.dotted import config_value, set_config_value
from ddetr_plugin.data import DatasetError, UnknownDatasetError, get_metadata
from ddetr_plugin.data.label_space import CATEGORY_ID, CONTIGUOUS
from ddetr_plugin.utils.file_io import atomic_write

from .config import KEY_MAP, add_deformable_detr_config, copy_config_value

logger = logging.getLogger(__name__)

STEM = ("conv1", "bn1")
STAGES = tuple(STAGE_NAMES)
DETECTRON2_STAGES = {theirs: ours for ours, theirs in STAGE_NAMES.items()}
NORMS = ("FrozenBN", "BN", "SyncBN", "GN")


def to_detectron2(state_dict: StateDict, cfg) -> tuple[StateDict, CfgNode]:
    """The detectron2 state dict and config (``add_deformable_detr_config`` keys) of our model.

    Args:
        state_dict: our layout, the model ``cfg`` builds (checked).
        cfg: our config; its backbone must be ``ResNetBackbone``.

    Raises:
        ValueError: the weights are not ``cfg``'s model, or the backbone has no detectron2 equivalent.
    """
    variant = variant_of_weights(state_dict, cfg)
    d2_cfg = get_detectron2_cfg()
    add_deformable_detr_config(d2_cfg)
    for theirs, ours in KEY_MAP.items():
        set_config_value(d2_cfg, theirs, copy_config_value(config_value(cfg, ours)))
    d2_cfg.MODEL.META_ARCHITECTURE = "DeformableDETR"
    _set_resnet(d2_cfg, cfg)
    d2_cfg.MODEL.DEFORMABLE_DETR.IN_FEATURES = [STAGE_NAMES[name]
                                                for name in cfg.MODEL.BACKBONE.OUT_FEATURES[-variant.num_feature_levels:]]
    d2_cfg.INPUT.RANDOM_FLIP = "horizontal" if cfg.INPUT.RANDOM_FLIP else "none"
    d2_cfg.INPUT.CROP.TYPE = "absolute_range"
    d2_cfg.SOLVER.CLIP_GRADIENTS.ENABLED = cfg.SOLVER.CLIP_MAX_NORM > 0
    if cfg.MODEL.LABEL_SPACE == CATEGORY_ID:
        category_ids = dataset_category_ids(cfg)
        state_dict = select_class_rows(state_dict, category_ids)
        d2_cfg.MODEL.DEFORMABLE_DETR.NUM_CLASSES = len(category_ids)
        d2_cfg.MODEL.DEFORMABLE_DETR.LABEL_SPACE = CONTIGUOUS
    return DETECTRON2_TABLE.rename_from_ours(state_dict), d2_cfg


def from_detectron2(d2_state_dict: StateDict, d2_cfg: CfgNode) -> ConvertedCheckpoint:
    """Our state dict and config values of the detectron2 model ``d2_cfg`` builds with ``d2_state_dict``.

    Raises:
        UnknownKeysError: keys no rule knows (another backbone or model).
        ValueError: a backbone with no equivalent in ours, or weights that are not ``d2_cfg``'s model.
    """
    state_dict = DETECTRON2_TABLE.rename_to_ours(d2_state_dict)
    values = {ours: copy_config_value(config_value(d2_cfg, theirs)) for theirs, ours in KEY_MAP.items()}
    values.update(_resnet_values(d2_cfg))
    values["INPUT.RANDOM_FLIP"] = d2_cfg.INPUT.RANDOM_FLIP == "horizontal"
    values["SOLVER.CLIP_MAX_NORM"] = d2_cfg.SOLVER.CLIP_GRADIENTS.CLIP_VALUE if d2_cfg.SOLVER.CLIP_GRADIENTS.ENABLED else 0.0
    values = typed(_flatten(values))
    cfg = config_with(values)
    variant = variant_of_weights(state_dict, cfg)
    return ConvertedCheckpoint(state_dict, variant, values)


def load_detectron2_config(path: str, opts: list | None = None) -> CfgNode:
    """detectron2's defaults with the Deformable DETR keys, ``path`` merged and ``opts`` (KEY VALUE) applied."""
    cfg = get_detectron2_cfg()
    add_deformable_detr_config(cfg)
    cfg.merge_from_file(path)
    cfg.merge_from_list(list(opts or []))
    return cfg


def save_detectron2_config(path: str, cfg: CfgNode) -> None:
    """Write ``cfg`` as a whole detectron2 YAML (as detectron2 dumps its configs), atomically.

    Raises:
        RuntimeError: the file does not read back as ``cfg`` (never expected).
    """
    atomic_write(path, lambda f: f.write(cfg.dump()), binary=False)
    if yaml.safe_load(load_detectron2_config(path).dump()) != yaml.safe_load(cfg.dump()):
        raise RuntimeError(f"{path} does not read back as the detectron2 config written")


def dataset_category_ids(cfg) -> list[int]:
    """The category ids, in increasing order, of ``cfg.DATASETS.TEST[0]`` (COCO's 80 when the dataset
    cannot be read and the model has COCO's 91 category-id classes)."""
    name = cfg.DATASETS.TEST[0] if cfg.DATASETS.TEST else None
    try:
        if name is None:
            raise UnknownDatasetError("no DATASETS.TEST")
        metadata = get_metadata(name)
        return [metadata.contiguous_id_to_thing_dataset_id[c] for c in sorted(metadata.contiguous_id_to_thing_dataset_id)]
    except (UnknownDatasetError, DatasetError) as error:
        if cfg.MODEL.NUM_CLASSES != 91:
            raise ValueError(f"MODEL.LABEL_SPACE category_id: the class head is cut to the categories of "
                             f"DATASETS.TEST[0], which cannot be read ({error})") from error
        logger.info("dataset %s cannot be read (%s): using COCO's 80 category ids for the class head", name, error)
        return list(COCO_CATEGORY_IDS)


def _set_resnet(d2_cfg: CfgNode, cfg) -> None:
    backbone = cfg.MODEL.BACKBONE
    if backbone.NAME != "ResNetBackbone":
        raise ValueError(f"MODEL.BACKBONE.NAME is {backbone.NAME!r}; conversion to detectron2 handles ResNetBackbone")
    if backbone.NORM not in NORMS:
        raise ValueError(f"MODEL.BACKBONE.NORM {backbone.NORM!r} has no detectron2 equivalent (one of {NORMS})")
    d2_cfg.MODEL.BACKBONE.NAME = "build_resnet_backbone"
    d2_cfg.MODEL.BACKBONE.FREEZE_AT = _freeze_at(list(backbone.TRAIN_LAYERS), list(backbone.OUT_FEATURES),
                                                 backbone.NORM)
    resnets = d2_cfg.MODEL.RESNETS
    resnets.DEPTH = backbone.DEPTH
    resnets.NORM = backbone.NORM
    resnets.OUT_FEATURES = [STAGE_NAMES[name] for name in backbone.OUT_FEATURES]
    resnets.STRIDE_IN_1X1 = False  # torchvision's ResNets stride in the 3x3 convolution
    resnets.RES2_OUT_CHANNELS = 64 if backbone.DEPTH < 50 else 256
    resnets.RES5_DILATION = 2 if backbone.DILATION else 1
    resnets.NUM_GROUPS, resnets.WIDTH_PER_GROUP = 1, 64
    d2_cfg.INPUT.FORMAT = "RGB"  # our pixel statistics are RGB's


def _resnet_values(d2_cfg: CfgNode) -> dict[str, Any]:
    resnets = d2_cfg.MODEL.RESNETS
    if d2_cfg.MODEL.BACKBONE.NAME != "build_resnet_backbone" or resnets.STRIDE_IN_1X1 or resnets.NUM_GROUPS != 1 \
            or resnets.WIDTH_PER_GROUP != 64 or any(resnets.DEFORM_ON_PER_STAGE) or d2_cfg.INPUT.FORMAT != "RGB":
        raise ValueError("conversion from detectron2 handles build_resnet_backbone with STRIDE_IN_1X1 False, "
                         "NUM_GROUPS 1, WIDTH_PER_GROUP 64, no deformable convolutions and INPUT.FORMAT RGB "
                         "(the torchvision ResNet of ours)")
    out_features = [DETECTRON2_STAGES[name] for name in resnets.OUT_FEATURES]
    kept = STEM + STAGES[: max(STAGES.index(name) for name in out_features) + 1]
    freeze_at = d2_cfg.MODEL.BACKBONE.FREEZE_AT
    frozen = set(STEM if freeze_at >= 1 else ()) | set(STAGES[: max(freeze_at - 1, 0)])
    return {
        "MODEL.BACKBONE.NAME": "ResNetBackbone",
        "MODEL.BACKBONE.DEPTH": resnets.DEPTH,
        "MODEL.BACKBONE.NORM": resnets.NORM,
        "MODEL.BACKBONE.OUT_FEATURES": out_features,
        "MODEL.BACKBONE.TRAIN_LAYERS": [name for name in kept if name not in frozen],
        "MODEL.BACKBONE.DILATION": resnets.RES5_DILATION == 2,
    }


def _freeze_at(train_layers: list[str], out_features: list[str], norm: str) -> int:
    """detectron2's FREEZE_AT (0 nothing, 1 the stem, k the stem and the first k-1 stages) for our TRAIN_LAYERS."""
    kept = STEM + STAGES[: max(STAGES.index(name) for name in out_features) + 1]
    for freeze_at in range(len(STAGES) + 2):
        frozen = set(STEM if freeze_at >= 1 else ()) | set(STAGES[: max(freeze_at - 1, 0)])
        if set(train_layers) == {name for name in kept if name not in frozen}:
            if freeze_at and norm in ("BN", "SyncBN"):
                raise ValueError(f"MODEL.BACKBONE.NORM {norm} with frozen layers: detectron2 turns the batch norm "
                                 f"of frozen stages into FrozenBN, ours keeps updating its statistics; train all "
                                 f"layers or use FrozenBN")
            return freeze_at
    raise ValueError(f"MODEL.BACKBONE.TRAIN_LAYERS {train_layers} is not expressible as detectron2's FREEZE_AT "
                     f"(the stem and the first stages frozen, the rest trained)")


def _flatten(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with each CfgNode value (a whole subtree such as MODEL.TRANSFORMER) as its dotted leaves."""
    flat = {}
    for key, value in values.items():
        if isinstance(value, CfgNode):
            flat.update(_flatten({f"{key}.{name}": inner for name, inner in value.items()}))
        else:
            flat[key] = value
    return flat
