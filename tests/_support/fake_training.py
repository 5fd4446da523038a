"""A tiny detector-like model, a deterministic data stream and a trainer over them, to test the engine
without real data."""
import json
import os
from typing import Iterator, List

import pytest
import torch
from torch import nn

from ddetr_plugin.engine import Trainer, get_param_groups, seed_all
from ddetr_plugin.engine.scheduler import multistep_warmup_factor


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


@pytest.fixture
def no_plots(monkeypatch):
    """No training-curves PNG: drawing it is slow, and tests/engine/hooks/test_training_curves.py covers it."""
    monkeypatch.setattr("ddetr_plugin.engine.hooks.training_curves.matplotlib_available", lambda: False)


def make_trainer(output_dir, max_iter=6, stream=None, seed=0, **kwargs) -> Trainer:
    """A trainer over TinyDetector (dropout on, so resume must restore the RNG to match)."""
    seed_all(seed)
    model = TinyDetector(dropout=0.3)
    optimizer = torch.optim.AdamW(get_param_groups(model, base_lr=1e-2, weight_decay=1e-4))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, multistep_warmup_factor([4], 0.1, warmup_iters=2))
    kwargs.setdefault("checkpoint_period", 3)
    kwargs.setdefault("log_period", 2)
    kwargs.setdefault("clip_max_norm", 0.1)
    return Trainer(model, optimizer, scheduler, stream or (lambda start: fake_stream(start)),
                   max_iter=max_iter, output_dir=str(output_dir), **kwargs)


def read_metrics(output_dir) -> List[dict]:
    with open(os.path.join(output_dir, "metrics.json")) as f:
        return [json.loads(line) for line in f]
