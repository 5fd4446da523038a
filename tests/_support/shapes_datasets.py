"""Small synthetic shapes datasets: the image and object sizes of the end-to-end runs, and the data tests'
20-image dataset with a config that trains on it at small sizes (fixtures, picked by tests/data/conftest.py)."""
import pytest
from fvcore.common.config import CfgNode

from ddetr_plugin.config import get_cfg
from ddetr_plugin.data import ShapesSpec, register_shapes

# 64x64 images with one or two objects of 12 to 32 pixels: enough for a tiny model to learn in a few steps
SMALL_SHAPES = dict(image_size=64, max_objects=2, min_object_size=12, max_object_size=32)
DATA_TESTS_SHAPES = "test_data_tiny_shapes"


@pytest.fixture(scope="session")
def tiny_shapes(tmp_path_factory) -> str:
    """Name of a registered 20-image shapes dataset (generated once per session)."""
    register_shapes(DATA_TESTS_SHAPES, ShapesSpec(num_images=20, seed=3), tmp_path_factory.mktemp("shapes") / "tiny")
    return DATA_TESTS_SHAPES


@pytest.fixture(name="tiny_cfg")
def tiny_data_cfg(tiny_shapes) -> CfgNode:
    """The default config training and testing on ``tiny_shapes`` at small sizes, in this process."""
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
