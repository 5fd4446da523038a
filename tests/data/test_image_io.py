"""read_image: every PIL mode becomes RGB uint8, EXIF orientation, size check, missing/broken files."""
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from ddetr_plugin.data import DatasetError, read_image

from tests._support.coco_files import write_image


def _palette_image(transparency: bool) -> Image.Image:
    image = Image.new("P", (3, 2), 1)
    image.putpalette([0, 0, 0, 12, 34, 56] + [0, 0, 0] * 254)
    if transparency:
        image.info["transparency"] = 1
    return image


# mode -> (image in that mode, file format keeping the mode, expected RGB of every pixel)
MODES = {
    "1": (lambda: Image.new("1", (3, 2), 1), "PNG", (255, 255, 255)),
    "L": (lambda: Image.new("L", (3, 2), 77), "PNG", (77, 77, 77)),
    "P": (lambda: _palette_image(False), "PNG", (12, 34, 56)),
    "P+transparency": (lambda: _palette_image(True), "PNG", (12, 34, 56)),
    "RGBA": (lambda: Image.new("RGBA", (3, 2), (10, 20, 30, 0)), "PNG", (10, 20, 30)),
    "LA": (lambda: Image.new("LA", (3, 2), (100, 0)), "PNG", (100, 100, 100)),
    "I;16": (lambda: Image.fromarray(np.full((2, 3), 257 * 200, dtype=np.uint16)), "PNG", (200, 200, 200)),
    "I": (lambda: Image.new("I", (3, 2), 40000), "TIFF", (156, 156, 156)),  # 16-bit data: 40000 / 257
    "I small": (lambda: Image.new("I", (3, 2), 90), "TIFF", (90, 90, 90)),  # 8-bit data in an "I" image
    "F": (lambda: Image.new("F", (3, 2), 12.4), "TIFF", (12, 12, 12)),
    "CMYK": (lambda: Image.new("CMYK", (3, 2), (255, 0, 0, 0)), "TIFF", (0, 255, 255)),  # full cyan
    "RGB": (lambda: Image.new("RGB", (3, 2), (1, 2, 3)), "PNG", (1, 2, 3)),
}


@pytest.mark.parametrize("case", sorted(MODES))
def test_every_mode_becomes_rgb_uint8(tmp_path, case):
    make, file_format, expected = MODES[case]
    source = make()
    path = tmp_path / f"image.{file_format.lower()}"
    source.save(path, format=file_format)
    with Image.open(path) as reopened:  # the file really is in the mode under test
        assert reopened.mode == source.mode
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. PIL's warning on palette transparency
        image = read_image(path, expected_size=(2, 3))
    assert image.dtype == torch.uint8 and image.shape == (3, 2, 3)
    assert torch.equal(image, torch.tensor(expected, dtype=torch.uint8).view(3, 1, 1).expand(3, 2, 3))


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.arange(2 * 4 * 3, dtype=np.uint8).reshape(2, 4, 3) * 10  # H=2, W=4, all pixels distinct
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation 6: the stored image is displayed rotated 90 degrees clockwise
    path = tmp_path / "rotated.png"
    Image.fromarray(pixels).save(path, exif=exif)
    image = read_image(path, expected_size=(4, 2))
    clockwise = np.rot90(pixels, k=-1)  # (4, 2, 3)
    assert torch.equal(image, torch.from_numpy(clockwise.copy()).permute(2, 0, 1))
    with pytest.raises(DatasetError, match=r"rotated\.png is 2x4 .* says 4x2 \(the sizes are swapped"):
        read_image(path, expected_size=(2, 4))


def test_size_mismatch_names_file_and_both_sizes(tmp_path):
    path = write_image(tmp_path / "small.png", height=30, width=40)
    with pytest.raises(DatasetError) as info:
        read_image(path, expected_size=(30, 50))
    message = str(info.value)
    assert str(path) in message and "40x30" in message and "50x30" in message


@pytest.mark.parametrize("file_format", ["PNG", "JPEG"])
def test_truncated_file_names_file(tmp_path, file_format):
    path = tmp_path / f"cut.{file_format.lower()}"
    write_image(path, height=64, width=64)
    Image.open(path).convert("RGB").save(path, format=file_format)
    content = path.read_bytes()
    path.write_bytes(content[: len(content) // 2])
    with pytest.raises(DatasetError, match="cannot read image .*cut"):
        read_image(path)


def test_missing_and_non_image_files_name_the_file(tmp_path):
    with pytest.raises(DatasetError, match=r"image file .*absent\.png does not exist"):
        read_image(tmp_path / "absent.png")
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    with pytest.raises(DatasetError, match=r"cannot read image .*notes\.jpg"):
        read_image(text)
