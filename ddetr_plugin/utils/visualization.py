"""Detections as JSON-ready records and drawn onto images (torchvision's drawing utilities)."""
import colorsys
from typing import Dict, List, Optional, Sequence

import torch
from torchvision.utils import draw_bounding_boxes


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


def draw_detections(image: torch.Tensor, records: Sequence[dict], line_width: int = 2) -> torch.Tensor:
    """``image`` (3, H, W) uint8 with each record's box (clipped to the image) and "name score" drawn."""
    if not records:
        return image.clone()
    height, width = image.shape[-2:]
    boxes = torch.tensor([record["bbox_xyxy"] for record in records], dtype=torch.float32)
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width - 1)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height - 1)
    labels = [f"{record['name']} {record['score']:.2f}" for record in records]
    colors = [label_color(record["label"]) for record in records]
    return draw_bounding_boxes(image, boxes, labels=labels, colors=colors, width=line_width)
