"""State dicts of our model and of the detectron2 meta-architecture (integrations/detectron2) on the
same weights.

Both hold the same transformer, projections and heads under the same names; only the ResNet
differs. Ours keeps torchvision's names under ``backbone.body``; detectron2's ``ResNet`` (from
``build_resnet_backbone``) names the stem ``backbone.stem.conv1`` (its norm ``.norm``) and the
stages ``backbone.res2``..``res5``, each block's convolutions ``conv1``..``conv3`` with their norm
inside (``conv1.norm``) and the projection shortcut ``shortcut`` (``shortcut.norm``). With
``STRIDE_IN_1X1: False`` the two ResNets compute the same function, so renaming is the whole
conversion. This module imports nothing of detectron2.
"""
from ..modeling.backbone.resnet import STAGES
from .renaming import KeyRule, RenameTable, module_rules, same_names

# torchvision stage -> detectron2 stage
STAGE_NAMES = dict(zip(STAGES, ("res2", "res3", "res4", "res5")))
# a torchvision block's modules -> detectron2's (the norm of a conv lives inside it there)
_BLOCK_MODULES = (
    ("bn1", "conv1.norm"), ("bn2", "conv2.norm"), ("bn3", "conv3.norm"),
    ("conv1", "conv1"), ("conv2", "conv2"), ("conv3", "conv3"),
    ("downsample.1", "shortcut.norm"), ("downsample.0", "shortcut"),
)

DETECTRON2_TABLE = RenameTable(
    "detectron2",
    # norms first: "conv1.norm" must not be read as "conv1" followed by ".norm.weight"
    [KeyRule("backbone.body.bn1", "backbone.stem.conv1.norm"), KeyRule("backbone.body.conv1", "backbone.stem.conv1")]
    + [rule for ours, theirs in STAGE_NAMES.items()
       for rule in module_rules(f"backbone.body.{ours}.{{block}}", f"backbone.{theirs}.{{block}}", _BLOCK_MODULES)]
    + same_names("position_encoding", "input_proj", "transformer", "query_embed", "class_embed", "bbox_embed"),
)
