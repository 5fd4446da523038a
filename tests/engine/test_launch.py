"""launch(): spawned gloo processes, torchrun-style environment, and DDP training equal to one process."""
import json
import os
import signal
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist

from ddetr_plugin.engine import BestCheckpointer, EarlyStop, Trainer, get_param_groups, launch, seed_all
from ddetr_plugin.engine.launch import distributed_env
from ddetr_plugin.utils import comm

from tests._support.fake_training import fake_stream, TinyDetector


def _report(output_dir):
    """Each process writes its rank, world size, backend and an all-reduced sum."""
    total = torch.tensor([float(comm.get_rank() + 1)])
    dist.all_reduce(total)
    with open(os.path.join(output_dir, f"rank{comm.get_rank()}.json"), "w") as f:
        json.dump({"rank": comm.get_rank(), "world_size": comm.get_world_size(), "backend": dist.get_backend(),
                   "sum": total.item()}, f)
    return comm.get_rank()


def test_single_process_runs_in_place_without_a_group():
    assert launch(comm.get_world_size, 1) == 1
    assert not dist.is_initialized()


def test_argument_errors():
    with pytest.raises(ValueError, match="one machine only"):
        launch(comm.get_rank, 2, num_machines=2, machine_rank=0, dist_url="auto")
    with pytest.raises(ValueError, match="machine-rank 2"):
        launch(comm.get_rank, 1, num_machines=2, machine_rank=2, dist_url="tcp://127.0.0.1:1")


def test_environment_detection(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_NTASKS", "SLURM_PROCID", "MASTER_ADDR"):
        monkeypatch.delenv(name, raising=False)
    assert distributed_env() is None
    monkeypatch.setenv("SLURM_NTASKS", "4")
    monkeypatch.setenv("SLURM_PROCID", "3")
    with pytest.raises(RuntimeError, match="MASTER_ADDR"):
        distributed_env()
    monkeypatch.setenv("MASTER_ADDR", "node7")
    monkeypatch.setenv("SLURM_LOCALID", "1")
    assert distributed_env() == {"rank": 3, "world_size": 4, "local_rank": 1, "init_method": "tcp://node7:29500"}
    monkeypatch.setenv("RANK", "1")  # torchrun wins over SLURM
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert distributed_env() == {"rank": 1, "world_size": 2, "local_rank": 1, "init_method": "env://"}


TORCHRUN_SCRIPT = """
import sys
from ddetr_plugin.engine import launch
from tests.engine.test_launch import _report
rank = launch(_report, 8, args=(sys.argv[1],), device="cpu")  # --num-gpus is ignored under torchrun
print("returned", rank)
"""


@pytest.mark.slow
def test_under_torchrun_joins_from_the_environment(tmp_path):
    script = tmp_path / "script.py"
    script.write_text(TORCHRUN_SCRIPT)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    # its own session, so a hang kills the workers too, not only torchrun's agent
    process = subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(script),
         str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=root,
        start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise
    assert process.returncode == 0, stderr[-3000:]
    reports = [json.load(open(tmp_path / f"rank{r}.json")) for r in range(2)]
    assert [(r["rank"], r["world_size"], r["sum"]) for r in reports] == [(0, 2, 3.0), (1, 2, 3.0)]
    assert stdout.count("returned") == 2  # main ran in the torchrun processes themselves


def _falling_ap_on_the_main_process():
    """An eval_fn whose AP falls at each call, with results on the main process only (as DatasetsEvaluation)."""
    calls = []

    def eval_fn(model):
        calls.append(len(calls))
        return {"fake_val": {"bbox": {"AP": 50.0 - 10 * len(calls)}} if comm.is_main_process() else {}}
    return eval_fn


def _train_tiny(output_dir, max_iter):
    """TinyDetector at total batch 4, each process on its share of each batch; then ``_report``.

    Evaluated after every iteration, with a BestCheckpointer and an EarlyStop that stops after the second
    evaluation: every process must take the main process's decisions, or DDP would wait forever.
    """
    seed_all(0)
    model = TinyDetector()  # no dropout: the processes' RNGs differ
    optimizer = torch.optim.AdamW(get_param_groups(model, base_lr=1e-2, weight_decay=1e-4))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda iteration: 1.0)
    rank, world_size = comm.get_rank(), comm.get_world_size()
    trainer = Trainer(model, optimizer, scheduler,
                      lambda start: fake_stream(start, batch_size=4, rank=rank, world_size=world_size),
                      max_iter=max_iter, output_dir=output_dir, checkpoint_period=0, clip_max_norm=0.1,
                      eval_fn=_falling_ap_on_the_main_process(), eval_period=1,
                      hooks=[BestCheckpointer("bbox/AP"), EarlyStop("bbox/AP", patience=1)])
    trainer.train()
    if world_size > 1:
        _report(output_dir)


def test_two_gloo_processes_train_like_one(tmp_path):
    """One spawn (processes start slowly) checks launch() and DDP training in the Trainer."""
    assert launch(_train_tiny, 2, dist_url="auto", args=(str(tmp_path / "two"), 4), device="cpu") is None
    reports = [json.load(open(tmp_path / "two" / f"rank{r}.json")) for r in range(2)]
    assert [(r["rank"], r["world_size"], r["backend"], r["sum"]) for r in reports] == [
        (0, 2, "gloo", 3.0), (1, 2, "gloo", 3.0)]

    launch(_train_tiny, 1, args=(str(tmp_path / "one"), 4), device="cpu")  # in this process
    two = torch.load(tmp_path / "two" / "model_final.pth", weights_only=True)["model"]
    one = torch.load(tmp_path / "one" / "model_final.pth", weights_only=True)["model"]
    for run in ("one", "two"):  # stopped after iteration 1, the best AP at iteration 0
        assert torch.load(tmp_path / run / "model_final.pth", weights_only=True)["iteration"] == 1
        assert torch.load(tmp_path / run / "model_best.pth", weights_only=True)["iteration"] == 0
    initial = TinyDetector().state_dict()
    for key, value in one.items():
        torch.testing.assert_close(two[key], value, rtol=0, atol=1e-6)
    assert not torch.equal(one["class_embed.weight"], initial["class_embed.weight"])
