"""The op stands alone: importing it loads neither the model nor the config, fvcore, iopath or scipy."""
import subprocess
import sys

CHECK = """
import sys
from ddetr_plugin.ops import multi_scale_deformable_attention
loaded = sorted(name for name in sys.modules if name.split(".")[0] in ("fvcore", "iopath", "scipy")
                or name.startswith(("ddetr_plugin.modeling", "ddetr_plugin.config", "ddetr_plugin.engine")))
print(loaded)
"""


def test_importing_the_op_loads_no_model_config_or_their_dependencies():
    result = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_top_level_names_still_resolve():
    import ddetr_plugin

    assert ddetr_plugin.get_cfg().MODEL.META_ARCHITECTURE == "DeformableDETR"
    assert callable(ddetr_plugin.build_model) and "load_config" in dir(ddetr_plugin)
