"""Baseline CUDA kernels of multi-scale deformable attention, for tools/benchmark_op.py and its tests.

``msda_baseline.cu`` follows the parallel design of the official Deformable DETR op (one thread
per output channel, shared-memory reduction of the location and weight gradients): the GPU
baseline our kernels in csrc/cuda/ and ddetr_plugin/ops/triton/ are timed against. It is not
part of the package build: ``load_baseline()`` compiles it just in time with
``torch.utils.cpp_extension.load`` into torch's extensions cache (``TORCH_EXTENSIONS_DIR``,
default ``~/.cache/torch_extensions``), for the visible GPUs' architectures unless
``TORCH_CUDA_ARCH_LIST`` names others. The CUDA toolkit is found as setup.py finds it. The first
call compiles; later ones reuse the cached build.
"""
import functools
import importlib.util
import os
from pathlib import Path
from typing import Callable, NamedTuple

import torch

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]  # benchmarks/msda_baseline/ -> the checkout
EXTENSION_NAME = "ddetr_msda_baseline"


class Baseline(NamedTuple):
    """The compiled entry points; shapes as ``ddetr_plugin.ops.multi_scale_deformable_attention``.

    forward(value (N, S, M, D), spatial_shapes (L, 2) int64, level_start_index (L,) int64,
    sampling_locations (N, Lq, M, L, P, 2), attention_weights (N, Lq, M, L, P)) -> (N, Lq, M * D).
    backward(the same five, grad_output (N, Lq, M * D)) -> (grad_value, grad_sampling_locations,
    grad_attention_weights), shaped as their inputs.
    """

    forward: Callable[..., torch.Tensor]
    backward: Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


def _find_cuda_home() -> str | None:
    """setup.py's ``find_cuda_home`` (``nvcc`` may be a wrapper around the real toolkit)."""
    spec = importlib.util.spec_from_file_location("_ddetr_setup", REPO_ROOT / "setup.py")
    setup_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(setup_module)  # defines functions only: setup() runs under __main__
    return setup_module.find_cuda_home()


@functools.cache
def load_baseline(verbose: bool = False) -> Baseline:
    """Compile (once per source and flag change) and load the baseline kernels."""
    cuda_home = _find_cuda_home()
    if cuda_home is None:
        raise RuntimeError("msda_baseline: no CUDA toolkit found; set CUDA_HOME to one with include/cuda_runtime.h")
    # torch.utils.cpp_extension reads CUDA_HOME once, when first imported.
    os.environ["CUDA_HOME"] = cuda_home
    from torch.utils import cpp_extension

    if cpp_extension.CUDA_HOME is None or Path(cpp_extension.CUDA_HOME).resolve() != Path(cuda_home):
        raise RuntimeError(
            f"msda_baseline: torch.utils.cpp_extension was imported before CUDA_HOME was set and uses "
            f"{cpp_extension.CUDA_HOME}; set CUDA_HOME={cuda_home} in the environment"
        )
    module = cpp_extension.load(
        name=EXTENSION_NAME,
        sources=[str(HERE / "binding.cpp"), str(HERE / "msda_baseline.cu")],
        extra_cflags=["-O3"],
        extra_cuda_cflags=["-O3", "--use_fast_math"],  # as setup.py compiles csrc/cuda/
        verbose=verbose,
    )
    return Baseline(module.forward, module.backward)


class _BaselineFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, value, spatial_shapes, level_start_index, sampling_locations, attention_weights):
        ctx.save_for_backward(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
        return load_baseline().forward(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)

    @staticmethod
    def backward(ctx, grad_output):
        grad_value, grad_locations, grad_weights = load_baseline().backward(*ctx.saved_tensors, grad_output)
        return grad_value, None, None, grad_locations, grad_weights


def baseline_ms_deform_attn(
    value: torch.Tensor,
    spatial_shapes: torch.Tensor,
    level_start_index: torch.Tensor,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """Multi-scale deformable attention on the baseline kernels, differentiable; CUDA tensors only.

    Args:
        value: (N, S, M, D).
        spatial_shapes: (L, 2) int64 rows (H_l, W_l).
        level_start_index: (L,) int64.
        sampling_locations: (N, Lq, M, L, P, 2) normalized (x, y).
        attention_weights: (N, Lq, M, L, P).

    Returns:
        (N, Lq, M * D).
    """
    return _BaselineFunction.apply(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
