"""Benchmark multi-scale deformable attention: the kernels against each other and the PyTorch reference.

Runs the backends in one process on the same inputs and thread count, at the encoder shape of
an 800x1066 image (levels (100,134) (50,67) (25,34) (13,17), M=8, D=32, P=4, Lq=S=17,821) and
the decoder shape (Lq=300), forward and forward+backward, and prints a markdown table of
medians, peak memory and speed-ups.

    python tools/benchmark_op.py [--device cpu|cuda] [--backends pytorch baseline native triton]
                                 [--dtype float32|float64|float16|bfloat16] [--shapes encoder decoder]
                                 [--levels HxW ...] [--threads N] [--repeats R] [--random-locations]
                                 [--json PATH]

Backends: "pytorch" (the reference, labelled "reference"), "native" (our C++/CUDA kernels),
"triton" (our Triton kernels; on the CPU only under TRITON_INTERPRET=1, for dry runs with
small --levels) and, on CUDA, "baseline": kernels with the official Deformable DETR op's design
(one thread per output channel; benchmarks/msda_baseline/, compiled just in time on first use). The
default is every backend that runs on the device (the CPU: reference and native).

Before any timing, each kernel backend's output and gradients are compared with the reference
run in float64 on the same (rounded) inputs; a backend that disagrees by more than
TOLERANCE[dtype] relative to the largest magnitude is reported and not timed (a wrong kernel
cannot flatter a ratio), and the script exits with status 1 once the others are timed.

Peak memory on the CPU is the growth of the process's peak resident set while the case runs,
so each case runs in its own child process; on CUDA it is torch.cuda.max_memory_allocated
above the inputs. --json writes the rows and the run's settings for tools/gpu_check.py.
"""
import argparse
import json
import multiprocessing as mp
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

from ddetr_plugin.ops import multi_scale_deformable_attention
from ddetr_plugin.ops.ms_deform_attn import KERNEL_BACKENDS

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/ is the checkout's, not installed
from benchmarks.msda_baseline import baseline_ms_deform_attn, load_baseline  # noqa: E402
from benchmarks.tables import markdown_table  # noqa: E402

LEVELS = ((100, 134), (50, 67), (25, 34), (13, 17))
HEADS, CHANNELS, POINTS = 8, 32, 4
SHAPES = {"encoder": None, "decoder": 300}  # Lq; None: Lq = S
LABELS = {"pytorch": "reference", "baseline": "baseline", "native": "native", "triton": "triton"}
BACKENDS = tuple(LABELS)
# Largest difference from the float64 reference accepted, relative to the reference tensor's largest
# magnitude: float32 summation order, or one rounding of the result for half and bfloat16.
TOLERANCE = {torch.float64: 1e-9, torch.float32: 1e-3, torch.float16: 1e-2, torch.bfloat16: 2e-2}
MODES = ("fwd", "fwd+bwd")
TABLE_HEADER = ["shape", "mode", "backend", "ms", "peak MiB", "vs reference", "vs baseline"]


def reference_points(queries: int, levels, generator: torch.Generator) -> torch.Tensor:
    """(Lq, 2) normalized (x, y): pixel centres of every level for the encoder (Lq = S), random for the decoder."""
    if queries != sum(h * w for h, w in levels):
        return torch.rand(queries, 2, generator=generator)
    points = []
    for height, width in levels:
        ys, xs = torch.meshgrid(torch.arange(height) + 0.5, torch.arange(width) + 0.5, indexing="ij")
        points.append(torch.stack([xs.flatten() / width, ys.flatten() / height], -1))
    return torch.cat(points)


def make_inputs(queries: int | None, device: str, dtype: torch.dtype, random_locations: bool, levels=LEVELS,
                seed: int = 0):
    """Inputs as the model produces them: each query samples P points per level around its
    reference point, offsets of a few pixels (as the official initialisation spreads them),
    softmax attention weights. --random-locations samples uniformly over [0, 1] instead,
    the memory-access worst case."""
    generator = torch.Generator().manual_seed(seed)
    spatial_shapes = torch.tensor(levels, dtype=torch.long)
    areas = spatial_shapes.prod(1)
    level_start_index = torch.cat([areas.new_zeros(1), areas.cumsum(0)[:-1]])
    positions = int(areas.sum())
    queries = positions if queries is None else queries
    value = torch.randn(1, positions, HEADS, CHANNELS, generator=generator)
    shape = (1, queries, HEADS, len(levels), POINTS, 2)
    if random_locations:
        locations = torch.rand(shape, generator=generator)
    else:
        offsets = torch.randn(shape, generator=generator) * 2.0  # pixels
        sizes = spatial_shapes.flip(-1).view(1, 1, 1, len(levels), 1, 2)  # (W, H)
        reference = reference_points(queries, levels, generator).view(1, queries, 1, 1, 1, 2)
        locations = reference + offsets / sizes
    weights = torch.randn(1, queries, HEADS, len(levels) * POINTS, generator=generator).softmax(-1)
    weights = weights.view(1, queries, HEADS, len(levels), POINTS)
    tensors = [t.to(device=device, dtype=dtype) for t in (value, locations, weights)]
    return tensors[0], spatial_shapes.to(device), level_start_index.to(device), tensors[1], tensors[2]


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def attention(backend: str, *inputs: torch.Tensor) -> torch.Tensor:
    """The op on one backend (one of BACKENDS); inputs and output as make_inputs / the op."""
    if backend == "baseline":
        return baseline_ms_deform_attn(*inputs)
    return multi_scale_deformable_attention(*inputs, backend=backend)


def unavailable_reason(backend: str, device: str, dtype: torch.dtype) -> str | None:
    """Why ``backend`` cannot run on this device and dtype, or None."""
    if backend == "baseline":
        return None if device == "cuda" else "the baseline kernels are CUDA only"
    if backend in KERNEL_BACKENDS:
        return KERNEL_BACKENDS[backend](device, dtype)
    return None


def run_case(shape: str, backend: str, mode: str, device: str, dtype: torch.dtype, repeats: int, threads: int,
             random: bool, levels=LEVELS):
    """Median seconds and peak extra memory (MiB) of one (shape, backend, mode)."""
    torch.set_num_threads(threads)
    value, shapes, starts, locations, weights = make_inputs(SHAPES[shape], device, dtype, random, levels)
    if mode == "fwd+bwd":
        for t in (value, locations, weights):
            t.requires_grad_(True)

    def step():
        out = attention(backend, value, shapes, starts, locations, weights)
        if mode == "fwd+bwd":
            torch.autograd.grad(out, (value, locations, weights), torch.ones_like(out))

    grad_mode = torch.enable_grad() if mode == "fwd+bwd" else torch.no_grad()
    synchronize(device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    with grad_mode:
        step()  # warm-up (and, for Triton, compilation)
        synchronize(device)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            step()
            synchronize(device)
            times.append(time.perf_counter() - start)
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    return statistics.median(times), max(peak, 0) / 2**20


def check_against_reference(backend: str, shape: str, device: str, dtype: torch.dtype, random: bool,
                            levels=LEVELS) -> str | None:
    """Compare ``backend``'s output and gradients with the float64 reference on the same inputs.

    Prints the max abs difference of each tensor; returns None when all are within
    TOLERANCE[dtype] times the reference tensor's max magnitude, else what differs.
    """
    value, shapes, starts, locations, weights = make_inputs(SHAPES[shape], device, dtype, random, levels)
    results = {}
    for name, precision in ((backend, dtype), ("pytorch", torch.float64)):
        inputs = [t.detach().to(precision).requires_grad_() for t in (value, locations, weights)]
        out = attention(name, inputs[0], shapes, starts, inputs[1], inputs[2])
        generator = torch.Generator().manual_seed(1)  # the same grad_output, rounded to dtype, for both
        grad_output = torch.randn(out.shape, generator=generator).to(device=device, dtype=dtype).to(precision)
        results[name] = (out.detach(), *torch.autograd.grad(out, inputs, grad_output))
    tolerance = TOLERANCE[dtype]
    report, failures = [], []
    for name, actual, expected in zip(
        ("output", "grad_value", "grad_locations", "grad_weights"), results[backend], results["pytorch"]
    ):
        diff = (actual.double() - expected).abs().max().item()
        relative = diff / max(expected.abs().max().item(), torch.finfo(torch.float64).tiny)
        report.append(f"{name} {diff:.2e} ({relative:.1e} rel)")
        if not relative <= tolerance:  # NaN fails too
            failures.append(name)
    print(f"{LABELS[backend]} vs float64 reference, {shape}: max abs diff " + ", ".join(report))
    if failures:
        return (f"{LABELS[backend]} disagrees with the float64 reference on {', '.join(failures)} ({shape}, "
                f"{str(dtype).removeprefix('torch.')}: tolerance {tolerance:g} relative); not timed")
    return None


def _child(queue, *args):
    queue.put(run_case(*args))


def measure(*args, isolate: bool):
    if not isolate:
        return run_case(*args)
    context = mp.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(queue, *args))
    process.start()
    result = queue.get()
    process.join()
    return result


def speedup_rows(results: list[dict]) -> list[list[str]]:
    """TABLE_HEADER rows of ``results``, dicts with shape, mode, backend, ms, peak_mib; a speed-up is
    the other backend's time over this one's."""
    times = {(r["shape"], r["mode"], r["backend"]): r["ms"] for r in results}
    rows = []
    for r in results:
        cells = [r["shape"], r["mode"], LABELS[r["backend"]], f"{r['ms']:.3f}", f"{r['peak_mib']:.0f}"]
        for other in ("pytorch", "baseline"):
            other_ms = times.get((r["shape"], r["mode"], other))
            cells.append(f"{other_ms / r['ms']:.2f}×" if other_ms is not None and r["backend"] != other else "—")
        rows.append(cells)
    return rows


def parse_levels(text: str) -> tuple[int, int]:
    height, _, width = text.partition("x")
    try:
        return int(height), int(width)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--levels takes HxW sizes such as 100x134, got {text!r}") from None


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    parser.add_argument("--backends", nargs="+", choices=BACKENDS,
                        help="default: reference, baseline (CUDA), native and triton (CUDA)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64", "float16", "bfloat16"])
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--levels", nargs="+", type=parse_levels, default=list(LEVELS),
                        help="feature map sizes HxW (default: the 800x1066 image's four levels)")
    parser.add_argument("--random-locations", action="store_true", help="uniform sampling locations (worst case)")
    parser.add_argument("--json", help="also write the results to this file")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    dtype = getattr(torch, args.dtype)
    levels = tuple(args.levels)
    default = ["pytorch", "baseline", "native", "triton"] if args.device == "cuda" else ["pytorch", "native"]
    requested = args.backends or default
    unavailable = {b: unavailable_reason(b, args.device, dtype) for b in requested}
    for backend, reason in unavailable.items():
        if reason is not None:
            raise SystemExit(f"benchmark_op: backend {backend!r} cannot run here: {reason}")
    if "baseline" in requested:
        load_baseline()  # compile before any timing
    failures = {}
    for backend in requested:
        for shape in args.shapes:
            if backend != "pytorch" and backend not in failures:
                failure = check_against_reference(backend, shape, args.device, dtype, args.random_locations, levels)
                if failure is not None:
                    failures[backend] = failure
    timed = [b for b in requested if b not in failures]
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    settings = {"torch": torch.__version__, "device": args.device, "device_name": device_name, "dtype": args.dtype,
                "threads": args.threads, "repeats": args.repeats, "levels": [list(level) for level in levels],
                "locations": "uniform random" if args.random_locations else "model-like"}
    print(f"torch {torch.__version__}, device {device_name}, dtype {args.dtype}, threads {args.threads}, "
          f"median of {args.repeats}, {settings['locations']} locations")
    results = []
    for shape in args.shapes:
        for mode in MODES:
            for backend in timed:
                seconds, peak = measure(shape, backend, mode, args.device, dtype, args.repeats, args.threads,
                                        args.random_locations, levels, isolate=args.device == "cpu")
                results.append({"shape": shape, "mode": mode, "backend": backend, "ms": seconds * 1e3,
                                "peak_mib": peak})
    table = {"header": TABLE_HEADER, "rows": speedup_rows(results)}
    print(markdown_table(table["header"], table["rows"]))
    for failure in failures.values():
        print(failure)
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"settings": settings, "results": results, "failures": failures, "table": table}, file,
                      indent=1)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
