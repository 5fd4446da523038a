"""Periodic checkpoints ``model_<iteration>.pth`` and, at the end, ``model_final.pth`` (and .safetensors)."""
import logging
import os
from typing import Optional

from ...checkpoint.safetensors_file import save_safetensors
from ...utils import comm
from .base import HookBase

logger = logging.getLogger(__name__)


class PeriodicCheckpointer(HookBase):
    """Saves the full training state through ``trainer.save_checkpoint``.

    Args:
        period: save ``model_<iteration:07d>.pth`` after every this many iterations (0: only the final one).
            How many are kept is the trainer's checkpointer's ``max_to_keep``.
        final_safetensors_config: when given (the config YAML), the final weights are also written as
            ``model_final.safetensors`` with this config and the class names in its metadata.
    """

    def __init__(self, period: int = 0, final_safetensors_config: Optional[str] = None):
        self.period = period
        self.final_safetensors_config = final_safetensors_config

    def after_step(self) -> None:
        iteration = self.trainer.iteration
        if self.period > 0 and (iteration + 1) % self.period == 0:
            self.trainer.save_checkpoint(f"model_{iteration:07d}")

    def after_train(self) -> None:
        trainer = self.trainer
        if trainer.iteration < trainer.start_iter:  # nothing trained in this run: model_final is there already
            return
        trainer.save_checkpoint("model_final")
        if self.final_safetensors_config is not None and trainer.output_dir and comm.is_main_process():
            path = os.path.join(trainer.output_dir, "model_final.safetensors")
            save_safetensors(path, trainer.module.state_dict(), config=self.final_safetensors_config,
                             class_names=trainer.class_names)
            logger.info("Saved the final weights as %s", path)
