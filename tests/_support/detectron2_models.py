"""A tiny model of ours, the same model as a detectron2 meta-architecture, and tiny shapes datasets."""
import pytest

from .install_hints import DETECTRON2_MISSING

detectron2 = pytest.importorskip("detectron2", reason=DETECTRON2_MISSING)

import torch  # noqa: E402
from detectron2.modeling import build_model as build_detectron2_model  # noqa: E402
from fvcore.common.config import CfgNode  # noqa: E402

from ddetr_plugin.data import ShapesSpec, list_datasets, register_shapes  # noqa: E402
from ddetr_plugin.integrations.detectron2 import register_in_detectron2  # noqa: E402
from ddetr_plugin.integrations.detectron2.conversion import to_detectron2  # noqa: E402
from ddetr_plugin.modeling import build_model  # noqa: E402

from .shapes_datasets import SMALL_SHAPES  # noqa: E402
from .tiny_configs import DETECTRON2_TINY, merged_cfg, variants  # noqa: E402

TINY = DETECTRON2_TINY
VARIANTS = variants("plain", "box_refine", "two_stage")
TINY_DATASETS = ("d2_tiny_shapes_train", "d2_tiny_shapes_val")


def tiny_cfg(variant: str = "plain", *extra) -> CfgNode:
    """The ``DETECTRON2_TINY`` model of ``variant``, then ``extra`` KEY, VALUE pairs."""
    return merged_cfg(TINY, VARIANTS[variant], extra)


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
    if TINY_DATASETS[0] not in list_datasets():
        register_shapes(TINY_DATASETS[0], ShapesSpec(num_images=16, seed=21, **SMALL_SHAPES), root / "train")
        register_shapes(TINY_DATASETS[1], ShapesSpec(num_images=4, seed=22, **SMALL_SHAPES), root / "val")
    for name in TINY_DATASETS:
        register_in_detectron2(name)
    return TINY_DATASETS
