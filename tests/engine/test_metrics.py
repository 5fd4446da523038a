"""metrics.json (atomic rewrite, resume), the training-curves PNG and its graceful absence."""
import json
import logging
import os
import sys

import pytest

from ddetr_plugin.engine import MetricsWriter
from ddetr_plugin.engine.metrics import IterationTimer
from ddetr_plugin.engine.curves import CURVES_FILE_NAME


def _lines(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def test_records_are_json_lines_and_nan_becomes_null(tmp_path):
    writer = MetricsWriter(str(tmp_path), tensorboard=False)
    writer.write({"iteration": 0, "total_loss": 1.5, "lr": 1e-4})
    writer.write({"iteration": 0, "dataset": "val", "bbox/AP": 50.0, "bbox/APl": float("nan")})
    writer.flush()
    assert _lines(tmp_path / "metrics.json") == [
        {"iteration": 0, "total_loss": 1.5, "lr": 1e-4},
        {"iteration": 0, "dataset": "val", "bbox/AP": 50.0, "bbox/APl": None},
    ]


def test_resume_drops_records_after_the_checkpoint(tmp_path):
    writer = MetricsWriter(str(tmp_path), tensorboard=False)
    for iteration in range(6):
        writer.write({"iteration": iteration, "total_loss": float(iteration)})
    writer.flush()
    resumed = MetricsWriter(str(tmp_path), tensorboard=False)
    resumed.resume(3)
    resumed.write({"iteration": 4, "total_loss": 40.0})
    resumed.flush()
    assert [(r["iteration"], r["total_loss"]) for r in _lines(tmp_path / "metrics.json")] == [
        (0, 0.0), (1, 1.0), (2, 2.0), (3, 3.0), (4, 40.0)]


def test_a_crash_while_writing_leaves_the_previous_file(tmp_path, monkeypatch):
    writer = MetricsWriter(str(tmp_path), tensorboard=False)
    writer.write({"iteration": 0, "total_loss": 1.0})
    writer.flush()
    writer.write({"iteration": 1, "total_loss": 2.0})
    real_replace = os.replace

    def crash(src, dst):
        raise OSError("killed before the rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        writer.flush()
    monkeypatch.setattr(os, "replace", real_replace)
    assert _lines(tmp_path / "metrics.json") == [{"iteration": 0, "total_loss": 1.0}]
    assert sorted(os.listdir(tmp_path)) == ["metrics.json"]  # the temporary file is gone
    writer.flush()
    assert len(_lines(tmp_path / "metrics.json")) == 2


def test_disabled_writer_writes_nothing(tmp_path):
    writer = MetricsWriter(str(tmp_path), enabled=False)
    writer.write({"iteration": 0, "total_loss": 1.0})
    writer.close()
    assert os.listdir(tmp_path) == []


def test_curves_png_is_drawn(tmp_path):
    pytest.importorskip("matplotlib")
    writer = MetricsWriter(str(tmp_path), tensorboard=False)
    for iteration in range(5):
        writer.write({"iteration": iteration, "total_loss": 5.0 - iteration, "lr": 1e-4})
    writer.write({"iteration": 4, "dataset": "val", "bbox/AP": 10.0, "bbox/AP50": 20.0})
    writer.flush()  # an evaluation record makes a redraw due
    path = tmp_path / CURVES_FILE_NAME
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_without_matplotlib_the_png_is_skipped_with_one_info_line(tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    with caplog.at_level(logging.INFO, logger="ddetr_plugin.engine.metrics"):
        writer = MetricsWriter(str(tmp_path), tensorboard=False)
        writer.write({"iteration": 0, "total_loss": 1.0})
        writer.write({"iteration": 0, "dataset": "val", "bbox/AP": 1.0})
        writer.close()
    assert not (tmp_path / CURVES_FILE_NAME).exists()
    assert caplog.text.count("matplotlib is not installed") == 1
    assert len(_lines(tmp_path / "metrics.json")) == 2


def test_eta_leaves_out_the_slow_first_iterations():
    timer = IterationTimer(max_iter=10, warmup=2)
    timer.step(5.0)
    assert timer.eta_seconds(0) == pytest.approx(45.0)  # nothing else known yet
    for seconds in (3.0, 1.0, 2.0):
        timer.step(seconds)
    assert timer.eta_seconds(3) == pytest.approx(1.5 * 6)
