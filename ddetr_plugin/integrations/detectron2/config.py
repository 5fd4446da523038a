"""detectron2 config keys of the Deformable DETR meta-architecture, and their link to ours.

``add_deformable_detr_config(cfg)`` adds to a detectron2 config:

- ``MODEL.DEFORMABLE_DETR``: every model hyperparameter of our ``MODEL.*`` tree, with our names and
  defaults (``NUM_CLASSES``, ``TRANSFORMER.*``, ``MATCHER.*``, ...), plus ``IN_FEATURES``: the
  detectron2 backbone outputs that feed the transformer, finest first;
- the solver keys of a DETR: ``SOLVER.OPTIMIZER`` ("ADAMW"), ``SOLVER.BETAS``,
  ``SOLVER.BACKBONE_LR_MULTIPLIER``, ``SOLVER.LINEAR_PROJ_LR_MULTIPLIER`` (the official lr groups,
  see ``engine/optimizer.py``), full-model gradient clipping (``SOLVER.CLIP_GRADIENTS`` with
  ``CLIP_TYPE: full_model``, ``CLIP_VALUE`` 0.1) and ``SOLVER.DDP_FIND_UNUSED_PARAMETERS``;
- ``INPUT.CROP.RESIZE`` (the shortest sides of the official crop branch) and ``TEST.NMS_THRESH``.

``KEY_MAP`` is the one table from detectron2 keys to ours; ``to_ddetr_cfg`` reads our components'
config out of a detectron2 config through it, so their defaults exist once, in
``ddetr_plugin/config/defaults.py``.
"""
import copy

from detectron2.config import CfgNode
from fvcore.common import config as fvcore_config

from ddetr_plugin.config import get_cfg as get_ddetr_cfg
from ddetr_plugin.config.dotted import config_value, set_config_value

# our MODEL.* entries that the meta-architecture reads (the backbone, pixel statistics, device and
# weights are detectron2's own keys)
MODEL_KEYS = ("NUM_CLASSES", "NUM_QUERIES", "NUM_FEATURE_LEVELS", "WITH_BOX_REFINE", "TWO_STAGE", "AUX_LOSS",
              "LABEL_SPACE", "TRANSFORMER", "MATCHER", "CRITERION", "POSTPROCESSOR", "POSITION_ENCODING",
              "CPU_FAST_PATHS")
# keys detectron2's config lacks: added with our default
ADDED_KEYS = tuple(f"MODEL.DEFORMABLE_DETR.{key}" for key in MODEL_KEYS) + (
    "SOLVER.BETAS", "SOLVER.BACKBONE_LR_MULTIPLIER", "SOLVER.LINEAR_PROJ_LR_MULTIPLIER",
    "SOLVER.DDP_FIND_UNUSED_PARAMETERS", "INPUT.CROP.RESIZE", "TEST.NMS_THRESH",
)
# detectron2 key -> our key
KEY_MAP = {
    **{f"MODEL.DEFORMABLE_DETR.{key}": f"MODEL.{key}" for key in MODEL_KEYS},
    **{key: key for key in ADDED_KEYS if not key.startswith("MODEL.DEFORMABLE_DETR.")},
    "MODEL.DEVICE": "MODEL.DEVICE",
    "MODEL.PIXEL_MEAN": "MODEL.PIXEL_MEAN",
    "MODEL.PIXEL_STD": "MODEL.PIXEL_STD",
    "SOLVER.BASE_LR": "SOLVER.BASE_LR",
    "SOLVER.WEIGHT_DECAY": "SOLVER.WEIGHT_DECAY",
    "SOLVER.CLIP_GRADIENTS.CLIP_VALUE": "SOLVER.CLIP_MAX_NORM",
    # keys both configs have, read by the trainer or the data pipeline (not SEED: -1 means "random" in
    # detectron2's)
    **{key: key for key in (
        "TEST.DETECTIONS_PER_IMAGE", "TEST.EVAL_PERIOD", "INPUT.MIN_SIZE_TRAIN", "INPUT.MAX_SIZE_TRAIN",
        "INPUT.MIN_SIZE_TEST", "INPUT.MAX_SIZE_TEST", "INPUT.CROP.ENABLED", "INPUT.CROP.SIZE", "DATASETS.TRAIN",
        "DATASETS.TEST", "DATALOADER.NUM_WORKERS", "DATALOADER.FILTER_EMPTY_ANNOTATIONS", "SOLVER.IMS_PER_BATCH",
        "SOLVER.MAX_ITER", "SOLVER.STEPS", "SOLVER.GAMMA", "SOLVER.WARMUP_ITERS", "SOLVER.WARMUP_FACTOR",
        "SOLVER.CHECKPOINT_PERIOD", "SOLVER.AMP.ENABLED", "OUTPUT_DIR")},
}
FULL_MODEL = "full_model"


def add_deformable_detr_config(cfg: CfgNode) -> None:
    """Add the Deformable DETR keys (module docstring) to a detectron2 config, in place."""
    defaults = get_ddetr_cfg()
    cfg.MODEL.DEFORMABLE_DETR = CfgNode()
    for key in ADDED_KEYS:
        set_config_value(cfg, key, copy_config_value(config_value(defaults, KEY_MAP[key])), new_allowed=True)
    cfg.MODEL.DEFORMABLE_DETR.IN_FEATURES = ["res3", "res4", "res5"]
    cfg.SOLVER.OPTIMIZER = "ADAMW"
    cfg.SOLVER.CLIP_GRADIENTS.ENABLED = True
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_TYPE = FULL_MODEL
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_VALUE = defaults.SOLVER.CLIP_MAX_NORM


def to_ddetr_cfg(cfg: CfgNode) -> CfgNode:
    """Our config (frozen) with every ``KEY_MAP`` value taken from the detectron2 config ``cfg``.

    Raises:
        KeyError: ``cfg`` lacks the Deformable DETR keys (call ``add_deformable_detr_config`` first).
    """
    if "DEFORMABLE_DETR" not in cfg.MODEL:
        raise KeyError("the detectron2 config has no MODEL.DEFORMABLE_DETR: call "
                       "ddetr_plugin.integrations.detectron2.add_deformable_detr_config(cfg) before merging the YAML")
    ours = get_ddetr_cfg()
    for theirs, key in KEY_MAP.items():
        set_config_value(ours, key, copy_config_value(config_value(cfg, theirs)))
    if not cfg.SOLVER.CLIP_GRADIENTS.ENABLED:
        ours.SOLVER.CLIP_MAX_NORM = 0.0
    ours.freeze()
    return ours


def copy_config_value(value):
    """A deep copy, config subtrees as detectron2's ``CfgNode`` (a subclass of fvcore's, which ours are) and
    tuples (detectron2's list values) as lists (ours)."""
    if isinstance(value, fvcore_config.CfgNode):
        return CfgNode(copy.deepcopy(dict(value)))
    return list(value) if isinstance(value, tuple) else copy.deepcopy(value)
