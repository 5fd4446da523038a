"""Fake (shape-only) implementations and the autograd formula of the multi-scale deformable
attention operators, shared by the native pair (``ddetr::ms_deform_attn_forward/backward``,
which also take ``im2col_step``) and the Triton pair (``ddetr::ms_deform_attn_triton_*``).

The forward operators take (value (N, S, M, D), spatial_shapes (L, 2), level_start_index (L,),
sampling_locations (N, Lq, M, L, P, 2), attention_weights (N, Lq, M, L, P), *hints) and return
(N, Lq, M * D); the backward ones take the same five, grad_output (N, Lq, M * D) and the hints,
and return the three gradients shaped as their inputs.
"""
import torch


def forward_fake(value, spatial_shapes, level_start_index, sampling_locations, attention_weights, *hints):
    batch, _, heads, channels = value.shape
    return value.new_empty((batch, sampling_locations.shape[1], heads * channels))


def backward_fake(value, spatial_shapes, level_start_index, sampling_locations, attention_weights, grad_output,
                  *hints):
    return (
        value.new_empty(value.shape),
        sampling_locations.new_empty(sampling_locations.shape),
        attention_weights.new_empty(attention_weights.shape),
    )


def register_fakes_and_autograd(forward: str, backward: str) -> None:
    """Register both operators' fake implementations and ``forward``'s autograd formula, which
    calls ``backward`` (names "ddetr::..."). Arguments after the five tensors are hints passed
    through unchanged and get no gradient."""
    torch.library.register_fake(forward)(forward_fake)
    torch.library.register_fake(backward)(backward_fake)
    backward_op = getattr(torch.ops.ddetr, backward.removeprefix("ddetr::"))

    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs[:5])
        ctx.hints = inputs[5:]

    def backward_formula(ctx, grad_output):
        grad_value, grad_locations, grad_weights = backward_op(*ctx.saved_tensors, grad_output.contiguous(),
                                                               *ctx.hints)
        return (grad_value, None, None, grad_locations, grad_weights) + (None,) * len(ctx.hints)

    torch.library.register_autograd(forward, backward_formula, setup_context=setup_context)
