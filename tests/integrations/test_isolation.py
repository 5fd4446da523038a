"""Nothing outside ddetr_plugin/integrations imports a host codebase, and an integration without its
codebase installed raises one error that names it."""
import subprocess
import sys

from tests._support.paths import ROOT

HOSTS = ("detectron2", "mmdet", "mmengine", "mmcv")

IMPORT_EVERYTHING_ELSE = f"""
import importlib, pkgutil, sys
import torch  # the extension module needs torch's libraries loaded first
import ddetr_plugin
# walk_packages imports every package it recurses into: walk each top-level one but the integrations
for top in pkgutil.iter_modules(ddetr_plugin.__path__, "ddetr_plugin."):
    if top.name == "ddetr_plugin.integrations":
        continue
    package = importlib.import_module(top.name)
    if top.ispkg:
        for module in pkgutil.walk_packages(package.__path__, top.name + "."):
            importlib.import_module(module.name)
print(sorted(name for name in sys.modules if name.split(".")[0] in {HOSTS!r}))
"""


def test_no_module_outside_the_integrations_imports_a_host_codebase():
    result = subprocess.run([sys.executable, "-c", IMPORT_EVERYTHING_ELSE], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"


BLOCK_DETECTRON2 = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "detectron2":
            raise ImportError(f"No module named {name!r}")
sys.meta_path.insert(0, Block())
try:
    import ddetr_plugin.integrations.detectron2
except ImportError as error:
    print(error)
"""


def test_the_detectron2_integration_without_detectron2_says_how_to_get_it():
    result = subprocess.run([sys.executable, "-c", BLOCK_DETECTRON2], cwd=ROOT, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "needs detectron2, which is not on the package index" in result.stdout
