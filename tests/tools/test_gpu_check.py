"""tools/gpu_check.py on a machine without a GPU: the refusal, the steps it would run, the report."""
import json
import sys

import pytest
import torch

from ..checkpoint.helpers import load_tool

GPU = {"name": "NVIDIA H200", "capability": "9.0", "multiprocessors": 132, "memory_gib": 139.8, "torch": "2.11.0",
       "cuda": "13.0", "triton": "3.6.0"}


@pytest.fixture
def gpu_check():
    return load_tool("gpu_check")


def test_refuses_cleanly_without_a_gpu(gpu_check, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main(["--logs", str(tmp_path / "logs"), "--reports", str(tmp_path / "reports")]) == 2
    assert "gpu-check: no GPU to check: torch" in capsys.readouterr().err
    assert not (tmp_path / "reports").exists() and not (tmp_path / "logs").exists()


def test_device_slug(gpu_check):
    assert gpu_check.device_slug("NVIDIA H200") == "nvidia-h200"
    assert gpu_check.device_slug("NVIDIA GeForce RTX 4090 (24 GB)") == "nvidia-geforce-rtx-4090-24-gb"


def test_run_step_records_exit_status_summary_and_timeout(gpu_check, monkeypatch, tmp_path):
    script = "print('collected 4 items'); print('== 3 passed, 1 failed in 2.0s =='); raise SystemExit(1)"
    step = gpu_check.run_step("tests", [sys.executable, "-c", script], {}, deadline=float("inf"), logs=tmp_path)
    assert step.status == "failed (exit 1)" and step.summary == "3 passed, 1 failed in 2.0s"
    assert "collected 4 items" in (tmp_path / "tests.log").read_text()
    monkeypatch.setitem(gpu_check.STEP_LIMITS, "tests", 1)
    step = gpu_check.run_step("tests", [sys.executable, "-c", "import time; time.sleep(30)"], {},
                              deadline=float("inf"), logs=tmp_path)
    assert step.status == "timed out after 1 s" and not step.passed
    assert gpu_check.run_step("tests", ["true"], {}, deadline=0.0, logs=tmp_path).status.startswith("not run")


def fake_op_json(dtype, times):
    """benchmark_op's --json for fwd+bwd timings {(backend, shape): ms}, table made by the tool itself."""
    results = [{"shape": shape, "mode": "fwd+bwd", "backend": backend, "ms": ms, "peak_mib": 100.0}
               for (backend, shape), ms in times.items()]
    table = {"header": load_tool("benchmark_op").TABLE_HEADER,
             "rows": load_tool("benchmark_op").speedup_rows(results)}
    settings = {"repeats": 20, "locations": "model-like", "dtype": dtype}
    return {"settings": settings, "results": results, "failures": {}, "table": table}


def fake_model_json():
    tool = load_tool("benchmark_model")
    rows = [{"device": "cuda", "what": "inference bs1 800x1066", "precision": precision, "images": 1, "ours": seconds,
             "peak_mib": 900.0} for precision, seconds in (("fp32", 0.05), ("bf16", 0.02))]
    rows.append({"device": "cuda", "what": "train step bs2 512x640", "precision": "bf16", "images": 2, "ours": 0.25})
    return {"rows": rows, "table": {"header": tool.TABLE_HEADER, "rows": tool.table_rows(rows)}}


def test_report_from_fake_timings(gpu_check):
    ops = {
        "float32": fake_op_json("float32", {("baseline", "encoder"): 6.0, ("native", "encoder"): 4.0,
                                            ("triton", "encoder"): 3.0, ("native", "decoder"): 0.5,
                                            ("triton", "decoder"): 0.6}),
        "bfloat16": fake_op_json("bfloat16", {("baseline", "encoder"): 4.0, ("triton", "encoder"): 2.0}),
    }
    steps = [gpu_check.Step("build", "passed", 95.2, ""), gpu_check.Step("tests", "failed (exit 1)", 130.0,
                                                                         "2 failed, 120 passed | 3 skipped")]
    report = gpu_check.render_report(GPU, steps, ops, fake_model_json(), "2030-01-01 00:00 UTC")
    assert report.startswith("# GPU check: NVIDIA H200\n")
    assert "| device | NVIDIA H200 (sm_90, 132 multiprocessors, 140 GiB) |" in report
    assert "| tests | failed (exit 1) | 130 | 2 failed, 120 passed / 3 skipped |" in report
    assert "\n".join([
        "| target | measured | met |",
        "| --- | --- | --- |",
        "| Triton fwd+bwd over the baseline, encoder, float32 ≥ 1.5× | 2.00× | yes |",
        "| Triton fwd+bwd over the baseline, encoder, bfloat16 ≥ 2.5× | 2.00× | no |",
        "| R50 inference, batch 1, 800×1066, bf16 ≥ 40 images/s | 50.0 images/s | yes |",
    ]) in report
    assert "| encoder | fwd+bwd | triton | 3.000 | 100 | — | 2.00× |" in report
    assert "| float32 | encoder | 1.33× | triton |" in report and "| float32 | decoder | 0.83× | native |" in report
    assert "| cuda | inference bs1 800x1066 | bf16 | 0.0200 | 50.00 | 900 | — | — | — |" in report
    assert "| cuda | train step bs2 512x640 | bf16 | 0.2500 | 8.00 | — | — | — | — |" in report


def test_main_runs_the_steps_in_order_and_writes_the_report(gpu_check, monkeypatch, tmp_path):
    """The orchestration with a fake GPU and fake steps: the commands, the wheels, the report's name."""
    (tmp_path / "wheels").mkdir()
    (tmp_path / "wheels" / "fvcore-0.1.5-py3-none-any.whl").write_text("")
    commands = {}

    def fake_run_step(name, command, env, deadline, logs):
        commands[name] = command
        if "--json" in command:
            path = command[command.index("--json") + 1]
            fake = fake_model_json() if name == "model" else fake_op_json(name[3:], {("triton", "encoder"): 1.0})
            with open(path, "w") as file:
                json.dump(fake, file)
        assert str(tmp_path / "site") in env["PYTHONPATH"] and env["TORCH_CUDA_ARCH_LIST"] == "9.0"
        return gpu_check.Step(name, "passed", 1.0, "")

    monkeypatch.setattr(gpu_check, "find_gpu", lambda: (GPU, ""))
    monkeypatch.setattr(gpu_check, "run_step", fake_run_step)
    argv = ["--wheels", str(tmp_path / "wheels"), "--site", str(tmp_path / "site"), "--logs", str(tmp_path / "logs"),
            "--reports", str(tmp_path / "reports")]
    assert gpu_check.main(argv) == 0
    assert list(commands) == ["wheels", "build", "tests", "op-float32", "op-bfloat16", "model"]
    wheel = str(tmp_path / "wheels" / "fvcore-0.1.5-py3-none-any.whl")
    assert commands["wheels"][-3:] == ["--target", str(tmp_path / "site"), wheel]
    assert "--no-index" in commands["build"] and "--no-deps" in commands["build"]
    assert "tests/ops" in commands["tests"] and "tests/ops/triton/test_interpreter.py" in commands["tests"]
    assert commands["op-bfloat16"][1:6] == ["tools/benchmark_op.py", "--device", "cuda", "--dtype", "bfloat16"]
    report = (tmp_path / "reports" / "gpu-nvidia-h200.md").read_text()
    assert "## Multi-scale deformable attention, bfloat16" in report and "## Model" in report
