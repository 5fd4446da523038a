"""Small helpers over ``torch.distributed`` that also work in a single process.

Every helper behaves as if there were one process of rank 0 when
``torch.distributed`` is unavailable or not initialized, so library code calls
them unconditionally.
"""
from typing import Any, Dict, List, Optional

import torch
import torch.distributed as dist


def _initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_world_size() -> int:
    """Number of processes in the default group (1 without ``torch.distributed``)."""
    return dist.get_world_size() if _initialized() else 1


def get_rank() -> int:
    """Rank of this process in the default group (0 without ``torch.distributed``)."""
    return dist.get_rank() if _initialized() else 0


def is_main_process() -> bool:
    """Whether this process is rank 0, the one that writes files and logs."""
    return get_rank() == 0


def synchronize() -> None:
    """Barrier across all processes; a no-op in a single process."""
    if get_world_size() == 1:
        return
    if dist.get_backend() == dist.Backend.NCCL:
        # Naming the device keeps NCCL from guessing it (and warning) when the
        # launcher already bound one GPU per process.
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


def all_gather(obj: Any, group: Optional[dist.ProcessGroup] = None) -> List[Any]:
    """Gather a picklable object from every process of ``group``.

    Returns:
        A list with one entry per rank, in rank order, the same on every rank.
    """
    if not _initialized() or dist.get_world_size(group) == 1:
        return [obj]
    gathered: List[Any] = [None] * dist.get_world_size(group)
    dist.all_gather_object(gathered, obj, group=group)
    return gathered


def reduce_dict(values: Dict[str, torch.Tensor], average: bool = True) -> Dict[str, torch.Tensor]:
    """Sum (or average) a dict of scalar tensors over all processes.

    Every process must pass the same keys; the result is the same on every rank.
    """
    world_size = get_world_size()
    if world_size == 1:
        return values
    # Sorted keys so every rank stacks the values in the same order.
    names = sorted(values)
    stacked = torch.stack([values[name].detach().reshape(()) for name in names])
    dist.all_reduce(stacked)
    if average:
        stacked = stacked / world_size
    return dict(zip(names, stacked.unbind(0)))
