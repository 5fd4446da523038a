"""Hand-written input batches for a detector's forward: a list of dicts with "image" (3, H, W) 0-255 and
"targets" {"boxes": (K, 4) absolute xyxy, "labels": (K,)}."""
from typing import List

import torch


def detection_batch(with_targets: bool = True) -> List[dict]:
    """Two uint8/float images of different sizes (the second to be shown at twice its size), with targets
    (absolute xyxy boxes, labels < 5) unless ``with_targets`` is False; drawn from seed 1."""
    torch.manual_seed(1)
    inputs = [
        {"image": torch.randint(0, 256, (3, 64, 80), dtype=torch.uint8)},
        # a different size, to be shown at twice its size
        {"image": torch.randint(0, 256, (3, 48, 96), dtype=torch.uint8).float(), "height": 96, "width": 192},
    ]
    if with_targets:
        inputs[0]["targets"] = {"boxes": torch.tensor([[4.0, 8.0, 40.0, 60.0]]), "labels": torch.tensor([1])}
        inputs[1]["targets"] = {
            "boxes": torch.tensor([[0.0, 0.0, 30.0, 20.0], [50.0, 10.0, 90.0, 46.0]]),
            "labels": torch.tensor([4, 0]),
        }
    return inputs


def training_batch() -> List[dict]:
    """Two uint8 images of different sizes with targets (absolute xyxy boxes, labels < 4), drawn from seed 1."""
    torch.manual_seed(1)
    return [
        {"image": torch.randint(0, 256, (3, 64, 80), dtype=torch.uint8),
         "targets": {"boxes": torch.tensor([[4.0, 8.0, 40.0, 60.0]]), "labels": torch.tensor([1])}},
        {"image": torch.randint(0, 256, (3, 48, 64), dtype=torch.uint8),
         "targets": {"boxes": torch.tensor([[0.0, 0.0, 30.0, 20.0], [30.0, 10.0, 60.0, 46.0]]),
                     "labels": torch.tensor([3, 0])}},
    ]
