"""Small builders for COCO files and images used by the data tests."""
import json
from pathlib import Path

import numpy as np
from PIL import Image


def coco_doc(images=None, annotations=None, categories=None) -> dict:
    """A valid COCO document: by default one 50x100 (h x w) image with one box of category 1."""
    return {
        "images": images if images is not None else [{"id": 1, "file_name": "a.png", "height": 50, "width": 100}],
        "annotations": annotations if annotations is not None else [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 5, 20, 15], "iscrowd": 0}],
        "categories": categories if categories is not None else [{"id": 1, "name": "thing"}],
    }


def write_json(path: Path, document) -> Path:
    path.write_text(json.dumps(document))  # json writes NaN/Infinity literals, which Python's parser reads
    return path


def write_image(path: Path, height: int, width: int, seed: int = 0) -> Path:
    """A random RGB PNG of the given size."""
    pixels = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path
