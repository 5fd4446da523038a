#!/usr/bin/env python
"""Benchmark the whole detector: inference latency and training-step time, optionally against HF.

    python tools/benchmark_model.py [--variant plain|box_refine|two_stage] [--compare-hf]
        [--device cpu|cuda|all] [--threads N] [--repeats R] [--profile]
        [--batch-sizes 1 4] [--precisions fp32 bf16] [--json PATH]
    python tools/benchmark_model.py --compare-cpu-fast-paths [--variant ...] [--threads N] [--repeats R]

- inference: ResNet-50 at 800x1066, batch 1 (or each of --batch-sizes), the network alone
  (``forward_raw`` here, ``DeformableDetrForObjectDetection.forward`` for HF), under
  ``torch.no_grad``;
- training step: batch 2 at 512x640 with 5 boxes per image: forward with losses,
  backward, AdamW step.

Each runs in every one of --precisions: fp32, or bf16 autocast (as SOLVER.AMP trains). Rows
give seconds, images per second and, on CUDA, the peak memory allocated by torch during the
measurement (weights included). --json writes the rows for tools/gpu_check.py.

Times are medians over --repeats runs after one warm-up. --compare-hf builds HF
transformers' model (random init) in the same process, converts its weights with
ddetr_plugin.checkpoint.hf, loads them here with the converted config (HF's matcher
costs and loss weights), checks the outputs, and prints time ratios and the largest
output difference. Both models run with the same threads, OpenMP and allocator settings
(env vars such as OMP_WAIT_POLICY, MALLOC_ARENA_MAX or LD_PRELOAD apply to the whole
process; they are printed with the load average). On a machine whose cores are busy with
other work, OpenMP's default spin-waiting at each operator's barrier inflates multi-thread
CPU times many times over: run with OMP_WAIT_POLICY=PASSIVE there, or on an idle machine.
--profile prints where our inference spends its CPU time (torch.profiler, top operators).

--compare-cpu-fast-paths times our model with MODEL.CPU_FAST_PATHS on and off (the same weights,
two models in this process, runs alternating), fp32 on the CPU, and prints the off / on ratios
and the largest inference output difference.
"""
import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch

from ddetr_plugin.config import load_config
from ddetr_plugin.modeling import build_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/ is the checkout's, not installed
from benchmarks.tables import markdown_table  # noqa: E402

CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs")
VARIANT_CONFIGS = {
    "plain": "deformable_detr_r50.yaml",
    "box_refine": "deformable_detr_r50_box_refine.yaml",
    "two_stage": "deformable_detr_r50_two_stage.yaml",
}
INFERENCE_SIZE = (800, 1066)
TRAIN_SIZE, TRAIN_BATCH, BOXES_PER_IMAGE = (512, 640), 2, 5
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}  # autocast dtype
TABLE_HEADER = ["device", "what", "precision", "ours s", "images/s", "peak MiB", "HF s", "HF / ours", "max diff"]
RUNTIME_ENV = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "LD_PRELOAD", "MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_",
               "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_CONF")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--variant", choices=sorted(VARIANT_CONFIGS), default="plain")
    parser.add_argument("--compare-hf", action="store_true", help="also run HF transformers on the same weights")
    parser.add_argument("--device", choices=["cpu", "cuda", "all"], default="all",
                        help="all: the CPU, and CUDA when available")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-train", action="store_true", help="time inference only")
    parser.add_argument("--profile", action="store_true", help="profile one inference of our model")
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1], help="inference batch sizes")
    parser.add_argument("--precisions", nargs="+", choices=list(PRECISIONS), default=["fp32"],
                        help="fp32, or bf16 autocast")
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument("--compare-cpu-fast-paths", action="store_true",
                        help="time MODEL.CPU_FAST_PATHS on against off instead (CPU, fp32)")
    return parser.parse_args(argv)


def build_models(variant: str, compare_hf: bool):
    """(ours, hf or None) on the CPU, in eval mode; with HF, ours carries HF's converted weights."""
    if not compare_hf:
        cfg = load_config(os.path.join(CONFIGS, VARIANT_CONFIGS[variant]), ["MODEL.DEVICE", "cpu"])
        return build_model(cfg).eval(), None
    from transformers import DeformableDetrConfig, DeformableDetrForObjectDetection

    from ddetr_plugin.checkpoint.hf import hf_to_ours

    torch.manual_seed(0)
    hf_config = DeformableDetrConfig(
        use_pretrained_backbone=False, num_labels=91, auxiliary_loss=True,
        with_box_refine=variant != "plain", two_stage=variant == "two_stage",
    )
    hf = DeformableDetrForObjectDetection(hf_config).eval()
    converted = hf_to_ours(hf.state_dict(), hf_config.to_dict())
    cfg = converted.config()
    cfg.MODEL.DEVICE = "cpu"
    ours = build_model(cfg).eval()
    ours.load_state_dict(converted.state_dict, strict=True)
    return ours, hf


def inference_inputs(device: str, batch: int = 1):
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, *INFERENCE_SIZE, generator=generator).to(device)
    return images, torch.zeros(batch, *INFERENCE_SIZE, dtype=torch.bool, device=device)


def training_batch(device: str):
    """(our batched inputs, HF pixel_values, HF labels): the same images and boxes."""
    generator = torch.Generator().manual_seed(1)
    height, width = TRAIN_SIZE
    pixels = torch.randint(0, 256, (TRAIN_BATCH, 3, height, width), generator=generator, dtype=torch.uint8)
    centres = torch.rand(TRAIN_BATCH, BOXES_PER_IMAGE, 2, generator=generator) * 0.6 + 0.2
    sizes = torch.rand(TRAIN_BATCH, BOXES_PER_IMAGE, 2, generator=generator) * 0.3 + 0.05
    cxcywh = torch.cat([centres, sizes], -1)
    labels = torch.randint(0, 91, (TRAIN_BATCH, BOXES_PER_IMAGE), generator=generator)
    scale = torch.tensor([width, height, width, height], dtype=torch.float32)
    xyxy = torch.cat([cxcywh[..., :2] - cxcywh[..., 2:] / 2, cxcywh[..., :2] + cxcywh[..., 2:] / 2], -1) * scale
    ours = [{"image": pixels[i], "targets": {"boxes": xyxy[i], "labels": labels[i]}} for i in range(TRAIN_BATCH)]
    mean = torch.tensor([123.675, 116.28, 103.53]).view(3, 1, 1)
    std = torch.tensor([58.395, 57.12, 57.375]).view(3, 1, 1)
    pixel_values = ((pixels.float() - mean) / std).to(device)
    hf_labels = [{"class_labels": labels[i].to(device), "boxes": cxcywh[i].to(device)} for i in range(TRAIN_BATCH)]
    return ours, pixel_values, hf_labels


def autocast(device: str, precision: str):
    dtype = PRECISIONS[precision]
    return torch.autocast(device, dtype=dtype) if dtype is not None else contextlib.nullcontext()


@contextlib.contextmanager
def peak_memory(device: str, row: Dict):
    """Sets row["peak_mib"] to the most memory torch allocated on CUDA inside the block."""
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    yield
    if device == "cuda":
        row["peak_mib"] = torch.cuda.max_memory_allocated() / 2**20


def median_seconds(fn: Callable[[], None], repeats: int, device: str) -> float:
    fn()  # warm-up: allocator pools, lazy initialisation, kernel compilation
    times = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def train_step_fn(model, compute_loss: Callable[[], torch.Tensor]) -> Callable[[], None]:
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=1e-5, weight_decay=1e-4)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        compute_loss().backward()
        optimizer.step()
    return step


def benchmark_device(ours, hf, device: str, args) -> List[Dict]:
    rows = []
    ours.to(device).eval()
    if hf is not None:
        hf.to(device).eval()
    for precision in args.precisions:
        for batch in args.batch_sizes:
            rows.append(benchmark_inference(ours, hf, device, precision, batch, args.repeats))
    if args.profile:
        profile_inference(ours, *inference_inputs(device))
    if args.skip_train:
        return rows
    for precision in args.precisions:
        rows.append(benchmark_training(ours, hf, device, precision, args.repeats))
    return rows


def benchmark_inference(ours, hf, device: str, precision: str, batch: int, repeats: int) -> Dict:
    """One inference row; HF runs beside ours in fp32 at batch 1 only."""
    images, padding_mask = inference_inputs(device, batch)
    row = {"device": device, "what": f"inference bs{batch} {INFERENCE_SIZE[0]}x{INFERENCE_SIZE[1]}",
           "precision": precision, "images": batch}
    with torch.no_grad(), autocast(device, precision):
        with peak_memory(device, row):
            row["ours"] = median_seconds(lambda: ours.forward_raw(images, padding_mask), repeats, device)
        if hf is not None and precision == "fp32" and batch == 1:
            ours_out = ours.forward_raw(images, padding_mask)
            pixel_mask = (~padding_mask).long()
            hf_out = hf(pixel_values=images, pixel_mask=pixel_mask)
            row["hf"] = median_seconds(lambda: hf(pixel_values=images, pixel_mask=pixel_mask), repeats, device)
            row["max_diff"] = max((ours_out["pred_logits"] - hf_out.logits).abs().max().item(),
                                  (ours_out["pred_boxes"] - hf_out.pred_boxes).abs().max().item())
    return row


def benchmark_training(ours, hf, device: str, precision: str, repeats: int) -> Dict:
    """One training-step row: forward with losses under autocast, backward and AdamW outside it."""
    batch, pixel_values, hf_labels = training_batch(device)
    ours.train()
    row = {"device": device, "what": f"train step bs{TRAIN_BATCH} {TRAIN_SIZE[0]}x{TRAIN_SIZE[1]}",
           "precision": precision, "images": TRAIN_BATCH}

    def our_loss():
        with autocast(device, precision):
            return sum(ours(batch).values())

    with peak_memory(device, row):
        row["ours"] = median_seconds(train_step_fn(ours, our_loss), repeats, device)
    if hf is not None and precision == "fp32":
        hf.train()
        pixel_mask = torch.ones(TRAIN_BATCH, *TRAIN_SIZE, dtype=torch.long, device=device)
        hf_step = train_step_fn(hf, lambda: hf(pixel_values=pixel_values, pixel_mask=pixel_mask, labels=hf_labels).loss)
        row["hf"] = median_seconds(hf_step, repeats, device)
    ours.eval()
    return row


def profile_inference(model, images: torch.Tensor, padding_mask: torch.Tensor) -> None:
    from torch.profiler import ProfilerActivity, profile

    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU]) as prof:
        model.forward_raw(images, padding_mask)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


def table_rows(rows: List[Dict]) -> List[List[str]]:
    """Cells of the results table (see TABLE_HEADER) for rows as benchmark_device returns them."""
    cells = []
    for row in rows:
        hf: Optional[float] = row.get("hf")
        cells.append([
            row["device"], row["what"], row["precision"], f"{row['ours']:.4f}", f"{row['images'] / row['ours']:.2f}",
            f"{row['peak_mib']:.0f}" if "peak_mib" in row else "—",
            f"{hf:.4f}" if hf else "—", f"{hf / row['ours']:.2f}" if hf else "—",
            f"{row['max_diff']:.2e}" if "max_diff" in row else "—",
        ])
    return cells


def compare_cpu_fast_paths(variant: str, repeats: int) -> List[List[str]]:
    """Rows [what, on s, off s, off / on, max diff]: inference and training step, fast paths on and off."""
    cfg = load_config(os.path.join(CONFIGS, VARIANT_CONFIGS[variant]), ["MODEL.DEVICE", "cpu"])
    on = build_model(cfg).eval()
    off = build_model(load_config(os.path.join(CONFIGS, VARIANT_CONFIGS[variant]),
                                  ["MODEL.DEVICE", "cpu", "MODEL.CPU_FAST_PATHS", False])).eval()
    off.load_state_dict(on.state_dict())
    if not on.cpu_fast_paths:
        raise SystemExit("the CPU fast paths are off in this environment (DDETR_CPU_FAST_PATHS): nothing to compare")
    images, padding_mask = inference_inputs("cpu")
    with torch.no_grad():
        outputs = [model.forward_raw(images, padding_mask) for model in (on, off)]
        inference = alternating_medians([lambda m=m: m.forward_raw(images, padding_mask) for m in (on, off)], repeats)
    max_diff = max((outputs[0][key] - outputs[1][key]).abs().max().item() for key in ("pred_logits", "pred_boxes"))
    batch = training_batch("cpu")[0]
    steps = [train_step_fn(model.train(), lambda m=model: sum(m(batch).values())) for model in (on, off)]
    training = alternating_medians(steps, repeats)
    return [[f"inference bs1 {INFERENCE_SIZE[0]}x{INFERENCE_SIZE[1]}", f"{inference[0]:.4f}", f"{inference[1]:.4f}",
             f"{inference[1] / inference[0]:.2f}", f"{max_diff:.2e}"],
            [f"train step bs{TRAIN_BATCH} {TRAIN_SIZE[0]}x{TRAIN_SIZE[1]}", f"{training[0]:.4f}",
             f"{training[1]:.4f}", f"{training[1] / training[0]:.2f}", "—"]]


def alternating_medians(functions: List[Callable[[], None]], repeats: int) -> List[float]:
    """The median seconds of each function, run in turn ``repeats`` times after one warm-up each (so that
    drifts of the machine touch every one alike)."""
    for function in functions:
        function()
    times: List[List[float]] = [[] for _ in functions]
    for _ in range(repeats):
        for function, measured in zip(functions, times):
            start = time.perf_counter()
            function()
            measured.append(time.perf_counter() - start)
    return [statistics.median(measured) for measured in times]


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    devices = ["cpu"] if args.device == "cpu" else ["cuda"] if args.device == "cuda" else \
        ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    runtime = {name: os.environ[name] for name in RUNTIME_ENV if name in os.environ}
    print(f"torch {torch.__version__}, {args.threads} threads, variant {args.variant}, "
          f"env: {runtime or 'none (OpenMP and glibc malloc defaults)'}, "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    if args.compare_cpu_fast_paths:
        print(markdown_table(["what", "fast paths on s", "off s", "off / on", "max diff"],
                             compare_cpu_fast_paths(args.variant, args.repeats)))
        return 0
    ours, hf = build_models(args.variant, args.compare_hf)
    rows = []
    for device in devices:
        rows += benchmark_device(ours, hf, device, args)
    table = {"header": TABLE_HEADER, "rows": table_rows(rows)}
    print(markdown_table(table["header"], table["rows"]))
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"torch": torch.__version__, "variant": args.variant, "rows": rows, "table": table}, file,
                      indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
