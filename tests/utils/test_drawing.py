"""The readable canvas: small images enlarged by a whole factor, labels inside the picture, markers in place."""
import torch

from ddetr_plugin.utils.attention_drawing import draw_samples, head_colors
from ddetr_plugin.utils.drawing import Canvas
from ddetr_plugin.utils.visualization import draw_detections, label_color


def test_small_images_are_enlarged_and_large_ones_kept():
    small = Canvas(torch.zeros(3, 128, 100, dtype=torch.uint8))
    assert small.scale == 6 and small.size == (600, 768)  # short side 100 -> 600 >= 512
    assert small.font.size >= 16  # scaled with the canvas, not the 11-pixel bitmap font
    large = Canvas(torch.zeros(3, 800, 1066, dtype=torch.uint8))
    assert large.scale == 1 and large.size == (1066, 800) and large.font.size > small.font.size
    image = torch.randint(0, 256, (3, 10, 12), dtype=torch.uint8)
    enlarged = Canvas(image, min_side=30).to_tensor()  # every image pixel a clean 3x3 square
    assert torch.equal(enlarged, image.repeat_interleave(3, 1).repeat_interleave(3, 2))


def test_a_label_at_the_right_edge_stays_whole_inside_the_picture():
    image = torch.full((3, 128, 128), 255, dtype=torch.uint8)
    record = {"label": 1, "name": "triangle", "score": 0.97, "bbox_xyxy": [120.0, 2.0, 127.0, 30.0]}
    drawn = draw_detections(image, [record])
    assert drawn.shape == (3, 512, 512)
    band = (drawn == torch.tensor(label_color(1), dtype=torch.uint8)[:, None, None]).all(0)
    columns = band.any(0).nonzero()
    # the label band (wider than the box) was shifted left to end at the picture's edge, and is tall enough to read
    assert columns.max() == 511 and columns.min() < 120 * 4 - 40
    assert band.any(1).sum() >= 16


def test_sample_markers_are_drawn_at_their_pixels():
    canvas = Canvas(torch.zeros(3, 64, 64, dtype=torch.uint8))  # enlarged 8 times
    samples = [{"x": 10.5, "y": 20.25, "head": 0, "level": 0, "point": 0, "weight": 1.0},
               {"x": 40.0, "y": 50.0, "head": 2, "level": 1, "point": 0, "weight": 0.5}]
    draw_samples(canvas, samples)
    picture = canvas.to_tensor().float()
    colors = head_colors(3)
    for sample in samples:
        # at the sample's pixel (x 8): its head's colour, over the black image with the opacity of its weight
        alpha = (110 + 145 * sample["weight"]) / 255  # relative to the largest weight, 1.0 here
        expected = torch.tensor(colors[sample["head"]], dtype=torch.float32) * alpha
        torch.testing.assert_close(picture[:, round(sample["y"] * 8), round(sample["x"] * 8)], expected,
                                   rtol=0, atol=1.5)
    assert picture[:, 5, 5].sum() == 0  # and nothing elsewhere
