"""A tiny detector-like model and a deterministic data stream, to test the engine without real data."""
from typing import Iterator, List

import torch
from torch import nn


class TinyDetector(nn.Module):
    """detectron2-style forward: a list of dicts in, a dict of scalar losses out (training).

    Parameter names mimic Deformable DETR's groups: ``backbone.*``, ``*.sampling_offsets.*``,
    ``*.reference_points.*`` and the rest. A sample with "poison" makes ``loss_a`` NaN.
    """

    def __init__(self, dropout: float = 0.0):
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(4, 8), nn.ReLU())
        self.sampling_offsets = nn.Linear(8, 8)
        self.reference_points = nn.Linear(8, 2)
        self.dropout = nn.Dropout(dropout)
        self.class_embed = nn.Linear(8, 1)

    def forward(self, batched_inputs: List[dict]):
        x = torch.stack([item["x"] for item in batched_inputs])
        y = torch.stack([item["y"] for item in batched_inputs])
        features = self.dropout(self.backbone(x))
        hidden = torch.relu(self.sampling_offsets(features))
        prediction = self.class_embed(hidden).squeeze(-1) + self.reference_points(hidden).sum(-1)
        if not self.training:
            return [{"score": p} for p in prediction]
        loss_a = ((prediction - y) ** 2).mean()
        if any(item.get("poison", False) for item in batched_inputs):
            loss_a = loss_a * float("nan")
        return {"loss_a": loss_a, "loss_b": 0.1 * (prediction - y).abs().mean()}


def sample(iteration: int, index: int) -> dict:
    """The index-th sample of the global batch at ``iteration``: a function of (iteration, index) only."""
    generator = torch.Generator().manual_seed(1000 * iteration + index)
    x = torch.randn(4, generator=generator)
    return {"x": x, "y": x.sum() * 0.5 + 1.0}


def fake_stream(start_iter: int, batch_size: int = 4, rank: int = 0, world_size: int = 1,
                poison_at: int = -1, stop_at: int = -1) -> Iterator[List[dict]]:
    """This rank's share of the global batch of every iteration from ``start_iter`` on.

    ``poison_at``: that iteration's samples make the loss NaN. ``stop_at``: raise KeyboardInterrupt when
    asked for that iteration (a crash between iterations).
    """
    per_rank = batch_size // world_size
    iteration = start_iter
    while True:
        if iteration == stop_at:
            raise KeyboardInterrupt(f"simulated crash before iteration {iteration}")
        batch = [sample(iteration, rank * per_rank + i) for i in range(per_rank)]
        if iteration == poison_at:
            for item in batch:
                item["poison"] = True
        yield batch
        iteration += 1
