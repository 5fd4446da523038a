"""Deterministic samplers: an infinite, resumable training stream and a sharded test pass.

Training: the data is an endless stream of epochs, epoch ``e`` being a permutation
of the dataset drawn from (seed, e). Iteration ``i`` is the global batch at stream
positions ``[i * B, (i + 1) * B)`` (it may straddle two epochs); rank ``r`` of ``W``
takes the contiguous share ``[r * B / W, (r + 1) * B / W)`` of it. So ``W``
processes at total batch ``B`` see exactly the images one process at batch ``B``
sees, iteration by iteration, and a run restarted at ``start_iter`` continues the
stream exactly where it stopped.
"""
from typing import Iterator

import torch

from .seeding import derive_seed


class TrainingSampler(torch.utils.data.Sampler):
    """Batch sampler yielding, forever, this rank's batch of ``(epoch, index)`` pairs.

    Args:
        dataset_size: number of records.
        batch_size: the global batch (all ranks together); divisible by ``world_size``.
        seed: the permutation of epoch ``e`` derives from (seed, e) only.
        rank, world_size: this process's share of every global batch.
        start_iter: the first iteration yielded (for exact resume).
    """

    def __init__(self, dataset_size: int, batch_size: int, seed: int, *, rank: int = 0, world_size: int = 1,
                 start_iter: int = 0):
        if dataset_size < 1:
            raise ValueError(f"dataset_size must be >= 1, got {dataset_size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank {rank}, world_size {world_size}")
        if batch_size < 1 or batch_size % world_size:
            raise ValueError(f"the total batch (SOLVER.IMS_PER_BATCH = {batch_size}) must be a positive multiple "
                             f"of the number of processes ({world_size})")
        if start_iter < 0:
            raise ValueError(f"start_iter must be >= 0, got {start_iter}")
        self.dataset_size = dataset_size
        self.batch_size = batch_size
        self.seed = int(seed)
        self.rank = rank
        self.world_size = world_size
        self.start_iter = start_iter
        self._orders: dict[int, list[int]] = {}

    @property
    def batch_size_per_rank(self) -> int:
        return self.batch_size // self.world_size

    def epoch_order(self, epoch: int) -> list[int]:
        """The permutation of dataset indices for ``epoch``."""
        if epoch not in self._orders:
            if len(self._orders) >= 2:  # a batch spans at most two epochs; keep memory flat
                del self._orders[min(self._orders)]
            generator = torch.Generator().manual_seed(derive_seed(self.seed, epoch))
            self._orders[epoch] = torch.randperm(self.dataset_size, generator=generator).tolist()
        return self._orders[epoch]

    def batch_at(self, iteration: int) -> list[tuple[int, int]]:
        """This rank's ``(epoch, index)`` pairs at ``iteration``."""
        first = iteration * self.batch_size + self.rank * self.batch_size_per_rank
        pairs = []
        for position in range(first, first + self.batch_size_per_rank):
            epoch, offset = divmod(position, self.dataset_size)
            pairs.append((epoch, self.epoch_order(epoch)[offset]))
        return pairs

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        iteration = self.start_iter
        while True:
            yield self.batch_at(iteration)
            iteration += 1


class InferenceSampler(torch.utils.data.Sampler):
    """The contiguous shard of ``range(dataset_size)`` for ``rank``: every index exactly once over all ranks."""

    def __init__(self, dataset_size: int, rank: int = 0, world_size: int = 1):
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank {rank}, world_size {world_size}")
        self.begin = dataset_size * rank // world_size
        self.end = dataset_size * (rank + 1) // world_size

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.begin, self.end))

    def __len__(self) -> int:
        return self.end - self.begin
