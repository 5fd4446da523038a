"""A canvas that stays readable at any image size: small images are upscaled, fonts and lines scale.

Detection and attention pictures draw text and markers over the image. Drawn at a 128x128
image's own size, a label is a few pixels high and runs off the edge; so the image is first
enlarged by a whole factor (nearest neighbour: every image pixel becomes a clean square)
until its short side reaches ``MIN_CANVAS_SIDE``, and font size and line width follow the
canvas size. Coordinates given in image pixels are multiplied by ``Canvas.scale``.
"""
import math
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

MIN_CANVAS_SIDE = 512
MARKER_SHAPES = ("circle", "square", "diamond", "triangle")

Color = tuple[int, int, int]


class Canvas:
    """An RGB drawing surface over an image (3, H, W) uint8, enlarged ``scale`` times when small.

    Args:
        image: (3, H, W) uint8 RGB.
        min_side: the short side the canvas is enlarged to reach (by a whole factor).
    """

    def __init__(self, image: torch.Tensor, min_side: int = MIN_CANVAS_SIDE):
        if image.dim() != 3 or image.shape[0] != 3 or image.dtype != torch.uint8:
            raise ValueError(f"Canvas: image must be (3, H, W) uint8, got {tuple(image.shape)} {image.dtype}")
        height, width = image.shape[-2:]
        self.scale = max(1, math.ceil(min_side / min(height, width)))
        picture = Image.fromarray(image.permute(1, 2, 0).contiguous().numpy(), "RGB")
        if self.scale > 1:
            picture = picture.resize((width * self.scale, height * self.scale), Image.Resampling.NEAREST)
        self.image = picture.convert("RGBA")
        short_side = min(self.image.size)
        self.line_width = max(2, round(short_side / 256))
        self.font = _font(max(12, round(short_side / 28)))

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the canvas in pixels."""
        return self.image.size

    def to_canvas(self, x: float, y: float) -> tuple[float, float]:
        """Image pixel coordinates (continuous, 0 at the left/top edge) to canvas coordinates."""
        return x * self.scale, y * self.scale

    def box(self, xyxy: Sequence[float], color: Color, width: int | None = None) -> None:
        """Outline of a box given in image pixels, clipped to the canvas."""
        canvas_width, canvas_height = self.size
        x0, y0 = self.to_canvas(*xyxy[:2])
        x1, y1 = self.to_canvas(*xyxy[2:])
        x0, x1 = sorted((min(max(x0, 0), canvas_width - 1), min(max(x1, 0), canvas_width - 1)))
        y0, y1 = sorted((min(max(y0, 0), canvas_height - 1), min(max(y1, 0), canvas_height - 1)))
        ImageDraw.Draw(self.image).rectangle((x0, y0, x1, y1), outline=color, width=width or self.line_width)

    def label(self, text: str, anchor_xy: Sequence[float], color: Color) -> None:
        """``text`` on a ``color`` band just above ``anchor_xy`` (image pixels; below it at the top edge),
        shifted as needed to lie wholly on the canvas."""
        draw = ImageDraw.Draw(self.image)
        left, top, right, bottom = draw.textbbox((0, 0), text, font=self.font)
        pad = max(1, self.line_width)
        band_width, band_height = right - left + 2 * pad, bottom - top + 2 * pad
        x, y = self.to_canvas(*anchor_xy)
        y = y - band_height if y - band_height >= 0 else y
        canvas_width, canvas_height = self.size
        x = min(max(x, 0), max(canvas_width - band_width, 0))
        y = min(max(y, 0), max(canvas_height - band_height, 0))
        draw.rectangle((x, y, x + band_width, y + band_height), fill=color)
        draw.text((x + pad - left, y + pad - top), text, fill=_text_color(color), font=self.font)

    def marker(self, xy: Sequence[float], radius: float, color: Color, shape: str = "circle", alpha: int = 255) -> None:
        """A filled ``shape`` (one of ``MARKER_SHAPES``) of ``radius`` canvas pixels centred on ``xy`` (image
        pixels), outlined in black, ``alpha`` opaque."""
        x, y = self.to_canvas(*xy)
        overlay = Image.new("RGBA", self.size, (0, 0, 0, 0))
        draw = ImageDraw.Draw(overlay)
        style = dict(fill=(*color, alpha), outline=(0, 0, 0, alpha))
        if shape == "circle":
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), width=1, **style)
        elif shape == "square":
            side = radius * 0.9
            draw.rectangle((x - side, y - side, x + side, y + side), width=1, **style)
        elif shape in ("diamond", "triangle"):
            corners = 4 if shape == "diamond" else 3
            draw.regular_polygon((x, y, radius * 1.15), corners, rotation=0 if shape == "triangle" else 45, **style)
        else:
            raise ValueError(f"Canvas.marker: shape must be one of {MARKER_SHAPES}, got {shape!r}")
        self.image.alpha_composite(overlay)

    def cross(self, xy: Sequence[float], size: float, color: Color) -> None:
        """An upright cross of half-size ``size`` canvas pixels at ``xy`` (image pixels), outlined in black."""
        draw = ImageDraw.Draw(self.image)
        x, y = self.to_canvas(*xy)
        for width, fill in ((self.line_width + 2, (0, 0, 0)), (self.line_width, color)):
            draw.line((x - size, y, x + size, y), fill=fill, width=width)
            draw.line((x, y - size, x, y + size), fill=fill, width=width)

    def add_legend(self, entries: Sequence[tuple[str, Color, str]]) -> None:
        """Append a white band below the picture listing ``(text, color, marker shape)`` entries."""
        draw = ImageDraw.Draw(self.image)
        text_height = draw.textbbox((0, 0), "Ag", font=self.font)[3]
        radius = text_height / 2
        gap = text_height
        rows, x, row = [], 0.0, []
        for text, color, shape in entries:  # lay the entries out in rows that fit the width
            width = 2 * radius + gap / 3 + draw.textlength(text, font=self.font) + gap
            if row and x + width > self.size[0]:
                rows.append(row)
                row, x = [], 0.0
            row.append((x, text, color, shape))
            x += width
        rows.append(row)
        line = text_height + gap / 2
        band = Image.new("RGBA", (self.size[0], self.size[1] + round(line * len(rows) + gap / 2)), (255, 255, 255, 255))
        band.paste(self.image, (0, 0))
        self.image = band
        for index, row in enumerate(rows):
            y = self.size[1] - line * (len(rows) - index) + gap / 4
            for x, text, color, shape in row:
                self.marker(((x + gap / 2 + radius) / self.scale, (y + radius) / self.scale), radius, color, shape)
                ImageDraw.Draw(self.image).text((x + gap / 2 + 2 * radius + gap / 3, y), text, fill=(0, 0, 0),
                                                font=self.font)

    def to_tensor(self) -> torch.Tensor:
        """The canvas as (3, H * scale, W * scale) uint8."""
        return torch.from_numpy(np.array(self.image.convert("RGB"))).permute(2, 0, 1).contiguous()

    def save(self, path: str) -> None:
        self.image.convert("RGB").save(path)


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _text_color(background: Color) -> Color:
    """Black on light backgrounds, white on dark ones."""
    luminance = 0.299 * background[0] + 0.587 * background[1] + 0.114 * background[2]
    return (0, 0, 0) if luminance > 140 else (255, 255, 255)
