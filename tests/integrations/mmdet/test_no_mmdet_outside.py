"""Nothing outside ddetr_plugin/integrations/ imports mmdet, mmengine or mmcv (DESIGN.md §9)."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


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
