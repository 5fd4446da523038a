#!/usr/bin/env python
"""Export Deformable DETR to ONNX with dynamic batch size, image height and width; check it with onnxruntime.

    python tools/export_onnx.py --config CFG --output model.onnx [--opset N] [--with-postprocess]
        [--height H --width W] [--threads T] [--benchmark-size H W | --no-benchmark] [KEY VALUE ...]

The graph takes ``images`` (B, 3, H, W) float32, RGB normalized with MODEL.PIXEL_MEAN /
PIXEL_STD (0-255 scale) and zero-padded bottom/right, and ``padding_mask`` (B, H, W) bool,
True on padding (what DeformableDETR.preprocess_images makes). It returns ``pred_logits``
(B, Q, C) and ``pred_boxes`` (B, Q, 4), normalized cxcywh of each unpadded image. With
--with-postprocess it also takes ``target_sizes`` (B, 2) float32 (height, width to scale the
boxes to) and returns the top TEST.DETECTIONS_PER_IMAGE ``scores`` (B, K), ``labels`` (B, K)
int64 and ``boxes`` (B, K, 4) xyxy pixels, as our postprocessor without NMS (TEST.NMS_THRESH
is not applied in the graph). The deformable attention is written in standard ONNX operators
(GridSample, opset 16+; see ddetr_plugin/export/onnx.py), so no custom-op library is needed.
The pixel statistics, test sizes and class names are in the model's metadata_props.

After writing, the tool checks the file with onnx.checker, runs it with onnxruntime's CPU
provider at two sizes other than the export size (a batch of 2, one image padded) against
PyTorch (fails above 1e-4), and times onnxruntime against our PyTorch inference (the same
graph, native op) at --benchmark-size (default 800x1066), batch 1, with --threads threads.
Weights come from MODEL.WEIGHTS (random initialisation, with a warning, when empty). The
export size (default: INPUT.MIN_SIZE_TEST by 4/3 of it) only shapes the traced example.
"""
import argparse
import json
import logging
import sys

import torch

from ddetr_plugin.checkpoint import Checkpointer
from ddetr_plugin.config import load_config
from ddetr_plugin.data.class_names import model_class_names
from ddetr_plugin.export import DetectorGraph, minimum_image_side
from ddetr_plugin.export.checks import TOLERANCE, max_differences, median_seconds, padded_inputs, parity_sizes
from ddetr_plugin.export.onnx import export_onnx, onnxruntime_session, run_onnx
from ddetr_plugin.modeling import build_model

logger = logging.getLogger("ddetr_plugin.export_onnx")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--config", required=True, help="YAML of the model (MODEL.WEIGHTS: its weights)")
    parser.add_argument("--output", required=True, help="the .onnx file to write")
    parser.add_argument("--opset", type=int, help="ai.onnx opset (default: the exporter's, 18; at least 16)")
    parser.add_argument("--with-postprocess", action="store_true", help="include the top-k postprocessing")
    parser.add_argument("--height", type=int, help="height of the traced example (default INPUT.MIN_SIZE_TEST)")
    parser.add_argument("--width", type=int, help="width of the traced example (default 4/3 of the height)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="threads of onnxruntime and of PyTorch in the checks (default: torch's)")
    parser.add_argument("--benchmark-size", type=int, nargs=2, default=(800, 1066), metavar=("H", "W"))
    parser.add_argument("--runs", type=int, default=3, help="timed runs of each runtime (median)")
    parser.add_argument("--no-benchmark", action="store_true", help="skip the timing")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    args = parser.parse_args(argv)
    if (args.height is None) != (args.width is None):
        parser.error("--height and --width go together")
    return args


def build(args):
    """(config, model in eval mode on the CPU with its weights, class names)."""
    cfg = load_config(args.config, list(args.opts) + ["MODEL.DEVICE", "cpu"])
    model = build_model(cfg).eval()
    stored = None
    if cfg.MODEL.WEIGHTS:
        stored = Checkpointer(model).load(cfg.MODEL.WEIGHTS, checkpointables=[]).get("class_names")
    else:
        logger.warning("MODEL.WEIGHTS is empty: exporting the randomly initialised model")
    return cfg, model, model_class_names(cfg, stored)


def metadata(cfg, names) -> dict:
    return {
        "pixel_mean": json.dumps(list(cfg.MODEL.PIXEL_MEAN)), "pixel_std": json.dumps(list(cfg.MODEL.PIXEL_STD)),
        "min_size_test": str(cfg.INPUT.MIN_SIZE_TEST), "max_size_test": str(cfg.INPUT.MAX_SIZE_TEST),
        "class_names": json.dumps(names), "producer": "ddetr_plugin tools/export_onnx.py",
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg, model, names = build(args)
    height = args.height or cfg.INPUT.MIN_SIZE_TEST
    width = args.width or min(height * 4 // 3, cfg.INPUT.MAX_SIZE_TEST)
    postprocessor = model.postprocessor if args.with_postprocess else None
    if postprocessor is not None and cfg.TEST.NMS_THRESH > 0:
        logger.warning("TEST.NMS_THRESH %g is not part of the ONNX graph: apply NMS to its outputs if needed",
                       cfg.TEST.NMS_THRESH)
    export_onnx(model, args.output, opset=args.opset, postprocessor=postprocessor, height=height, width=width,
                metadata=metadata(cfg, names))
    logger.info("Wrote %s (traced at %dx%d; onnx.checker passed)", args.output, height, width)

    graph = DetectorGraph(model, postprocessor).eval()
    session = onnxruntime_session(args.output, args.threads)
    worst = 0.0
    for size in parity_sizes(height, width, minimum_image_side(model)):
        differences = max_differences(graph, session, padded_inputs(graph, *size))
        logger.info("onnxruntime vs PyTorch at %dx%d (batch 2, one padded): largest differences %s", *size,
                    ", ".join(f"{name} {value:.2e}" for name, value in differences.items()))
        worst = max([worst, *differences.values()])
    if worst > TOLERANCE:
        logger.error("onnxruntime's outputs differ from PyTorch's by %.2e (> %g)", worst, TOLERANCE)
        return 1

    if not args.no_benchmark:
        inputs = graph.example_inputs(1, *args.benchmark_size)
        with torch.no_grad():
            ours = median_seconds(lambda: graph(*inputs), args.runs)
        theirs = median_seconds(lambda: run_onnx(session, inputs), args.runs)
        print(f"inference at {args.benchmark_size[0]}x{args.benchmark_size[1]}, batch 1, {args.threads} threads, "
              f"median of {args.runs}: onnxruntime {theirs:.3f} s, PyTorch (ours) {ours:.3f} s, "
              f"onnxruntime / PyTorch = {theirs / ours:.2f}")
    return 0


if __name__ == "__main__":
    # the exporter's libraries log every graph pass at INFO: only ours are shown at that level
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("ddetr_plugin").setLevel(logging.INFO)
    sys.exit(main())
