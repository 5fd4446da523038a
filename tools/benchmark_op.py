"""Benchmark multi-scale deformable attention: native kernels vs the PyTorch reference (and, on CUDA, a baseline).

Runs the backends in one process on the same inputs and thread count, at the
encoder shape of an 800x1066 image (levels (100,134) (50,67) (25,34) (13,17),
M=8, D=32, P=4, Lq=S=17,821) and the decoder shape (Lq=300), forward and
forward+backward, and prints medians, the native op's speed-up over each other
backend and peak memory.

    python tools/benchmark_op.py [--device cpu|cuda] [--threads N] [--repeats R]
                                 [--dtype float32|float64|float16|bfloat16]

On CUDA a third backend, "baseline", is timed: kernels with the official
Deformable DETR op's design (one thread per output channel; tools/msda_baseline/,
compiled just in time on first use). Before any timing, its output and gradients
are compared with the native op's on the inputs of every shape, and the run stops
if they disagree, so a wrong baseline cannot flatter the ratio. The
reference runs in the requested dtype (grid_sample takes half and bfloat16 on
CUDA); the native CPU kernel takes float32 and float64 only.

Peak memory on the CPU is the growth of the process's peak resident set while
the case runs, so each case runs in its own child process; on CUDA it is
torch.cuda.max_memory_allocated above the inputs.
"""
import argparse
import multiprocessing as mp
import resource
import statistics
import time

import torch

from ddetr_plugin.ops import multi_scale_deformable_attention, native_available
from ddetr_plugin.ops.native import native_unsupported_reason
from msda_baseline import baseline_ms_deform_attn, load_baseline  # tools/msda_baseline/, beside this script

LEVELS = ((100, 134), (50, 67), (25, 34), (13, 17))
HEADS, CHANNELS, POINTS = 8, 32, 4
SHAPES = {"encoder": None, "decoder": 300}  # Lq; None: Lq = S
LABELS = {"pytorch": "reference", "baseline": "baseline", "native": "native"}  # backend: column name
# Largest baseline-vs-native difference accepted, relative to the native tensor's largest magnitude:
# float32 summation order, or one rounding of the result for half and bfloat16.
BASELINE_TOLERANCE = {torch.float64: 1e-9, torch.float32: 1e-3, torch.float16: 1e-2, torch.bfloat16: 2e-2}


def reference_points(queries: int, positions: int, generator: torch.Generator) -> torch.Tensor:
    """(Lq, 2) normalized (x, y): pixel centres of every level for the encoder (Lq = S), random for the decoder."""
    if queries != positions:
        return torch.rand(queries, 2, generator=generator)
    points = []
    for height, width in LEVELS:
        ys, xs = torch.meshgrid(torch.arange(height) + 0.5, torch.arange(width) + 0.5, indexing="ij")
        points.append(torch.stack([xs.flatten() / width, ys.flatten() / height], -1))
    return torch.cat(points)


def make_inputs(queries: int | None, device: str, dtype: torch.dtype, random_locations: bool, seed: int = 0):
    """Inputs as the model produces them: each query samples P points per level around its
    reference point, offsets of a few pixels (as the official initialisation spreads them),
    softmax attention weights. --random-locations samples uniformly over [0, 1] instead,
    the memory-access worst case."""
    generator = torch.Generator().manual_seed(seed)
    spatial_shapes = torch.tensor(LEVELS, dtype=torch.long)
    areas = spatial_shapes.prod(1)
    level_start_index = torch.cat([areas.new_zeros(1), areas.cumsum(0)[:-1]])
    positions = int(areas.sum())
    queries = positions if queries is None else queries
    value = torch.randn(1, positions, HEADS, CHANNELS, generator=generator)
    shape = (1, queries, HEADS, len(LEVELS), POINTS, 2)
    if random_locations:
        locations = torch.rand(shape, generator=generator)
    else:
        offsets = torch.randn(shape, generator=generator) * 2.0  # pixels
        sizes = spatial_shapes.flip(-1).view(1, 1, 1, len(LEVELS), 1, 2)  # (W, H)
        reference = reference_points(queries, positions, generator).view(1, queries, 1, 1, 1, 2)
        locations = reference + offsets / sizes
    weights = torch.randn(1, queries, HEADS, len(LEVELS) * POINTS, generator=generator).softmax(-1)
    weights = weights.view(1, queries, HEADS, len(LEVELS), POINTS)
    tensors = [t.to(device=device, dtype=dtype) for t in (value, locations, weights)]
    return tensors[0], spatial_shapes.to(device), level_start_index.to(device), tensors[1], tensors[2]


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def attention(backend: str, *inputs: torch.Tensor) -> torch.Tensor:
    """The op on one backend ("pytorch", "native" or "baseline"); inputs and output as make_inputs / the op."""
    if backend == "baseline":
        return baseline_ms_deform_attn(*inputs)
    return multi_scale_deformable_attention(*inputs, backend=backend)


def run_case(
    shape: str, backend: str, mode: str, device: str, dtype: torch.dtype, repeats: int, threads: int, random: bool
):
    """Median seconds and peak extra memory (MiB) of one (shape, backend, mode)."""
    torch.set_num_threads(threads)
    value, shapes, starts, locations, weights = make_inputs(SHAPES[shape], device, dtype, random)
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
        step()  # warm-up
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


def check_baseline(shape: str, dtype: torch.dtype, random: bool) -> None:
    """Compare the baseline's output and gradients with the native op's on the CUDA benchmark inputs.

    Prints the max abs difference of each tensor and raises SystemExit when one exceeds
    BASELINE_TOLERANCE[dtype] times the native tensor's max magnitude.
    """
    value, shapes, starts, locations, weights = make_inputs(SHAPES[shape], "cuda", dtype, random)
    inputs = tuple(t.requires_grad_(True) for t in (value, locations, weights))
    results = {}
    for backend in ("native", "baseline"):
        out = attention(backend, value, shapes, starts, locations, weights)
        generator = torch.Generator().manual_seed(1)  # the same grad_output for both backends
        grad_output = torch.randn(out.shape, generator=generator).to(out)
        results[backend] = (out.detach(), *torch.autograd.grad(out, inputs, grad_output))
    tolerance = BASELINE_TOLERANCE[dtype]
    report, failures = [], []
    for name, native, baseline in zip(
        ("output", "grad_value", "grad_locations", "grad_weights"), results["native"], results["baseline"]
    ):
        diff = (baseline.double() - native.double()).abs().max().item()
        relative = diff / max(native.double().abs().max().item(), torch.finfo(torch.float64).tiny)
        report.append(f"{name} {diff:.2e} ({relative:.1e} rel)")
        if not relative <= tolerance:  # NaN fails too
            failures.append(name)
    print(f"baseline vs native, {shape}: max abs diff " + ", ".join(report))
    if failures:
        raise SystemExit(
            f"baseline disagrees with the native op on {', '.join(failures)} ({shape}, "
            f"{str(dtype).removeprefix('torch.')}: tolerance {tolerance:g} relative); not timing a wrong baseline"
        )


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64", "float16", "bfloat16"])
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--random-locations", action="store_true", help="uniform sampling locations (worst case)")
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)
    if not native_available(args.device):
        raise SystemExit(f"the native op is not built for {args.device}; nothing to compare")
    reason = native_unsupported_reason(args.device, dtype)
    if reason is not None:
        raise SystemExit(f"no native kernel to benchmark: {reason}")
    backends = ["pytorch", "baseline", "native"] if args.device == "cuda" else ["pytorch", "native"]
    others = backends[:-1]  # the native op's speed-up is printed against each
    if "baseline" in backends:
        load_baseline()  # compile before any timing
        for shape in args.shapes:
            check_baseline(shape, dtype, args.random_locations)
    print(f"torch {torch.__version__}, device {args.device}, dtype {args.dtype}, threads {args.threads}, "
          f"median of {args.repeats}, {'uniform random' if args.random_locations else 'model-like'} locations")
    header = (f"{'shape':8} {'mode':8} " + " ".join(f"{LABELS[b] + ' ms':>13}" for b in backends) + " "
              + " ".join(f"{'vs ' + LABELS[b]:>13}" for b in others) + " "
              + " ".join(f"{LABELS[b] + ' MiB':>13}" for b in backends))
    print(header)
    print("-" * len(header))
    for shape in args.shapes:
        for mode in ("fwd", "fwd+bwd"):
            results = {}
            for backend in backends:
                results[backend] = measure(
                    shape,
                    backend,
                    mode,
                    args.device,
                    dtype,
                    args.repeats,
                    args.threads,
                    args.random_locations,
                    isolate=args.device == "cpu",
                )
            native_time = results["native"][0]
            print(f"{shape:8} {mode:8} " + " ".join(f"{results[b][0] * 1e3:13.2f}" for b in backends) + " "
                  + " ".join(f"{results[b][0] / native_time:12.2f}x" for b in others) + " "
                  + " ".join(f"{results[b][1]:13.0f}" for b in backends))


if __name__ == "__main__":
    main()
