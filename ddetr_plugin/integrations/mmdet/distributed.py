"""Several processes without GPUs under mmengine 0.10 (torchrun, gloo).

mmengine's ``pytorch`` launcher calls ``torch.cuda.set_device`` before it creates the process
group, and wraps the model in DistributedDataParallel with ``device_ids=[LOCAL_RANK]``, which
torch refuses for a CPU module. ``use_cpu_processes`` creates the gloo group itself (mmengine
then keeps it) and selects ``CPUDistributedDataParallel``, which leaves ``device_ids`` out.
"""
import torch
import torch.distributed as dist
from mmengine.config import Config
from mmengine.model import MMDistributedDataParallel
from mmengine.registry import MODEL_WRAPPERS


@MODEL_WRAPPERS.register_module()
class CPUDistributedDataParallel(MMDistributedDataParallel):
    """mmengine's DDP wrapper for a module on the CPU (no ``device_ids``)."""

    def __init__(self, module: torch.nn.Module, device_ids=None, **kwargs):
        super().__init__(module=module, device_ids=None, **kwargs)


def use_cpu_processes(cfg: Config) -> None:
    """Join the torchrun process group over gloo and wrap the model for the CPU (``cfg`` edited)."""
    if not dist.is_initialized():
        dist.init_process_group(backend="gloo")  # RANK, WORLD_SIZE, MASTER_ADDR/PORT from torchrun
    wrapper = dict(cfg.get("model_wrapper_cfg") or {})
    wrapper.setdefault("type", "CPUDistributedDataParallel")
    cfg.model_wrapper_cfg = wrapper
