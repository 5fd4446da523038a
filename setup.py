"""Build and install ddetr_plugin with its native op ``ddetr_plugin._C``.

The C++ CPU kernels are always compiled. The CUDA kernels are compiled when a
CUDA toolkit is found (``CUDA_HOME``/``CUDA_PATH``, ``nvcc`` on ``PATH`` or
``/usr/local/cuda``) or when ``FORCE_CUDA=1``; ``FORCE_CUDA=0`` skips them.
``TORCH_CUDA_ARCH_LIST`` picks the GPU architectures (default "8.0;9.0").

Torch must already be installed: ``pip install --no-build-isolation .``
"""
import os
import shutil
import subprocess
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).resolve().parent
DEFAULT_CUDA_ARCHS = "8.0;9.0"


def find_cuda_home() -> str | None:
    """The CUDA toolkit folder, or None.

    ``nvcc`` on PATH may be a wrapper script, so each candidate must hold the
    runtime headers to count.
    """
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")]
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(str(Path(os.path.realpath(nvcc)).parent.parent))
        try:  # a wrapper script: nvcc names its own folder in a dry run
            out = subprocess.run([nvcc, "--dryrun", "-c", "-x", "cu", os.devnull, "-o", os.devnull],
                                 capture_output=True, text=True, timeout=60)
            for line in out.stderr.splitlines():
                if "_HERE_=" in line:
                    candidates.append(str(Path(line.split("_HERE_=", 1)[1].strip()).parent))
        except (OSError, subprocess.SubprocessError):
            pass
    candidates.append("/usr/local/cuda")
    for home in candidates:
        if home and (Path(home) / "include" / "cuda_runtime.h").is_file():
            return str(Path(home).resolve())
    return None


def read_requirements(name: str) -> list[str]:
    lines = (ROOT / name).read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def build_extension(cuda_home: str | None):
    import torch
    from torch.utils import cpp_extension

    with_cuda = cuda_home is not None

    sources = [str(p.relative_to(ROOT)) for p in sorted((ROOT / "csrc").glob("*.cpp"))]
    sources += [str(p.relative_to(ROOT)) for p in sorted((ROOT / "csrc" / "cpu").glob("*.cpp"))]
    cxx_flags = ["-O3", "-fopenmp"]
    define_macros = []
    extra_compile_args = {"cxx": cxx_flags}
    extension_cls = cpp_extension.CppExtension
    if with_cuda:
        archs = os.environ.get("TORCH_CUDA_ARCH_LIST", DEFAULT_CUDA_ARCHS)
        os.environ["TORCH_CUDA_ARCH_LIST"] = archs
        sources += [str(p.relative_to(ROOT)) for p in sorted((ROOT / "csrc" / "cuda").glob("*.cu"))]
        define_macros += [("DDETR_WITH_CUDA", None), ("DDETR_CUDA_ARCHS", f'"{archs}"')]
        extra_compile_args["nvcc"] = ["-O3", "--use_fast_math"]
        extension_cls = cpp_extension.CUDAExtension
    print(f"ddetr_plugin: building the native op for CPU{' and CUDA (' + cuda_home + ')' if with_cuda else ''}"
          f" against torch {torch.__version__}")
    return extension_cls(
        name="ddetr_plugin._C",
        sources=sources,
        include_dirs=[str(ROOT / "csrc")],
        define_macros=define_macros,
        extra_compile_args=extra_compile_args,
        extra_link_args=["-fopenmp"],
    )


def main():
    force = os.environ.get("FORCE_CUDA")
    cuda_home = find_cuda_home() if force != "0" else None
    if force == "1" and cuda_home is None:
        raise RuntimeError("FORCE_CUDA=1 but no CUDA toolkit was found; set CUDA_HOME")
    if cuda_home is not None:
        os.environ["CUDA_HOME"] = cuda_home  # torch.utils.cpp_extension reads it at import
    from torch.utils.cpp_extension import BuildExtension

    setup(
        name="ddetr_plugin",
        version="0.1.0",
        description="Deformable DETR as a modular plugin for detection codebases",
        packages=find_packages(include=["ddetr_plugin", "ddetr_plugin.*"]),
        python_requires=">=3.10",
        install_requires=[
            "torch>=2.4",
            "torchvision>=0.21",
            "fvcore>=0.1.5",
            "iopath>=0.1.7",
            "pycocotools>=2.0.6",
            "scipy>=1.9",
            "pyyaml>=5.1",
            "termcolor>=1.1",
        ],
        extras_require={
            "test": read_requirements("requirements-test.txt"),
            "timm": ["timm>=0.9"],
            # training_curves.png and the TensorBoard events of training (make train installs "pictures")
            "pictures": ["matplotlib>=3.5"],
            "tensorboard": ["tensorboard>=2.10"],
            "mmdet": read_requirements("requirements-mmdet.txt"),
        },
        ext_modules=[build_extension(cuda_home)],
        cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
        zip_safe=False,
    )


if __name__ == "__main__":
    main()
