"""Pictures of where the deformable attention sampled: per detection, an overview, an encoder pixel.

Each sampling point (a record of ``attention.sample_records``) is a marker at its image pixel:
its colour is the attention head, its shape the feature level, and its size and opacity its
attention weight relative to the largest weight of that query. The query's reference point
is a cross. A legend under the picture names the heads and levels.
"""
import colorsys
from typing import Optional, Sequence

import torch

from .drawing import MARKER_SHAPES, Canvas, Color
from .visualization import label_color

# marker radius (canvas pixels, before the canvas' own scaling of lines) of the largest and smallest weights
_MAX_RADIUS, _MIN_RADIUS = 9.0, 2.0


def head_colors(num_heads: int) -> list[Color]:
    """``num_heads`` evenly spaced, saturated hues."""
    return [tuple(int(round(255 * c)) for c in colorsys.hsv_to_rgb(head / num_heads, 0.9, 1.0))
            for head in range(num_heads)]


def level_shape(level: int) -> str:
    return MARKER_SHAPES[level % len(MARKER_SHAPES)]


def draw_samples(canvas: Canvas, samples: Sequence[dict], color: Optional[Color] = None) -> None:
    """Markers for ``samples`` (``sample_records``): coloured by head (or all ``color``), shaped by level."""
    if not samples:
        return
    largest = max(sample["weight"] for sample in samples) or 1.0
    colors = head_colors(max(sample["head"] for sample in samples) + 1)
    unit = canvas.line_width / 2
    for sample in samples:
        relative = sample["weight"] / largest
        radius = unit * (_MIN_RADIUS + (_MAX_RADIUS - _MIN_RADIUS) * relative ** 0.5)
        canvas.marker((sample["x"], sample["y"]), radius, color or colors[sample["head"]],
                      level_shape(sample["level"]), alpha=round(110 + 145 * relative))


def legend_entries(num_heads: int, level_names: Sequence[str]) -> list[tuple[str, Color, str]]:
    """Legend rows: one per head (its colour) and one per level (its shape, in grey)."""
    heads = [(f"head {m}", color, "circle") for m, color in enumerate(head_colors(num_heads))]
    return heads + [(name, (160, 160, 160), level_shape(l)) for l, name in enumerate(level_names)]


def draw_query_picture(
    image: torch.Tensor, detection: dict, samples: Sequence[dict], reference_xy: Sequence[float],
    num_heads: int, level_names: Sequence[str], title: str,
) -> Canvas:
    """One detection: its box and label, its reference point and every head's and level's samples.

    Args:
        image: (3, H, W) uint8, the image the coordinates are in.
        detection: {"label", "name", "score", "bbox_xyxy"} (``visualization.detection_records``).
        samples: ``sample_records`` of the query; reference_xy: its reference point (x, y).
        title: drawn in the top-left corner (e.g. the query and decoder layer).
    """
    canvas = Canvas(image)
    color = label_color(detection["label"])
    canvas.box(detection["bbox_xyxy"], color)
    draw_samples(canvas, samples)
    canvas.cross(reference_xy, 3 * canvas.line_width, (255, 255, 255))
    canvas.label(f"{detection['name']} {detection['score']:.2f}", detection["bbox_xyxy"][:2], color)
    canvas.label(title, (0, 0), (255, 255, 255))
    canvas.add_legend(legend_entries(num_heads, level_names))
    return canvas


def draw_overview(image: torch.Tensor, queries: Sequence[dict], title: str) -> Canvas:
    """Every selected detection with its samples in its label's colour.

    Args:
        queries: {"detection", "samples", "reference_xy"} per detection, as ``draw_query_picture`` takes them.
    """
    canvas = Canvas(image)
    for query in reversed(queries):  # the best detection on top
        color = label_color(query["detection"]["label"])
        draw_samples(canvas, query["samples"], color=color)
        canvas.box(query["detection"]["bbox_xyxy"], color)
        canvas.cross(query["reference_xy"], 3 * canvas.line_width, color)
    for query in reversed(queries):
        detection = query["detection"]
        canvas.label(f"{detection['name']} {detection['score']:.2f}", detection["bbox_xyxy"][:2],
                     label_color(detection["label"]))
    canvas.label(title, (0, 0), (255, 255, 255))
    return canvas


def draw_encoder_picture(
    image: torch.Tensor, samples: Sequence[dict], reference_xy: Sequence[float], num_heads: int,
    level_names: Sequence[str], title: str,
) -> Canvas:
    """One encoder query (a feature cell): its reference point and samples."""
    canvas = Canvas(image)
    draw_samples(canvas, samples)
    canvas.cross(reference_xy, 3 * canvas.line_width, (255, 255, 255))
    canvas.label(title, (0, 0), (255, 255, 255))
    canvas.add_legend(legend_entries(num_heads, level_names))
    return canvas
