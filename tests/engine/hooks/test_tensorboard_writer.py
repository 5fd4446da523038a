"""TensorBoardWriter: every metrics record as scalars with the right tags, flushed each iteration, one run
after a resume, and its graceful absence."""
import logging
import os
import shutil
import sys
from types import SimpleNamespace

import pytest

from ddetr_plugin.engine import MetricsWriter
from ddetr_plugin.engine.hooks import TensorBoardWriter
from ddetr_plugin.engine.hooks.tensorboard_writer import scalar_tags

from tests._support.fake_training import fake_stream, make_trainer, read_metrics

pytestmark = pytest.mark.usefixtures("no_plots")


def _event_files(directory):
    return sorted(name for name in os.listdir(directory) if "tfevents" in name)


def _scalars(directory, names=None):
    """{tag: [(step, value)]} as TensorBoard reads ``names`` (event files, in this order) of ``directory``."""
    pytest.importorskip("tensorboard", reason="reading events back needs the tensorboard package")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    if names is not None:  # copied under names that sort in the given order, as separate runs' files do
        ordered = os.path.join(directory, "ordered")
        os.makedirs(ordered)
        for index, name in enumerate(names):
            shutil.copy(os.path.join(directory, name), os.path.join(ordered, f"events.out.tfevents.{index:04d}"))
        directory = ordered
    accumulator = EventAccumulator(str(directory))
    accumulator.Reload()
    return {tag: [(event.step, event.value) for event in accumulator.Scalars(tag)]
            for tag in accumulator.Tags()["scalars"]}


def _fake_trainer(output_dir, start_iter=0):
    return SimpleNamespace(output_dir=str(output_dir), start_iter=start_iter, metrics=MetricsWriter(str(output_dir)))


def test_scalar_tags_prefix_evaluations_with_their_dataset():
    assert scalar_tags({"iteration": 3, "total_loss": 1.5, "lr": 1e-4}) == {"total_loss": 1.5, "lr": 1e-4}
    assert scalar_tags({"iteration": 3, "dataset": "val", "bbox/AP": 40.0, "bbox/APl": None}) == {
        "val/bbox/AP": 40.0}


def test_each_iteration_s_records_are_on_disk_before_the_next(tmp_path):
    pytest.importorskip("torch.utils.tensorboard", reason="the hook needs the tensorboard package")
    trainer = _fake_trainer(tmp_path)
    hook = TensorBoardWriter()
    hook.trainer = trainer
    hook.before_train()
    trainer.metrics.write({"iteration": 1, "total_loss": 2.5, "lr": 1e-3})
    trainer.metrics.write({"iteration": 1, "dataset": "val", "bbox/AP": 12.5, "bbox/APl": float("nan")})
    hook.after_step()
    # not closed yet (a crash here): what was recorded is readable already
    assert _scalars(tmp_path) == {"total_loss": [(1, 2.5)], "lr": [(1, pytest.approx(1e-3))],
                                  "val/bbox/AP": [(1, 12.5)]}
    trainer.metrics.write({"iteration": 3, "total_loss": 1.5, "lr": 1e-4})
    hook.after_train()
    assert _scalars(tmp_path)["total_loss"] == [(1, 2.5), (3, 1.5)]
    assert len(_event_files(tmp_path)) == 1


def test_a_resumed_run_reads_as_one_run(tmp_path):
    pytest.importorskip("torch.utils.tensorboard", reason="the hook needs the tensorboard package")
    crashed = make_trainer(tmp_path, stream=lambda start: fake_stream(start, stop_at=4))
    with pytest.raises(KeyboardInterrupt):
        crashed.train()  # records at iterations 1 and 3, last checkpoint after iteration 2
    first = _event_files(tmp_path)
    resumed = make_trainer(tmp_path)
    resumed.resume_or_load(resume=True)
    resumed.train()
    second = [name for name in _event_files(tmp_path) if name not in first]
    assert len(first) == 1 and len(second) == 1
    losses = {r["iteration"]: r["total_loss"] for r in read_metrics(tmp_path) if "total_loss" in r}
    assert sorted(losses) == [1, 3, 5]
    # the interrupted run's iteration 3 is purged: one point per record of metrics.json, with its value
    scalars = _scalars(tmp_path, first + second)
    assert scalars["total_loss"] == [(step, pytest.approx(losses[step])) for step in (1, 3, 5)]


def test_without_tensorboard_it_says_so_once_and_writes_nothing(tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # its import now raises ImportError
    with caplog.at_level(logging.INFO, logger="ddetr_plugin.engine.hooks.tensorboard_writer"):
        make_trainer(tmp_path, max_iter=4).train()
    assert caplog.text.count("tensorboard is not installed") == 1
    assert _event_files(tmp_path) == []
    assert len(read_metrics(tmp_path)) == 2


def test_left_out_or_without_output_dir_no_events(tmp_path):
    make_trainer(tmp_path / "left_out", max_iter=2, writers=()).train()
    assert _event_files(tmp_path / "left_out") == []
    trainer = _fake_trainer("")
    hook = TensorBoardWriter()
    hook.trainer = trainer
    hook.before_train()
    hook.after_train()
    assert hook._writer is None
