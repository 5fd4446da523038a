#!/usr/bin/env python
"""Train or evaluate Deformable DETR with detectron2's trainer, evaluator and launcher.

An example to copy, in the manner of detectron2's own tools/train_net.py: detectron2's argument
parser, config and ``launch``; the model, trainer and datasets come from
``ddetr_plugin.integrations.detectron2``.

    python tools/train_detectron2.py --config-file configs/detectron2/quickstart_shapes.yaml
    python tools/train_detectron2.py --config-file configs/detectron2/quickstart_shapes.yaml --num-gpus 2  # 2 CPU processes (gloo)
    python tools/train_detectron2.py --config-file CFG --num-gpus 8 --num-machines 2 --machine-rank R --dist-url tcp://HOST:PORT
    python tools/train_detectron2.py --config-file CFG --resume                   # continue from OUTPUT_DIR
    python tools/train_detectron2.py --config-file CFG --eval-only MODEL.WEIGHTS d2/model.pth
"""
import os

import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.engine import default_argument_parser, default_setup, launch
from detectron2.utils import comm

from ddetr_plugin.integrations.detectron2 import Trainer, add_deformable_detr_config


def setup(args):
    cfg = get_cfg()
    add_deformable_detr_config(cfg)
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    cfg.freeze()
    default_setup(cfg, args)
    return cfg


def main(args):
    cfg = setup(args)
    if cfg.MODEL.DEVICE == "cpu" and "OMP_NUM_THREADS" not in os.environ:
        # processes on one machine share its cores
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // comm.get_local_size()))
    if args.eval_only:
        model = Trainer.build_model(cfg)
        DetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        return Trainer.test(cfg, model)
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


def cli(argv=None):
    args = default_argument_parser().parse_args(argv)
    return launch(main, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
                  dist_url=args.dist_url, args=(args,))


if __name__ == "__main__":
    cli()
