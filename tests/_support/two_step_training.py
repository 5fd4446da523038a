"""Two optimizer steps on a model that check where gradients go and what stays frozen."""
import torch
from torch import nn

from .detection_batches import training_batch


def train_two_steps(model: nn.Module) -> dict:
    """Two AdamW steps; returns the first step's losses after checking gradients and frozen parameters."""
    model.train()
    frozen = {name: p.detach().clone() for name, p in model.named_parameters() if not p.requires_grad}
    buffers = {name: b.detach().clone() for name, b in model.named_buffers()}
    trainable = {name: p for name, p in model.named_parameters() if p.requires_grad}
    initial = {name: p.detach().clone() for name, p in trainable.items()}
    optimizer = torch.optim.AdamW(trainable.values(), lr=1e-3)
    for step in range(2):
        optimizer.zero_grad(set_to_none=True)
        losses = model(training_batch())
        total = sum(losses.values())
        assert torch.isfinite(total)
        total.backward()
        for name, parameter in trainable.items():
            assert parameter.grad is not None, f"no gradient reaches {name}"
            assert torch.isfinite(parameter.grad).all(), name
            assert step == 0 or parameter.grad.abs().sum() > 0, f"zero gradient on {name}"
        optimizer.step()
        if step == 0:
            first_losses = losses
    for name, parameter in model.named_parameters():
        if name in frozen:
            assert parameter.grad is None and torch.equal(parameter, frozen[name]), f"frozen {name} changed"
        else:
            assert not torch.equal(parameter, initial[name]), f"{name} did not move"
    for name, buffer in model.named_buffers():
        assert torch.equal(buffer, buffers[name]), f"buffer {name} changed (frozen batch norm)"
    return first_losses
