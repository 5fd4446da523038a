"""Hooks of the training loop: call order, what a user hook sees, BestCheckpointer, EarlyStop, errors."""
import os

import pytest
import torch

from ddetr_plugin.engine import BestCheckpointer, EarlyStop, HookBase
from ddetr_plugin.engine.hooks import (EMAHook, EvalHook, LRSchedulerHook, MetricsLogger, MetricTracker,
                                       NonFiniteGuard, PeriodicCheckpointer, TensorBoardWriter, TrainingCurves)

from tests._support.fake_training import make_trainer, read_metrics

pytestmark = pytest.mark.usefixtures("no_plots")


class Recorder(HookBase):
    """Records every stage it is called at, with the iteration and what the trainer shows there."""

    def __init__(self):
        self.calls = []

    def before_train(self):
        self.calls.append(("before_train", self.trainer.iteration))

    def before_step(self):
        self.calls.append(("before_step", self.trainer.iteration))

    def after_backward(self):
        self.calls.append(("after_backward", self.trainer.iteration))

    def after_step(self):
        result = self.trainer.step_result
        self.calls.append(("after_step", self.trainer.iteration, result.total_loss, result.optimizer_stepped))

    def after_train(self):
        self.calls.append(("after_train", self.trainer.iteration))


def scripted_eval(aps):
    """An eval_fn whose successive bbox/AP values are ``aps``; counts its calls."""
    def eval_fn(model):
        eval_fn.calls += 1
        return {"fake_val": {"bbox": {"AP": aps[eval_fn.calls - 1], "AP50": 90.0}}}
    eval_fn.calls = 0
    return eval_fn


def test_hooks_are_called_at_each_stage_in_order(tmp_path):
    recorder = Recorder()
    trainer = make_trainer(tmp_path, max_iter=3, hooks=[recorder])
    trainer.train()
    stages = [call[:2] for call in recorder.calls]
    assert stages == [("before_train", -1)] + [
        (stage, i) for i in range(3) for stage in ("before_step", "after_backward", "after_step")
    ] + [("after_train", 2)]
    losses = [call[2] for call in recorder.calls if call[0] == "after_step"]
    records = {r["iteration"]: r["total_loss"] for r in read_metrics(tmp_path) if "total_loss" in r}
    # log period 2: each record is the median (here the mean) of the two iterations before it
    assert records[1] == pytest.approx((losses[0] + losses[1]) / 2)
    assert records[2] == pytest.approx((losses[1] + losses[2]) / 2)
    assert all(call[3] for call in recorder.calls if call[0] == "after_step")


def test_default_hooks_come_first_in_the_order_of_their_effects(tmp_path):
    user = Recorder()
    trainer = make_trainer(tmp_path, ema_decay=0.9, eval_fn=scripted_eval([1.0]))
    trainer.register_hooks([user])
    assert [type(hook) for hook in trainer.hooks] == [
        LRSchedulerHook, EMAHook, NonFiniteGuard, MetricsLogger, PeriodicCheckpointer, EvalHook, TensorBoardWriter,
        TrainingCurves, Recorder]
    assert user.trainer.max_iter == trainer.max_iter
    with pytest.raises(TypeError, match="HookBase instances, got function"):
        trainer.register_hooks([lambda: None])


def test_a_user_hook_sees_each_iteration_after_checkpoints_and_evaluations(tmp_path):
    class Watcher(HookBase):
        def __init__(self):
            self.seen = []

        def after_step(self):
            iteration = self.trainer.iteration
            checkpoint = os.path.exists(os.path.join(str(tmp_path), f"model_{iteration:07d}.pth"))
            self.seen.append((iteration, checkpoint, self.trainer.last_eval_iteration))

    watcher = Watcher()
    trainer = make_trainer(tmp_path, max_iter=6, checkpoint_period=3, eval_fn=scripted_eval([1.0, 2.0, 3.0]),
                           eval_period=2, hooks=[watcher])
    trainer.train()
    assert watcher.seen == [(0, False, None), (1, False, 1), (2, True, 1), (3, False, 3), (4, False, 3),
                            (5, True, 3)]
    assert trainer.last_eval_iteration == 5  # the final evaluation, after training


@pytest.mark.parametrize("mode, best_iteration, best_ap", [("max", 3, 30.0), ("min", 1, 10.0)])
def test_best_checkpointer_keeps_the_best_evaluation(tmp_path, mode, best_iteration, best_ap):
    # evaluations at iterations 1, 3, 5 and the final one at 7
    trainer = make_trainer(tmp_path, max_iter=8, checkpoint_period=2, eval_period=2,
                           eval_fn=scripted_eval([10.0, 30.0, 20.0, 25.0]),
                           hooks=[BestCheckpointer("bbox/AP", mode=mode)])
    trainer.train()
    best = torch.load(tmp_path / "model_best.pth", weights_only=True)
    assert best["iteration"] == best_iteration
    assert best["best_metric"] == {"name": "bbox/AP", "value": best_ap}
    periodic = torch.load(tmp_path / f"model_{best_iteration:07d}.pth", weights_only=True)
    for key, value in periodic["model"].items():
        assert torch.equal(best["model"][key], value), key
    assert open(tmp_path / "last_checkpoint").read() == "model_final.pth"  # --resume is not redirected


def test_best_checkpointer_counts_the_final_evaluation(tmp_path):
    trainer = make_trainer(tmp_path, max_iter=4, checkpoint_period=0, eval_period=2,
                           eval_fn=scripted_eval([10.0, 50.0]), hooks=[BestCheckpointer()])
    trainer.train()
    assert torch.load(tmp_path / "model_best.pth", weights_only=True)["iteration"] == 3
    assert open(tmp_path / "last_checkpoint").read() == "model_final.pth"  # though model_best came after it


def test_early_stop_ends_training_with_consistent_outputs(tmp_path):
    # evaluations at 1, 3, 5, 7: 20.0 is not beaten twice in a row, so training stops after iteration 7
    eval_fn = scripted_eval([10.0, 20.0, 15.0, 19.0, 99.0])
    stopper = EarlyStop("bbox/AP", patience=2)
    trainer = make_trainer(tmp_path, max_iter=20, checkpoint_period=0, log_period=3, eval_period=2,
                           eval_fn=eval_fn, hooks=[stopper])
    results = trainer.train()
    assert trainer.iteration == 7 and eval_fn.calls == 4  # the evaluation at the stop is not repeated
    assert results == {"fake_val": {"bbox": {"AP": 19.0, "AP50": 90.0}}}
    final = torch.load(tmp_path / "model_final.pth", weights_only=True)
    assert final["iteration"] == 7
    assert open(tmp_path / "last_checkpoint").read() == "model_final.pth"
    records = read_metrics(tmp_path)
    assert [r["iteration"] for r in records if "total_loss" in r] == [2, 5, 7]  # 7 is between log periods
    assert [r["bbox/AP"] for r in records if "bbox/AP" in r] == [10.0, 20.0, 15.0, 19.0]
    assert stopper.tracker.best == 20.0 and stopper.tracker.best_iteration == 3


def test_early_stop_min_delta_counts_small_gains_as_none(tmp_path):
    eval_fn = scripted_eval([10.0, 10.5, 10.9, 50.0])
    trainer = make_trainer(tmp_path, max_iter=10, checkpoint_period=0, eval_period=2, eval_fn=eval_fn,
                           hooks=[EarlyStop(patience=2, min_delta=1.0)])
    trainer.train()
    assert trainer.iteration == 5 and eval_fn.calls == 3


def test_a_hook_exception_propagates_and_writes_no_final_checkpoint(tmp_path):
    class Failing(HookBase):
        def after_step(self):
            if self.trainer.iteration == 2:
                raise RuntimeError("hook failed at iteration 2")

    recorder = Recorder()
    trainer = make_trainer(tmp_path, max_iter=6, checkpoint_period=1, hooks=[Failing(), recorder])
    with pytest.raises(RuntimeError, match="hook failed at iteration 2"):
        trainer.train()
    assert not (tmp_path / "model_final.pth").exists()
    assert open(tmp_path / "last_checkpoint").read() == "model_0000002.pth"
    assert recorder.calls[-1] == ("after_backward", 2)  # neither its after_step nor after_train ran
    assert [r["iteration"] for r in read_metrics(tmp_path) if "total_loss" in r] == [1]  # flushed before the error


def test_a_raising_after_backward_hook_prevents_the_optimizer_step(tmp_path):
    class Veto(HookBase):
        def after_backward(self):
            raise ValueError("veto")

    trainer = make_trainer(tmp_path, max_iter=2, hooks=[Veto()])
    before = {key: value.clone() for key, value in trainer.module.state_dict().items()}
    with pytest.raises(ValueError, match="veto"):
        trainer.train()
    for key, value in trainer.module.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_metric_tracker_names_what_the_evaluation_has():
    class FakeTrainer:
        last_eval_iteration = 4
        last_results = {"fake_val": {"bbox": {"AP": 1.0, "AP50": 2.0}}}

    with pytest.raises(KeyError, match=r"'bbox/AP75' not in the evaluation of 'fake_val'; it has \['bbox/AP', "):
        MetricTracker("bbox/AP75").new_value(FakeTrainer())
    with pytest.raises(KeyError, match=r"dataset 'other' was not evaluated; evaluated: \['fake_val'\]"):
        MetricTracker("bbox/AP", dataset="other").new_value(FakeTrainer())
    tracker = MetricTracker("bbox/AP50")
    assert tracker.new_value(FakeTrainer()) == 2.0 and tracker.new_value(FakeTrainer()) is None  # seen once
    with pytest.raises(ValueError, match="mode must be one of"):
        MetricTracker("bbox/AP", mode="best")
    with pytest.raises(ValueError, match="'<task>/<name>'"):
        MetricTracker("AP")
    assert not tracker.update(float("nan"), 1) and tracker.update(3.0, 2) and not tracker.update(3.0, 3)


def test_a_finished_run_resumed_only_evaluates(tmp_path):
    make_trainer(tmp_path, max_iter=3, eval_fn=scripted_eval([1.0])).train()
    written = os.stat(tmp_path / "model_final.pth").st_mtime_ns
    recorder = Recorder()
    eval_fn = scripted_eval([2.0])
    trainer = make_trainer(tmp_path, max_iter=3, eval_fn=eval_fn, hooks=[recorder])
    trainer.resume_or_load(resume=True)
    assert trainer.train() == {"fake_val": {"bbox": {"AP": 2.0, "AP50": 90.0}}}
    assert recorder.calls == [("before_train", 2), ("after_train", 2)] and eval_fn.calls == 1
    assert os.stat(tmp_path / "model_final.pth").st_mtime_ns == written  # not saved again
    assert [(r["iteration"], r["bbox/AP"]) for r in read_metrics(tmp_path) if "bbox/AP" in r] == [(2, 1.0), (2, 2.0)]
