"""A tiny model of ours, the same model as a detectron2 meta-architecture, and tiny shapes datasets."""
import pytest

detectron2 = pytest.importorskip(
    "detectron2", reason="detectron2 is not installed (not on the package index: see the README's 'Use it from "
                         "detectron2'; CI installs the wheel in ../shared/wheels)")

import torch  # noqa: E402
from detectron2.modeling import build_model as build_detectron2_model  # noqa: E402

from ddetr_plugin.config import get_cfg  # noqa: E402
from ddetr_plugin.data import ShapesSpec, list_datasets, register_shapes  # noqa: E402
from ddetr_plugin.integrations.detectron2 import register_in_detectron2  # noqa: E402
from ddetr_plugin.integrations.detectron2.conversion import to_detectron2  # noqa: E402
from ddetr_plugin.modeling import build_model  # noqa: E402

TINY = [
    "MODEL.DEVICE", "cpu", "MODEL.NUM_CLASSES", 4, "MODEL.NUM_QUERIES", 10, "MODEL.NUM_FEATURE_LEVELS", 3,
    "MODEL.BACKBONE.DEPTH", 18, "MODEL.BACKBONE.NORM", "BN",
    "MODEL.BACKBONE.TRAIN_LAYERS", ["conv1", "bn1", "layer1", "layer2", "layer3", "layer4"],
    "MODEL.POSITION_ENCODING.NUM_POS_FEATS", 16, "MODEL.TRANSFORMER.D_MODEL", 32, "MODEL.TRANSFORMER.NHEADS", 2,
    "MODEL.TRANSFORMER.ENC_LAYERS", 1, "MODEL.TRANSFORMER.DEC_LAYERS", 2, "MODEL.TRANSFORMER.DIM_FEEDFORWARD", 64,
    "MODEL.TRANSFORMER.ENC_N_POINTS", 2, "MODEL.TRANSFORMER.DEC_N_POINTS", 2, "MODEL.TRANSFORMER.DROPOUT", 0.0,
]
VARIANTS = {
    "plain": [],
    "box_refine": ["MODEL.WITH_BOX_REFINE", True],
    "two_stage": ["MODEL.WITH_BOX_REFINE", True, "MODEL.TWO_STAGE", True],
}
TINY_DATASETS = ("d2_tiny_shapes_train", "d2_tiny_shapes_val")


def tiny_cfg(variant: str = "plain", *extra):
    cfg = get_cfg()
    cfg.merge_from_list(TINY + VARIANTS[variant] + list(extra))
    return cfg


def perturbed_models(variant: str, *extra):
    """(our model, the detectron2 meta-architecture with its converted weights), both in eval mode.

    The weights are perturbed so that no head is at its initial zeros and the refinement heads differ.
    """
    cfg = tiny_cfg(variant, *extra)
    torch.manual_seed(0)
    ours = build_model(cfg).eval()
    with torch.no_grad():
        for parameter in ours.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
        for name, buffer in ours.named_buffers():
            if name.endswith("running_mean"):
                buffer.normal_(0, 0.1)
            elif name.endswith("running_var"):
                buffer.uniform_(0.5, 1.5)
    state_dict, d2_cfg = to_detectron2(ours.state_dict(), cfg)
    theirs = build_detectron2_model(d2_cfg).eval()
    theirs.load_state_dict(state_dict, strict=True)
    return ours, theirs, d2_cfg


def register_tiny_shapes(root) -> tuple[str, str]:
    """Tiny shapes datasets (16 training, 4 validation images of 64x64) under ``root`` in both catalogs."""
    spec = dict(image_size=64, max_objects=2, min_object_size=12, max_object_size=32)
    if TINY_DATASETS[0] not in list_datasets():
        register_shapes(TINY_DATASETS[0], ShapesSpec(num_images=16, seed=21, **spec), root / "train")
        register_shapes(TINY_DATASETS[1], ShapesSpec(num_images=4, seed=22, **spec), root / "val")
    for name in TINY_DATASETS:
        register_in_detectron2(name)
    return TINY_DATASETS
