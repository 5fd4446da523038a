"""torch.export of the whole detector: free batch and image size through the custom op, save/load parity."""
import pytest
import torch

from ddetr_plugin.export import DetectorGraph, export_program, minimum_image_side
from ddetr_plugin.ops import native_available

from tests._support.tiny_configs import tiny_cfg
from tests._support.tiny_models import perturbed_model

# the exported graph holds the custom op, whose CPU kernel must be built
pytestmark = pytest.mark.skipif(not native_available("cpu"), reason="ddetr_plugin._C is not built")


@pytest.fixture(scope="module")
def two_stage(single_thread_for_module):
    """A perturbed two-stage model with box refinement and its exported program (graph with the top-k)."""
    model = perturbed_model(tiny_cfg("two_stage", "TEST.DETECTIONS_PER_IMAGE", 10))
    yield model, export_program(model, height=96, width=128, postprocessor=model.postprocessor)


def test_the_graph_holds_the_custom_op_and_runs_at_other_sizes(two_stage, tmp_path):
    model, program = two_stage
    targets = {str(node.target) for node in program.graph.nodes if node.op == "call_function"}
    assert "ddetr.ms_deform_attn_forward.default" in targets  # not decomposed: the native kernel runs

    path = tmp_path / "detector.pt2"
    torch.export.save(program, path)
    loaded = torch.export.load(path).module()
    graph = DetectorGraph(model, model.postprocessor)
    # two sizes other than the example's, batch 1 and 3; image 1 of the batch padded
    for batch, height, width in [(1, 161, 97), (3, 75, 140)]:
        images, padding_mask, sizes = graph.example_inputs(batch, height, width)
        if batch > 1:
            images[1, :, 50:] = 0
            padding_mask[1, 50:] = True
            sizes[1, 0] = 50
        with torch.no_grad():
            expected = graph(images, padding_mask, sizes)
            actual = loaded(images, padding_mask, sizes)
        for name, ours, exported in zip(graph.output_names, expected, actual):
            assert exported.shape == ours.shape, name
            # eager may multiply on oneDNN where the graph has aten.linear: equal to float32 rounding
            torch.testing.assert_close(exported, ours, msg=name)
    # the graph's top-k is our postprocessor's (no NMS here)
    images, padding_mask, sizes = graph.example_inputs(2, 96, 128)
    with torch.no_grad():
        detections = model.postprocessor(model.forward_raw(images, padding_mask), sizes)
        scores, labels, boxes = loaded(images, padding_mask, sizes)
    torch.testing.assert_close(scores[1], detections[1]["scores"])
    assert torch.equal(labels[1], detections[1]["labels"])
    torch.testing.assert_close(boxes[1], detections[1]["boxes"])


def test_minimum_side_and_errors():
    model = perturbed_model(tiny_cfg("plain"))
    assert minimum_image_side(model) == 65  # strides 8, 16, 32 and an extra stride-64 level
    with pytest.raises(ValueError, match="at least 65 pixels per side"):
        export_program(model, height=64, width=128)
    with pytest.raises(ValueError, match="eval mode"):
        export_program(model.train(), height=96, width=128)
    reference = perturbed_model(tiny_cfg("plain", "MODEL.TRANSFORMER.MSDA_BACKEND", "pytorch"))
    with pytest.raises(ValueError, match="MSDA_BACKEND is 'pytorch'"):
        export_program(reference, height=96, width=128)
