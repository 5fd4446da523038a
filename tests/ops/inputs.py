"""Inputs shared by the multi-scale deformable attention tests."""
import pytest
import torch

from ddetr_plugin.ops import native_available

DEVICES = [
    "cpu",
    pytest.param(
        "cuda", marks=pytest.mark.skipif(not native_available("cuda"), reason="needs a GPU and the CUDA kernel")
    ),
]


def make_inputs(
    batch=2,
    heads=2,
    channels=8,
    levels=((6, 8), (3, 4)),
    queries=7,
    points=3,
    dtype=torch.float64,
    device="cpu",
    spread=(-0.2, 1.2),
    seed=0,
    requires_grad=True,
):
    """Random op inputs; sampling locations spread over `spread`, i.e. partly outside [0, 1].

    Returns (value, spatial_shapes, level_start_index, sampling_locations, attention_weights).
    """
    generator = torch.Generator().manual_seed(seed)
    spatial_shapes = torch.tensor(levels, dtype=torch.long)
    areas = spatial_shapes.prod(1)
    level_start_index = torch.cat([areas.new_zeros(1), areas.cumsum(0)[:-1]])
    positions = int(areas.sum())
    value = torch.randn(batch, positions, heads, channels, generator=generator, dtype=torch.float64)
    low, high = spread
    locations = torch.rand(batch, queries, heads, len(levels), points, 2, generator=generator, dtype=torch.float64)
    locations = low + (high - low) * locations
    weights = torch.rand(batch, queries, heads, len(levels), points, generator=generator, dtype=torch.float64)
    tensors = [t.to(device=device, dtype=dtype).requires_grad_(requires_grad) for t in (value, locations, weights)]
    return tensors[0], spatial_shapes.to(device), level_start_index.to(device), tensors[1], tensors[2]
