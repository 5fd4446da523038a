"""Nothing outside ddetr_plugin/integrations/ imports mmdet, mmengine or mmcv, and the integration without them
raises one error naming what to install (DESIGN.md §9)."""
import os
import subprocess
import sys

import pytest

from tests._support.paths import ROOT


def test_package_and_converter_import_no_mmdet():
    modules = sorted(".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
                     for path in (ROOT / "ddetr_plugin").rglob("*.py") if "integrations" not in path.parts)
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "sys.path.insert(0, 'tools')\n"
        "import convert_checkpoint\n"
        "print(sorted(name for name in sys.modules if name.split('.')[0] in ('mmdet', 'mmengine', 'mmcv')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ddetr_plugin.checkpoint.mmdet" in modules and "ddetr_plugin.config.mmdet_model" in modules
    assert result.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("missing", ["mmdet", "mmengine"])
def test_import_without_mmdet_names_what_to_install(missing):
    code = f"import sys; sys.modules[{missing!r}] = None; import ddetr_plugin.integrations.mmdet"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: ddetr_plugin.integrations.mmdet needs MMDetection 3.x")
    assert f"{missing} (pip install 'ddetr_plugin[mmdet]')" in last
