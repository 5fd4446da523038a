"""``make gpu-check``: on a machine with a CUDA GPU, build, test and benchmark, and write the report.

    python3 tools/gpu_check.py [--budget-s 480] [--wheels .whl] [--site /tmp/ddetr-gpu-check-site]
                               [--logs build/gpu-check] [--reports benchmarks]

Meant for a fresh GPU machine with its own python3, torch and Triton and no network. In order,
each step with what is left of the time budget:

1. find a CUDA GPU; without one, say why and exit with status 2;
2. install the wheels in --wheels (pure-Python dependencies the machine lacks, e.g. fvcore)
   into --site with ``pip --no-index --no-deps``; the children get it on PYTHONPATH. torch is
   never installed: everything builds and runs against the torch found;
3. build and install the package (``pip install --no-build-isolation --no-deps --no-index -e .``)
   with the CUDA kernels for this GPU's architecture;
4. run every CUDA test: tests/ops (the native and Triton kernels on CUDA, opcheck,
   torch.compile) and the baseline kernels' tests; the interpreter run of the Triton tests is
   CI's (TESTS_LEFT_TO_CI);
5. ``tools/benchmark_op.py --device cuda`` in float32 and bfloat16: reference, baseline, native
   and Triton, encoder and decoder shapes, forward and forward+backward;
6. ``tools/benchmark_model.py --device cuda``: R50 inference at 800x1066, batch 1 and 4, and a
   training step at batch 2, each in fp32 and bf16 autocast;
7. write ``<reports>/gpu-<device>.md``: environment, each step's status and time, the tables,
   the GPU targets (docs/benchmarks.md) and which kernel was faster per dtype (for ops/auto_backend.py).

Every step's full output is in --logs. Exit status 0 when every step passed.
"""
import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # benchmarks/ is the checkout's, not installed
from benchmarks.tables import markdown_table  # noqa: E402

TESTS = ["tests/ops", "tests/benchmarks/test_msda_baseline.py"]
TESTS_LEFT_TO_CI = ["tests/ops/triton/test_interpreter.py"]
OP_DTYPES = ("float32", "bfloat16")
# Longest each step may take, in seconds, within what is left of --budget-s.
STEP_LIMITS = {"wheels": 60, "build": 240, "tests": 240, "op-float32": 90, "op-bfloat16": 90, "model": 180}
REPORT_RESERVE_S = 5
# The GPU targets (docs/benchmarks.md): Triton forward+backward over the official-design baseline at
# the encoder shape, per dtype, and R50 inference at batch 1 in bf16 (images/s).
OP_TARGETS = {"float32": 1.5, "bfloat16": 2.5}
INFERENCE_TARGET = 40.0


class Step(NamedTuple):
    name: str
    status: str  # "passed", "failed (exit N)", "timed out after N s", "not run: ..."
    seconds: float
    summary: str

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def find_gpu() -> tuple[dict | None, str]:
    """(facts about GPU 0, "") when torch sees a CUDA GPU, else (None, why not)."""
    try:
        import torch
    except ImportError as error:
        return None, f"torch cannot be imported ({error})"
    if not torch.cuda.is_available():
        return None, (f"torch {torch.__version__} (CUDA {torch.version.cuda or 'none'}) sees no CUDA GPU "
                      f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')})")
    properties = torch.cuda.get_device_properties(0)
    facts = {"name": properties.name, "capability": f"{properties.major}.{properties.minor}",
             "multiprocessors": properties.multi_processor_count, "memory_gib": properties.total_memory / 2**30,
             "torch": torch.__version__, "cuda": torch.version.cuda}
    try:
        import triton

        facts["triton"] = triton.__version__
    except ImportError:
        facts["triton"] = "not installed"
    return facts, ""


def device_slug(name: str) -> str:
    """'NVIDIA H200' -> 'nvidia-h200': the device part of the report's file name."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def run_step(name: str, command: list[str], env: dict, deadline: float, logs: Path) -> Step:
    """Run ``command`` from the repository root with its output in logs/<name>.log."""
    timeout = min(STEP_LIMITS[name], deadline - time.monotonic() - REPORT_RESERVE_S)
    if timeout <= 0:
        return Step(name, "not run: the time budget is spent", 0.0, "")
    log_path = logs / f"{name}.log"
    print(f"gpu-check: {name}: {' '.join(command)} (at most {timeout:.0f} s)", flush=True)
    start = time.monotonic()
    with open(log_path, "w") as log:
        try:
            returncode = subprocess.run(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                        timeout=timeout).returncode
            status = "passed" if returncode == 0 else f"failed (exit {returncode})"
        except subprocess.TimeoutExpired:
            status = f"timed out after {timeout:.0f} s"
    output = log_path.read_text(errors="replace")
    step = Step(name, status, time.monotonic() - start, summarize(output))
    print(f"gpu-check: {name}: {step.status} in {step.seconds:.0f} s; {step.summary}", flush=True)
    if not step.passed:
        print("\n".join(output.splitlines()[-40:]), flush=True)
    return step


def summarize(output: str) -> str:
    """pytest's closing counts, or the last line of the output."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    counts = [line for line in lines if re.search(r"\d+ (passed|failed|error)", line)]
    return (counts or lines or [""])[-1].strip("= ")


def load_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def op_speedup(op: dict, backend: str, over: str, shape: str = "encoder", mode: str = "fwd+bwd") -> float | None:
    """``over``'s time divided by ``backend``'s for one case of benchmark_op's results, or None."""
    times = {(r["backend"], r["shape"], r["mode"]): r["ms"] for r in op["results"]}
    if (backend, shape, mode) not in times or (over, shape, mode) not in times:
        return None
    return times[(over, shape, mode)] / times[(backend, shape, mode)]


def targets_rows(ops: dict[str, dict], model: dict | None) -> list[list[str]]:
    """(target, measured, met) rows for the GPU targets, from what was measured."""
    rows = []
    for dtype, wanted in OP_TARGETS.items():
        ratio = op_speedup(ops[dtype], "triton", "baseline") if dtype in ops else None
        rows.append([f"Triton fwd+bwd over the baseline, encoder, {dtype} ≥ {wanted}×",
                     f"{ratio:.2f}×" if ratio is not None else "not measured",
                     "—" if ratio is None else "yes" if ratio >= wanted else "no"])
    rate = None
    for row in (model or {}).get("rows", []):
        if row["what"].startswith("inference bs1 ") and row["precision"] == "bf16":
            rate = row["images"] / row["ours"]
    rows.append([f"R50 inference, batch 1, 800×1066, bf16 ≥ {INFERENCE_TARGET:g} images/s",
                 f"{rate:.1f} images/s" if rate is not None else "not measured",
                 "—" if rate is None else "yes" if rate >= INFERENCE_TARGET else "no"])
    return rows


def faster_kernel_rows(ops: dict[str, dict]) -> list[list[str]]:
    """Per dtype and shape: native's fwd+bwd time over Triton's, and which ops/auto_backend.py should prefer."""
    rows = []
    for dtype, op in ops.items():
        for shape in ("encoder", "decoder"):
            ratio = op_speedup(op, "triton", "native", shape)
            if ratio is not None:
                rows.append([dtype, shape, f"{ratio:.2f}×", "triton" if ratio >= 1 else "native"])
    return rows


def render_report(gpu: dict, steps: list[Step], ops: dict[str, dict], model: dict | None, when: str) -> str:
    """The markdown report; ``ops`` maps a dtype to benchmark_op's JSON, ``model`` is benchmark_model's."""
    lines = [f"# GPU check: {gpu['name']}", "",
             f"Written by `make gpu-check` (tools/gpu_check.py) on {when}.", "",
             markdown_table(["", ""], [
                 ["device", f"{gpu['name']} (sm_{gpu['capability'].replace('.', '')}, {gpu['multiprocessors']} "
                            f"multiprocessors, {gpu['memory_gib']:.0f} GiB)"],
                 ["torch", f"{gpu['torch']} (CUDA {gpu['cuda']})"], ["Triton", gpu["triton"]],
                 ["Python", platform.python_version()]]), "",
             "## Steps", "",
             markdown_table(["step", "status", "seconds", "summary"],
                            [[s.name, s.status, f"{s.seconds:.0f}", s.summary.replace("|", "/")] for s in steps]), ""]
    lines += ["## Targets", "", markdown_table(["target", "measured", "met"], targets_rows(ops, model)), ""]
    for dtype, op in ops.items():
        settings = op["settings"]
        lines += [f"## Multi-scale deformable attention, {dtype}", "",
                  f"`tools/benchmark_op.py --device cuda --dtype {dtype}`: median of {settings['repeats']}, "
                  f"{settings['locations']} locations; a speed-up is the other backend's time over this row's.", "",
                  markdown_table(op["table"]["header"], op["table"]["rows"]), ""]
        lines += [f"- {failure}" for failure in op["failures"].values()]
    faster = faster_kernel_rows(ops)
    if faster:
        lines += ["## Native CUDA kernel against Triton (for ops/auto_backend.py)", "",
                  "Forward+backward; native time over Triton time (above 1: Triton faster).", "",
                  markdown_table(["dtype", "shape", "native / triton", "faster"], faster), ""]
    if model is not None:
        lines += ["## Model", "",
                  "`tools/benchmark_model.py --device cuda`: ResNet-50, random weights; bf16 is autocast; peak MiB "
                  "is the most memory torch allocated during the measurement, weights included.", "",
                  markdown_table(model["table"]["header"], model["table"]["rows"]), ""]
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget-s", type=float, default=480.0, help="time for all steps (default 8 minutes)")
    parser.add_argument("--wheels", type=Path, default=REPO_ROOT / ".whl")
    parser.add_argument("--site", type=Path, default=Path("/tmp/ddetr-gpu-check-site"))
    parser.add_argument("--logs", type=Path, default=REPO_ROOT / "build" / "gpu-check")
    parser.add_argument("--reports", type=Path, default=REPO_ROOT / "benchmarks")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    deadline = time.monotonic() + args.budget_s
    gpu, reason = find_gpu()
    if gpu is None:
        print(f"gpu-check: no GPU to check: {reason}. Run it on a machine with a CUDA GPU.", file=sys.stderr)
        return 2
    print(f"gpu-check: {gpu['name']} (sm_{gpu['capability']}), torch {gpu['torch']}, Triton {gpu['triton']}",
          flush=True)
    args.logs.mkdir(parents=True, exist_ok=True)
    python = sys.executable
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TORCH_CUDA_ARCH_LIST": gpu["capability"], "FORCE_CUDA": "1",
           "MAX_JOBS": str(os.cpu_count() or 1)}
    env.pop("TRITON_INTERPRET", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(args.site), str(REPO_ROOT), env.get("PYTHONPATH")]))
    steps = []
    wheels = sorted(str(p) for p in args.wheels.glob("*.whl"))
    if wheels:
        steps.append(run_step("wheels", [python, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
                                         "--no-compile", "--upgrade", "--target", str(args.site), *wheels],
                              env, deadline, args.logs))
    steps.append(run_step("build", [python, "-m", "pip", "install", "-q", "--no-build-isolation", "--no-deps",
                                    "--no-index", "-e", "."], env, deadline, args.logs))
    ops, model = {}, None
    if steps[-1].passed:
        deselect = [item for path in TESTS_LEFT_TO_CI for item in ("--deselect", path)]
        steps.append(run_step("tests", [python, "-m", "pytest", "-q", "-rfEs", "-p", "no:cacheprovider", *TESTS,
                                        *deselect], env, deadline, args.logs))
        for dtype in OP_DTYPES:
            path = args.logs / f"op-{dtype}.json"
            steps.append(run_step(f"op-{dtype}", [python, "tools/benchmark_op.py", "--device", "cuda", "--dtype", dtype,
                                                  "--repeats", "20", "--json", str(path)], env, deadline, args.logs))
            if (result := load_json(path)) is not None:
                ops[dtype] = result
        path = args.logs / "model.json"
        steps.append(run_step("model", [python, "tools/benchmark_model.py", "--device", "cuda", "--repeats", "10",
                                        "--batch-sizes", "1", "4", "--precisions", "fp32", "bf16", "--json", str(path)],
                              env, deadline, args.logs))
        model = load_json(path)
    args.reports.mkdir(parents=True, exist_ok=True)
    report = args.reports / f"gpu-{device_slug(gpu['name'])}.md"
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    report.write_text(render_report(gpu, steps, ops, model, when) + "\n")
    print(f"gpu-check: wrote {report}; logs in {args.logs}", flush=True)
    return 0 if all(step.passed for step in steps) else 1


if __name__ == "__main__":
    raise SystemExit(main())
