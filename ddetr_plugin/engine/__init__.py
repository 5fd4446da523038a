"""Training and evaluation: launching processes, the training loop and its hooks, optimizer, schedule, metrics.

Ties together the model, the data, the evaluator and checkpoints; ``tools/train_net.py``
is a thin script over it. Add behaviour to training with a hook (``engine.hooks``):
``Trainer(..., hooks=[BestCheckpointer("bbox/AP")])`` or ``trainer.register_hooks([...])``.
"""
from .defaults import (
    check_component_names,
    check_dataset_names,
    check_label_space,
    config_overrides,
    default_argument_parser,
    default_setup,
)
from .ema import ModelEMA
from .evaluation import DatasetsEvaluation, build_evaluator, inference_dir
from .hooks import BestCheckpointer, EarlyStop, HookBase
from .launch import launch
from .metrics import MetricsWriter
from .optimizer import build_optimizer, get_param_groups
from .rng import get_rng_state, preserved_rng_state, seed_all, set_rng_state
from .scheduler import build_lr_scheduler, multistep_warmup_factor
from .train_loop import TrainerBase
from .trainer import NonFiniteLossError, StepResult, Trainer

__all__ = [
    "BestCheckpointer", "DatasetsEvaluation", "EarlyStop", "HookBase", "MetricsWriter", "ModelEMA",
    "NonFiniteLossError", "StepResult", "Trainer", "TrainerBase", "build_evaluator",
    "build_lr_scheduler", "build_optimizer", "check_component_names", "check_dataset_names",
    "check_label_space", "config_overrides", "default_argument_parser", "default_setup",
    "get_param_groups", "get_rng_state", "inference_dir", "launch", "multistep_warmup_factor",
    "preserved_rng_state", "seed_all", "set_rng_state",
]
