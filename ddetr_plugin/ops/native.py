"""Loading of the compiled extension ``ddetr_plugin._C`` and what it supports.

Importing the extension registers the ``ddetr::ms_deform_attn_forward`` and
``ddetr::ms_deform_attn_backward`` operators with torch. When it is missing the
package still works through the PyTorch reference, and says so once.
"""
import warnings

import torch

try:
    from ddetr_plugin import _C
except ImportError as error:  # not built, or built against another torch
    _C = None
    warnings.warn(
        f"ddetr_plugin: the native op is not available ({error}); multi-scale deformable "
        "attention runs on the slower PyTorch reference. Rebuild with "
        "`pip install --no-build-isolation -e .`.",
        RuntimeWarning,
        stacklevel=2,
    )

NATIVE_DTYPES = {
    "cpu": (torch.float32, torch.float64),
    "cuda": (torch.float32, torch.float64, torch.float16, torch.bfloat16),
}


def native_available(device_type: str = "cpu") -> bool:
    """Whether the compiled op can run on ``device_type`` ("cpu" or "cuda") here."""
    if _C is None:
        return False
    if device_type == "cpu":
        return True
    if device_type == "cuda":
        return bool(_C.with_cuda) and torch.cuda.is_available()
    return False


def native_unsupported_reason(device_type: str, dtype: torch.dtype) -> str | None:
    """Why the native op cannot take inputs of this device and dtype, or None if it can."""
    if _C is None:
        return "the extension ddetr_plugin._C is not built"
    if device_type == "cuda" and not _C.with_cuda:
        return "the extension was built without CUDA kernels"
    if device_type not in NATIVE_DTYPES:
        return f"there is no native kernel for device type {device_type!r}"
    if device_type == "cuda" and not torch.cuda.is_available():
        return "CUDA is not available"
    if dtype not in NATIVE_DTYPES[device_type]:
        allowed = ", ".join(str(t).removeprefix("torch.") for t in NATIVE_DTYPES[device_type])
        return f"the {device_type} kernel takes {allowed}, not {str(dtype).removeprefix('torch.')}"
    return None


def build_info() -> dict:
    """Whether the extension is built, for CPU and CUDA, and its CUDA architectures."""
    return {
        "native_cpu": _C is not None,
        "native_cuda": bool(_C is not None and _C.with_cuda),
        "cuda_archs": _C.cuda_archs if _C is not None else "",
    }
