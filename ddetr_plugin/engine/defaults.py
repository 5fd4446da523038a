"""The command line of training scripts and the per-process setup every script does first."""
import argparse
import logging
import os
import sys
from typing import List, Optional

import torch
from fvcore.common.config import CfgNode

from ..config import ConfigKeyError
from ..utils import comm
from ..utils.logger import setup_logger
from ..utils.file_io import atomic_write
from .rng import seed_all

logger = logging.getLogger(__name__)

CONFIG_DUMP_NAME = "config.yaml"


def default_argument_parser(description: Optional[str] = None) -> argparse.ArgumentParser:
    """The flags of ``tools/train_net.py``.

    ``--config-file`` (alias ``--config``), ``--num-gpus``, ``--num-machines``, ``--machine-rank``,
    ``--dist-url``, ``--resume``, ``--eval-only`` and trailing ``KEY VALUE`` config overrides (``opts``).
    """
    parser = argparse.ArgumentParser(
        description=description or "Train or evaluate Deformable DETR from a config.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "Examples:\n"
            "  one process:     %(prog)s --config-file configs/quickstart/shapes.yaml\n"
            "  8 GPUs:          %(prog)s --config-file CFG --num-gpus 8\n"
            "  2 CPU processes: %(prog)s --config-file CFG --num-gpus 2 MODEL.DEVICE cpu\n"
            "  resume:          %(prog)s --config-file CFG --resume\n"
            "  evaluate:        %(prog)s --config-file CFG --eval-only MODEL.WEIGHTS model_final.pth\n"
            "  2 machines:      (machine 0) %(prog)s --config-file CFG --num-gpus 8 --num-machines 2 \\\n"
            "                       --machine-rank 0 --dist-url tcp://HOST0:29500\n"
            "                   (machine 1) the same with --machine-rank 1\n"
            "  torchrun:        torchrun --nproc-per-node 8 %(prog)s --config-file CFG"
        ),
    )
    parser.add_argument("--config-file", "--config", dest="config_file", default="", metavar="FILE",
                        help="path to the YAML config")
    parser.add_argument("--resume", action="store_true",
                        help="continue from OUTPUT_DIR/last_checkpoint exactly (model, optimizer, schedule, "
                             "iteration, RNG); starts from MODEL.WEIGHTS when there is none")
    parser.add_argument("--eval-only", action="store_true", help="evaluate MODEL.WEIGHTS on DATASETS.TEST, no training")
    parser.add_argument("--num-gpus", type=int, default=1,
                        help="processes per machine: one per GPU, or with MODEL.DEVICE cpu that many gloo processes")
    parser.add_argument("--num-machines", type=int, default=1, help="number of machines")
    parser.add_argument("--machine-rank", type=int, default=0, help="this machine's rank, 0 .. num-machines - 1")
    parser.add_argument("--dist-url", default="auto",
                        help="rendezvous of the process group: 'auto' (one machine: a free localhost port) or "
                             "tcp://HOST:PORT of machine 0, the same on every machine")
    parser.add_argument("opts", default=None, nargs=argparse.REMAINDER, metavar="KEY VALUE",
                        help="config overrides, e.g. SOLVER.BASE_LR 0.0001 OUTPUT_DIR out/run1")
    return parser


def default_setup(cfg: CfgNode, args: Optional[argparse.Namespace] = None) -> None:
    """What every process does before building anything.

    - creates OUTPUT_DIR (main process) and sets up logging: colored console and OUTPUT_DIR/log.txt on the
      main process, warnings only on the others;
    - logs the environment, the command line and the config; writes the merged config to
      OUTPUT_DIR/config.yaml (main process, atomically);
    - seeds Python, NumPy and torch with ``SEED + rank``: processes differ in dropout noise as the
      official implementation does, while data order and augmentation come from the data loader, which
      derives them from (SEED, epoch, sample index) alone.
    """
    rank = comm.get_rank()
    output_dir = cfg.OUTPUT_DIR
    if comm.is_main_process() and output_dir:
        os.makedirs(output_dir, exist_ok=True)
    setup_logger(output_dir if output_dir else None, rank=rank, names=("ddetr_plugin", "fvcore", "__main__"))
    logger.info("Rank %d of %d; torch %s; Python %s", rank, comm.get_world_size(), torch.__version__,
                sys.version.split()[0])
    if args is not None:
        logger.info("Command line: %s", " ".join(sys.argv))
        logger.info("Arguments: %s", args)
    logger.info("Running with the full config:\n%s", cfg.dump())
    if comm.is_main_process() and output_dir:
        path = os.path.join(output_dir, CONFIG_DUMP_NAME)
        atomic_write(path, lambda f: f.write(cfg.dump()), binary=False)
        logger.info("Full config saved to %s", path)
    seed_all(cfg.SEED + rank)


def check_component_names(cfg: CfgNode) -> None:
    """Raise (before any work) if a component NAME in ``cfg`` is not registered; the error lists the choices."""
    from .. import modeling  # noqa: F401  (registers the built-in components)
    from ..registry import COMPONENT_KEYS, component_for_key

    for key in COMPONENT_KEYS:
        try:
            component_for_key(key, cfg)
        except KeyError as e:
            raise ConfigKeyError(e.args[0]) from None


def check_dataset_names(cfg: CfgNode) -> None:
    """Raise (before any work) if DATASETS.TRAIN/TEST names an unregistered dataset; nothing is loaded."""
    from ..data import list_datasets

    registered = list_datasets()
    for key in ("TRAIN", "TEST"):
        unknown = [name for name in cfg.DATASETS[key] if name not in registered]
        if unknown:
            raise ConfigKeyError(
                f"DATASETS.{key}: no dataset named {', '.join(map(repr, unknown))}; registered: "
                f"{', '.join(registered)} (register your own with ddetr_plugin.data.register_coco_instances "
                f"in a module listed in IMPORTS)"
            )


def check_label_space(cfg: CfgNode) -> None:
    """Raise ValueError (before any work) if MODEL.LABEL_SPACE is unknown; the error lists the choices.

    MODEL.NUM_CLASSES is checked against each dataset when its loader or evaluator is built, since
    that needs the dataset's categories.
    """
    from ..data import check_label_space_name

    check_label_space_name(cfg.MODEL.LABEL_SPACE)


def config_overrides(args: argparse.Namespace) -> List[str]:
    """The trailing KEY VALUE overrides of ``args`` (argparse leaves a leading "--" in REMAINDER)."""
    opts = list(args.opts or [])
    return opts[1:] if opts[:1] == ["--"] else opts
