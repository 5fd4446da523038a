#!/usr/bin/env python
"""Run Deformable DETR on images; write each image's detections as JSON and drawn as PNG.

    python tools/demo.py --config CFG --input a.jpg b.png --output demo_out [--threshold 0.5] [KEY VALUE ...]

For each input, DIR/<stem>.json holds {"image", "height", "width", "detections": [{"label",
"name", "score", "bbox_xyxy": [x0, y0, x1, y1]}]} in original-image pixels, highest score
first: the top TEST.DETECTIONS_PER_IMAGE, then those scoring at least --threshold
(0 keeps them all). DIR/<stem>.png shows the kept boxes (an image whose short side is
under 512 pixels is drawn enlarged by a whole factor, so that labels stay readable).
Images are read as the data loader reads them (EXIF orientation applied, RGB) and resized
to the test size (INPUT.MIN_SIZE_TEST / MAX_SIZE_TEST); one already at that size is not
resampled. Weights come from MODEL.WEIGHTS (.pth or .safetensors); class names from
MODEL.CLASS_NAMES, else those stored in the checkpoint, else the metadata of
DATASETS.TEST[0] when it can be loaded, read in MODEL.LABEL_SPACE (e.g. "category_id" for
converted official or HF COCO weights), else "class_<label>".
"""
import argparse
import json
import logging
import os
import sys

import torch
from PIL import Image
from torchvision import tv_tensors

from ddetr_plugin.checkpoint import Checkpointer
from ddetr_plugin.config import load_config
from ddetr_plugin.data import check_label_space_name, eval_augmentation, read_image
from ddetr_plugin.data.class_names import model_class_names
from ddetr_plugin.modeling import build_model
from ddetr_plugin.utils.visualization import detection_records, draw_detections

logger = logging.getLogger("ddetr_plugin.demo")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--config", required=True, help="YAML of the model (MODEL.WEIGHTS: its weights)")
    parser.add_argument("--input", nargs="+", required=True, help="image files")
    parser.add_argument("--output", required=True, help="folder for <stem>.json and <stem>.png")
    parser.add_argument("--threshold", type=float, default=0.5, help="minimum score kept (default 0.5)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    args = parser.parse_args(argv)
    stems = [os.path.splitext(os.path.basename(path))[0] for path in args.input]
    repeated = sorted({stem for stem in stems if stems.count(stem) > 1})
    if repeated:
        parser.error(f"inputs share the file names {repeated}: their outputs would overwrite each other")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = load_config(args.config, args.opts)
    if not cfg.MODEL.WEIGHTS:
        raise ValueError(f"MODEL.WEIGHTS is empty in {args.config}: the demo needs trained weights "
                         f"(set it in the YAML or pass MODEL.WEIGHTS path/to/model.pth)")
    check_label_space_name(cfg.MODEL.LABEL_SPACE)
    model = build_model(cfg).eval()
    extra = Checkpointer(model).load(cfg.MODEL.WEIGHTS, checkpointables=[])
    names = model_class_names(cfg, extra.get("class_names"))
    resize = eval_augmentation(cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST)
    os.makedirs(args.output, exist_ok=True)

    for path in args.input:
        image = read_image(path)
        height, width = image.shape[-2:]
        resized = resize(tv_tensors.Image(image)).as_subclass(torch.Tensor)
        with torch.no_grad():
            result = model([{"image": resized, "height": height, "width": width}])[0]
        records = detection_records(result, names, args.threshold)
        stem = os.path.join(args.output, os.path.splitext(os.path.basename(path))[0])
        with open(f"{stem}.json", "w") as f:
            json.dump({"image": path, "height": height, "width": width, "detections": records}, f, indent=1)
        drawn = draw_detections(image, records)
        Image.fromarray(drawn.permute(1, 2, 0).numpy()).save(f"{stem}.png")
        logger.info("%s: %d detections >= %g -> %s.json, %s.png", path, len(records), args.threshold, stem, stem)
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(main())
