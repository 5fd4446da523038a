"""The Triton kernels as ``torch.library`` operators, with their autograd formula.

``torch.library.triton_op`` makes the implementation visible to ``torch.compile``: AOTAutograd
traces through it to the kernels, launched via ``wrap_triton``. The fake (shape-only)
implementations and the autograd formula are the native operators' (``registration.py``), so
shape propagation never launches a kernel, also under the interpreter.

- ``ddetr::ms_deform_attn_triton_forward(value (N, S, M, D), spatial_shapes (L, 2) int64,
  level_start_index (L,) int64, sampling_locations (N, Lq, M, L, P, 2),
  attention_weights (N, Lq, M, L, P)) -> (N, Lq, M * D)``
- ``ddetr::ms_deform_attn_triton_backward(the same five, grad_output (N, Lq, M * D))
  -> (grad_value, grad_sampling_locations, grad_attention_weights)``, shaped as their inputs.

The backward pass is not bitwise deterministic (grad_value is summed with atomic adds); under
``torch.use_deterministic_algorithms(True)`` it raises, and with ``warn_only=True`` it warns.
"""
import contextlib
import warnings

import torch
from torch.library import triton_op, wrap_triton
from triton.runtime.jit import JITFunction

from ..registration import register_fakes_and_autograd
from .backward import ms_deform_attn_backward_kernel
from .forward import ms_deform_attn_forward_kernel
from .launch import plan_launch

NOT_DETERMINISTIC = (
    "ms_deform_attn: the Triton backward sums the value gradient with atomic adds, which is not bitwise "
    "deterministic, and torch.use_deterministic_algorithms(True) is set. On CPU tensors backend='native' is "
    "deterministic; on CUDA every backend's backward uses atomic adds. Pass warn_only=True to "
    "torch.use_deterministic_algorithms to run it anyway."
)


def _launch(kernel, value: torch.Tensor, sampling_locations: torch.Tensor, *tensors: torch.Tensor) -> None:
    """Launch ``kernel`` on ``tensors`` (its pointer arguments, in order) for the sizes of
    ``value`` and ``sampling_locations``, with the launch plan of those sizes.

    Under a compiled kernel the launch goes through ``wrap_triton`` (so that torch.compile can
    trace it); the interpreter's kernels are called directly: older torch releases'
    ``wrap_triton`` accept only compiled kernels, and there is nothing to trace there. Triton
    launches on the current CUDA device, not on its arguments', so value's device is made current.
    """
    sizes = _sizes(value, sampling_locations)
    plan = plan_launch(sizes["rows"], sizes["channels"], on_gpu=value.is_cuda)
    launcher = wrap_triton(kernel) if isinstance(kernel, JITFunction) else kernel
    with torch.cuda.device(value.device) if value.is_cuda else contextlib.nullcontext():
        launcher[plan.grid](*tensors, **sizes, BLOCK_ROWS=plan.block_rows, BLOCK_CHANNELS=plan.block_channels,
                            FP64=value.dtype == torch.float64, num_warps=plan.num_warps)


def _sizes(value: torch.Tensor, sampling_locations: torch.Tensor) -> dict:
    """The kernels' size arguments."""
    batch, positions, heads, channels = value.shape
    queries, levels, points = sampling_locations.shape[1], sampling_locations.shape[3], sampling_locations.shape[4]
    return {"rows": batch * queries * heads, "queries_heads": queries * heads, "positions": positions,
            "heads": heads, "channels": channels, "levels": levels, "points": points}


def _check_deterministic_mode() -> None:
    if not torch.are_deterministic_algorithms_enabled():
        return
    if torch.is_deterministic_algorithms_warn_only_enabled():
        warnings.warn(NOT_DETERMINISTIC, UserWarning, stacklevel=3)
    else:
        raise RuntimeError(NOT_DETERMINISTIC)


# The schemas are inferred from the annotations (torch 2.6 and 2.7 ignore triton_op's schema argument).
@triton_op("ddetr::ms_deform_attn_triton_forward", mutates_args=())
def ms_deform_attn_triton_forward(
    value: torch.Tensor,
    spatial_shapes: torch.Tensor,
    level_start_index: torch.Tensor,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    output = value.new_empty((value.shape[0], sampling_locations.shape[1], value.shape[2] * value.shape[3]))
    if output.numel() > 0:
        _launch(ms_deform_attn_forward_kernel, value, sampling_locations,
                value.contiguous(), spatial_shapes.contiguous(), level_start_index.contiguous(),
                sampling_locations.contiguous(), attention_weights.contiguous(), output)
    return output


@triton_op("ddetr::ms_deform_attn_triton_backward", mutates_args=())
def ms_deform_attn_triton_backward(
    value: torch.Tensor,
    spatial_shapes: torch.Tensor,
    level_start_index: torch.Tensor,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
    grad_output: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    _check_deterministic_mode()
    # Atomic adds of float16/bfloat16 would round at every addition: accumulate in float32.
    grad_value = value.new_zeros(value.shape, dtype=torch.float64 if value.dtype == torch.float64 else torch.float32)
    grad_locations = sampling_locations.new_empty(sampling_locations.shape)
    grad_weights = attention_weights.new_empty(attention_weights.shape)
    if grad_weights.numel() > 0:  # every location and weight gradient is written, also when D == 0
        _launch(ms_deform_attn_backward_kernel, value, sampling_locations,
                value.contiguous(), spatial_shapes.contiguous(), level_start_index.contiguous(),
                sampling_locations.contiguous(), attention_weights.contiguous(), grad_output.contiguous(),
                grad_value, grad_locations, grad_weights)
    return grad_value.to(value.dtype), grad_locations, grad_weights


register_fakes_and_autograd("ddetr::ms_deform_attn_triton_forward", "ddetr::ms_deform_attn_triton_backward")
