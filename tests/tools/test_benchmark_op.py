"""tools/benchmark_op.py without running kernels: arguments, refusals, the speed-up table."""
import importlib.util

import pytest

from ddetr_plugin.ops.triton import interpreter_active

from ..checkpoint.helpers import load_tool


def test_backends_levels_and_json_are_accepted():
    args = load_tool("benchmark_op").parse_args(
        ["--backends", "pytorch", "triton", "--levels", "6x8", "3x4", "--json", "out.json"])
    assert args.backends == ["pytorch", "triton"] and args.levels == [(6, 8), (3, 4)] and args.json == "out.json"


def test_malformed_levels_are_refused(capsys):
    with pytest.raises(SystemExit):
        load_tool("benchmark_op").parse_args(["--levels", "6by8"])
    assert "--levels takes HxW sizes such as 100x134, got '6by8'" in capsys.readouterr().err


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")
def test_triton_on_cpu_without_the_interpreter_is_refused_before_any_work():
    if interpreter_active():
        pytest.skip("TRITON_INTERPRET=1 in this process: Triton runs CPU tensors")
    with pytest.raises(SystemExit, match="backend 'triton' cannot run here: Triton runs on CPU tensors only"):
        load_tool("benchmark_op").main(["--device", "cpu", "--backends", "pytorch", "triton"])


def test_speedups_are_the_other_backends_time_over_this_one():
    tool = load_tool("benchmark_op")
    results = [{"shape": "encoder", "mode": "fwd+bwd", "backend": backend, "ms": ms, "peak_mib": 10.0}
               for backend, ms in (("pytorch", 8.0), ("baseline", 4.0), ("native", 2.5), ("triton", 2.0))]
    assert tool.speedup_rows(results) == [
        ["encoder", "fwd+bwd", "reference", "8.000", "10", "—", "0.50×"],
        ["encoder", "fwd+bwd", "baseline", "4.000", "10", "2.00×", "—"],
        ["encoder", "fwd+bwd", "native", "2.500", "10", "3.20×", "1.60×"],
        ["encoder", "fwd+bwd", "triton", "2.000", "10", "4.00×", "2.00×"],
    ]
