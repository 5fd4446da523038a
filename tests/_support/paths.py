"""Where the repository's folders are, for tests that run its scripts or read its configs."""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / "tools"
CONFIGS = ROOT / "configs"
