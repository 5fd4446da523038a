"""Resident memory stays steady over a training run (no per-iteration leak).

Runs tools/train_net.py on the tiny config for a few hundred iterations with a data-loader worker
and reads the resident set size the trainer logs into metrics.json (``rss_mb``, the main process).
"""
import json
import statistics

import pytest

from tests._support.train_net_runs import run_train_net

ITERATIONS, WARMUP = 300, 50


@pytest.mark.slow
def test_resident_memory_is_steady_after_warmup(run_dir):
    run_train_net(run_dir, "memory", "SOLVER.MAX_ITER", str(ITERATIONS), "SOLVER.STEPS", f"[{ITERATIONS - 50}]",
                  "SOLVER.CHECKPOINT_PERIOD", "100", "SOLVER.MAX_TO_KEEP", "1", "SOLVER.LOG_PERIOD", "10", "DATALOADER.NUM_WORKERS", "1")
    records = [json.loads(line) for line in (run_dir / "memory" / "metrics.json").read_text().splitlines()]
    rss = {r["iteration"]: r["rss_mb"] for r in records if "rss_mb" in r}
    assert max(rss) == ITERATIONS - 1, sorted(rss)
    after_warmup = statistics.median(v for i, v in rss.items() if WARMUP <= i < WARMUP + 50)
    at_end = statistics.median(v for i, v in rss.items() if i >= ITERATIONS - 50)
    growth = at_end / after_warmup - 1
    assert growth <= 0.05, f"resident memory grew {growth:.1%}: {after_warmup:.0f} -> {at_end:.0f} MiB ({rss})"
