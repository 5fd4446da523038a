"""Whether the Triton backend can run here; Triton itself is imported only when asked.

Importing ``ddetr_plugin.ops`` does not import the Triton kernels (torch may import Triton for
its own use, and copes when it is missing), so the package works where Triton is missing or
broken; the first question about the Triton backend imports them and registers their operators.
"""
import importlib.util

import torch

TRITON_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
# Looked up once, without importing: where Triton is not installed, asking costs nothing.
TRITON_INSTALLED = importlib.util.find_spec("triton") is not None


def triton_import_error() -> str | None:
    """Why the Triton kernels cannot be imported, or None once they are (and registered).

    A plain import rather than a cache: after the first success it is a lookup in sys.modules,
    and torch.compile traces it as it is.
    """
    if not TRITON_INSTALLED:
        return "triton is not installed"
    try:
        from . import op  # noqa: F401  (imports triton, registers ddetr::ms_deform_attn_triton_*)
    except ImportError as error:
        return f"triton cannot be imported ({error})"
    return None


def triton_version() -> str | None:
    """Triton's version, or None when it cannot be imported."""
    if triton_import_error() is not None:
        return None
    import triton

    return triton.__version__


def interpreter_active() -> bool:
    """Whether the kernels were built by Triton's interpreter (TRITON_INTERPRET=1 was set when
    Triton was first imported): then they run on CPU tensors."""
    if triton_import_error() is not None:
        return False
    from triton.runtime.interpreter import InterpretedFunction

    from .forward import ms_deform_attn_forward_kernel

    return isinstance(ms_deform_attn_forward_kernel, InterpretedFunction)


def triton_unsupported_reason(device_type: str, dtype: torch.dtype) -> str | None:
    """Why the Triton kernels cannot take inputs of this device type and dtype, or None if they can."""
    error = triton_import_error()
    if error is not None:
        return error
    if dtype not in TRITON_DTYPES:
        allowed = ", ".join(str(t).removeprefix("torch.") for t in TRITON_DTYPES)
        return f"the Triton kernels take {allowed}, not {str(dtype).removeprefix('torch.')}"
    if device_type == "cuda":
        return None if torch.cuda.is_available() else "CUDA is not available"
    if device_type == "cpu":
        if interpreter_active():
            return None
        return ("Triton runs on CPU tensors only in its interpreter: set TRITON_INTERPRET=1 before triton is "
                "first imported (slow; that is how CI tests the kernels)")
    return f"there is no Triton backend for device type {device_type!r}"
