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


def make_pixel_edge_inputs(device="cpu", dtype=torch.float64):
    """Op inputs whose locations land exactly on pixel centres and on the -1 / W borders, where
    bilinear sampling switches neighbours (powers of two keep the arithmetic exact)."""
    levels = ((4, 8), (2, 4))
    value, shapes, starts, locations, weights = make_inputs(levels=levels, queries=6, points=4, dtype=dtype,
                                                            device=device)
    edges = torch.tensor([-1.5, -1.0, 0.0, 3.0, 7.0, 8.0], dtype=torch.float64)  # pixel coordinates
    pixel = edges[torch.randint(len(edges), locations.shape, generator=torch.Generator().manual_seed(3))]
    sizes = torch.tensor(levels, dtype=torch.float64).flip(-1).view(1, 1, 1, 2, 1, 2)  # (W, H)
    locations = ((pixel + 0.5) / sizes).to(device=device, dtype=dtype).requires_grad_()
    return value, shapes, starts, locations, weights


def non_contiguous_copy(args):
    """The same op inputs with other strides (a transposed copy viewed back, a strided slice),
    requiring grad; asserts that none of the three float tensors is contiguous."""
    value, shapes, starts, locations, weights = (t.detach() for t in args)
    value_t = value.transpose(1, 2).contiguous().transpose(1, 2).requires_grad_()
    locations_s = torch.cat([locations, locations], -1)[..., ::2].requires_grad_()
    weights_t = weights.transpose(0, 1).contiguous().transpose(0, 1).requires_grad_()
    assert not value_t.is_contiguous() and not locations_s.is_contiguous() and not weights_t.is_contiguous()
    return value_t, shapes, starts, locations_s, weights_t
