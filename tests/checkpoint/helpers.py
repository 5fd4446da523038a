"""Tiny models of every variant, perturbed so that a swapped or dropped tensor shows, and the tool scripts."""
import importlib.util
import sys
from pathlib import Path

import torch

from ddetr_plugin.config import get_cfg
from ddetr_plugin.modeling import build_model

TOOLS = Path(__file__).resolve().parents[2] / "tools"
TINY = [
    "MODEL.DEVICE", "cpu", "MODEL.NUM_CLASSES", 5, "MODEL.NUM_QUERIES", 6,
    "MODEL.BACKBONE.DEPTH", 18, "MODEL.POSITION_ENCODING.NUM_POS_FEATS", 16,
    "MODEL.TRANSFORMER.D_MODEL", 32, "MODEL.TRANSFORMER.NHEADS", 2, "MODEL.TRANSFORMER.ENC_LAYERS", 1,
    "MODEL.TRANSFORMER.DEC_LAYERS", 2, "MODEL.TRANSFORMER.DIM_FEEDFORWARD", 48,
    "MODEL.TRANSFORMER.ENC_N_POINTS", 2, "MODEL.TRANSFORMER.DEC_N_POINTS", 3,
]
SINGLE_SCALE = ["MODEL.NUM_FEATURE_LEVELS", 1, "MODEL.BACKBONE.OUT_FEATURES", ["layer4"]]
VARIANTS = {
    "plain": [],
    "box_refine": ["MODEL.WITH_BOX_REFINE", True],
    "two_stage": ["MODEL.WITH_BOX_REFINE", True, "MODEL.TWO_STAGE", True],
    "two_stage_shared_heads": ["MODEL.TWO_STAGE", True],
    "single_scale_learned": SINGLE_SCALE + ["MODEL.POSITION_ENCODING.NAME", "PositionEmbeddingLearned"],
}


def tiny_cfg(variant: str, *extra):
    cfg = get_cfg()
    cfg.merge_from_list(TINY + VARIANTS[variant] + list(extra))
    return cfg


def perturbed_model(cfg, seed: int = 0) -> torch.nn.Module:
    """The model of ``cfg`` with every saved parameter and buffer moved off its initial value (refined
    heads then differ; shared heads stay shared; pixel_mean/std, not saved, stay)."""
    torch.manual_seed(seed)
    model = build_model(cfg)
    saved = set(model.state_dict())
    with torch.no_grad():
        for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
            if name in saved and tensor.is_floating_point():
                tensor.add_(torch.rand_like(tensor) * 0.1 + 0.01 if "running_var" in name
                            else torch.randn_like(tensor) * 0.05)
    return model.eval()


def dump_config(cfg, path) -> str:
    """Write ``cfg`` as a YAML file; returns the path."""
    Path(path).write_text(cfg.dump())
    return str(path)


def load_tool(name: str):
    """tools/<name>.py as a module (the tools are scripts, not a package)."""
    module_name = f"ddetr_tools_{name}"
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, TOOLS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[module_name] = module
    return sys.modules[module_name]


def assert_same_tensors(actual: dict, expected: dict) -> None:
    """Same keys, and every tensor equal in shape, dtype and value."""
    assert sorted(actual) == sorted(expected)
    for key, value in expected.items():
        assert actual[key].dtype == value.dtype and torch.equal(actual[key], value), key


def run_single_threaded():
    """Generator for an autouse fixture: one intra-op thread during a test.

    These models are tiny, so a second thread gains nothing, and on a machine whose other
    core is busy, OpenMP's spin-waiting at every operator's barrier makes two threads
    ten or more times slower than one.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
