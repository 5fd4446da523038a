"""The benchmark scripts as modules: tools/ goes on sys.path first, for the sibling modules they
import (bench_tables, msda_baseline), as it is when a script runs from there."""
import sys

from ..checkpoint.helpers import TOOLS, load_tool


def load_benchmark_tool(name: str):
    """tools/<name>.py as a module."""
    if str(TOOLS) not in sys.path:
        sys.path.insert(0, str(TOOLS))
    return load_tool(name)
