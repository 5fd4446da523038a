"""The scripts of tools/ as modules (they are scripts, not a package)."""
import importlib.util
import sys
from types import ModuleType

from .paths import TOOLS


def load_tool(name: str) -> ModuleType:
    """tools/<name>.py as a module, executed once per session."""
    module_name = f"ddetr_tools_{name}"
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, TOOLS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[module_name] = module
    return sys.modules[module_name]

