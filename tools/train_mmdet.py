#!/usr/bin/env python
"""Train or evaluate an MMDetection config with mmengine's Runner: a short example to copy.

    python tools/train_mmdet.py configs/mmdet/quickstart_shapes.py --work-dir work_dirs/shapes
    python tools/train_mmdet.py configs/mmdet/quickstart_shapes.py --eval-only \\
        --cfg-options load_from=output/quickstart/model_final.pth
    torchrun --nproc-per-node 2 tools/train_mmdet.py CONFIG --launcher pytorch

--eval-only runs the test loop on the weights of ``load_from``: mmdet's own Deformable DETR
checkpoints, PluginDeformableDETR's or ours all load into PluginDeformableDETR. --resume
continues from the newest checkpoint in the work dir (or from ``load_from`` when given).
Several processes without GPUs communicate over gloo (the configs say nccl).
"""
import argparse
import os

import torch
from mmengine.config import Config, DictAction
from mmengine.runner import Runner

# importing the integration allow-lists the types in the checkpoints mmengine's Runner writes (weights_only)
from ddetr_plugin.integrations.mmdet.distributed import use_cpu_processes


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("config", help="an mmdet config file, e.g. configs/mmdet/quickstart_shapes.py")
    parser.add_argument("--work-dir", help="logs and checkpoints (default: ./work_dirs/<config name>)")
    parser.add_argument("--resume", action="store_true", help="resume from the newest checkpoint")
    parser.add_argument("--eval-only", action="store_true", help="only run the test loop on load_from")
    parser.add_argument("--launcher", choices=["none", "pytorch"], default="none",
                        help="'pytorch' under torchrun (one process per device)")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, default={},
                        help="config overrides KEY=VALUE, e.g. load_from=model.pth train_cfg.max_iters=100")
    return parser.parse_args(argv)


def build_runner(args: argparse.Namespace) -> Runner:
    cfg = Config.fromfile(args.config)
    cfg.merge_from_dict(args.cfg_options)
    cfg.launcher = args.launcher
    name = os.path.splitext(os.path.basename(args.config))[0]
    cfg.work_dir = args.work_dir or cfg.get("work_dir") or os.path.join("work_dirs", name)
    if args.resume:
        cfg.resume = True
    if args.eval_only and not cfg.get("load_from"):
        raise SystemExit("--eval-only needs weights: --cfg-options load_from=PATH")
    if args.launcher != "none" and not torch.cuda.is_available():
        use_cpu_processes(cfg)
    return Runner.from_cfg(cfg)


def main(argv=None) -> int:
    args = parse_args(argv)
    runner = build_runner(args)
    if args.eval_only:
        runner.test()
    else:
        runner.train()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
