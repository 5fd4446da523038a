"""Packaging: what `make train` installs (matplotlib, for training_curves.png on a fresh clone) and what a wheel ships."""
import importlib.util
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_train_installs_the_pictures_extra(tmp_path):
    # a dry run (-n) into an empty venv folder lists every set-up command without running one
    plan = subprocess.run(["make", "-n", "train", f"VENV={tmp_path / 'venv'}"], cwd=ROOT, capture_output=True,
                          text=True, check=True).stdout
    assert re.search(r'pip .*install .*-e "\.\[pictures\]"', plan)
    setup = (ROOT / "setup.py").read_text()
    assert re.search(r'"pictures": \["matplotlib>=[\d.]+"\]', setup)
    assert re.search(r'"tensorboard": \["tensorboard>=[\d.]+"\]', setup)  # optional, not installed by make


def test_the_wheel_ships_the_package_and_not_the_checkouts_benchmarks(monkeypatch):
    # setup.py's main() with setuptools' setup() replaced: the arguments a build would use, nothing compiled
    spec = importlib.util.spec_from_file_location("_ddetr_setup_under_test", ROOT / "setup.py")
    setup_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(setup_module)
    captured = {}
    monkeypatch.setattr(setup_module, "setup", lambda **kwargs: captured.update(kwargs))
    monkeypatch.setenv("FORCE_CUDA", "0")
    monkeypatch.chdir(ROOT)  # find_packages() looks from the working directory
    setup_module.main()
    packages = captured["packages"]
    assert "ddetr_plugin" in packages and "ddetr_plugin.ops.triton" in packages
    assert not [name for name in packages if name.split(".")[0] in ("benchmarks", "tests", "tools")], packages
