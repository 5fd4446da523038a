"""The Triton operators under deterministic mode, opcheck and torch.compile."""
import pytest
import torch

from ddetr_plugin.ops import multi_scale_deformable_attention

from tests._support.op_compare import run
from tests._support.op_inputs import make_inputs


@pytest.fixture
def restore_deterministic_mode():
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    yield
    torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


def test_deterministic_mode_refuses_the_backward_and_warn_only_runs_it(device, restore_deterministic_mode):
    args = make_inputs(device=device)
    expected = run(args, "triton")
    torch.use_deterministic_algorithms(True)
    output = multi_scale_deformable_attention(*args, backend="triton")  # the forward pass has no atomics
    torch.testing.assert_close(output, expected[0], atol=0, rtol=0)
    with pytest.raises(RuntimeError, match="not bitwise deterministic.*warn_only=True"):
        output.sum().backward()
    torch.use_deterministic_algorithms(True, warn_only=True)
    with pytest.warns(UserWarning, match="not bitwise deterministic"):
        _, grads = run(args, "triton")
    for actual, wanted in zip(grads, expected[1]):
        torch.testing.assert_close(actual, wanted, atol=1e-12, rtol=0)


def test_opcheck(device):
    value, shapes, starts, locations, weights = make_inputs(dtype=torch.float32, device=device, requires_grad=False)
    grad_output = torch.randn(value.shape[0], locations.shape[1], value.shape[2] * value.shape[3], device=device)
    # AOTAutograd traces into a triton_op's kernels, which needs compiled ones: on a GPU only.
    checks = {"test_utils": ("test_schema", "test_autograd_registration", "test_faketensor")} if device == "cpu" else {}
    torch.library.opcheck(torch.ops.ddetr.ms_deform_attn_triton_forward.default,
                          (value, shapes, starts, locations, weights), **checks)
    torch.library.opcheck(torch.ops.ddetr.ms_deform_attn_triton_backward.default,
                          (value, shapes, starts, locations, weights, grad_output), **checks)


class Attention(torch.nn.Module):
    """A layer's use of the op: locations and weights come from unconstrained tensors."""

    def forward(self, value, shapes, starts, locations, weights):
        return multi_scale_deformable_attention(value, shapes, starts, locations.sigmoid(), weights.softmax(-1),
                                                backend="triton")


def test_compile_fullgraph_matches_eager_with_gradients(device):
    # dynamo traces the dispatch and the operator call on every device; "aot_eager" and
    # "inductor" also trace into the kernels (wrap_triton), which needs compiled ones.
    backends = ["eager"] if device == "cpu" else ["eager", "aot_eager", "inductor"]
    value, shapes, starts, locations, weights = make_inputs(dtype=torch.float32, device=device)
    module = Attention()
    eager = module(value, shapes, starts, locations, weights)
    eager_grads = torch.autograd.grad(eager.sum(), (value, locations, weights))
    for backend in backends:
        torch._dynamo.reset()
        compiled = torch.compile(module, fullgraph=True, backend=backend)
        out = compiled(value, shapes, starts, locations, weights)
        grads = torch.autograd.grad(out.sum(), (value, locations, weights))
        torch.testing.assert_close(out, eager, msg=lambda m, backend=backend: f"{backend}: {m}")
        for actual, expected in zip(grads, eager_grads):
            torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-5,
                                       msg=lambda m, backend=backend: f"{backend}: {m}")
