"""Checking an exported ONNX model against the PyTorch model: outputs at other sizes, and speed."""
import statistics
import time
from typing import Callable

import torch

from .graph import DetectorGraph
from .onnx import run_onnx

# ONNX vs PyTorch outputs (float32): logits, scores, normalized boxes; pixel boxes relative to the image side
TOLERANCE = 1e-4


def parity_sizes(height: int, width: int, smallest: int) -> list[tuple[int, int]]:
    """Two (height, width) sizes, neither the export size, with odd sides (not multiples of any stride)."""
    sizes = []
    for scale_h, scale_w in ((0.75, 1.25), (1.25, 0.75)):
        size = (max(smallest, round(height * scale_h)) | 1, max(smallest, round(width * scale_w)) | 1)
        sizes.append(size if size != (height, width) else (size[0] + 2, size[1]))
    return sizes


def padded_inputs(graph: DetectorGraph, height: int, width: int) -> tuple[torch.Tensor, ...]:
    """A batch of 2 at (height, width): image 0 fills it, image 1 is padded to it from 3/4 of each side."""
    inputs = list(graph.example_inputs(2, height, width))
    valid_h, valid_w = max(height * 3 // 4, 1), max(width * 3 // 4, 1)
    inputs[0][1, :, valid_h:] = 0
    inputs[0][1, :, :, valid_w:] = 0
    inputs[1][1, valid_h:] = True
    inputs[1][1, :, valid_w:] = True
    if len(inputs) == 3:
        inputs[2][1] = torch.tensor([valid_h, valid_w], dtype=inputs[2].dtype)
    return tuple(inputs)


def max_differences(graph: DetectorGraph, session, inputs: tuple[torch.Tensor, ...]) -> dict[str, float]:
    """Largest |ONNX - PyTorch| per output name (pixel boxes divided by the image side; labels: mismatches)."""
    with torch.no_grad():
        expected = graph(*inputs)
    side = float(max(inputs[0].shape[-2:]))
    differences = {}
    for name, ours, theirs in zip(graph.output_names, expected, run_onnx(session, inputs)):
        if ours.shape != theirs.shape:
            raise AssertionError(f"ONNX output {name} has shape {tuple(theirs.shape)}, PyTorch {tuple(ours.shape)}")
        if not ours.is_floating_point():
            differences[name] = float((ours != theirs).sum())
            continue
        difference = (ours.double() - theirs.double()).abs().max()
        differences[name] = float(difference / side if name == "boxes" else difference)
    return differences


def median_seconds(fn: Callable[[], object], runs: int) -> float:
    """Median wall time of ``runs`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
