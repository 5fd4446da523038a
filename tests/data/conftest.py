"""Shared fixtures: a tiny shapes dataset and a config that trains on it at small sizes."""
import pytest

from ddetr_plugin.config import get_cfg
from ddetr_plugin.data import ShapesSpec, register_shapes

TINY_SHAPES = "test_data_tiny_shapes"


@pytest.fixture(scope="session")
def tiny_shapes(tmp_path_factory) -> str:
    """Name of a registered 20-image shapes dataset (generated once per session)."""
    register_shapes(TINY_SHAPES, ShapesSpec(num_images=20, seed=3), tmp_path_factory.mktemp("shapes") / "tiny")
    return TINY_SHAPES


@pytest.fixture
def tiny_cfg(tiny_shapes):
    cfg = get_cfg()
    cfg.DATASETS.TRAIN = [tiny_shapes]
    cfg.DATASETS.TEST = [tiny_shapes]
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.SOLVER.IMS_PER_BATCH = 4
    cfg.INPUT.MIN_SIZE_TRAIN = [64, 96, 128]
    cfg.INPUT.MAX_SIZE_TRAIN = 160
    cfg.INPUT.CROP.RESIZE = [80, 100]
    cfg.INPUT.CROP.SIZE = [48, 96]
    cfg.INPUT.MIN_SIZE_TEST = 96
    cfg.INPUT.MAX_SIZE_TEST = 160
    return cfg
