import pytest

from .coco_data import write_ground_truth


@pytest.fixture
def gt_path(tmp_path):
    """The hand-made ground truth written as a COCO JSON file."""
    return write_ground_truth(tmp_path / "gt.json")
