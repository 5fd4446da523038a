"""The built-in synthetic dataset "shapes": COCO-format JSON and PNG images, generated on first use.

Each image (128x128 by default) has a textured background (noise, a gradient,
stripes or a checkerboard in muted colours) and 1-4 filled shapes of 12-60 px in
saturated colours (no two alike in one image). Shapes may overlap and stick out
of the image by up to a fifth of their size; a placement that would hide more
than half of an earlier shape is redrawn. A box is the tight box of the shape's
rasterised pixels (its own mask, drawn alone, so clipped to the image and
independent of what covers it); "area" is that mask's pixel count.

Generation is deterministic: image ``i`` comes from ``numpy.random.default_rng([seed, i])``
using only integer draws, and shapes are rasterised with integer arithmetic
(a pixel is inside when its centre is; no anti-aliasing, no fonts), so every
machine produces the same pixels. (PNG bytes are identical for the same zlib;
another zlib build may compress the same pixels differently.)

Where: ``$DDETR_DATASETS/shapes/<split>`` when DDETR_DATASETS is set, else
``$XDG_CACHE_HOME/ddetr_plugin/shapes/<split>`` (``~/.cache/...`` by default). A split
is generated into a temporary folder beside its final place and renamed into place
when complete, under an exclusive file lock, so concurrent processes generate it
once and an interrupted generation never leaves a partial dataset.
"""
import contextlib
import dataclasses
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

from .errors import DatasetError

try:
    import fcntl
except ImportError:  # Windows: the atomic rename alone keeps the dataset whole
    fcntl = None

logger = logging.getLogger(__name__)

SHAPE_CLASSES = ("circle", "square", "triangle", "cross")
# Saturated, so that objects stand out from the muted backgrounds.
OBJECT_COLOURS = ((220, 40, 40), (40, 170, 60), (40, 80, 220), (235, 205, 30), (200, 50, 200), (30, 200, 210))
# Bump when the drawing changes, so a cached dataset from older code is detected.
GENERATOR_VERSION = 1
ANNOTATION_FILE = "instances.json"
IMAGE_FOLDER = "images"
_PLACEMENT_TRIES = 20
_GRADIENT_DIRECTIONS = ((1, 0), (1, 1), (0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1))


@dataclasses.dataclass(frozen=True)
class ShapesSpec:
    """What to generate. Sizes are in pixels; an object's size is its box side before clipping."""

    num_images: int
    seed: int
    image_size: int = 128
    min_objects: int = 1
    max_objects: int = 4
    min_object_size: int = 12
    max_object_size: int = 60

    def __post_init__(self):
        if self.num_images < 1:
            raise ValueError(f"num_images must be >= 1, got {self.num_images}")
        if not 1 <= self.min_objects <= self.max_objects <= len(OBJECT_COLOURS):
            raise ValueError(f"need 1 <= min_objects <= max_objects <= {len(OBJECT_COLOURS)}, "
                             f"got {self.min_objects}, {self.max_objects}")
        if not 4 <= self.min_object_size <= self.max_object_size <= self.image_size:
            raise ValueError(f"need 4 <= min_object_size <= max_object_size <= image_size, got "
                             f"{self.min_object_size}, {self.max_object_size}, {self.image_size}")


SPLITS = {"train": ShapesSpec(num_images=3000, seed=1), "val": ShapesSpec(num_images=300, seed=2)}


def default_shapes_root() -> Path:
    """``$DDETR_DATASETS/shapes``, else ``$XDG_CACHE_HOME/ddetr_plugin/shapes`` (default ``~/.cache``)."""
    datasets = os.environ.get("DDETR_DATASETS")
    if datasets:
        return Path(datasets) / "shapes"
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "ddetr_plugin" / "shapes"


def ensure_shapes(split_dir: str | os.PathLike, spec: ShapesSpec) -> Path:
    """The annotation file of the dataset in ``split_dir``, generating it first if absent.

    Images are in ``split_dir/images``. Safe to call from many processes at once.

    Raises:
        DatasetError: ``split_dir`` holds a dataset generated with another spec or
            generator version, or an incomplete one (delete it, or use another folder).
    """
    split_dir = Path(split_dir)
    if not split_dir.exists():
        split_dir.parent.mkdir(parents=True, exist_ok=True)
        with _exclusive_lock(split_dir.parent / f".{split_dir.name}.lock") as locked:
            if not split_dir.exists():
                _generate_atomically(split_dir, spec, remove_stale=locked)
    json_file = split_dir / ANNOTATION_FILE
    try:
        with open(json_file, encoding="utf-8") as f:
            info = json.load(f).get("info", {})
    except (OSError, ValueError) as e:
        raise DatasetError(f"{split_dir} is not a complete shapes dataset ({e}); delete the folder to "
                           f"regenerate it") from e
    expected = _info(spec)
    if info != expected:
        raise DatasetError(f"{json_file} was generated with {info.get('spec')} (generator version "
                           f"{info.get('generator_version')}), not {expected['spec']} (version "
                           f"{GENERATOR_VERSION}); delete {split_dir} to regenerate it or choose another folder")
    return json_file


def generate_shapes(out_dir: str | os.PathLike, spec: ShapesSpec) -> None:
    """Writes ``out_dir/instances.json`` and ``out_dir/images/<id>.png`` (not atomic: see ensure_shapes)."""
    out_dir = Path(out_dir)
    (out_dir / IMAGE_FOLDER).mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for index in range(spec.num_images):
        image_id = index + 1
        pixels, objects = render_image(spec, index)
        file_name = f"{image_id:06d}.png"
        Image.fromarray(pixels).save(out_dir / IMAGE_FOLDER / file_name, format="PNG")
        images.append({"id": image_id, "file_name": file_name, "height": spec.image_size,
                       "width": spec.image_size})
        for obj in objects:
            x0, y0, x1, y1 = obj["box"]
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "category_id": obj["category"] + 1, "bbox": [x0, y0, x1 - x0, y1 - y0],
                                "area": obj["area"], "iscrowd": 0})
    categories = [{"id": k + 1, "name": name, "supercategory": "shape"} for k, name in enumerate(SHAPE_CLASSES)]
    dataset = {"info": _info(spec), "images": images, "annotations": annotations, "categories": categories}
    with open(out_dir / ANNOTATION_FILE, "w", encoding="utf-8") as f:
        json.dump(dataset, f, separators=(",", ":"))


def render_image(spec: ShapesSpec, index: int) -> tuple[np.ndarray, list[dict]]:
    """Image ``index`` of ``spec``: (H, W, 3) uint8 pixels and its objects, each
    {"category": index into SHAPE_CLASSES, "box": (x0, y0, x1, y1) int pixels, x1/y1 exclusive, "area": int}."""
    rng = np.random.default_rng([spec.seed, index])
    size = spec.image_size
    canvas = _background(rng, size)
    owner = np.full((size, size), -1, dtype=np.int16)  # index of the object seen at each pixel
    colours = rng.permutation(len(OBJECT_COLOURS))
    objects: list[dict] = []
    for _ in range(int(rng.integers(spec.min_objects, spec.max_objects + 1))):
        for _ in range(_PLACEMENT_TRIES):
            category = int(rng.integers(len(SHAPE_CLASSES)))
            mask = _shape_mask(rng, category, spec)
            if mask.any() and not _hides_half_of_any(owner, mask, objects):
                break
        else:  # crowded image: fewer objects
            continue
        canvas[mask] = OBJECT_COLOURS[colours[len(objects)]]
        owner[mask] = len(objects)
        rows, cols = np.nonzero(mask)
        objects.append({"category": category, "area": int(rows.size),
                        "box": (int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1)})
    canvas += rng.integers(-12, 13, size=canvas.shape)  # sensor-like noise over objects too
    return np.clip(canvas, 0, 255).astype(np.uint8), objects


def _shape_mask(rng: np.random.Generator, category: int, spec: ShapesSpec) -> np.ndarray:
    """(S, S) bool mask of one shape at a random size, aspect and place.

    The shape fills the box [x, x + width) x [y, y + height); a pixel belongs to it
    when its centre does. Tests use integers only (coordinates doubled so centres
    are whole numbers), hence the same pixels on every machine.
    """
    size = spec.image_size
    width = int(rng.integers(spec.min_object_size, spec.max_object_size + 1))
    aspect_percent = int(rng.integers(80, 126))
    height = min(max((width * aspect_percent + 50) // 100, spec.min_object_size), spec.max_object_size)
    x = int(rng.integers(-(width // 5), size - width + width // 5 + 1))
    y = int(rng.integers(-(height // 5), size - height + height // 5 + 1))
    rows, cols = np.ogrid[0:size, 0:size]
    # doubled pixel centres relative to the doubled box corner
    u, v = 2 * (cols - x) + 1, 2 * (rows - y) + 1
    name = SHAPE_CLASSES[category]
    if name == "circle":  # ellipse inscribed in the box: (u - w)^2 h^2 + (v - h)^2 w^2 <= w^2 h^2
        return (u - width) ** 2 * height**2 + (v - height) ** 2 * width**2 <= width**2 * height**2
    if name == "square":
        return _band(u, width) & _band(v, height)
    if name == "triangle":  # apex at the top middle, base along the bottom: |u - w| <= w v / (2 h)
        return (np.abs(u - width) * 2 * height <= width * v) & (v < 2 * height)
    # cross: a vertical and a horizontal bar, a third as thick as the shape
    bar_w, bar_h = max(3, width // 3), max(3, height // 3)
    left, top = (width - bar_w) // 2, (height - bar_h) // 2
    vertical = _band(u - 2 * left, bar_w) & _band(v, height)
    horizontal = _band(u, width) & _band(v - 2 * top, bar_h)
    return vertical | horizontal


def _band(doubled: np.ndarray, length: int) -> np.ndarray:
    """Doubled pixel centres inside [0, length)."""
    return (doubled > 0) & (doubled < 2 * length)


def _hides_half_of_any(owner: np.ndarray, mask: np.ndarray, objects: list[dict]) -> bool:
    for k, obj in enumerate(objects):
        still_visible = np.count_nonzero((owner == k) & ~mask)
        if 2 * still_visible < obj["area"]:
            return True
    return False


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """(S, S, 3) int64 texture in muted colours: noise, gradient, stripes or checkerboard."""
    first, second = _muted_colour(rng), _muted_colour(rng)
    rows, cols = np.mgrid[0:size, 0:size]
    kind = int(rng.integers(4))
    if kind == 0:
        return first + rng.integers(-40, 41, size=(size, size, 3))
    if kind == 1:
        dx, dy = _GRADIENT_DIRECTIONS[int(rng.integers(len(_GRADIENT_DIRECTIONS)))]
        position = cols * dx + rows * dy
        position = position - position.min()
        # integer rounding of first + (second - first) * position / span: exact on every machine
        span = max(int(position.max()), 1)
        return first + ((second - first) * position[..., None] * 2 + span) // (2 * span)
    if kind == 2:
        period = int(rng.integers(6, 21))
        coordinate = (cols, rows, cols + rows, cols - rows + size)[int(rng.integers(4))]
        band = (coordinate * 2 // period) % 2
    else:
        cell = int(rng.integers(6, 21))
        band = (cols // cell + rows // cell) % 2
    return np.where(band[..., None] == 1, second, first)


def _muted_colour(rng: np.random.Generator) -> np.ndarray:
    grey = int(rng.integers(60, 196))
    return np.clip(grey + rng.integers(-25, 26, size=3), 0, 255).astype(np.int64)


def _info(spec: ShapesSpec) -> dict:
    return {"description": "ddetr_plugin synthetic shapes", "generator_version": GENERATOR_VERSION,
            "spec": dataclasses.asdict(spec)}


def _generate_atomically(split_dir: Path, spec: ShapesSpec, remove_stale: bool) -> None:
    if remove_stale:  # folders of interrupted generations; nobody else generates while we hold the lock
        for stale in split_dir.parent.glob(f".{split_dir.name}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
    logger.info("generating the shapes dataset (%d images) into %s", spec.num_images, split_dir)
    start = time.perf_counter()
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{split_dir.name}.tmp-", dir=split_dir.parent))
    tmp_dir.chmod(0o755)  # mkdtemp's 0o700 would hide a shared DDETR_DATASETS from other users
    try:
        generate_shapes(tmp_dir, spec)
        try:
            os.rename(tmp_dir, split_dir)
        except OSError:
            if not split_dir.is_dir():
                raise
            # Another process (without a working lock) renamed its identical copy first.
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    logger.info("generated %s in %.1f s", split_dir, time.perf_counter() - start)


@contextlib.contextmanager
def _exclusive_lock(lock_file: Path) -> Iterator[bool]:
    """Holds an exclusive lock on ``lock_file``; yields whether locking is available."""
    if fcntl is None:
        yield False
        return
    with open(lock_file, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
