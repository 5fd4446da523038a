"""Samplers: epoch permutations, rank shares, exact resume, and test sharding."""
import itertools

import pytest

from ddetr_plugin.data import InferenceSampler, TrainingSampler


def _take(sampler, count):
    return list(itertools.islice(iter(sampler), count))


def test_each_epoch_is_a_permutation_and_batches_straddle_epochs():
    sampler = TrainingSampler(10, batch_size=4, seed=3)
    batches = _take(sampler, 5)  # 20 positions = two epochs
    pairs = [pair for batch in batches for pair in batch]
    assert [epoch for epoch, _ in pairs] == [0] * 10 + [1] * 10
    assert sorted(i for e, i in pairs if e == 0) == list(range(10))
    assert sorted(i for e, i in pairs if e == 1) == list(range(10))
    assert [e for e, _ in batches[2]] == [0, 0, 1, 1]  # positions 8..11
    assert [i for e, i in pairs if e == 0] != [i for e, i in pairs if e == 1]
    assert sampler.epoch_order(0) == TrainingSampler(10, 4, seed=3).epoch_order(0)
    assert sampler.epoch_order(0) != TrainingSampler(10, 4, seed=4).epoch_order(0)


@pytest.mark.parametrize("world_size", [2, 4])
def test_ranks_split_the_single_process_batch(world_size):
    single = _take(TrainingSampler(13, batch_size=8, seed=0), 10)
    ranks = [_take(TrainingSampler(13, 8, seed=0, rank=r, world_size=world_size), 10) for r in range(world_size)]
    for iteration in range(10):
        assert sum((ranks[r][iteration] for r in range(world_size)), []) == single[iteration]
        assert all(len(ranks[r][iteration]) == 8 // world_size for r in range(world_size))


def test_resume_from_start_iter_continues_the_stream():
    uninterrupted = _take(TrainingSampler(7, batch_size=3, seed=5, rank=1, world_size=3), 12)
    resumed = _take(TrainingSampler(7, batch_size=3, seed=5, rank=1, world_size=3, start_iter=7), 5)
    assert resumed == uninterrupted[7:]


@pytest.mark.parametrize("kwargs, fragment", [
    ({"dataset_size": 0}, "dataset_size"),
    ({"batch_size": 6, "world_size": 4}, r"IMS_PER_BATCH = 6\) must be a positive multiple .* \(4\)"),
    ({"rank": 2, "world_size": 2}, "rank"),
    ({"start_iter": -1}, "start_iter"),
])
def test_invalid_arguments(kwargs, fragment):
    arguments = {"dataset_size": 10, "batch_size": 4, "seed": 0} | kwargs
    with pytest.raises(ValueError, match=fragment):
        TrainingSampler(arguments.pop("dataset_size"), arguments.pop("batch_size"), arguments.pop("seed"),
                        **arguments)


@pytest.mark.parametrize("size, world_size", [(10, 3), (2, 4), (7, 1)])
def test_inference_shards_cover_every_index_once(size, world_size):
    shards = [list(InferenceSampler(size, rank, world_size)) for rank in range(world_size)]
    assert sum(shards, []) == list(range(size))
    assert [len(InferenceSampler(size, r, world_size)) for r in range(world_size)] == [len(s) for s in shards]
