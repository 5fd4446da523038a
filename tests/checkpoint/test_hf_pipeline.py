"""--to hf on a quick-start-sized model: transformers' own pipeline and processor give our demo's detections."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from ddetr_plugin.config import load_config

from tests._support.tiny_configs import dump_config
from tests._support.tiny_models import perturbed_model
from tests._support.tool_scripts import load_tool

transformers = pytest.importorskip("transformers")
pytest.importorskip("timm")  # HF's ResNet backbone

QUICKSTART = Path(__file__).resolve().parents[2] / "configs" / "quickstart" / "shapes.yaml"
NAMES = ["circle", "square", "triangle", "cross"]


def _shapes_image(path, height, width, seed):
    """A noisy background with a few filled shapes, like the quick-start dataset."""
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(90, 160, (height, width, 3), dtype=np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(3):
        x, y = rng.integers(0, width - 40), rng.integers(0, height - 40)
        size = int(rng.integers(15, 40))
        draw.ellipse((x, y, x + size, y + size), fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
    image.save(path)
    return str(path)


@pytest.fixture(scope="module")
def converted(tmp_path_factory, single_thread_for_module):
    """(config, checkpoint, HF directory, images, demo detections per image) of a perturbed quick-start model
    trained, as it were, on shapes: its checkpoint stores the class names, as the trainer's do."""
    root = tmp_path_factory.mktemp("hf_pipeline")
    # HF's postprocessing has no NMS: compare with ours off (TEST.NMS_THRESH 0.7 only removes detections).
    # A long-side cap above the resized 160 pixels of image b: where the cap binds, HF's long side can be a
    # pixel longer than ours (hf_preprocessor.py); the quick-start images are square, so it never binds there.
    overrides = ["TEST.NMS_THRESH", 0.0, "DATASETS.TEST", "[]", "INPUT.MAX_SIZE_TEST", 256]
    cfg = load_config(str(QUICKSTART), overrides).clone()
    cfg.defrost()
    model = perturbed_model(cfg)
    with torch.no_grad():  # logits spread over (0, 1), so that a threshold falls in clear gaps
        for head in model.class_embed:
            head.weight.mul_(30.0)
    checkpoint = root / "model_final.pth"
    torch.save({"model": model.state_dict(), "class_names": NAMES}, checkpoint)
    cfg.MODEL.WEIGHTS = str(checkpoint)
    config = dump_config(cfg, root / "config.yaml")
    # a 128x128 image (the test size, not resampled) and a 150x120 one (resized to 160x128 by both)
    images = [_shapes_image(root / "a.png", 128, 128, 0), _shapes_image(root / "b.png", 120, 150, 1)]

    load_tool("demo").main(["--config", config, "--input", *images, "--output", str(root / "demo"),
                            "--threshold", "0"])
    demo = [json.loads((root / "demo" / f"{Path(p).stem}.json").read_text())["detections"] for p in images]
    hf_dir = root / "hf"
    load_tool("convert_checkpoint").main(["--to", "hf", "--config", config, "--input", str(checkpoint),
                                          "--output", str(hf_dir)])
    yield config, checkpoint, str(hf_dir), images, demo


def _threshold(detections):
    """A score between two of our detections far enough apart (above the 3rd) that 1e-3 cannot cross it."""
    scores = [d["score"] for d in detections]
    gaps = [(scores[i] - scores[i + 1], i) for i in range(3, min(len(scores) - 1, 40))]
    gap, index = max(gaps)
    assert gap > 0.01
    return (scores[index] + scores[index + 1]) / 2


def test_config_and_preprocessor_files(converted):
    config, _, hf_dir, _, _ = converted
    hf_config = json.loads((Path(hf_dir) / "config.json").read_text())
    assert hf_config["id2label"] == {str(i): name for i, name in enumerate(NAMES)}
    assert hf_config["label2id"] == {name: i for i, name in enumerate(NAMES)}
    processor = transformers.AutoImageProcessor.from_pretrained(hf_dir)
    assert type(processor).__name__.startswith("DeformableDetrImageProcessor")
    assert (processor.size["shortest_edge"], processor.size["longest_edge"]) == (128, 256)
    np.testing.assert_allclose(np.array(processor.image_mean) * 255, [123.675, 116.28, 103.53], rtol=1e-6)


def test_pipeline_gives_the_demo_detections(converted):
    _, _, hf_dir, images, demo = converted
    detector = transformers.pipeline("object-detection", model=hf_dir, device="cpu")
    for path, ours in zip(images, demo):
        threshold = _threshold(ours)
        kept = [d for d in ours if d["score"] >= threshold]
        theirs = detector(path, threshold=threshold)
        assert [d["label"] for d in theirs] == [d["name"] for d in kept]
        np.testing.assert_allclose([d["score"] for d in theirs], [d["score"] for d in kept], rtol=0, atol=1e-3)
        # the pipeline truncates box corners to whole pixels
        boxes = [[d["box"][key] for key in ("xmin", "ymin", "xmax", "ymax")] for d in theirs]
        np.testing.assert_allclose(boxes, [d["bbox_xyxy"] for d in kept], rtol=0, atol=1.0)


def test_processor_model_and_postprocess_give_the_demo_detections(converted):
    _, _, hf_dir, images, demo = converted
    processor = transformers.AutoImageProcessor.from_pretrained(hf_dir)
    model = transformers.AutoModelForObjectDetection.from_pretrained(hf_dir).eval()
    for path, ours in zip(images, demo):
        image = Image.open(path).convert("RGB")
        threshold = _threshold(ours)
        kept = [d for d in ours if d["score"] >= threshold]
        with torch.no_grad():
            outputs = model(**processor(images=image, return_tensors="pt"))
        result = processor.post_process_object_detection(outputs, threshold=threshold,
                                                          target_sizes=[(image.height, image.width)])[0]
        assert result["labels"].tolist() == [d["label"] for d in kept]
        assert [model.config.id2label[label] for label in result["labels"].tolist()] == [d["name"] for d in kept]
        np.testing.assert_allclose(result["scores"].numpy(), [d["score"] for d in kept], rtol=0, atol=1e-3)
        np.testing.assert_allclose(result["boxes"].numpy(), [d["bbox_xyxy"] for d in kept], rtol=0, atol=1.0)


def test_from_hf_reads_the_names_back(converted, tmp_path):
    _, _, hf_dir, _, _ = converted
    load_tool("convert_checkpoint").main(["--from", "hf", "--input", hf_dir, "--output", str(tmp_path / "back.pth")])
    assert list(load_config(str(tmp_path / "back.yaml")).MODEL.CLASS_NAMES) == NAMES
