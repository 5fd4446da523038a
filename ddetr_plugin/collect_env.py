"""Print the environment: versions, and how the native op is built.

    python -m ddetr_plugin.collect_env
"""
import platform
import sys
from importlib import metadata

import torch

from ddetr_plugin import __version__
from ddetr_plugin.ops.native import build_info
from ddetr_plugin.ops.triton import triton_unsupported_reason, triton_version

PACKAGES = ("torchvision", "fvcore", "iopath", "pycocotools", "scipy", "PyYAML", "termcolor", "numpy", "Pillow")


def _triton_status(device_type: str) -> str:
    reason = triton_unsupported_reason(device_type, torch.float32)
    return "can run" if reason is None else f"cannot run: {reason}"


def collect_env() -> list[tuple[str, str]]:
    """(name, value) rows describing this environment."""
    info = build_info()
    rows = [
        ("ddetr_plugin", __version__),
        ("Python", sys.version.split()[0]),
        ("platform", platform.platform()),
        ("torch", f"{torch.__version__} (CUDA {torch.version.cuda or 'none'})"),
    ]
    for name in PACKAGES:
        try:
            rows.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            rows.append((name, "not installed"))
    rows += [
        ("native op, CPU", "built" if info["native_cpu"] else "NOT built (PyTorch reference in use)"),
        ("native op, CUDA", "built" if info["native_cuda"] else "not built"),
        ("CUDA architectures compiled", info["cuda_archs"] or "none"),
        ("Triton", triton_version() or "not installed"),
        ("Triton backend, CUDA", _triton_status("cuda")),
        ("Triton backend, CPU", _triton_status("cpu")),
        ("CPU threads (torch)", str(torch.get_num_threads())),
        ("CUDA available", str(torch.cuda.is_available())),
    ]
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            major, minor = torch.cuda.get_device_capability(index)
            rows.append((f"GPU {index}", f"{torch.cuda.get_device_name(index)} (sm_{major}{minor})"))
    return rows


def main() -> None:
    rows = collect_env()
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    main()
