"""ONNX export of the detector, and running it with onnxruntime.

The graph comes from ``export_program`` (torch.export with free batch, height and width);
torch's ONNX exporter translates every aten op, and ``msda_to_onnx`` translates our custom
op into standard ONNX operators: the PyTorch reference path of the op
(``ops/reference.py``), written in ONNX. Per level it slices the level's values out of the
flattened sequence, samples them with ``GridSample`` (bilinear, zero padding,
align_corners 0, exactly the op's semantics) and sums them with the attention weights. The
level sizes are read from the ``spatial_shapes`` tensor at run time, so the model takes any
image size, and any ONNX runtime with opset 16+ operators runs it (no custom-op library).

Needs the packages ``onnx`` and ``onnxscript`` (torch's exporter), and ``onnxruntime`` to run.
"""
import os
from typing import Mapping, Optional, Sequence

import numpy as np
import torch

from ..modeling.meta_arch import DeformableDETR
from ..modeling.postprocessor import DetectionPostProcessor
from .graph import DetectorGraph
from .program import export_program


def _require(package: str):
    try:
        return __import__(package)
    except ImportError:
        raise ImportError(f"ONNX export needs the package {package!r}: pip install onnx onnxscript onnxruntime "
                          f"(or the test extra: pip install -r requirements-test.txt)") from None


def msda_to_onnx(value, spatial_shapes, level_start_index, sampling_locations, attention_weights, im2col_step=64):
    """ONNX graph of ``ddetr::ms_deform_attn_forward`` (onnxscript, traced by torch's exporter).

    Args: as the op: value (N, S, M, D); spatial_shapes (L, 2) int64; level_start_index (L,) int64;
    sampling_locations (N, Lq, M, L, P, 2); attention_weights (N, Lq, M, L, P). L, M, P and D are
    fixed by the model; N, S and Lq may vary. Returns (N, Lq, M * D).
    """
    from onnxscript import opset18 as op  # torch's exporter builds opset 18 graphs and converts them

    levels = sampling_locations.shape[3]
    batch = op.Shape(value, start=0, end=1)
    heads = op.Shape(value, start=2, end=3)
    channels = op.Shape(value, start=3, end=4)
    queries = op.Shape(sampling_locations, start=1, end=2)
    points = op.Shape(sampling_locations, start=4, end=5)
    any_size = op.Constant(value_ints=[-1])
    # GridSample wants [-1, 1] coordinates
    grids = op.Sub(op.Mul(sampling_locations, op.CastLike(2.0, sampling_locations)),
                   op.CastLike(1.0, sampling_locations))
    output = None
    for level in range(levels):
        index = op.Constant(value_int=level)
        shape = op.Gather(spatial_shapes, index, axis=0)  # (2,) = (H_l, W_l)
        height, width = op.Slice(shape, [0], [1]), op.Slice(shape, [1], [2])
        start = op.Reshape(op.Gather(level_start_index, index, axis=0), [1])
        # (N, H_l*W_l, M, D) -> (N*M, D, H_l, W_l)
        level_value = op.Slice(value, start, op.Add(start, op.Mul(height, width)), [1])
        level_value = op.Reshape(op.Transpose(level_value, perm=[0, 2, 3, 1]),
                                 op.Concat(any_size, channels, height, width, axis=0))
        # (N, Lq, M, P, 2) -> (N*M, Lq, P, 2)
        level_grid = op.Transpose(op.Gather(grids, index, axis=3), perm=[0, 2, 1, 3, 4])
        level_grid = op.Reshape(level_grid, op.Concat(any_size, queries, points, op.Constant(value_ints=[2]), axis=0))
        sampled = op.GridSample(level_value, level_grid, align_corners=0, mode="bilinear", padding_mode="zeros")
        # (N, Lq, M, P) -> (N*M, 1, Lq, P), times the samples (N*M, D, Lq, P), summed over the points
        weights = op.Transpose(op.Gather(attention_weights, index, axis=3), perm=[0, 2, 1, 3])
        weights = op.Reshape(weights, op.Concat(any_size, op.Constant(value_ints=[1]), queries, points, axis=0))
        weighted = op.ReduceSum(op.Mul(sampled, weights), op.Constant(value_ints=[-1]), keepdims=0)
        output = weighted if output is None else op.Add(output, weighted)
    # (N*M, D, Lq) -> (N, Lq, M*D)
    output = op.Reshape(output, op.Concat(batch, op.Mul(heads, channels), queries, axis=0))
    return op.Transpose(output, perm=[0, 2, 1])


def export_onnx(
    model: DeformableDETR,
    path: str,
    *,
    opset: Optional[int] = None,
    postprocessor: Optional[DetectionPostProcessor] = None,
    height: int = 256,
    width: int = 320,
    metadata: Optional[Mapping[str, str]] = None,
) -> str:
    """Write ``model`` as an ONNX file with dynamic batch, height and width; returns ``path``.

    Args:
        model: the detector in eval mode on the CPU.
        path: the .onnx file (weights inside it).
        opset: the ai.onnx opset (default: the exporter's, 18); GridSample needs 16 or later.
        postprocessor: include its batched top-k (inputs then add ``target_sizes``).
        height, width: the size of the example inputs that are traced.
        metadata: strings stored in the model's metadata_props (e.g. the pixel normalisation).

    Raises:
        ValueError: opset below 16, or a model that cannot be exported.
        onnx.checker.ValidationError: the written model is not valid ONNX (a bug).
    """
    onnx = _require("onnx")
    _require("onnxscript")
    if opset is not None and opset < 16:
        raise ValueError(f"--opset {opset}: the deformable attention needs GridSample, opset 16 or later")
    program = export_program(model, height=height, width=width, postprocessor=postprocessor)
    graph = DetectorGraph(model, postprocessor)
    onnx_program = torch.onnx.export(
        program,
        dynamo=True,
        opset_version=opset,
        input_names=list(graph.input_names),
        output_names=list(graph.output_names),
        custom_translation_table={torch.ops.ddetr.ms_deform_attn_forward.default: msda_to_onnx},
        verbose=False,
    )
    for key, value in (metadata or {}).items():
        onnx_program.model.metadata_props[key] = str(value)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    onnx_program.save(path, external_data=False)
    onnx.checker.check_model(path, full_check=True)
    return path


def onnxruntime_session(path: str, threads: int):
    """An onnxruntime CPU session of ``path`` using ``threads`` intra-op threads."""
    ort = _require("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def run_onnx(session, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """The session's outputs for ``inputs`` (in the graph's input order) as CPU tensors."""
    names = [entry.name for entry in session.get_inputs()]
    if len(names) != len(inputs):
        raise ValueError(f"the ONNX model takes {len(names)} inputs {names}, got {len(inputs)}")
    feed = {name: np.ascontiguousarray(tensor.detach().cpu().numpy()) for name, tensor in zip(names, inputs)}
    return [torch.from_numpy(output) for output in session.run(None, feed)]
