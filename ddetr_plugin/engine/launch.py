"""Starting one process per device and the ``torch.distributed`` group that joins them.

Three ways to run, chosen automatically:

- **spawned** (``--num-gpus N``, optionally ``--num-machines/--machine-rank/--dist-url``): this function
  starts N local processes with ``torch.multiprocessing``; each joins the group at ``dist_url``
  (``"auto"``: a free port on localhost, single machine only). Ranks are
  ``machine_rank * N + local_rank``.
- **torchrun / SLURM**: when ``RANK`` and ``WORLD_SIZE`` are set (torchrun sets them, with ``LOCAL_RANK``,
  ``MASTER_ADDR``, ``MASTER_PORT``), or under ``srun`` with one task per device (``SLURM_PROCID``,
  ``SLURM_NTASKS``, ``SLURM_LOCALID``; ``MASTER_ADDR``/``MASTER_PORT`` exported by the job script), the
  process is already one of many: it joins from the environment and nothing is spawned.
- **single process**: world size 1 runs ``main_func`` directly, without a process group.

The backend is gloo on CPU and NCCL on CUDA (one GPU per process, ``LOCAL_RANK``/local rank).
"""
import datetime
import logging
import os
import socket
from typing import Any, Callable, Dict, Optional, Sequence

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = datetime.timedelta(minutes=30)
DEFAULT_MASTER_PORT = "29500"


def find_free_port() -> int:
    """A TCP port on localhost that is free now (another program may take it before it is used)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def backend_for(device: str) -> str:
    """"nccl" for CUDA devices, "gloo" otherwise."""
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def distributed_env() -> Optional[Dict[str, Any]]:
    """This process's place in a job started by torchrun or SLURM, or None when it was started alone.

    Returns:
        {"rank", "world_size", "local_rank", "init_method"} from ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``
        (torchrun) or ``SLURM_PROCID``/``SLURM_NTASKS``/``SLURM_LOCALID`` (srun, one task per device).
    """
    env = os.environ
    torchrun = "RANK" in env and "WORLD_SIZE" in env
    if torchrun:
        rank, world_size = int(env["RANK"]), int(env["WORLD_SIZE"])
        local_rank = int(env.get("LOCAL_RANK", rank))
    elif int(env.get("SLURM_NTASKS", "1")) > 1 and "SLURM_PROCID" in env:
        rank, world_size = int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"])
        local_rank = int(env.get("SLURM_LOCALID", "0"))
        if "MASTER_ADDR" not in env:
            raise RuntimeError(
                "running under SLURM with several tasks, but MASTER_ADDR is not set: export it in the job script "
                "(e.g. MASTER_ADDR=$(scontrol show hostnames $SLURM_JOB_NODELIST | head -n 1)), or start "
                "the processes with torchrun"
            )
    else:
        return None
    if world_size <= 1:
        return None
    if torchrun:
        # torchrun's workers join through its environment (and reuse its rendezvous store)
        init_method = "env://"
    else:
        init_method = f"tcp://{env['MASTER_ADDR']}:{env.get('MASTER_PORT', DEFAULT_MASTER_PORT)}"
    return {"rank": rank, "world_size": world_size, "local_rank": local_rank, "init_method": init_method}


def launch(
    main_func: Callable[..., Any],
    num_gpus_per_machine: int,
    num_machines: int = 1,
    machine_rank: int = 0,
    dist_url: str = "auto",
    args: Sequence[Any] = (),
    device: str = "cpu",
    timeout: datetime.timedelta = DEFAULT_TIMEOUT,
) -> Any:
    """Run ``main_func(*args)`` in every process of the job (see the module docstring).

    Args:
        main_func: a module-level function (it is pickled to the spawned processes).
        num_gpus_per_machine: processes per machine (on CPU: processes, whatever the name says).
        num_machines, machine_rank: this machine's place among the machines.
        dist_url: "auto" (single machine) or "tcp://HOST:PORT" of machine 0, the same on every machine.
        device: "cpu" or "cuda" (MODEL.DEVICE); decides the backend.

    Returns:
        ``main_func``'s result when it ran in this process (single process, torchrun/SLURM); None after
        spawning (an error in any spawned process is raised here with its traceback).
    """
    from_env = distributed_env()
    if from_env is not None:
        if num_gpus_per_machine * num_machines > 1:
            logger.info("Started by torchrun/SLURM (world size %d): ignoring --num-gpus/--num-machines",
                        from_env["world_size"])
        _init_process_group(device, from_env["init_method"], from_env["world_size"], from_env["rank"],
                            from_env["local_rank"], timeout)
        try:
            return main_func(*args)
        finally:
            _destroy()

    if num_gpus_per_machine < 1 or num_machines < 1:
        raise ValueError(f"--num-gpus ({num_gpus_per_machine}) and --num-machines ({num_machines}) must be >= 1")
    if not 0 <= machine_rank < num_machines:
        raise ValueError(f"--machine-rank {machine_rank} must be in [0, {num_machines - 1}]")
    world_size = num_gpus_per_machine * num_machines
    if world_size == 1:
        return main_func(*args)

    if torch.device(device).type == "cuda" and num_gpus_per_machine > torch.cuda.device_count():
        raise ValueError(
            f"--num-gpus {num_gpus_per_machine} but this machine has {torch.cuda.device_count()} CUDA devices"
        )
    if dist_url == "auto":
        if num_machines > 1:
            raise ValueError("--dist-url auto works on one machine only; with --num-machines > 1 pass "
                             "--dist-url tcp://HOST:PORT naming machine 0, the same on every machine")
        dist_url = f"tcp://127.0.0.1:{find_free_port()}"
    if num_machines > 1 and dist_url.startswith("file://"):
        logger.warning("--dist-url %s: a file:// rendezvous needs a filesystem shared by every machine", dist_url)
    mp.start_processes(
        _worker,
        nprocs=num_gpus_per_machine,
        args=(main_func, world_size, num_gpus_per_machine, machine_rank, dist_url, tuple(args), device, timeout),
        daemon=False,
        start_method="spawn",
    )
    return None


def _worker(
    local_rank: int,
    main_func: Callable[..., Any],
    world_size: int,
    num_gpus_per_machine: int,
    machine_rank: int,
    dist_url: str,
    args: Sequence[Any],
    device: str,
    timeout: datetime.timedelta,
) -> None:
    rank = machine_rank * num_gpus_per_machine + local_rank
    if torch.device(device).type != "cuda" and "OMP_NUM_THREADS" not in os.environ:
        # N processes on one machine share its cores; each using all of them only adds contention
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // num_gpus_per_machine))
    _init_process_group(device, dist_url, world_size, rank, local_rank, timeout)
    try:
        main_func(*args)
    finally:
        _destroy()


def _init_process_group(
    device: str, init_method: str, world_size: int, rank: int, local_rank: int, timeout: datetime.timedelta
) -> None:
    backend = backend_for(device)
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    try:
        dist.init_process_group(
            backend=backend, init_method=init_method, world_size=world_size, rank=rank, timeout=timeout
        )
    except Exception as e:
        raise RuntimeError(
            f"process {rank}/{world_size} could not join the process group at {init_method} ({backend}): {e}"
        ) from e
    # every process is up before any work starts; a missing one fails here, not mid-training
    if backend == "nccl":
        dist.barrier(device_ids=[local_rank])
    else:
        dist.barrier()


def _destroy() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
