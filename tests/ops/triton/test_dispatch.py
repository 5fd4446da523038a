"""Choosing the Triton backend: what "auto" picks, clear refusals, import without Triton, and
tracing into the kernels for torch.compile without a GPU."""
import importlib.util
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from ddetr_plugin.ops import multi_scale_deformable_attention, native_available
from ddetr_plugin.ops.auto_backend import CUDA_PREFERENCE, auto_candidates
from ddetr_plugin.ops.ms_deform_attn import KERNEL_BACKENDS, resolve_backend
from ddetr_plugin.ops.triton import interpreter_active

from tests._support.op_inputs import make_inputs

needs_triton = pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")


@needs_triton
def test_cpu_tensors_without_the_interpreter_are_refused_clearly():
    if interpreter_active():
        pytest.skip("TRITON_INTERPRET=1 in this process: CPU tensors are accepted")
    with pytest.raises(RuntimeError, match="backend='triton' requested but .*set TRITON_INTERPRET=1"):
        multi_scale_deformable_attention(*make_inputs(dtype=torch.float32), backend="triton")


def test_auto_on_cpu_is_the_native_kernel_never_the_interpreter():
    assert resolve_backend("auto", "cpu", torch.float32) == ("native" if native_available("cpu") else "pytorch")


@pytest.mark.parametrize("dtype", list(CUDA_PREFERENCE))
def test_auto_on_cuda_follows_the_table_then_falls_back(monkeypatch, dtype):
    preferred, second = auto_candidates("cuda", dtype)
    monkeypatch.setitem(KERNEL_BACKENDS, "native", lambda device_type, dtype: None)
    monkeypatch.setitem(KERNEL_BACKENDS, "triton", lambda device_type, dtype: None)
    assert resolve_backend("auto", "cuda", dtype) == preferred
    monkeypatch.setitem(KERNEL_BACKENDS, preferred, lambda device_type, dtype: "not built")
    assert resolve_backend("auto", "cuda", dtype) == second
    monkeypatch.setitem(KERNEL_BACKENDS, second, lambda device_type, dtype: "not built")
    assert resolve_backend("auto", "cuda", dtype) == "pytorch"
    with pytest.raises(RuntimeError, match=f"backend='{second}' requested but not built"):
        resolve_backend(second, "cuda", dtype)


def test_cuda_table_names_kernel_backends_for_every_dtype():
    assert set(CUDA_PREFERENCE) == {torch.float32, torch.float16, torch.bfloat16, torch.float64}
    for order in CUDA_PREFERENCE.values():
        assert sorted(order) == sorted(KERNEL_BACKENDS)


def test_the_package_works_without_triton():
    script = textwrap.dedent("""
        import sys
        sys.modules["triton"] = None  # any `import triton` now raises ImportError
        import torch
        from ddetr_plugin.ops import multi_scale_deformable_attention
        from ddetr_plugin.ops.triton import triton_unsupported_reason, triton_version
        from tests._support.op_inputs import make_inputs
        args = make_inputs(dtype=torch.float32)
        multi_scale_deformable_attention(*args).sum().backward()
        print("reason:", triton_unsupported_reason("cuda", torch.float32), "| version:", triton_version())
        try:
            multi_scale_deformable_attention(*args, backend="triton")
        except RuntimeError as error:
            print("refused:", error)
    """)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    child = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=300)
    assert child.returncode == 0, child.stderr[-4000:]
    assert "reason: triton is not installed | version: None" in child.stdout
    assert "refused: ms_deform_attn: backend='triton' requested but triton is not installed" in child.stdout


class TritonAttention(torch.nn.Module):
    def forward(self, value, shapes, starts, locations, weights):
        output = torch.ops.ddetr.ms_deform_attn_triton_forward(value, shapes, starts, locations, weights)
        return output, torch.ops.ddetr.ms_deform_attn_triton_backward(value, shapes, starts, locations, weights, output)


@needs_triton
def test_export_decomposes_the_operators_into_their_kernels():
    """What AOTAutograd does for torch.compile on CUDA: the operators become calls of the
    forward and backward kernels (wrap_triton), traced on fake tensors without a GPU."""
    if interpreter_active():
        pytest.skip("TRITON_INTERPRET=1 in this process: interpreted kernels cannot be traced")
    from ddetr_plugin.ops.triton.backward import ms_deform_attn_backward_kernel
    from ddetr_plugin.ops.triton.forward import ms_deform_attn_forward_kernel

    value, shapes, starts, locations, weights = make_inputs(dtype=torch.float32, requires_grad=False)
    exported = torch.export.export(TritonAttention(), (value, shapes, starts, locations, weights))
    decomposed = exported.run_decompositions(decompose_custom_triton_ops=True)
    launches = [node.kwargs["kwargs"] for node in decomposed.graph.nodes
                if node.op == "call_function" and "triton_kernel_wrapper" in str(node.target)]
    assert [sorted(launch) for launch in launches] == [
        sorted(ms_deform_attn_forward_kernel.arg_names), sorted(ms_deform_attn_backward_kernel.arg_names)]
    assert launches[0]["channels"] == value.shape[3] and launches[1]["rows"] == 2 * 7 * 2


def test_collect_env_reports_triton():
    from ddetr_plugin.collect_env import collect_env
    from ddetr_plugin.ops.triton import triton_unsupported_reason, triton_version

    rows = dict(collect_env())
    assert rows["Triton"] == (triton_version() or "not installed")
    assert rows["Triton backend, CPU"].startswith("can run" if interpreter_active() else "cannot run: ")
    reason = triton_unsupported_reason("cuda", torch.float32)
    assert rows["Triton backend, CUDA"] == ("can run" if reason is None else f"cannot run: {reason}")
