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


def load_benchmark_tool(name: str) -> ModuleType:
    """tools/<name>.py with tools/ first on sys.path, for the sibling modules the benchmark scripts import
    (bench_tables, msda_baseline), as it is when a script runs from there."""
    if str(TOOLS) not in sys.path:
        sys.path.insert(0, str(TOOLS))
    return load_tool(name)
