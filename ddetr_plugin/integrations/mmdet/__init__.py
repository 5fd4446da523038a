"""MMDetection 3.x integration.

Importing it (in a config: ``custom_imports=dict(imports=['ddetr_plugin.integrations.mmdet'],
allow_failed_imports=False)``) registers in mmdet's registries:

- ``PluginDeformableDETR`` (``MODELS``): our Deformable DETR as an mmdet detector, built from
  the config dict of mmdet's own ``DeformableDETR`` or from one of our YAML files;
- ``ShapesDataset`` (``DATASETS``) and ``ShapesCocoMetric`` (``METRICS``): our synthetic shapes data;
- ``CPUDistributedDataParallel`` (``MODEL_WRAPPERS``): several processes without GPUs (``distributed``);

and allow-lists for ``torch.load(weights_only=True)`` the types in the checkpoints mmengine's
Runner writes (``safe_globals``), so ``load_from``, ``resume`` and our converter read them.
"""
import importlib.util

_REQUIRED = {
    "mmengine": "pip install 'ddetr_plugin[mmdet]'",
    "mmdet": "pip install 'ddetr_plugin[mmdet]'",
    "mmcv": "mmcv >=2.0.0rc4,<2.2.0 with its compiled ops, built from source (README: 'Use it from MMDetection')",
}


def _installed(name: str) -> bool:
    try:  # a submodule's spec imports its package, which may itself miss a dependency
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


_missing = [name for name in _REQUIRED if not _installed(name)]
if not _missing and not _installed("mmcv._ext"):
    _missing.append("mmcv")  # mmcv-lite: mmdet's models need the compiled ops
if _missing:
    raise ImportError(
        "ddetr_plugin.integrations.mmdet needs MMDetection 3.x; not installed: "
        + "; ".join(f"{name} ({_REQUIRED[name]})" for name in _missing)
    )

from .safe_globals import allow_mmengine_checkpoint_types  # noqa: E402

allow_mmengine_checkpoint_types()

from .datasets import ShapesCocoMetric, ShapesDataset  # noqa: E402
from .detector import PluginDeformableDETR  # noqa: E402
from .distributed import CPUDistributedDataParallel  # noqa: E402

__all__ = ["CPUDistributedDataParallel", "PluginDeformableDETR", "ShapesCocoMetric", "ShapesDataset"]
