"""tools/train_net.py in a subprocess on a tiny model and the tiny shapes datasets (CPU): the config, the run
folder fixture, the command and its environment."""
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest

from .paths import ROOT

TINY_CONFIG = """
IMPORTS: [tests._support.tiny_shapes]
MODEL:
  DEVICE: cpu
  NUM_CLASSES: 4
  NUM_QUERIES: 8
  NUM_FEATURE_LEVELS: 2
  BACKBONE: {DEPTH: 18, NORM: FrozenBN, OUT_FEATURES: [layer3, layer4]}
  TRANSFORMER: {D_MODEL: 32, NHEADS: 2, ENC_LAYERS: 1, DEC_LAYERS: 2, DIM_FEEDFORWARD: 32, DROPOUT: 0.0,
                ENC_N_POINTS: 2, DEC_N_POINTS: 2}
INPUT:
  MIN_SIZE_TRAIN: [48, 64]
  MAX_SIZE_TRAIN: 64
  MIN_SIZE_TEST: 64
  MAX_SIZE_TEST: 64
  CROP: {ENABLED: False}
DATASETS: {TRAIN: [tiny_shapes_train], TEST: []}
DATALOADER: {NUM_WORKERS: 0}
SOLVER: {IMS_PER_BATCH: 4, BASE_LR: 0.001, MAX_ITER: 4, STEPS: [3], CHECKPOINT_PERIOD: 1, LOG_PERIOD: 1}
"""


@pytest.fixture
def run_dir(tmp_path) -> Path:
    """A run folder holding ``tiny.yaml`` (TINY_CONFIG); each run writes into a subfolder of it."""
    (tmp_path / "tiny.yaml").write_text(TINY_CONFIG)
    return tmp_path


def train_net_command(run_dir: Path, output: str, *extra: str) -> List[str]:
    """tools/train_net.py on ``run_dir``/tiny.yaml, writing to ``run_dir``/``output``, with ``extra`` arguments."""
    return [sys.executable, str(ROOT / "tools" / "train_net.py"), "--config-file", str(run_dir / "tiny.yaml"),
            *extra, "OUTPUT_DIR", str(run_dir / output)]


def train_net_env(run_dir: Path) -> Dict[str, str]:
    """The environment of a run: its datasets under ``run_dir``, one thread, this checkout importable."""
    return dict(os.environ, DDETR_DATASETS=str(run_dir / "datasets"), OMP_NUM_THREADS="1",
                PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def run_train_net(run_dir: Path, output: str, *extra: str, timeout: int = 240) -> subprocess.CompletedProcess:
    """Run tools/train_net.py to the end in a subprocess; asserts it succeeded."""
    result = subprocess.run(train_net_command(run_dir, output, *extra), cwd=ROOT, env=train_net_env(run_dir),
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result
