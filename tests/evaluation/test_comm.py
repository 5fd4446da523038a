"""The distributed helpers act as a single process of rank 0 when torch.distributed is not initialized."""
import torch
import torch.distributed as dist

from ddetr_plugin.utils import comm


def test_helpers_without_initialization():
    assert not dist.is_initialized()
    assert comm.get_rank() == 0
    assert comm.get_world_size() == 1
    assert comm.is_main_process()
    comm.synchronize()
    payload = {"boxes": [1, 2, 3]}
    assert comm.all_gather(payload) == [payload]
    values = {"loss": torch.tensor(2.5), "aux": torch.tensor(1.0)}
    assert comm.reduce_dict(values) == values
