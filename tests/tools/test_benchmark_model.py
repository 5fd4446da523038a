"""tools/benchmark_model.py --compare-cpu-fast-paths: runs alternate, and it refuses when the paths are off."""
import pytest

from tests._support.tool_scripts import load_tool


def test_alternating_medians_runs_the_functions_in_turn_and_returns_one_median_each():
    calls = []
    medians = load_tool("benchmark_model").alternating_medians([lambda: calls.append("a"), lambda: calls.append("b")],
                                                               repeats=3)
    assert calls == ["a", "b"] * 4  # one warm-up each, then three rounds
    assert len(medians) == 2 and all(seconds >= 0 for seconds in medians)


def test_the_comparison_refuses_when_the_environment_turns_the_paths_off(monkeypatch):
    monkeypatch.setenv("DDETR_CPU_FAST_PATHS", "0")
    with pytest.raises(SystemExit, match="DDETR_CPU_FAST_PATHS"):
        load_tool("benchmark_model").main(["--compare-cpu-fast-paths", "--threads", "1"])
