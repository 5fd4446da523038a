"""Our one-pass FrozenBatchNorm2d equals torchvision's, with the same state dict, and passes gradients."""
import torch
import torchvision

from ddetr_plugin.modeling.backbone.frozen_batchnorm import FrozenBatchNorm2d


def _filled(module: torch.nn.Module) -> torch.nn.Module:
    generator = torch.Generator().manual_seed(0)
    for name, buffer in module.named_buffers():
        buffer.copy_(torch.rand(buffer.shape, generator=generator) + (0.5 if name == "running_var" else -0.5))
    return module


def test_equals_torchvision_and_keeps_its_state_dict():
    ours, theirs = _filled(FrozenBatchNorm2d(16)), _filled(torchvision.ops.FrozenBatchNorm2d(16))
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    x = torch.randn(2, 16, 7, 9, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(ours(x), theirs(x), rtol=1e-6, atol=1e-6)
    assert not list(ours.parameters())


def test_gradient_is_the_per_channel_scale():
    bn = _filled(FrozenBatchNorm2d(4))
    x = torch.randn(1, 4, 3, 3, requires_grad=True)
    bn(x).sum().backward()
    scale = bn.weight * (bn.running_var + bn.eps).rsqrt()
    torch.testing.assert_close(x.grad, scale.view(1, 4, 1, 1).expand(1, 4, 3, 3))
