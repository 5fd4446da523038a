"""``F.linear`` on oneDNN's matrix multiply for float32 on the CPU.

On the CPU torch's ``F.linear`` calls MKL's sgemm (after copying the bias into the output). oneDNN's
inner-product primitive, which torch ships and exposes as ``mkldnn::_linear_pointwise``, adds the bias
inside the multiply and is faster for the transformer's shapes (thousands of rows, 128 to 1024 columns).
The op has no autograd formula, so training goes through a small autograd function: the input gradient
is another oneDNN product (with the transposed weight), the weight and bias gradients are MKL's ``mm``
and a sum, as in ``F.linear``'s backward.

Elsewhere (CUDA, other dtypes, fewer than 1024 rows, CPU autocast, tracing, scripting,
``torch.compile``, a torch built without oneDNN) this is ``F.linear``. Results equal
``F.linear``'s to float32 rounding: the two libraries sum the products in different orders.
"""
from typing import Optional

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

_ONEDNN = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
# below this many rows the autograd function's Python overhead outweighs the faster product
_MIN_ROWS = 1024


def _onednn_linear(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
    """(M, K) x (O, K) weight (+ (O,) bias) -> (M, O); contiguous float32 CPU tensors."""
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


class _OneDNNLinear(torch.autograd.Function):
    """(..., K) x (O, K) weight (+ (O,) bias) -> (..., O). The output is reshaped with
    ``_unsafe_view``, as aten's matmul does, so autograd does not see a view: an in-place op on it
    (the encoder's residual ``add_``) is then allowed and costs no copy of the gradient."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
        rows = x.reshape(-1, x.shape[-1]).contiguous()
        ctx.save_for_backward(rows, weight)
        ctx.has_bias = bias is not None
        ctx.input_shape = x.shape
        out = _onednn_linear(rows, weight, bias)
        return torch.ops.aten._unsafe_view(out, (*x.shape[:-1], weight.shape[0]))

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output: torch.Tensor):
        rows, weight = ctx.saved_tensors
        grad_output = grad_output.reshape(-1, grad_output.shape[-1]).contiguous()
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_x = _onednn_linear(grad_output, weight.t().contiguous(), None).view(ctx.input_shape)
        if ctx.needs_input_grad[1]:
            grad_weight = grad_output.t().mm(rows)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad_output.sum(0)
        return grad_x, grad_weight, grad_bias


def _use_onednn(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> bool:
    return (
        _ONEDNN
        and not torch.jit.is_scripting()
        and not torch.jit.is_tracing()
        and not torch.compiler.is_compiling()
        and not torch.is_autocast_enabled("cpu")
        and x.device.type == "cpu"
        and x.dtype == weight.dtype == torch.float32
        and (bias is None or bias.dtype == torch.float32)
        and x.dim() >= 2
        and x.numel() >= _MIN_ROWS * x.shape[-1]
    )


def linear(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``F.linear``: (..., K) x (O, K) weight (+ (O,) bias) -> (..., O)."""
    if not _use_onednn(x, weight, bias):
        return F.linear(x, weight, bias)
    weight = weight.contiguous()
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad
                                    or (bias is not None and bias.requires_grad)):
        return _OneDNNLinear.apply(x, weight, bias)
    rows = x.reshape(-1, x.shape[-1]).contiguous()
    return _onednn_linear(rows, weight, bias).view(*x.shape[:-1], weight.shape[0])
