"""Attention pictures: pixel geometry on hand-built cases, and the tool's points are the model's own samples."""
import json

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import tv_tensors

from ddetr_plugin.checkpoint.variant import save_state_dict
from ddetr_plugin.data import eval_augmentation, read_image
from ddetr_plugin.utils.attention import encoder_query_at, reference_points_in_image, sampling_points_in_image

from tests._support.tiny_configs import dump_config, tiny_cfg
from tests._support.tiny_models import perturbed_model
from tests._support.tool_scripts import load_tool


def test_locations_map_through_the_valid_ratio_to_image_pixels():
    # one image 100 high, 200 wide; level 0 is valid over half its width (padding on the right)
    locations = torch.zeros(1, 1, 1, 2, 1, 2)
    locations[0, 0, 0, 0, 0] = torch.tensor([0.25, 0.1])  # level 0
    locations[0, 0, 0, 1, 0] = torch.tensor([0.25, 0.1])  # level 1
    valid_ratios = torch.tensor([[[0.5, 1.0], [1.0, 1.0]]])
    image_size = torch.tensor([[100.0, 200.0]])
    points = sampling_points_in_image(locations, valid_ratios, image_size)
    assert points[0, 0, 0, 0, 0].tolist() == [100.0, 10.0]  # a quarter of the padded level: half the image
    assert points[0, 0, 0, 1, 0].tolist() == [50.0, 10.0]
    boxes = torch.tensor([[[0.5, 0.25, 0.1, 0.1]]])  # two-stage references are boxes: their centre
    assert reference_points_in_image(boxes, image_size)[0, 0].tolist() == [100.0, 25.0]


def test_encoder_query_under_a_pixel():
    spatial_shapes = torch.tensor([[4, 6], [2, 3]])
    level_start_index = torch.tensor([0, 24])
    valid_ratios = torch.tensor([[[4 / 6, 1.0], [2 / 3, 1.0]]])  # 4 of 6 columns valid, all rows
    image_size = torch.tensor([[40.0, 40.0]])
    # level 0: valid cells are 10x10 pixels; pixel (25, 17) is in column 2, row 1
    query, centre = encoder_query_at(25, 17, 0, spatial_shapes, level_start_index, valid_ratios, image_size)
    assert query == 1 * 6 + 2 and centre == (25.0, 15.0)
    query, centre = encoder_query_at(39.9, 0, 1, spatial_shapes, level_start_index, valid_ratios, image_size)
    assert query == 24 + 1 and centre == (30.0, 10.0)
    with pytest.raises(ValueError, match="level 2 does not exist"):
        encoder_query_at(0, 0, 2, spatial_shapes, level_start_index, valid_ratios, image_size)
    with pytest.raises(ValueError, match="outside the 40x40 image"):
        encoder_query_at(41, 0, 0, spatial_shapes, level_start_index, valid_ratios, image_size)


def test_the_tool_draws_the_models_samples(tmp_path):
    cfg = tiny_cfg("box_refine", "INPUT.MIN_SIZE_TEST", 64, "INPUT.MAX_SIZE_TEST", 128,
                   "MODEL.CLASS_NAMES", ["ant", "bee", "cat", "dog", "eel"])
    model = perturbed_model(cfg)
    save_state_dict(str(tmp_path / "model.pth"), model.state_dict())
    cfg.MODEL.WEIGHTS = str(tmp_path / "model.pth")
    config = dump_config(cfg, tmp_path / "model.yaml")
    # stored 80 wide and 128 high: the model sees it resized to 64x102 (a scale of 0.8 from the original)
    image = np.random.default_rng(0).integers(0, 256, (128, 80, 3), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "x.png")

    load_tool("visualize_attention").main(["--config", config, "--input", str(tmp_path / "x.png"),
                                           "--output", str(tmp_path / "out"), "--top-k", "2", "--layer", "0",
                                           "--pixel", "30", "100"])
    names = {p.name for p in (tmp_path / "out").iterdir()}
    assert names == {"x_top0.png", "x_top1.png", "x_overview.png", "x_encoder.png", "x_attention.json"}
    record = json.loads((tmp_path / "out" / "x_attention.json").read_text())

    # the same forward pass by hand: the test resize to 102x64, then map the locations back
    resized = eval_augmentation(64, 128)(tv_tensors.Image(read_image(str(tmp_path / "x.png"))))
    assert resized.shape == (3, 102, 64)
    with torch.no_grad():
        images, mask, _ = model.preprocess_images([{"image": resized.as_subclass(torch.Tensor)}])
        outputs = model.forward_raw(images, mask, return_intermediates=True)
    layer = outputs["intermediates"]["decoder"][0]
    scores = outputs["pred_logits"][0].sigmoid().max(-1).values
    assert [d["query"] for d in record["detections"]] == scores.argsort(descending=True)[:2].tolist()
    to_original = torch.tensor([80 / 64, 128 / 102])
    for detection in record["detections"]:
        query = detection["query"]
        locations = layer["sampling_locations"][0, query]  # (M, L, P, 2) normalized per level; no padding
        sizes = torch.tensor([64.0, 102.0])
        expected = locations * sizes * to_original
        drawn = torch.zeros_like(expected)
        for sample in detection["samples"]:
            drawn[sample["head"], sample["level"], sample["point"]] = torch.tensor([sample["x"], sample["y"]])
            assert sample["weight"] == pytest.approx(float(
                layer["attention_weights"][0, query, sample["head"], sample["level"], sample["point"]]))
        torch.testing.assert_close(drawn, expected, rtol=1e-4, atol=0.05)
        torch.testing.assert_close(torch.tensor(detection["reference_xy"]),
                                   layer["reference_points"][0, query] * sizes * to_original, rtol=1e-4, atol=0.05)
    assert record["encoder"]["level"] == 0 and record["encoder"]["pixel"] == [30, 100]
    # the 64x102 input has 8x13 level-0 cells: pixel (30, 100) of the original is (24, 79.7) -> column 3, row 10
    assert record["encoder"]["query"] == 10 * 8 + 3
    picture = Image.open(tmp_path / "out" / "x_top0.png")
    assert picture.width == 80 * 7 and picture.height > 128 * 7  # enlarged 7 times, plus the legend band
