"""The native op as a torch.library custom op: opcheck, torch.compile, torch.export."""
import pytest
import torch

from ddetr_plugin.ops import multi_scale_deformable_attention, native_available

from tests._support.op_inputs import DEVICES, make_inputs

pytestmark = pytest.mark.skipif(not native_available("cpu"), reason="the native op is not built")


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck_forward(device):
    value, shapes, starts, locations, weights = make_inputs(dtype=torch.float32, device=device)
    torch.library.opcheck(torch.ops.ddetr.ms_deform_attn_forward.default,
                          (value, shapes, starts, locations, weights, 64))


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck_backward(device):
    value, shapes, starts, locations, weights = make_inputs(dtype=torch.float32, device=device, requires_grad=False)
    grad_output = torch.randn(value.shape[0], locations.shape[1], value.shape[2] * value.shape[3], device=device)
    torch.library.opcheck(torch.ops.ddetr.ms_deform_attn_backward.default,
                          (value, shapes, starts, locations, weights, grad_output, 64))


class Attention(torch.nn.Module):
    """A tiny module whose forward calls the op, as a model layer would."""

    def forward(self, value, shapes, starts, locations, weights):
        return multi_scale_deformable_attention(value, shapes, starts, locations.sigmoid(), weights.softmax(-1))


def test_compile_fullgraph_matches_eager_with_gradients():
    value, shapes, starts, locations, weights = make_inputs(dtype=torch.float32)
    module = Attention()
    eager = module(value, shapes, starts, locations, weights)
    eager_grads = torch.autograd.grad(eager.sum(), (value, locations, weights))
    torch._dynamo.reset()
    compiled = torch.compile(module, fullgraph=True, backend="aot_eager")
    out = compiled(value, shapes, starts, locations, weights)
    grads = torch.autograd.grad(out.sum(), (value, locations, weights))
    torch.testing.assert_close(out, eager)
    for a, b in zip(grads, eager_grads):
        torch.testing.assert_close(a, b)


def test_export_matches_eager():
    value, shapes, starts, locations, weights = make_inputs(dtype=torch.float32, requires_grad=False)
    module = Attention()
    exported = torch.export.export(module, (value, shapes, starts, locations, weights))
    targets = {str(node.target) for node in exported.graph.nodes if node.op == "call_function"}
    assert "ddetr.ms_deform_attn_forward.default" in targets
    torch.testing.assert_close(exported.module()(value, shapes, starts, locations, weights),
                               module(value, shapes, starts, locations, weights))
