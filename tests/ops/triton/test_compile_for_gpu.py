"""The Triton kernels compile for NVIDIA GPUs without one, down to machine code (cubin).

The interpreter runs the kernels' Python semantics on NumPy; only Triton's compiler checks
what a GPU build needs (loop-carried types, layouts, what each instruction takes). Here the
kernels go through it for sm_80 and sm_90 with the launch plan of the encoder shape, with the
argument specialisation Triton's launcher applies (pointers 16-byte aligned, as torch's
allocations are; integers equal to 1 folded in; multiples of 16 marked), and the sm_90 float32
build is checked for what launch.py counts on: 16-byte loads, vector atomics, no spills.
"""
import importlib.util
import re
import subprocess
from pathlib import Path

import pytest
import torch

from ddetr_plugin.ops.triton.launch import plan_launch

pytestmark = pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")

# The encoder of an 800x1066 image: Lq = S = 17,821, M = 8, D = 32, L = 4, P = 4.
ENCODER = {"rows": 17821 * 8, "queries_heads": 17821 * 8, "positions": 17821, "heads": 8, "channels": 32,
           "levels": 4, "points": 4}
TRITON_TYPES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16", torch.float64: "fp64"}


@pytest.fixture(scope="module")
def kernels():
    from ddetr_plugin.ops.triton.availability import interpreter_active

    if interpreter_active():
        pytest.skip("TRITON_INTERPRET=1 in this process: the kernels are interpreted, not compiled")
    from ddetr_plugin.ops.triton.backward import ms_deform_attn_backward_kernel
    from ddetr_plugin.ops.triton.forward import ms_deform_attn_forward_kernel

    return {"forward": ms_deform_attn_forward_kernel, "backward": ms_deform_attn_backward_kernel}


def compile_kernel(kernel, dtype: torch.dtype, sizes: dict, capability: int):
    """``kernel`` compiled for sm_<capability> with the launch plan of ``sizes``."""
    import triton
    from triton.backends.compiler import GPUTarget

    plan = plan_launch(sizes["rows"], sizes["channels"], on_gpu=True)
    element = TRITON_TYPES[dtype]
    accumulator = "fp64" if dtype == torch.float64 else "fp32"
    constants = {"BLOCK_ROWS": plan.block_rows, "BLOCK_CHANNELS": plan.block_channels, "FP64": dtype == torch.float64}
    signature, attributes = {}, {}
    for index, name in enumerate(kernel.arg_names):
        if name in constants:
            signature[name] = "constexpr"
        elif name.endswith("_ptr"):
            integer = name in ("shapes_ptr", "starts_ptr")
            signature[name] = "*i64" if integer else f"*{accumulator}" if name == "grad_value_ptr" else f"*{element}"
            attributes[(index,)] = [["tt.divisibility", 16]]
        elif sizes[name] == 1:
            signature[name] = "constexpr"
            constants[name] = 1
        else:
            signature[name] = "i32"
            if sizes[name] % 16 == 0:
                attributes[(index,)] = [["tt.divisibility", 16]]
    source = triton.compiler.ASTSource(fn=kernel, signature=signature, constexprs=constants, attrs=attributes)
    return triton.compile(source, target=GPUTarget("cuda", capability, 32), options={"num_warps": plan.num_warps})


# Every dtype for Hopper (sm_90, the GPU check's H200); the training dtypes for Ampere (sm_80).
BUILDS = [(dtype, 90) for dtype in TRITON_TYPES] + [(torch.float32, 80), (torch.bfloat16, 80)]


@pytest.mark.parametrize("dtype, capability", BUILDS, ids=[f"{TRITON_TYPES[d]}-sm{c}" for d, c in BUILDS])
@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_compiles_to_machine_code(kernels, direction, dtype, capability):
    compiled = compile_kernel(kernels[direction], dtype, ENCODER, capability)
    assert len(compiled.asm["cubin"]) > 0


def ptxas_report(ptx: str, tmp_path: Path) -> str:
    import triton

    ptxas = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas"
    if not ptxas.is_file():
        pytest.skip(f"no ptxas at {ptxas} to report register use")
    source = tmp_path / "kernel.ptx"
    source.write_text(ptx)
    result = subprocess.run([str(ptxas), "--gpu-name", "sm_90a", "-v", str(source), "-o", str(tmp_path / "k.cubin")],
                            capture_output=True, text=True, check=True)
    return result.stdout + result.stderr


@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_sm90_float32_has_vector_loads_and_atomics_and_no_spills(kernels, direction, tmp_path):
    ptx = compile_kernel(kernels[direction], torch.float32, ENCODER, 90).asm["ptx"]
    assert "ld.global.v4" in ptx, "value rows are not read with 16-byte loads"
    if direction == "backward":
        assert re.search(r"(atom|red)\.global\S*\.v4\.f32", ptx), "grad_value atomics are not vectorised"
    spills = re.findall(r"(\d+) bytes spill stores", ptxas_report(ptx, tmp_path))
    assert spills and all(int(n) == 0 for n in spills), f"register spills: {spills}"
