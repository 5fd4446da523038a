"""Which kernel ``backend="auto"`` runs, per device type and dtype.

On CUDA, "auto" prefers the Triton kernels unless a GPU benchmark committed in the repository
(``benchmarks/gpu-<device>.md``, written by ``make gpu-check``) shows the compiled CUDA kernel
("native") faster for that dtype; then that dtype's entry below lists "native" first and its
comment names the report. No GPU benchmark is committed, so every dtype prefers Triton.
When the preferred kernel cannot run (Triton missing, extension not built) the next one is
used, and the PyTorch reference when none can.

On the CPU "auto" is the native kernel: Triton runs CPU tensors only in its interpreter, which
is for tests.
"""
import torch

CUDA_PREFERENCE: dict[torch.dtype, tuple[str, ...]] = {
    torch.float32: ("triton", "native"),
    torch.float16: ("triton", "native"),
    torch.bfloat16: ("triton", "native"),
    torch.float64: ("triton", "native"),
}
CPU_PREFERENCE: tuple[str, ...] = ("native",)


def auto_candidates(device_type: str, dtype: torch.dtype) -> tuple[str, ...]:
    """Kernel backends ("triton", "native") for "auto" to try in order, before the reference."""
    if device_type == "cuda":
        return CUDA_PREFERENCE.get(dtype, ("native",))
    return CPU_PREFERENCE
