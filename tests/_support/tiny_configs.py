"""Config overrides for tiny Deformable DETR models (ResNet-18, a few channels, CPU) and their variants.

``TINY`` is the model of the conversion, export and tool tests; the meta-architecture, detectron2 and
custom-backbone tests use other sizes, written here as the keys they change.
"""
from pathlib import Path
from typing import Sequence

from fvcore.common.config import CfgNode

from ddetr_plugin.config import get_cfg

TINY = [
    "MODEL.DEVICE", "cpu", "MODEL.NUM_CLASSES", 5, "MODEL.NUM_QUERIES", 6,
    "MODEL.BACKBONE.DEPTH", 18,
    "MODEL.TRANSFORMER.D_MODEL", 32, "MODEL.TRANSFORMER.NHEADS", 2, "MODEL.TRANSFORMER.ENC_LAYERS", 1,
    "MODEL.TRANSFORMER.DEC_LAYERS", 2, "MODEL.TRANSFORMER.DIM_FEEDFORWARD", 48,
    "MODEL.TRANSFORMER.ENC_N_POINTS", 2, "MODEL.TRANSFORMER.DEC_N_POINTS", 3,
]
# four heads and four points a level: the attention tensors of the meta-architecture tests have every axis > 1
META_ARCH_TINY = TINY + [
    "MODEL.NUM_QUERIES", 8, "MODEL.BACKBONE.NORM", "BN", "MODEL.TRANSFORMER.NHEADS", 4,
    "MODEL.TRANSFORMER.DIM_FEEDFORWARD", 64, "MODEL.TRANSFORMER.ENC_N_POINTS", 4, "MODEL.TRANSFORMER.DEC_N_POINTS", 4,
]
# detectron2 converts batch norm and trains every stage; three levels and no dropout, as its tests compare runs
DETECTRON2_TINY = TINY + [
    "MODEL.NUM_CLASSES", 4, "MODEL.NUM_QUERIES", 10, "MODEL.NUM_FEATURE_LEVELS", 3, "MODEL.BACKBONE.NORM", "BN",
    "MODEL.BACKBONE.TRAIN_LAYERS", ["conv1", "bn1", "layer1", "layer2", "layer3", "layer4"],
    "MODEL.TRANSFORMER.DIM_FEEDFORWARD", 64, "MODEL.TRANSFORMER.DEC_N_POINTS", 2, "MODEL.TRANSFORMER.DROPOUT", 0.0,
]
# shrinks a shipped config (or the defaults) but keeps its backbone, for the backbone tests
SHRINK = [
    "MODEL.DEVICE", "cpu", "MODEL.NUM_CLASSES", 4, "MODEL.NUM_QUERIES", 5,
    "MODEL.TRANSFORMER.D_MODEL", 32, "MODEL.TRANSFORMER.NHEADS", 2,
    "MODEL.TRANSFORMER.ENC_LAYERS", 1, "MODEL.TRANSFORMER.DEC_LAYERS", 1, "MODEL.TRANSFORMER.DIM_FEEDFORWARD", 32,
]

SINGLE_SCALE = ["MODEL.NUM_FEATURE_LEVELS", 1, "MODEL.BACKBONE.OUT_FEATURES", ["layer4"]]
VARIANT_OVERRIDES = {
    "plain": [],
    "box_refine": ["MODEL.WITH_BOX_REFINE", True],
    "two_stage": ["MODEL.WITH_BOX_REFINE", True, "MODEL.TWO_STAGE", True],
    "two_stage_shared_heads": ["MODEL.TWO_STAGE", True],
    "single_scale": SINGLE_SCALE,
    "single_scale_learned": SINGLE_SCALE + ["MODEL.POSITION_ENCODING.NAME", "PositionEmbeddingLearned"],
    # DC5 needs a bottleneck ResNet
    "single_scale_dc5": SINGLE_SCALE + ["MODEL.BACKBONE.DILATION", True, "MODEL.BACKBONE.DEPTH", 50],
}


def variants(*names: str) -> dict:
    """The overrides of the named variants, in that order: {name: [KEY, VALUE, ...]}."""
    return {name: VARIANT_OVERRIDES[name] for name in names}


# the variants whose checkpoints the converters read and write
VARIANTS = variants("plain", "box_refine", "two_stage", "two_stage_shared_heads", "single_scale_learned")


def merged_cfg(*overrides: Sequence) -> CfgNode:
    """The default config with each [KEY, VALUE, ...] list merged in turn (a later value wins)."""
    cfg = get_cfg()
    cfg.merge_from_list([item for override in overrides for item in override])
    return cfg


def tiny_cfg(variant: str, *extra) -> CfgNode:
    """The ``TINY`` model of ``variant`` (a key of ``VARIANT_OVERRIDES``), then ``extra`` KEY, VALUE pairs."""
    return merged_cfg(TINY, VARIANT_OVERRIDES[variant], extra)


def dump_config(cfg: CfgNode, path) -> str:
    """Write ``cfg`` as a YAML file; returns the path."""
    Path(path).write_text(cfg.dump())
    return str(path)
