"""The multi-step schedule with linear warm-up, per iteration."""
import pytest
import torch

from ddetr_plugin.config import get_cfg
from ddetr_plugin.engine import build_lr_scheduler, multistep_warmup_factor


@pytest.mark.parametrize(
    "iteration, expected",
    [(0, 0.001), (5, 0.001 * 0.5 + 0.5), (9, 0.001 * 0.1 + 0.9), (10, 1.0), (19, 1.0), (20, 0.1), (29, 0.1),
     (30, 0.01), (100, 0.01)],
)
def test_factor_values(iteration, expected):
    factor = multistep_warmup_factor([20, 30], gamma=0.1, warmup_iters=10, warmup_factor=0.001)
    assert factor(iteration) == pytest.approx(expected)


def test_step_inside_warmup_multiplies_both():
    factor = multistep_warmup_factor([2], gamma=0.5, warmup_iters=4, warmup_factor=0.0)
    assert factor(3) == pytest.approx(0.5 * 0.75)


def test_no_warmup_and_invalid_steps():
    assert multistep_warmup_factor([3])(0) == 1.0
    with pytest.raises(ValueError, match="strictly increasing"):
        multistep_warmup_factor([30, 20])


def test_scheduler_sets_every_group_per_iteration():
    cfg = get_cfg()
    cfg.merge_from_list(["SOLVER.MAX_ITER", 10, "SOLVER.STEPS", [4, 8], "SOLVER.GAMMA", 0.5,
                         "SOLVER.WARMUP_ITERS", 2, "SOLVER.WARMUP_FACTOR", 0.5])
    params = [torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))]
    optimizer = torch.optim.AdamW([{"params": params[:1], "lr": 1.0}, {"params": params[1:], "lr": 0.1}])
    scheduler = build_lr_scheduler(cfg, optimizer)
    seen = []
    for _ in range(10):
        seen.append([group["lr"] for group in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    expected = [0.5, 0.75, 1, 1, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25]
    assert [lr[0] for lr in seen] == pytest.approx(expected)
    assert [lr[1] for lr in seen] == pytest.approx([0.1 * e for e in expected])
    # the schedule is restored from a state dict (resume)
    restored = build_lr_scheduler(cfg, torch.optim.AdamW([{"params": params[:1], "lr": 1.0},
                                                          {"params": params[1:], "lr": 0.1}]))
    restored.load_state_dict(scheduler.state_dict())
    assert restored.last_epoch == 10 and restored.get_last_lr() == pytest.approx(scheduler.get_last_lr())
