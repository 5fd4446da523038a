"""Running one backend of the op with gradients, and comparing it with the PyTorch reference."""
import torch

from ddetr_plugin.ops import multi_scale_deformable_attention

GRADIENT_NAMES = ("value", "sampling_locations", "attention_weights")


def run(args, backend, grad_output=None):
    """Output and (value, locations, weights) gradients for one backend; grad_output defaults to
    a fixed random tensor."""
    value, shapes, starts, locations, weights = args
    output = multi_scale_deformable_attention(value, shapes, starts, locations, weights, backend=backend)
    if grad_output is None:
        grad_output = torch.randn(output.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    grads = torch.autograd.grad(output, (value, locations, weights), grad_output.to(output))
    return output, grads


def assert_matches_reference(args, backend, atol, rtol=0.0):
    """``backend``'s output and gradients equal the reference's on ``args`` within atol, rtol."""
    out, grads = run(args, backend)
    ref_out, ref_grads = run(args, "pytorch")
    torch.testing.assert_close(out, ref_out, atol=atol, rtol=rtol)
    for name, actual, expected in zip(GRADIENT_NAMES, grads, ref_grads):
        torch.testing.assert_close(actual, expected, atol=atol, rtol=rtol,
                                   msg=lambda m, name=name: f"grad of {name}: {m}")
