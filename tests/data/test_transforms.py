"""Augmentation keeps boxes right: resize rule, flip, crop against hand-computed boxes; empty images; no resampling."""
import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from ddetr_plugin.data import build_augmentation, eval_augmentation, train_augmentation
from ddetr_plugin.data.transforms import RandomSizeCrop, ResizeShortestEdge, shortest_edge_size


def _coordinate_image(height: int, width: int) -> torch.Tensor:
    """(3, H, W) uint8 whose channel 0 is the column and channel 1 the row of each pixel (sides <= 256)."""
    rows, cols = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    return torch.stack([cols, rows, torch.zeros_like(rows)]).to(torch.uint8)


def _sample(image: torch.Tensor, boxes, labels) -> dict:
    height, width = image.shape[-2:]
    return {"image": tv_tensors.Image(image),
            "boxes": tv_tensors.BoundingBoxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                                              format="XYXY", canvas_size=(height, width)),
            "labels": torch.tensor(labels, dtype=torch.int64)}


@pytest.mark.parametrize("height, width, size, max_size, expected", [
    (480, 640, 800, 1333, (800, 1066)),    # int(800 * 640 / 480) = int(1066.67)
    (640, 480, 800, None, (1066, 800)),    # portrait
    (500, 2000, 800, 1333, (333, 1332)),   # 4:1 would exceed 1333: size = round(1333 * 500 / 2000) = 333
    (800, 1066, 800, 1333, (800, 1066)),   # already there
    (128, 128, 96, None, (96, 96)),
])
def test_official_resize_rule(height, width, size, max_size, expected):
    assert shortest_edge_size(height, width, size, max_size) == expected


def test_resize_scales_boxes():
    sample = _sample(_coordinate_image(40, 60), [[6, 4, 30, 20], [0, 0, 60, 40]], [3, 1])
    out = ResizeShortestEdge([80])(sample)
    assert out["image"].shape == (3, 80, 120)
    assert out["boxes"].tolist() == [[12, 8, 60, 40], [0, 0, 120, 80]]
    assert out["boxes"].canvas_size == (80, 120) and out["labels"].tolist() == [3, 1]


def test_flip_mirrors_boxes():
    boxes, width = [[6, 4, 30, 20], [50, 0, 60, 10]], 60
    augmentation = train_augmentation(min_sizes=[40], max_size=None, flip=True)  # 40 = short side: no resize
    flipped_count = 0
    for seed in range(16):
        torch.manual_seed(seed)
        out = augmentation(_sample(_coordinate_image(40, width), boxes, [0, 1]))
        flipped = out["image"][0, 0, 0].item() == width - 1
        expected = [[width - x1, y0, width - x0, y1] for x0, y0, x1, y1 in boxes] if flipped else boxes
        assert out["boxes"].tolist() == expected and out["labels"].tolist() == [0, 1]
        flipped_count += flipped
    assert 0 < flipped_count < 16


def test_crop_keeps_boxes_right_and_drops_cropped_away_ones():
    boxes = [[2, 2, 10, 10], [30, 5, 58, 35], [45, 30, 50, 38], [0, 0, 60, 40]]
    labels = [0, 1, 2, 3]
    crop = v2.Compose([RandomSizeCrop(16, 30), v2.SanitizeBoundingBoxes()])
    sizes, removed = set(), 0
    for seed in range(40):
        torch.manual_seed(seed)
        out = crop(_sample(_coordinate_image(40, 60), boxes, labels))
        crop_height, crop_width = out["image"].shape[-2:]
        left, top = out["image"][0, 0, 0].item(), out["image"][1, 0, 0].item()
        assert 16 <= crop_width <= 30 and 16 <= crop_height <= 30
        expected_boxes, expected_labels = [], []
        for (x0, y0, x1, y1), label in zip(boxes, labels):
            clipped = [min(max(x0 - left, 0), crop_width), min(max(y0 - top, 0), crop_height),
                       min(max(x1 - left, 0), crop_width), min(max(y1 - top, 0), crop_height)]
            if clipped[2] - clipped[0] >= 1 and clipped[3] - clipped[1] >= 1:
                expected_boxes.append(clipped)
                expected_labels.append(label)
        assert out["boxes"].tolist() == expected_boxes and out["labels"].tolist() == expected_labels
        sizes.add((crop_height, crop_width))
        removed += len(boxes) - len(expected_boxes)
    assert len(sizes) > 10 and removed > 0


def test_crop_of_an_image_smaller_than_the_minimum_keeps_that_side():
    torch.manual_seed(0)
    out = RandomSizeCrop(50, 80)(_sample(_coordinate_image(40, 100), [], []))
    assert out["image"].shape[-2] == 40 and 50 <= out["image"].shape[-1] <= 80


def test_full_training_augmentation_on_empty_and_busy_images(tiny_cfg):
    augmentation = build_augmentation(tiny_cfg, is_train=True)
    shapes = set()
    for seed in range(30):
        torch.manual_seed(seed)
        empty = augmentation(_sample(_coordinate_image(100, 120), [], []))
        assert empty["boxes"].shape == (0, 4) and empty["labels"].shape == (0,)
        busy = augmentation(_sample(_coordinate_image(100, 120), [[10, 10, 50, 60], [60, 20, 118, 99]], [2, 0]))
        height, width = busy["image"].shape[-2:]
        shapes.add((height, width))
        # short side one of MIN_SIZE_TRAIN, unless the long side hit MAX_SIZE_TRAIN (160, less truncation)
        assert max(height, width) <= 160
        assert min(height, width) in (64, 96, 128) or max(height, width) >= 157
        boxes = busy["boxes"]
        assert len(boxes) == len(busy["labels"])
        assert bool(((boxes[:, 2:] - boxes[:, :2]) >= 1).all())
        assert bool((boxes[:, 0::2] <= width).all() and (boxes[:, 1::2] <= height).all() and (boxes >= 0).all())
    assert len(shapes) > 3


def test_eval_resize_does_not_resample_an_image_at_size():
    image = torch.randint(0, 256, (3, 96, 128), dtype=torch.uint8)
    out = eval_augmentation(96, 160)(_sample(image, [[1.5, 2.5, 30.25, 40]], [4]))
    assert torch.equal(out["image"], image)
    assert out["boxes"].tolist() == [[1.5, 2.5, 30.25, 40]]
    resized = eval_augmentation(48, 160)(_sample(image, [[1.5, 2.5, 30.25, 40]], [4]))
    assert resized["image"].shape == (3, 48, 64) and resized["boxes"].tolist() == [[0.75, 1.25, 15.125, 20]]


def test_crop_disabled_means_no_crop_branch(tiny_cfg):
    tiny_cfg.INPUT.CROP.ENABLED = False
    tiny_cfg.INPUT.RANDOM_FLIP = False
    augmentation = build_augmentation(tiny_cfg, is_train=True)
    for seed in range(10):
        torch.manual_seed(seed)
        out = augmentation(_sample(_coordinate_image(100, 120), [[0, 0, 120, 100]], [0]))
        height, width = out["image"].shape[-2:]
        assert out["boxes"].tolist() == [[0, 0, width, height]]  # the whole image stays in view
