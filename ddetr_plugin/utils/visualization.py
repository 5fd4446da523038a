"""Detections as JSON-ready records and drawn onto images."""
import colorsys
from typing import Dict, List, Optional, Sequence

import torch

from .drawing import Canvas


def class_name(label: int, class_names: Optional[Sequence[str]]) -> str:
    """``class_names[label]``, or ``"class_<label>"`` when there is no such name."""
    if class_names is not None and 0 <= label < len(class_names):
        return str(class_names[label])
    return f"class_{label}"


def detection_records(
    result: Dict[str, torch.Tensor], class_names: Optional[Sequence[str]] = None, threshold: float = 0.0
) -> List[dict]:
    """The detections of one image with score >= ``threshold``, highest score first.

    Args:
        result: {"boxes": (K, 4) xyxy pixels, "scores": (K,), "labels": (K,)} as the model returns it.

    Returns:
        [{"label": int, "name": str, "score": float, "bbox_xyxy": [x0, y0, x1, y1]}, ...].
    """
    scores = result["scores"].detach().float().cpu()
    order = torch.argsort(scores, descending=True, stable=True)
    boxes = result["boxes"].detach().float().cpu()[order].tolist()
    labels = result["labels"].detach().cpu()[order].tolist()
    records = []
    for score, label, box in zip(scores[order].tolist(), labels, boxes):
        if score < threshold:
            break
        records.append({"label": int(label), "name": class_name(int(label), class_names), "score": score,
                        "bbox_xyxy": box})
    return records


def label_color(label: int) -> tuple:
    """A distinct, saturated RGB colour per label (golden-ratio hue steps)."""
    hue = (label * 0.618033988749895) % 1.0
    return tuple(int(round(255 * channel)) for channel in colorsys.hsv_to_rgb(hue, 0.85, 0.95))


def draw_detections(image: torch.Tensor, records: Sequence[dict]) -> torch.Tensor:
    """``image`` (3, H, W) uint8 with each record's box (clipped to the image) and "name score" drawn.

    Returns (3, H * s, W * s) uint8: images with a short side under 512 pixels are enlarged by a
    whole factor s so that the labels are readable (``drawing.Canvas``); s is 1 otherwise.
    """
    canvas = Canvas(image)
    # lowest score first, so the best detection's box and label end up on top
    for record in reversed(records):
        color = label_color(record["label"])
        canvas.box(record["bbox_xyxy"], color)
        canvas.label(f"{record['name']} {record['score']:.2f}", record["bbox_xyxy"][:2], color)
    return canvas.to_tensor()
