"""What `make train` installs: matplotlib, so that training writes training_curves.png on a fresh clone."""
import re
import shutil
import subprocess

import pytest

from tests._support.paths import ROOT


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_train_installs_the_pictures_extra(tmp_path):
    # a dry run (-n) into an empty venv folder lists every set-up command without running one
    plan = subprocess.run(["make", "-n", "train", f"VENV={tmp_path / 'venv'}"], cwd=ROOT, capture_output=True,
                          text=True, check=True).stdout
    assert re.search(r'pip .*install .*-e "\.\[pictures\]"', plan)
    setup = (ROOT / "setup.py").read_text()
    assert re.search(r'"pictures": \["matplotlib>=[\d.]+"\]', setup)
    assert re.search(r'"tensorboard": \["tensorboard>=[\d.]+"\]', setup)  # optional, not installed by make
