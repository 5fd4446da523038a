#!/usr/bin/env python
"""Draw where Deformable DETR's attention sampled for its top detections, and for one encoder pixel.

    python tools/visualize_attention.py --config CFG --input IMG --output DIR [--top-k 5] [--layer -1]
        [--pixel X Y] [--encoder-level 0] [--encoder-layer -1] [KEY VALUE ...]

The image is read and resized as tools/demo.py does, and the model runs once with
``forward_raw(..., return_intermediates=True)``. Detections are the K queries with the
highest class score (each query's best class). For each, DIR/<stem>_top<k>.png shows its box
and label, the reference point (a cross) of decoder layer --layer and that layer's sampling
points for every head and level: colour = head, shape = level, size and opacity = attention
weight (relative to the query's largest). DIR/<stem>_overview.png draws all K together, each in
its label's colour. DIR/<stem>_encoder.png shows encoder layer --encoder-layer's samples for
the query of the level --encoder-level cell under --pixel (original-image pixels; default:
the centre of the top detection's box). DIR/<stem>_attention.json lists every drawn point in
original-image pixels. Small images are drawn enlarged (see ddetr_plugin/utils/drawing.py).
"""
import argparse
import json
import logging
import os
import sys

import torch
from torchvision import tv_tensors
from torchvision.ops import box_convert

from ddetr_plugin.checkpoint import Checkpointer
from ddetr_plugin.config import load_config
from ddetr_plugin.data import eval_augmentation, read_image
from ddetr_plugin.data.class_names import model_class_names
from ddetr_plugin.modeling import build_model
from ddetr_plugin.utils.attention import decoder_query_attention, encoder_pixel_attention
from ddetr_plugin.utils.attention_drawing import draw_encoder_picture, draw_overview, draw_query_picture
from ddetr_plugin.utils.visualization import class_name

logger = logging.getLogger("ddetr_plugin.visualize_attention")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--config", required=True, help="YAML of the model (MODEL.WEIGHTS: its weights)")
    parser.add_argument("--input", required=True, help="an image file")
    parser.add_argument("--output", required=True, help="folder for the PNGs and the JSON")
    parser.add_argument("--top-k", type=int, default=5, help="detections to draw (default 5)")
    parser.add_argument("--layer", type=int, default=-1, help="decoder layer (default -1, the last)")
    parser.add_argument("--encoder-layer", type=int, default=-1, help="encoder layer (default -1, the last)")
    parser.add_argument("--encoder-level", type=int, default=0, help="feature level of the encoder query (0: finest)")
    parser.add_argument("--pixel", type=float, nargs=2, metavar=("X", "Y"),
                        help="encoder query under this original-image pixel (default: the top box's centre)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    args = parser.parse_args(argv)
    if args.top_k < 1:
        parser.error(f"--top-k must be at least 1, got {args.top_k}")
    return args


def layer_index(index: int, count: int, flag: str) -> int:
    if not -count <= index < count:
        raise ValueError(f"{flag} {index}: the model has {count} such layers (0..{count - 1}, or -1 for the last)")
    return index % count


def top_queries(outputs: dict, k: int, names, image_hw) -> list[tuple[int, dict]]:
    """(query, detection record) of the ``k`` queries with the highest best-class score."""
    probabilities = outputs["pred_logits"][0].sigmoid()  # (Q, C)
    scores, labels = probabilities.max(dim=-1)
    order = scores.argsort(descending=True, stable=True)[:k]
    height, width = image_hw
    boxes = box_convert(outputs["pred_boxes"][0], "cxcywh", "xyxy") * torch.tensor([width, height, width, height])
    return [(int(q), {"label": int(labels[q]), "name": class_name(int(labels[q]), names),
                      "score": float(scores[q]), "bbox_xyxy": boxes[q].tolist()}) for q in order]


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = load_config(args.config, args.opts)
    if not cfg.MODEL.WEIGHTS:
        raise ValueError(f"MODEL.WEIGHTS is empty in {args.config}: pass MODEL.WEIGHTS path/to/model.pth")
    model = build_model(cfg).eval()
    extra = Checkpointer(model).load(cfg.MODEL.WEIGHTS, checkpointables=[])
    names = model_class_names(cfg, extra.get("class_names"))

    image = read_image(args.input)
    height, width = image.shape[-2:]
    resized = eval_augmentation(cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST)(tv_tensors.Image(image))
    with torch.no_grad():
        images, padding_mask, _ = model.preprocess_images([{"image": resized.as_subclass(torch.Tensor)}])
        outputs = model.forward_raw(images, padding_mask, return_intermediates=True)
    inter = outputs["intermediates"]
    input_size = torch.tensor([images.shape[-2:]], dtype=torch.float32)
    # pixels of the resized input -> pixels of the original image
    to_original = torch.tensor([width / images.shape[-1], height / images.shape[-2]])
    level_names = [f"level {l} ({h}x{w})" for l, (h, w) in enumerate(inter["spatial_shapes"].tolist())]
    heads = inter["decoder"][0]["attention_weights"].shape[2]

    layer = layer_index(args.layer, len(inter["decoder"]), "--layer")
    stem = os.path.join(args.output, os.path.splitext(os.path.basename(args.input))[0])
    os.makedirs(args.output, exist_ok=True)
    queries = []
    for rank, (query, detection) in enumerate(top_queries(outputs, args.top_k, names, (height, width))):
        entry = {"query": query, "detection": detection,
                 **decoder_query_attention(inter, layer, query, input_size, to_original)}
        queries.append(entry)
        draw_query_picture(image, detection, entry["samples"], entry["reference_xy"], heads, level_names,
                           title=f"query {query}, decoder layer {layer}").save(f"{stem}_top{rank}.png")
    draw_overview(image, queries, title=f"top {len(queries)}, decoder layer {layer}").save(f"{stem}_overview.png")

    encoder_layer = layer_index(args.encoder_layer, len(inter["encoder"]), "--encoder-layer")
    box = queries[0]["detection"]["bbox_xyxy"]
    x, y = args.pixel or ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
    x, y = min(max(x, 0), width - 1), min(max(y, 0), height - 1)
    encoder = encoder_pixel_attention(inter, encoder_layer, args.encoder_level, (x, y), input_size, to_original)
    draw_encoder_picture(image, encoder["samples"], encoder["reference_xy"], heads, level_names,
                         title=f"encoder layer {encoder_layer}, {level_names[args.encoder_level]} query at "
                               f"({x:.0f}, {y:.0f})").save(f"{stem}_encoder.png")

    record = {
        "image": args.input, "height": height, "width": width, "decoder_layer": layer,
        "encoder_layer": encoder_layer, "detections": queries,
        "encoder": {"pixel": [x, y], "level": args.encoder_level, **encoder},
    }
    with open(f"{stem}_attention.json", "w") as f:
        json.dump(record, f, indent=1)
    logger.info("%s: %d detections -> %s_top*.png, %s_overview.png, %s_encoder.png, %s_attention.json",
                args.input, len(queries), stem, stem, stem, stem)
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(main())
