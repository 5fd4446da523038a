"""tools/export_onnx.py: a valid ONNX file whose onnxruntime outputs are PyTorch's at other sizes and batches."""
import json
import logging

import pytest
import torch

from ddetr_plugin.checkpoint.variant import save_state_dict
from ddetr_plugin.export import DetectorGraph
from ddetr_plugin.export.checks import padded_inputs
from ddetr_plugin.export.onnx import onnxruntime_session, run_onnx
from ddetr_plugin.ops import native_available

from tests._support.tiny_configs import dump_config, tiny_cfg
from tests._support.tiny_models import perturbed_model
from tests._support.tool_scripts import load_tool

# the exported graph holds the custom op, whose CPU kernel must be built
pytestmark = pytest.mark.skipif(not native_available("cpu"), reason="ddetr_plugin._C is not built")

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxscript")
pytest.importorskip("onnxruntime")

CLASS_NAMES = ["ant", "bee", "cat", "dog", "eel"]


def test_export_check_parity_and_timing(tmp_path, caplog, capsys):
    cfg = tiny_cfg("two_stage", "MODEL.CLASS_NAMES", CLASS_NAMES)
    model = perturbed_model(cfg)
    save_state_dict(str(tmp_path / "model.pth"), model.state_dict())
    cfg.MODEL.WEIGHTS = str(tmp_path / "model.pth")
    config = dump_config(cfg, tmp_path / "model.yaml")
    output = str(tmp_path / "model.onnx")

    tool = load_tool("export_onnx")
    with caplog.at_level(logging.INFO, logger="ddetr_plugin"):
        assert tool.main(["--config", config, "--output", output, "--height", "96", "--width", "128",
                          "--threads", "1", "--benchmark-size", "96", "128", "--runs", "1"]) == 0
    assert "onnx.checker passed" in caplog.text and caplog.text.count("onnxruntime vs PyTorch at") == 2
    assert "onnxruntime / PyTorch = " in capsys.readouterr().out

    proto = onnx.load(output)
    onnx.checker.check_model(proto, full_check=True)
    assert [i.name for i in proto.graph.input] == ["images", "padding_mask"]
    assert [o.name for o in proto.graph.output] == ["pred_logits", "pred_boxes"]
    # batch, height and width are symbols, not the traced 2 x 96 x 128
    assert all(dim.dim_param for dim in proto.graph.input[0].type.tensor_type.shape.dim[:1] +
               proto.graph.input[0].type.tensor_type.shape.dim[2:])
    assert not any(node.domain not in ("", "ai.onnx") for node in proto.graph.node)  # standard operators only
    assert json.loads({p.key: p.value for p in proto.metadata_props}["class_names"]) == CLASS_NAMES

    session = onnxruntime_session(output, threads=1)
    graph = DetectorGraph(model).eval()
    for inputs in [graph.example_inputs(1, 161, 97), padded_inputs(graph, 75, 140)]:
        with torch.no_grad():
            expected = graph(*inputs)
        for name, ours, theirs in zip(graph.output_names, expected, run_onnx(session, inputs)):
            assert theirs.shape == ours.shape, name
            torch.testing.assert_close(theirs, ours, rtol=0, atol=1e-4, msg=name)


def test_opset_below_grid_sample(tmp_path):
    cfg = tiny_cfg("plain")
    config = dump_config(cfg, tmp_path / "model.yaml")
    tool = load_tool("export_onnx")
    with pytest.raises(ValueError, match="GridSample, opset 16"):
        tool.main(["--config", config, "--output", str(tmp_path / "m.onnx"), "--opset", "13", "--no-benchmark"])
