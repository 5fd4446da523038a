"""The README's "Add your own hook" example runs as written on the tiny shapes datasets."""
import os
import re

from ddetr_plugin.config import load_config
from ddetr_plugin.modeling import build_model

from tests._support.paths import ROOT


def _example() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Add your own hook", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_hook_example_trains_keeps_the_best_and_prints_each_loss(run_dir, monkeypatch, capsys):
    monkeypatch.setenv("DDETR_DATASETS", str(run_dir / "datasets"))
    output = run_dir / "readme"
    cfg = load_config(run_dir / "tiny.yaml", ["OUTPUT_DIR", str(output), "DATASETS.TEST", ["tiny_shapes_val"],
                                              "TEST.EVAL_PERIOD", 2])
    namespace = {"cfg": cfg, "model": build_model(cfg)}
    exec(compile(_example(), "README.md", "exec"), namespace)
    trainer = namespace["trainer"]
    trainer.resume_or_load(resume=False)
    trainer.train()
    printed = [line.split() for line in capsys.readouterr().out.splitlines() if re.fullmatch(r"\d+ \S+", line)]
    assert [int(iteration) for iteration, _ in printed] == list(range(cfg.SOLVER.MAX_ITER))
    assert all(float(loss) > 0 for _, loss in printed)
    assert os.path.isfile(output / "model_best.pth") and os.path.isfile(output / "model_final.pth")
