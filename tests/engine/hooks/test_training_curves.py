"""TrainingCurves: the PNG redrawn at most every plot_interval_s, right after an evaluation and at the end,
from the kept records too after a resume, and its graceful absence."""
import logging
import sys
from types import SimpleNamespace

import pytest

from ddetr_plugin.engine import MetricsWriter
from ddetr_plugin.engine.curves import CURVES_FILE_NAME, CurveSeries
from ddetr_plugin.engine.hooks import TrainingCurves
from ddetr_plugin.engine.hooks import training_curves

from tests._support.fake_training import fake_stream, make_trainer, read_metrics


class Clock:
    def __init__(self):
        self.now = 0.0

    def monotonic(self):
        return self.now


@pytest.fixture
def draws(monkeypatch):
    """Each redraw as (the clock, the total_loss iterations, the bbox/AP points); no real drawing."""
    clock = Clock()
    calls = []

    def fake_plot(path, training, evaluation):
        calls.append((clock.now, [i for i, _ in training["total_loss"]], list(evaluation["bbox/AP"])))

    monkeypatch.setattr(training_curves, "time", clock)
    monkeypatch.setattr(training_curves, "plot_training_curves", fake_plot)
    monkeypatch.setattr(training_curves, "matplotlib_available", lambda: True)
    return SimpleNamespace(clock=clock, calls=calls)


def _hook_on(output_dir, plot_interval_s=60.0):
    hook = TrainingCurves(plot_interval_s)
    hook.trainer = SimpleNamespace(output_dir=str(output_dir), metrics=MetricsWriter(str(output_dir)))
    return hook


def test_series_take_the_plotted_keys_and_flag_evaluations():
    series = CurveSeries()
    assert not series.add([{"iteration": 1, "total_loss": 2.0, "lr": 0.1, "loss_a": 1.0}])
    assert series.add([{"iteration": 1, "dataset": "val", "bbox/AP": 5.0, "bbox/AP50": None}])
    assert series.training == {"total_loss": [(1, 2.0)], "lr": [(1, 0.1)]}
    assert series.evaluation == {"bbox/AP": [(1, 5.0)], "bbox/AP50": []}


def test_redrawn_at_most_every_interval_at_evaluations_and_at_the_end(tmp_path, draws):
    hook = _hook_on(tmp_path, plot_interval_s=60.0)
    metrics = hook.trainer.metrics
    hook.before_train()
    metrics.write({"iteration": 0, "total_loss": 3.0})
    draws.clock.now = 59.0
    hook.after_step()
    assert draws.calls == []  # within the interval
    draws.clock.now = 100.0
    hook.after_step()
    assert draws.calls == []  # nothing new to draw
    metrics.write({"iteration": 1, "total_loss": 2.0})
    hook.after_step()
    assert draws.calls == [(100.0, [0, 1], [])]
    metrics.write({"iteration": 2, "total_loss": 1.5})
    draws.clock.now = 110.0
    hook.after_step()
    assert len(draws.calls) == 1
    metrics.write({"iteration": 2, "dataset": "val", "bbox/AP": 7.0})
    draws.clock.now = 111.0
    hook.after_step()  # an evaluation: drawn at once
    assert draws.calls[-1] == (111.0, [0, 1, 2], [(2, 7.0)])
    draws.clock.now = 112.0
    hook.after_train()
    assert [call[0] for call in draws.calls] == [100.0, 111.0, 112.0]


def test_a_resumed_run_draws_the_kept_records_too(tmp_path, draws):
    crashed = make_trainer(tmp_path, stream=lambda start: fake_stream(start, stop_at=4))
    with pytest.raises(KeyboardInterrupt):
        crashed.train()
    resumed = make_trainer(tmp_path)
    resumed.resume_or_load(resume=True)
    resumed.train()
    assert draws.calls[-1][1] == [1, 3, 5]  # iteration 1 from the interrupted run, 3 only once


def test_the_png_is_drawn_beside_metrics_json(tmp_path):
    pytest.importorskip("matplotlib", reason="drawing the PNG needs matplotlib")
    trainer = make_trainer(tmp_path, max_iter=4, eval_fn=lambda model: {"val": {"bbox": {"AP": 10.0, "AP50": 20.0}}})
    trainer.train()
    with open(tmp_path / CURVES_FILE_NAME, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_without_matplotlib_it_says_so_once_and_draws_nothing(tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    with caplog.at_level(logging.INFO, logger="ddetr_plugin.engine.hooks.training_curves"):
        make_trainer(tmp_path, max_iter=4, eval_fn=lambda model: {"val": {"bbox": {"AP": 1.0}}}).train()
    assert not (tmp_path / CURVES_FILE_NAME).exists()
    assert caplog.text.count("matplotlib is not installed") == 1
    assert len(read_metrics(tmp_path)) == 3


def test_left_out_or_without_output_dir_no_png(tmp_path, draws):
    make_trainer(tmp_path, max_iter=2, writers=()).train()
    assert not (tmp_path / CURVES_FILE_NAME).exists()
    assert draws.calls == []
    hook = _hook_on("")
    hook.before_train()
    hook.after_train()
    assert draws.calls == []
