#!/usr/bin/env python
"""Convert Deformable DETR checkpoints between the official repository, HF transformers, MMDetection and ours.

To ours (the variant is read from the checkpoint; --config-out writes the YAML that builds
exactly that model, with MODEL.WEIGHTS set to the output):

    python tools/convert_checkpoint.py --from official --input r50_deformable_detr.pth \\
        --output weights/ddetr_r50.pth --config-out weights/ddetr_r50.yaml
    python tools/convert_checkpoint.py --from hf --input path/to/save_pretrained_dir \\
        --output weights/ddetr_hf.pth --config-out weights/ddetr_hf.yaml
    python tools/convert_checkpoint.py --from mmdet --input work_dirs/deformable-detr/epoch_50.pth \\
        --output weights/ddetr_mmdet.pth --config-out weights/ddetr_mmdet.yaml

From ours (--config describes the model; --input defaults to its MODEL.WEIGHTS; KEY VALUE
overrides apply to the config):

    python tools/convert_checkpoint.py --to official --config weights/ddetr_r50.yaml --output official.pth
    python tools/convert_checkpoint.py --to hf --config CFG.yaml --input model_final.pth --output hf_dir/
    python tools/convert_checkpoint.py --to mmdet --config CFG.yaml --input model_final.pth --output mmdet.pth
    python tools/convert_checkpoint.py --to safetensors --config CFG.yaml --input model_final.pth \\
        --output model_final.safetensors

detectron2 (the meta-architecture of ddetr_plugin.integrations.detectron2; needs detectron2):
--to detectron2 also writes the detectron2 YAML that builds the model (--config-out, default
OUTPUT with .yaml); --from detectron2 reads the model's detectron2 YAML from --config:

    python tools/convert_checkpoint.py --to detectron2 --config output/quickstart/config.yaml \\
        --input output/quickstart/model_final.pth --output d2/model.pth --config-out d2/model.yaml
    python tools/convert_checkpoint.py --from detectron2 --config d2/model.yaml --input d2/model.pth \\
        --output ours.pth --config-out ours.yaml

--from official reads the .pth with weights_only=True (only argparse.Namespace is allowed
besides tensors); --from hf reads config.json and model.safetensors (and id2label into
MODEL.CLASS_NAMES). --to official writes {"model", "args"} with the decoder's head aliases;
--to hf writes config.json (the class names in id2label), preprocessor_config.json (our
test-time resize and normalisation) and model.safetensors, for from_pretrained and
transformers.pipeline("object-detection", model=DIR); --to safetensors writes the weights
with the config and class names in the file's metadata (MODEL.WEIGHTS loads it). Class
names: MODEL.CLASS_NAMES, else those the checkpoint stores, else DATASETS.TEST[0]'s.
--from mmdet reads mmdet's own DeformableDETR checkpoints and PluginDeformableDETR's (mmengine's
{"meta", "state_dict", ...}; the settings come from meta["cfg"]; Runner checkpoints need mmengine
installed, for the types its message hub pickles); --to mmdet writes {"meta", "state_dict"}
for mmdet's DeformableDETR (load_from=), with COCO's 91 category ids cut to mmdet's 80 classes.
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
from ddetr_plugin.checkpoint.mmdet import load_mmdet_checkpoint, ours_to_mmdet
from ddetr_plugin.checkpoint.hf_preprocessor import preprocessor_config
from ddetr_plugin.checkpoint.safetensors_file import save_safetensors
from ddetr_plugin.checkpoint.official import load_official_checkpoint, ours_to_official
from ddetr_plugin.checkpoint.variant import ConvertedCheckpoint, save_state_dict
from ddetr_plugin.config.dotted import write_config
from ddetr_plugin.config import load_config
from ddetr_plugin.data.class_names import model_class_names

logger = logging.getLogger("ddetr_plugin.convert_checkpoint")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    direction = parser.add_mutually_exclusive_group(required=True)
    formats = ["official", "hf", "detectron2", "mmdet"]
    direction.add_argument("--from", dest="source", choices=formats, help="convert this format to ours")
    direction.add_argument("--to", dest="target", choices=formats + ["safetensors"],
                           help="convert ours to this format")
    parser.add_argument("--input", help="official .pth, HF directory, detectron2 .pth, mmdet .pth, or (with --to) "
                                        "our .pth")
    parser.add_argument("--output", required=True, help="our .pth, official .pth, HF directory, detectron2 .pth "
                                                        "mmdet .pth or .safetensors")
    parser.add_argument("--config-out", help="with --from, or --to detectron2: the YAML to write "
                                             "(default: OUTPUT with .yaml)")
    parser.add_argument("--config", help="with --to: our YAML of the model in --input; with --from detectron2: "
                                         "its detectron2 YAML")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides of --config")
    args = parser.parse_args(argv)
    takes_config = args.target or args.source == "detectron2"
    if not takes_config and (args.config or args.opts):
        parser.error("--config and KEY VALUE overrides go with --to or --from detectron2; --from official/hf "
                     "read the variant from the checkpoint")
    if args.source and not args.input:
        parser.error("--from needs --input")
    if takes_config and not args.config:
        parser.error(f"--{'to' if args.target else 'from'} {args.target or args.source} needs --config "
                     f"(the YAML that builds the model of --input)")
    if args.target in ("official", "hf", "mmdet", "safetensors") and args.config_out:
        parser.error("--config-out goes with --from or --to detectron2")
    return args


def load_mmdet(input_path: str, config: str | None, opts: list) -> ConvertedCheckpoint:
    try:  # allow-lists the types mmengine's Runner pickles; released checkpoints load without it
        import ddetr_plugin.integrations.mmdet  # noqa: F401
    except ImportError:
        pass
    return load_mmdet_checkpoint(input_path)


def load_detectron2(input_path: str, config: str, opts: list) -> ConvertedCheckpoint:
    from ddetr_plugin.integrations.detectron2.conversion import from_detectron2, load_detectron2_config

    return from_detectron2(_read_checkpoint(input_path)["model"], load_detectron2_config(config, opts))


# format -> (input path, --config, overrides) -> our checkpoint
READERS = {
    "official": lambda input_path, config, opts: load_official_checkpoint(input_path),
    "hf": lambda input_path, config, opts: load_hf_directory(input_path),
    "detectron2": load_detectron2,
    "mmdet": load_mmdet,
}


def convert_to_ours(converted: ConvertedCheckpoint, source: str, input_path: str, output: str,
                    config_out: str) -> None:
    save_state_dict(output, converted.state_dict)
    values = {**converted.config_values, "MODEL.WEIGHTS": os.path.abspath(output)}
    description = converted.variant.describe()
    header = "\n".join([f"Converted by tools/convert_checkpoint.py --from {source} from {input_path}", description,
                        *converted.notes])
    write_config(config_out, values, header=header)
    logger.info("Wrote %s (%d tensors) and %s: %s", output, len(converted.state_dict), config_out, description)
    for note in converted.notes:
        logger.info("%s: %s", config_out, note)


def _read_checkpoint(path: str) -> dict:
    """A checkpoint file in our (and detectron2's) form: a dict with the "model" state dict."""
    checkpoint = load_checkpoint_file(path)
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("model"), dict):
        raise CheckpointFormatError(f"{path} is not a checkpoint of ours or detectron2's (a dict with a 'model' "
                                    f"state dict)")
    return checkpoint


def convert_from_ours(target: str, input_path: str, config: str, opts: list, output: str,
                      config_out: str | None) -> None:
    cfg = load_config(config, opts)
    input_path = input_path or cfg.MODEL.WEIGHTS
    if not input_path:
        raise ValueError(f"no weights to convert: pass --input or set MODEL.WEIGHTS in {config}")
    checkpoint = _read_checkpoint(input_path)
    state_dict = checkpoint["model"]
    if target == "detectron2":
        from ddetr_plugin.integrations.detectron2.conversion import save_detectron2_config, to_detectron2

        d2_state_dict, d2_cfg = to_detectron2(state_dict, cfg)
        d2_cfg.MODEL.WEIGHTS = os.path.abspath(output)
        save_state_dict(output, d2_state_dict)
        config_out = config_out or os.path.splitext(output)[0] + ".yaml"
        save_detectron2_config(config_out, d2_cfg)
        logger.info("Wrote %s (%d tensors) and its detectron2 config %s", output, len(d2_state_dict), config_out)
    elif target == "official":
        official = ours_to_official(state_dict, cfg)
        atomic_write(output, lambda f: torch.save(official, f))
        logger.info("Wrote %s (%d tensors)", output, len(official["model"]))
    elif target == "mmdet":
        mmdet = ours_to_mmdet(state_dict, cfg)
        atomic_write(output, lambda f: torch.save(mmdet, f))
        logger.info("Wrote %s (%d tensors)", output, len(mmdet["state_dict"]))
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
        converted = READERS[args.source](args.input, args.config, args.opts)
        convert_to_ours(converted, args.source, args.input, args.output, config_out)
    else:
        convert_from_ours(args.target, args.input, args.config, args.opts, args.output, args.config_out)
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(main())
