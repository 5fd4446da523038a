"""metrics.json (atomic rewrite, resume, the records readers follow) and the ETA timer."""
import json
import os

import pytest

from ddetr_plugin.engine import MetricsWriter
from ddetr_plugin.engine.metrics import IterationTimer


def _lines(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def test_records_are_json_lines_and_nan_becomes_null(tmp_path):
    writer = MetricsWriter(str(tmp_path))
    writer.write({"iteration": 0, "total_loss": 1.5, "lr": 1e-4})
    writer.write({"iteration": 0, "dataset": "val", "bbox/AP": 50.0, "bbox/APl": float("nan")})
    writer.flush()
    assert _lines(tmp_path / "metrics.json") == [
        {"iteration": 0, "total_loss": 1.5, "lr": 1e-4},
        {"iteration": 0, "dataset": "val", "bbox/AP": 50.0, "bbox/APl": None},
    ]


def test_resume_drops_records_after_the_checkpoint(tmp_path):
    writer = MetricsWriter(str(tmp_path))
    for iteration in range(6):
        writer.write({"iteration": iteration, "total_loss": float(iteration)})
    writer.flush()
    resumed = MetricsWriter(str(tmp_path))
    resumed.resume(3)
    resumed.write({"iteration": 4, "total_loss": 40.0})
    resumed.flush()
    assert [(r["iteration"], r["total_loss"]) for r in _lines(tmp_path / "metrics.json")] == [
        (0, 0.0), (1, 1.0), (2, 2.0), (3, 3.0), (4, 40.0)]


def test_a_crash_while_writing_leaves_the_previous_file(tmp_path, monkeypatch):
    writer = MetricsWriter(str(tmp_path))
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


def test_records_read_as_the_file_and_follow_it_after_resume(tmp_path):
    writer = MetricsWriter(str(tmp_path))
    for iteration in range(4):
        writer.write({"iteration": iteration, "total_loss": float(iteration), "lr": float("inf")})
    writer.flush()
    assert writer.records == _lines(tmp_path / "metrics.json")
    assert writer.records[0] == {"iteration": 0, "total_loss": 0.0, "lr": None}
    writer.records_since(0)[0]["total_loss"] = 99.0  # a copy: the writer's history is unchanged
    assert writer.records[0]["total_loss"] == 0.0
    resumed = MetricsWriter(str(tmp_path))
    resumed.resume(1)
    kept = len(resumed.records)
    resumed.write({"iteration": 2, "dataset": "val", "bbox/AP": 5.0})
    assert kept == 2
    assert resumed.records_since(kept) == [{"iteration": 2, "dataset": "val", "bbox/AP": 5.0}]


def test_disabled_writer_writes_nothing(tmp_path):
    writer = MetricsWriter(str(tmp_path), enabled=False)
    writer.write({"iteration": 0, "total_loss": 1.0})
    writer.flush()
    assert os.listdir(tmp_path) == []
    assert writer.records == []


def test_only_metrics_json_is_written(tmp_path):
    writer = MetricsWriter(str(tmp_path))
    writer.write({"iteration": 0, "total_loss": 1.0})
    writer.write({"iteration": 0, "dataset": "val", "bbox/AP": 1.0})
    writer.flush()
    assert os.listdir(tmp_path) == ["metrics.json"]  # TensorBoard and the PNG are hooks now


def test_eta_leaves_out_the_slow_first_iterations():
    timer = IterationTimer(max_iter=10, warmup=2)
    timer.step(5.0)
    assert timer.eta_seconds(0) == pytest.approx(45.0)  # nothing else known yet
    for seconds in (3.0, 1.0, 2.0):
        timer.step(seconds)
    assert timer.eta_seconds(3) == pytest.approx(1.5 * 6)
