"""Multi-scale deformable attention: the public entry point and the custom op glue.

The native kernels are ``torch.library`` operators defined in C++
(``ddetr::ms_deform_attn_forward`` / ``ddetr::ms_deform_attn_backward``). This
module registers their autograd formula and fake (shape-only) implementations
(``registration.py``) so that autograd, ``torch.compile(fullgraph=True)`` and
``torch.export`` go through them, and chooses between the native op, the Triton
kernels (``ops/triton/``, their own operators) and the PyTorch reference.
"""
import torch

from .auto_backend import auto_candidates
from .native import _C, native_unsupported_reason
from .reference import ms_deform_attn_pytorch
from .registration import register_fakes_and_autograd
from .triton import triton_unsupported_reason
from .validation import check_ms_deform_attn_inputs

BACKENDS = ("auto", "native", "triton", "pytorch")
KERNEL_BACKENDS = {"native": native_unsupported_reason, "triton": triton_unsupported_reason}


def resolve_backend(backend: str, device_type: str, dtype: torch.dtype) -> str:
    """The backend ("native", "triton" or "pytorch") that runs inputs of this device type and dtype.

    A kernel backend asked for by name must be able to run (RuntimeError with the reason if not);
    "auto" takes the first of ``auto_backend.auto_candidates`` that can, else the reference.
    """
    if backend not in BACKENDS:
        raise ValueError(f"ms_deform_attn: backend must be one of {BACKENDS}, got {backend!r}")
    if backend in KERNEL_BACKENDS:
        reason = KERNEL_BACKENDS[backend](device_type, dtype)
        if reason is not None:
            raise RuntimeError(f"ms_deform_attn: backend={backend!r} requested but {reason}")
        return backend
    if backend == "auto":
        for candidate in auto_candidates(device_type, dtype):
            if KERNEL_BACKENDS[candidate](device_type, dtype) is None:
                return candidate
    return "pytorch"


def multi_scale_deformable_attention(
    value: torch.Tensor,
    spatial_shapes: torch.Tensor,
    level_start_index: torch.Tensor,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
    im2col_step: int = 64,
    backend: str = "auto",
) -> torch.Tensor:
    """Multi-scale deformable attention (Zhu et al.).

    Args:
        value: (N, S, M, D), S = sum over levels of H_l * W_l.
        spatial_shapes: (L, 2) int64 rows (H_l, W_l).
        level_start_index: (L,) int64, first position of each level in S.
        sampling_locations: (N, Lq, M, L, P, 2) normalized (x, y); pixel x = x * W_l - 0.5
            and locations outside [0, 1] read zeros, as grid_sample(align_corners=False).
        attention_weights: (N, Lq, M, L, P).
        im2col_step: accepted for compatibility with the official op; a hint, never a constraint.
        backend: "auto" (on CUDA the Triton kernels, else the native ones, see auto_backend.py;
            on the CPU the native kernel; the reference where none can run), "native" or
            "triton" (error if unavailable; Triton takes CPU tensors only under
            TRITON_INTERPRET=1) or "pytorch" (the reference).

    Returns:
        (N, Lq, M * D).
    """
    check_ms_deform_attn_inputs(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
    chosen = resolve_backend(backend, value.device.type, value.dtype)
    if chosen == "pytorch":
        return ms_deform_attn_pytorch(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
    inputs = (value, spatial_shapes.long(), level_start_index.long(), sampling_locations, attention_weights)
    if chosen == "triton":
        return torch.ops.ddetr.ms_deform_attn_triton_forward(*inputs)
    return torch.ops.ddetr.ms_deform_attn_forward(*inputs, int(im2col_step))


if _C is not None:
    register_fakes_and_autograd("ddetr::ms_deform_attn_forward", "ddetr::ms_deform_attn_backward")
