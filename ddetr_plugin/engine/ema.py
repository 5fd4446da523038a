"""Exponential moving average of a model's weights, for evaluation.

After every optimizer step ``ema = decay * ema + (1 - decay) * weight`` for each
floating-point parameter and buffer; integer buffers are copied. Evaluation
swaps the averaged weights in with :meth:`ModelEMA.applied` and restores the
trained ones afterwards, so no second model lives in memory.
"""
from contextlib import contextmanager
from typing import Dict, Iterator

import torch
from torch import nn


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


class ModelEMA:
    """The moving average of ``model``'s state (started from its current weights).

    Args:
        model: the model being trained (a DDP wrapper is unwrapped).
        decay: weight of the old average at each update, in [0, 1).
    """

    def __init__(self, model: nn.Module, decay: float = 0.9998):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"SOLVER.EMA.DECAY must be in [0, 1), got {decay}")
        self.decay = decay
        self.model = _unwrap(model)
        self.shadow: Dict[str, torch.Tensor] = {
            name: value.detach().clone() for name, value in self.model.state_dict().items()
        }

    @torch.no_grad()
    def update(self) -> None:
        """Move the average towards the model's current weights."""
        for name, value in self.model.state_dict().items():
            average = self.shadow[name]
            if average.is_floating_point():
                average.lerp_(value.detach().to(average.dtype), 1.0 - self.decay)
            else:
                average.copy_(value)

    def state_dict(self) -> Dict[str, torch.Tensor]:
        return dict(self.shadow)

    def load_state_dict(self, state: Dict[str, torch.Tensor]) -> None:
        missing = sorted(set(self.shadow) - set(state))
        unexpected = sorted(set(state) - set(self.shadow))
        if missing or unexpected:
            raise KeyError(f"EMA state does not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}")
        for name, value in state.items():
            self.shadow[name].copy_(value)

    @contextmanager
    def applied(self) -> Iterator[nn.Module]:
        """The model with the averaged weights inside the block, its trained weights restored after it."""
        trained = {name: value.detach().clone() for name, value in self.model.state_dict().items()}
        self.model.load_state_dict(self.shadow)
        try:
            yield self.model
        finally:
            self.model.load_state_dict(trained)
