#!/usr/bin/env python
"""Convert Deformable DETR checkpoints between the official repository, HF transformers and ours.

To ours (the variant is read from the checkpoint; --config-out writes the YAML that builds
exactly that model, with MODEL.WEIGHTS set to the output):

    python tools/convert_checkpoint.py --from official --input r50_deformable_detr.pth \\
        --output weights/ddetr_r50.pth --config-out weights/ddetr_r50.yaml
    python tools/convert_checkpoint.py --from hf --input path/to/save_pretrained_dir \\
        --output weights/ddetr_hf.pth --config-out weights/ddetr_hf.yaml

From ours (--config describes the model; --input defaults to its MODEL.WEIGHTS; KEY VALUE
overrides apply to the config):

    python tools/convert_checkpoint.py --to official --config weights/ddetr_r50.yaml --output official.pth
    python tools/convert_checkpoint.py --to hf --config CFG.yaml --input model_final.pth --output hf_dir/
    python tools/convert_checkpoint.py --to safetensors --config CFG.yaml --input model_final.pth \\
        --output model_final.safetensors

--from official reads the .pth with weights_only=True (only argparse.Namespace is allowed
besides tensors); --from hf reads config.json and model.safetensors (and id2label into
MODEL.CLASS_NAMES). --to official writes {"model", "args"} with the decoder's head aliases;
--to hf writes config.json (the class names in id2label), preprocessor_config.json (our
test-time resize and normalisation) and model.safetensors, for from_pretrained and
transformers.pipeline("object-detection", model=DIR); --to safetensors writes the weights
with the config and class names in the file's metadata (MODEL.WEIGHTS loads it). Class
names: MODEL.CLASS_NAMES, else those the checkpoint stores, else DATASETS.TEST[0]'s.
Without --config-out, the YAML is written next to --output with the suffix .yaml.
A 91-class checkpoint (the official and HF COCO models) gets MODEL.LABEL_SPACE category_id:
its labels are COCO category ids (the choice is logged and noted in the YAML; edit it there
if the model was trained with contiguous labels). Converting back stores no label space.
"""
import argparse
import logging
import os
import sys

import torch

from ddetr_plugin.checkpoint import CheckpointFormatError, load_checkpoint_file
from ddetr_plugin.utils.file_io import atomic_write
from ddetr_plugin.checkpoint.hf import load_hf_directory, ours_to_hf, save_hf_directory
from ddetr_plugin.checkpoint.hf_preprocessor import preprocessor_config
from ddetr_plugin.checkpoint.safetensors_file import save_safetensors
from ddetr_plugin.checkpoint.official import load_official_checkpoint, ours_to_official
from ddetr_plugin.checkpoint.variant import save_state_dict, write_config
from ddetr_plugin.config import load_config
from ddetr_plugin.data.class_names import model_class_names

logger = logging.getLogger("ddetr_plugin.convert_checkpoint")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    direction = parser.add_mutually_exclusive_group(required=True)
    direction.add_argument("--from", dest="source", choices=["official", "hf"], help="convert this format to ours")
    direction.add_argument("--to", dest="target", choices=["official", "hf", "safetensors"],
                           help="convert ours to this format")
    parser.add_argument("--input", help="official .pth, HF directory, or (with --to) our .pth")
    parser.add_argument("--output", required=True, help="our .pth, official .pth, or HF directory")
    parser.add_argument("--config-out", help="with --from: the YAML to write (default: OUTPUT with .yaml)")
    parser.add_argument("--config", help="with --to: the YAML of the model in --input")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="with --to: KEY VALUE config overrides")
    args = parser.parse_args(argv)
    if args.source and (args.config or args.opts):
        parser.error("--config and KEY VALUE overrides go with --to; --from reads the variant from the checkpoint")
    if args.source and not args.input:
        parser.error("--from needs --input")
    if args.target and not args.config:
        parser.error("--to needs --config (the YAML that builds the model of --input)")
    if args.target and args.config_out:
        parser.error("--config-out goes with --from")
    return args


def convert_to_ours(source: str, input_path: str, output: str, config_out: str) -> None:
    converted = load_official_checkpoint(input_path) if source == "official" else load_hf_directory(input_path)
    save_state_dict(output, converted.state_dict)
    values = {**converted.config_values, "MODEL.WEIGHTS": os.path.abspath(output)}
    description = converted.variant.describe()
    header = "\n".join([f"Converted by tools/convert_checkpoint.py --from {source} from {input_path}", description,
                        *converted.notes])
    write_config(config_out, values, header=header)
    logger.info("Wrote %s (%d tensors) and %s: %s", output, len(converted.state_dict), config_out, description)
    for note in converted.notes:
        logger.info("%s: %s", config_out, note)


def convert_from_ours(target: str, input_path: str, config: str, opts: list, output: str) -> None:
    cfg = load_config(config, opts)
    input_path = input_path or cfg.MODEL.WEIGHTS
    if not input_path:
        raise ValueError(f"no weights to convert: pass --input or set MODEL.WEIGHTS in {config}")
    checkpoint = load_checkpoint_file(input_path)
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("model"), dict):
        raise CheckpointFormatError(f"{input_path} is not one of our checkpoints (a dict with a 'model' state dict)")
    state_dict = checkpoint["model"]
    if target == "official":
        official = ours_to_official(state_dict, cfg)
        atomic_write(output, lambda f: torch.save(official, f))
        logger.info("Wrote %s (%d tensors)", output, len(official["model"]))
    elif target == "safetensors":
        names = model_class_names(cfg, checkpoint.get("class_names"))
        save_safetensors(output, state_dict, config=cfg.dump(), class_names=names)
        logger.info("Wrote %s (%d tensors; config and class names %s in its metadata)", output, len(state_dict),
                    names)
    else:
        names = model_class_names(cfg, checkpoint.get("class_names"))
        hf_state_dict, hf_config = ours_to_hf(state_dict, cfg, class_names=names)
        save_hf_directory(output, hf_state_dict, hf_config, preprocessor_config(cfg))
        logger.info("Wrote %s/config.json (labels %s), preprocessor_config.json and model.safetensors (%d tensors)",
                    output, names or "LABEL_<i>", len(hf_state_dict))


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.source:
        config_out = args.config_out or os.path.splitext(args.output)[0] + ".yaml"
        convert_to_ours(args.source, args.input, args.output, config_out)
    else:
        convert_from_ours(args.target, args.input, args.config, args.opts, args.output)
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(main())
