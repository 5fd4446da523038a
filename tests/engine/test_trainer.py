"""The training loop with a tiny model and a deterministic stream: resume, divergence, AMP, EMA, outputs."""
import itertools
import os

import pytest
import torch

from ddetr_plugin.checkpoint import Checkpointer
from ddetr_plugin.engine import NonFiniteLossError

from tests._support.fake_training import TinyDetector, fake_stream, make_trainer, read_metrics

pytestmark = pytest.mark.usefixtures("no_plots")


def test_resume_gives_the_weights_of_an_uninterrupted_run(tmp_path):
    reference = make_trainer(tmp_path / "uninterrupted")
    reference.resume_or_load(resume=True)
    reference.train()
    expected = reference.module.state_dict()

    crashed = make_trainer(tmp_path / "resumed", stream=lambda start: fake_stream(start, stop_at=4))
    crashed.resume_or_load(resume=True)
    with pytest.raises(KeyboardInterrupt):
        crashed.train()
    assert open(tmp_path / "resumed" / "last_checkpoint").read() == "model_0000002.pth"

    # another seed: everything that matters must come from the checkpoint
    resumed = make_trainer(tmp_path / "resumed", seed=123)
    resumed.resume_or_load(resume=True)
    assert resumed.start_iter == 3
    resumed.train()
    actual = resumed.module.state_dict()
    for key, value in expected.items():
        assert torch.equal(actual[key], value), key
    # metrics.json reads as one run: iteration 3 (logged before the crash) is not duplicated
    iterations = [r["iteration"] for r in read_metrics(tmp_path / "resumed") if "total_loss" in r]
    assert iterations == [1, 3, 5]


def test_resume_without_rng_restore_would_differ(tmp_path):
    """Guards the test above: with dropout, RNG restoration is what makes the weights equal."""
    reference = make_trainer(tmp_path / "a")
    reference.train()
    crashed = make_trainer(tmp_path / "b", stream=lambda start: fake_stream(start, stop_at=4))
    with pytest.raises(KeyboardInterrupt):
        crashed.train()
    resumed = make_trainer(tmp_path / "b", seed=123)
    resumed._restore_rng = lambda states, path: None
    resumed.resume_or_load(resume=True)
    resumed.train()
    assert not torch.equal(resumed.module.backbone[0].weight, reference.module.backbone[0].weight)


def test_non_finite_loss_stops_with_iteration_and_terms_and_no_checkpoint(tmp_path):
    trainer = make_trainer(tmp_path, max_iter=10, checkpoint_period=1,
                           stream=lambda start: fake_stream(start, poison_at=4))
    with pytest.raises(NonFiniteLossError) as info:
        trainer.train()
    message = str(info.value)
    assert "iteration 4" in message and "loss_a" in message and "loss_a=nan" in message and "loss_b=" in message
    files = sorted(os.listdir(tmp_path))
    assert "model_0000003.pth" in files and "model_0000004.pth" not in files and "model_final.pth" not in files
    assert open(tmp_path / "last_checkpoint").read() == "model_0000003.pth"
    # the optimizer did not step on the NaN iteration: the weights are those of the last checkpoint
    saved = Checkpointer(TinyDetector()).load(str(tmp_path / "model_0000003.pth"))
    assert saved["iteration"] == 3
    state = trainer.module.state_dict()
    on_disk = torch.load(tmp_path / "model_0000003.pth", weights_only=True)["model"]
    assert all(torch.equal(state[k], v) for k, v in on_disk.items())
    assert all(torch.isfinite(v).all() for v in state.values())


def _inf_gradient_at(trainer, iteration):
    weight = trainer.module.class_embed.weight
    weight.register_hook(lambda grad: grad * float("inf") if trainer.iteration == iteration else grad)


def test_fp16_overflow_skips_the_step_without_error(tmp_path):
    # the scaler starts at 2**16 and halves on each overflow, so early steps may be skipped anyway
    baseline = make_trainer(tmp_path / "baseline", max_iter=8, checkpoint_period=0, amp_dtype=torch.float16)
    baseline.train()
    trainer = make_trainer(tmp_path / "injected", max_iter=8, checkpoint_period=0, amp_dtype=torch.float16)
    _inf_gradient_at(trainer, 6)
    trainer.train()
    assert trainer.skipped_steps == baseline.skipped_steps + 1
    record = [r for r in read_metrics(tmp_path / "injected") if "skipped_steps" in r][-1]
    assert record["skipped_steps"] == trainer.skipped_steps and record["iteration"] == 7
    assert trainer.scaler.get_scale() == baseline.scaler.get_scale() / 2
    assert all(torch.isfinite(v).all() for v in trainer.module.state_dict().values())
    assert os.path.exists(tmp_path / "injected" / "model_final.pth")


def test_non_finite_gradient_without_scaler_is_an_error(tmp_path):
    trainer = make_trainer(tmp_path, max_iter=4, checkpoint_period=0)
    _inf_gradient_at(trainer, 1)
    with pytest.raises(NonFiniteLossError, match="non-finite gradient norm .* at iteration 1"):
        trainer.train()


def test_bfloat16_autocast_trains(tmp_path):
    trainer = make_trainer(tmp_path, max_iter=3, checkpoint_period=0, amp_dtype=torch.bfloat16)
    seen = []
    trainer.module.class_embed.register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    trainer.train()
    assert seen and set(seen) == {torch.bfloat16} and trainer.scaler is None


def test_ema_is_checkpointed_and_used_for_evaluation(tmp_path):
    evaluated = []

    def eval_fn(model):
        evaluated.append(model.class_embed.weight.detach().clone())
        return {"fake_val": {"bbox": {"AP": 50.0, "AP50": 75.0}}}

    trainer = make_trainer(tmp_path, max_iter=4, checkpoint_period=0, ema_decay=0.5, eval_fn=eval_fn)
    initial = trainer.module.class_embed.weight.detach().clone()
    trainer.train()
    final = trainer.module.class_embed.weight.detach()
    ema = trainer.ema.shadow["class_embed.weight"]
    assert torch.equal(evaluated[-1], ema)  # evaluated on the averaged weights
    assert not torch.equal(ema, final) and not torch.equal(ema, initial)
    assert torch.equal(trainer.module.class_embed.weight, final)  # trained weights restored after evaluation
    saved = torch.load(tmp_path / "model_final.pth", weights_only=True)
    assert torch.equal(saved["ema"]["class_embed.weight"], ema)


def test_outputs_metrics_and_periodic_evaluation(tmp_path):
    calls = []

    def eval_fn(model):
        calls.append(model.training)
        return {"fake_val": {"bbox": {"AP": 40.0 + len(calls), "AP50": 60.0, "APl": float("nan")}}}

    trainer = make_trainer(tmp_path, max_iter=6, eval_fn=eval_fn, eval_period=2)
    results = trainer.train()
    assert results == {"fake_val": {"bbox": {"AP": 43.0, "AP50": 60.0, "APl": pytest.approx(float("nan"),
                                                                                           nan_ok=True)}}}
    records = read_metrics(tmp_path)
    evals = [r for r in records if "bbox/AP" in r]
    assert [(r["iteration"], r["dataset"], r["bbox/AP"]) for r in evals] == [
        (1, "fake_val", 41.0), (3, "fake_val", 42.0), (5, "fake_val", 43.0)]
    assert evals[0]["bbox/APl"] is None  # NaN is not JSON
    train = [r for r in records if "total_loss" in r]
    assert [r["iteration"] for r in train] == [1, 3, 5]
    for key in ("loss_a", "loss_b", "lr", "time", "data_time", "eta_seconds", "grad_norm"):
        assert key in train[0], key
    assert train[-1]["total_loss"] == pytest.approx(train[-1]["loss_a"] + train[-1]["loss_b"], rel=1e-6)
    assert train[0]["lr"] == pytest.approx(1e-2)  # warm-up over 2 iterations: the lr at iteration 1 was used
    files = set(os.listdir(tmp_path))
    assert {"model_0000002.pth", "model_0000005.pth", "model_final.pth", "last_checkpoint"} <= files
    assert trainer.model.training


def test_finite_loader_is_restarted_at_the_current_iteration(tmp_path):
    starts = []

    def two_batches(start):
        starts.append(start)
        return itertools.islice(fake_stream(start), 2)

    trainer = make_trainer(tmp_path, max_iter=5, checkpoint_period=0, stream=two_batches)
    trainer.train()
    assert starts == [0, 2, 4]


def test_checkpoints_carry_the_class_names_and_final_safetensors(tmp_path):
    from ddetr_plugin.checkpoint.safetensors_file import load_safetensors

    names = ["circle", "square"]
    trainer = make_trainer(tmp_path, max_iter=3, class_names=names, final_safetensors_config="SEED: 7\n")
    trainer.train()
    for name in ("model_0000002.pth", "model_final.pth"):
        assert torch.load(tmp_path / name, weights_only=True)["class_names"] == names
    final = load_safetensors(str(tmp_path / "model_final.safetensors"))
    assert final["class_names"] == names and final["config"] == "SEED: 7\n"
    for key, value in trainer.module.state_dict().items():
        assert torch.equal(final["model"][key], value), key
    # off by default
    make_trainer(tmp_path / "plain", max_iter=1).train()
    assert not (tmp_path / "plain" / "model_final.safetensors").exists()
