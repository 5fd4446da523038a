"""Benchmark multi-scale deformable attention: native kernels vs the PyTorch reference.

Runs both backends in one process on the same inputs and thread count, at the
encoder shape of an 800x1066 image (levels (100,134) (50,67) (25,34) (13,17),
M=8, D=32, P=4, Lq=S=17,821) and the decoder shape (Lq=300), forward and
forward+backward, and prints medians, speed-up ratios and peak memory.

    python tools/benchmark_op.py [--device cpu|cuda] [--threads N] [--repeats R] [--dtype float32]

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

LEVELS = ((100, 134), (50, 67), (25, 34), (13, 17))
HEADS, CHANNELS, POINTS = 8, 32, 4
SHAPES = {"encoder": None, "decoder": 300}  # Lq; None: Lq = S


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
        out = multi_scale_deformable_attention(value, shapes, starts, locations, weights, backend=backend)
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
    print(f"torch {torch.__version__}, device {args.device}, dtype {args.dtype}, threads {args.threads}, "
          f"median of {args.repeats}, {'uniform random' if args.random_locations else 'model-like'} locations")
    header = f"{'shape':8} {'mode':8} {'reference ms':>13} {'native ms':>10} {'speed-up':>9} {'ref MiB':>8} {'native MiB':>11}"
    print(header)
    print("-" * len(header))
    for shape in args.shapes:
        for mode in ("fwd", "fwd+bwd"):
            results = {}
            for backend in ("pytorch", "native"):
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
            (ref_t, ref_m), (nat_t, nat_m) = results["pytorch"], results["native"]
            print(f"{shape:8} {mode:8} {ref_t * 1e3:13.1f} {nat_t * 1e3:10.1f} {ref_t / nat_t:8.1f}x "
                  f"{ref_m:8.0f} {nat_m:11.0f}")


if __name__ == "__main__":
    main()
