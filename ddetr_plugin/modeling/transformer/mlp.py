"""Small feed-forward pieces shared by the transformer layers and the heads."""
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn


def _relu(x: torch.Tensor) -> torch.Tensor:
    """ReLU of a linear layer's fresh output: in place when no graph is recorded. With a graph, in
    place would write through the 3-D view of the 2-D matmul result, and autograd then copies the
    whole gradient in backward (CopySlices): slower than the out-of-place result."""
    return x.relu() if x.requires_grad else x.relu_()


ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": _relu,
    "gelu": F.gelu,
}


def get_activation(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The feed-forward activation called ``name`` (MODEL.TRANSFORMER.ACTIVATION)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"MODEL.TRANSFORMER.ACTIVATION must be one of {sorted(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]


class MLP(nn.Module):
    """Linear layers with ReLU in between (none after the last), kept in ``layers``.

    The box head is ``MLP(d, d, 4, 3)``; its parameters are named
    ``layers.{0,1,2}.{weight,bias}`` as in the official checkpoints.
    """

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"MLP needs at least one layer, got num_layers={num_layers}")
        dims_in = [input_dim] + [hidden_dim] * (num_layers - 1)
        dims_out = [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(dims_in, dims_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., input_dim) -> (..., output_dim)."""
        last = len(self.layers) - 1
        for index, layer in enumerate(self.layers):
            x = layer(x)
            if index < last:
                x = F.relu(x)
        return x
