"""Reading an image file as an RGB uint8 tensor, whatever mode PIL opens it in.

- EXIF orientation is applied first (``PIL.ImageOps.exif_transpose``), so the
  image is the one annotation tools display and the annotation's width/height
  refer to it.
- Modes: "1", "L", "P", "RGB", "CMYK", "YCbCr", ... go through PIL's RGB conversion;
  modes with alpha ("RGBA", "LA", "PA", "P"/"L"/"RGB" with a transparency entry)
  drop the alpha channel and keep the stored colours, as PIL's RGB conversion of
  RGBA does. 16-bit modes ("I;16", "I;16B", ...) scale 0..65535 to 0..255;
  "I" and "F" (32-bit) are taken as 16-bit data when a value exceeds 255
  (older Pillow opened 16-bit PNGs as "I") and as 8-bit otherwise; grey becomes
  three equal channels.
- The decoded size is checked against the annotation's (height, width).

Missing files are detected here, when an image is first read, not when the
annotation file is loaded: checking every file up front would stat each image of
a large dataset (slow on network file systems) before the first iteration. Every
failure is a :class:`DatasetError` naming the file.
"""
import os

import numpy as np
import torch
from PIL import Image, ImageOps

from .errors import DatasetError

_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")


def read_image(path: str | os.PathLike, expected_size: tuple[int, int] | None = None) -> torch.Tensor:
    """The image at ``path`` as a (3, H, W) uint8 RGB tensor, EXIF orientation applied.

    Args:
        path: an image file PIL can open.
        expected_size: (height, width) from the annotation file, checked against the
            decoded (oriented) image; None skips the check.

    Raises:
        DatasetError: the file is missing, unreadable, truncated, in a mode that has no RGB
            conversion, or its size differs from ``expected_size`` (both sizes are named).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise DatasetError(f"image file {path} does not exist")
    try:
        with Image.open(path) as image:
            image.load()  # decodes now, so a truncated file fails here and not later
            image = ImageOps.exif_transpose(image)
            array = _rgb_array(image)
    except Exception as e:  # PIL reports corrupt files with many exception types (OSError, SyntaxError, ...)
        raise DatasetError(f"cannot read image {path}: {type(e).__name__}: {e}") from e
    height, width = array.shape[:2]
    if expected_size is not None and (height, width) != tuple(expected_size):
        expected_height, expected_width = expected_size
        hint = ""
        if (width, height) == (expected_height, expected_width):
            hint = " (the sizes are swapped: the annotation may ignore the image's EXIF orientation)"
        raise DatasetError(f"image {path} is {width}x{height} (width x height) after EXIF orientation but the "
                           f"annotation file says {expected_width}x{expected_height}{hint}")
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def _rgb_array(image: Image.Image) -> np.ndarray:
    """(H, W, 3) uint8 RGB of any PIL image."""
    mode = image.mode
    if mode in _SIXTEEN_BIT_MODES:
        grey = (np.asarray(image).astype(np.uint32) + 128) // 257  # 65535 -> 255, rounded
        return _grey_to_rgb(grey)
    if mode in ("I", "F"):
        values = np.asarray(image).astype(np.float64)
        if values.size and values.max() > 255:
            values = values / 257.0
        return _grey_to_rgb(np.rint(np.clip(values, 0, 255)))
    if mode in _ALPHA_MODES or "transparency" in image.info:
        image = image.convert("RGBA")
    try:
        rgb = image.convert("RGB")
    except ValueError as e:
        raise ValueError(f"PIL has no RGB conversion for mode {mode!r} ({e})") from e
    return np.array(rgb, dtype=np.uint8)


def _grey_to_rgb(grey: np.ndarray) -> np.ndarray:
    return np.repeat(grey.astype(np.uint8)[:, :, None], 3, axis=2)
