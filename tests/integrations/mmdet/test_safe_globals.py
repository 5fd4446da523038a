"""Checkpoints that mmengine's Runner writes load with weights_only=True once the integration is imported."""
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from tests._support.install_hints import MMDET_MISSING

pytest.importorskip("mmdet", reason=MMDET_MISSING)

from mmengine.logging import HistoryBuffer, MessageHub  # noqa: E402
from mmengine.runner import save_checkpoint  # noqa: E402

from tests._support.mmdet_models import mmdet_model, packaged_config  # noqa: E402
from tests._support.paths import ROOT  # noqa: E402
from tests._support.tool_scripts import load_tool  # noqa: E402


@pytest.fixture(scope="module")
def runner_checkpoint(tmp_path_factory):
    """A checkpoint as the Runner writes it: a message hub with HistoryBuffers, numpy scalars in meta."""
    cfg = packaged_config("plain")
    hub = MessageHub.get_instance("ddetr_safe_globals_test")
    for step in range(3):
        hub.update_scalar("train/loss", 1.0 / (step + 1))
        hub.update_scalar("train/lr", np.float64(1e-4))
    hub.update_info("iter", 3)
    path = tmp_path_factory.mktemp("runner") / "iter_3.pth"
    meta = {"cfg": cfg.pretty_text, "iter": 3, "best_score": np.float64(0.25), "seed": np.int64(7)}
    save_checkpoint({"meta": meta, "state_dict": mmdet_model(cfg).state_dict(), "message_hub": hub.state_dict()},
                    str(path))
    return path


def test_loads_with_weights_only_and_converts(runner_checkpoint, tmp_path):
    checkpoint = torch.load(runner_checkpoint, weights_only=True)
    losses = checkpoint["message_hub"]["log_scalars"]["train/loss"]
    assert isinstance(losses, HistoryBuffer) and losses.mean() == pytest.approx((1 + 1 / 2 + 1 / 3) / 3)
    assert checkpoint["meta"]["best_score"] == 0.25 and checkpoint["meta"]["seed"] == 7
    assert load_tool("convert_checkpoint").main(["--from", "mmdet", "--input", str(runner_checkpoint),
                                                 "--output", str(tmp_path / "ours.pth")]) == 0
    assert (tmp_path / "ours.yaml").is_file()


def test_without_the_integration_it_is_refused_with_a_hint(runner_checkpoint):
    code = ("from ddetr_plugin.checkpoint.checkpointer import UnsafeCheckpointError\n"
            "from ddetr_plugin.checkpoint.mmdet import load_mmdet_checkpoint\n"
            f"try:\n    load_mmdet_checkpoint({str(runner_checkpoint)!r})\n"
            "except UnsafeCheckpointError as e:\n    print('refused:', e)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert "refused:" in result.stdout and "import ddetr_plugin.integrations.mmdet" in result.stdout, result.stderr


class _AttributeOfHistoryBuffer:
    def __init__(self, name):
        self.name = name

    def __reduce__(self):
        return getattr, (HistoryBuffer, self.name)


def test_getattr_resolves_only_statistics_methods(tmp_path):
    path = tmp_path / "sneaky.pth"
    torch.save({"ok": _AttributeOfHistoryBuffer("mean")}, path)
    assert torch.load(path, weights_only=True)["ok"] is HistoryBuffer.mean
    torch.save({"sneaky": _AttributeOfHistoryBuffer("__init__")}, path)
    with pytest.raises(pickle.UnpicklingError, match=r"refusing getattr\(.*'__init__'\)"):
        torch.load(path, weights_only=True)
