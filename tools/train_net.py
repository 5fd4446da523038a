#!/usr/bin/env python
"""Train or evaluate Deformable DETR from a config.

This script is an example to copy: everything it does is a call into the library
(``ddetr_plugin.engine``), so a project with its own model parts or datasets can
start from a copy of it and change what it needs.

    python tools/train_net.py --config-file configs/quickstart/shapes.yaml
    python tools/train_net.py --config-file CFG --num-gpus 8                  # 8 GPUs (NCCL)
    python tools/train_net.py --config-file CFG --num-gpus 2 MODEL.DEVICE cpu  # 2 CPU processes (gloo)
    python tools/train_net.py --config-file CFG --resume                      # continue from last_checkpoint
    python tools/train_net.py --config-file CFG --eval-only MODEL.WEIGHTS output/model_final.pth
    torchrun --nproc-per-node 8 tools/train_net.py --config-file CFG          # under torchrun (or SLURM)

Outputs (OUTPUT_DIR): config.yaml, log.txt, metrics.json, last_checkpoint, model_*.pth,
model_final.pth, training_curves.png (with matplotlib), TensorBoard events (with
tensorboard) and inference/coco_instances_results.json.

To add behaviour to training, pass hooks (``ddetr_plugin.engine.hooks``) where ``main`` builds the
trainer, e.g. ``Trainer(**Trainer.from_config(cfg, model), hooks=[BestCheckpointer("bbox/AP")])``.
"""
import argparse
import logging
import os
import sys
from typing import Dict, List, Optional

from ddetr_plugin.checkpoint import Checkpointer
from ddetr_plugin.config import ConfigKeyError, load_config
from ddetr_plugin.engine import (
    DatasetsEvaluation,
    Trainer,
    check_component_names,
    check_dataset_names,
    check_label_space,
    config_overrides,
    default_argument_parser,
    default_setup,
    launch,
)
from ddetr_plugin.modeling import build_model

logger = logging.getLogger("ddetr_plugin.train_net")


def main(args: argparse.Namespace) -> Dict[str, Dict[str, Dict[str, float]]]:
    """Run in every process: build the model, then evaluate (``--eval-only``) or train.

    Returns the evaluation results ({dataset: {"bbox": {"AP": ...}}}, percent) on the main process.
    """
    cfg = load_config(args.config_file or None, config_overrides(args))
    default_setup(cfg, args)
    model = build_model(cfg)
    logger.info("Model:\n%s", model)

    if args.eval_only:
        extra = Checkpointer(model).load(cfg.MODEL.WEIGHTS, checkpointables=[])
        if cfg.SOLVER.EMA.ENABLED and "ema" in extra:
            logger.info("SOLVER.EMA.ENABLED: evaluating the EMA weights of %s", cfg.MODEL.WEIGHTS)
            model.load_state_dict(extra["ema"])
        return DatasetsEvaluation(cfg)(model)

    trainer = Trainer(**Trainer.from_config(cfg, model))
    trainer.resume_or_load(resume=args.resume, weights=cfg.MODEL.WEIGHTS)
    return trainer.train()


def check_weights(cfg, eval_only: bool) -> None:
    """MODEL.WEIGHTS must name an existing file (and is required by --eval-only)."""
    weights = cfg.MODEL.WEIGHTS
    if eval_only and not weights:
        raise ValueError("--eval-only needs weights: pass MODEL.WEIGHTS path/to/model_final.pth")
    if weights and "://" not in weights and not os.path.isfile(weights):
        raise FileNotFoundError(f"MODEL.WEIGHTS: checkpoint file not found: {weights}")


def cli(argv: Optional[List[str]] = None) -> None:
    """Parse the command line, check the config, then run ``main`` in every process."""
    args = default_argument_parser(__doc__.split("\n\n")[0]).parse_args(argv)
    # Check the config in this process first, so a mistake stops before any process or work starts.
    try:
        cfg = load_config(args.config_file or None, config_overrides(args))
        check_component_names(cfg)
        check_dataset_names(cfg)
        check_label_space(cfg)
        check_weights(cfg, args.eval_only)
    except (FileNotFoundError, ConfigKeyError, ValueError, ImportError) as e:
        sys.exit(f"train_net.py: config error: {e}")
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
        device=cfg.MODEL.DEVICE,
    )


if __name__ == "__main__":
    cli()
