"""tools/demo.py: JSON and PNG per image with a tiny model, names from the dataset metadata."""
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as F

from ddetr_plugin.checkpoint.variant import save_state_dict
from ddetr_plugin.data import read_image, register_coco_instances, remove_dataset

from tests._support.tiny_configs import dump_config, tiny_cfg
from tests._support.tiny_models import perturbed_model
from tests._support.tool_scripts import load_tool

DETECTIONS = 12
TEST_SIZE = ["INPUT.MIN_SIZE_TEST", 64, "INPUT.MAX_SIZE_TEST", 96, "TEST.DETECTIONS_PER_IMAGE", DETECTIONS]
CLASS_NAMES = ["ant", "bee", "cat", "dog", "eel"]


@pytest.fixture
def setup(tmp_path):
    """(config path, model, image paths): A is 64x80, already the test size; B is stored 120 wide and
    150 high with EXIF orientation 6 (rotate 90 degrees), so it is 150 wide and 120 high, resized to 64x80."""
    rng = np.random.default_rng(0)
    path_a, path_b = tmp_path / "a.png", tmp_path / "b.jpg"
    Image.fromarray(rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)).save(path_a)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(rng.integers(0, 256, (150, 120, 3), dtype=np.uint8)).save(path_b, exif=exif)

    categories = [{"id": 10 + i, "name": name} for i, name in enumerate(CLASS_NAMES)]
    (tmp_path / "classes.json").write_text(json.dumps({"images": [], "annotations": [], "categories": categories}))
    register_coco_instances("demo_test_classes", tmp_path / "classes.json", tmp_path)
    cfg = tiny_cfg("box_refine", *TEST_SIZE)
    model = perturbed_model(cfg)
    save_state_dict(str(tmp_path / "model.pth"), model.state_dict())
    cfg.MODEL.WEIGHTS = str(tmp_path / "model.pth")
    cfg.DATASETS.TEST = ["demo_test_classes"]
    yield dump_config(cfg, tmp_path / "model.yaml"), model, [str(path_a), str(path_b)]
    remove_dataset("demo_test_classes")


def _reference(model, image, size, height, width):
    resized = image if size is None else F.resize(image, list(size), antialias=True)
    with torch.no_grad():
        return model([{"image": resized, "height": height, "width": width}])[0]


def test_json_and_png_for_each_image(tmp_path, setup):
    config, model, paths = setup
    assert load_tool("demo").main(["--config", config, "--input", *paths, "--output", str(tmp_path / "out"),
                                   "--threshold", "0"]) == 0
    # A: not resampled (the model sees the file's pixels); B: oriented, then resized to 64x80
    for path, stem, (height, width), size in [(paths[0], "a", (64, 80), None), (paths[1], "b", (120, 150), (64, 80))]:
        result = json.loads((tmp_path / "out" / f"{stem}.json").read_text())
        assert set(result) == {"image", "height", "width", "detections"}
        assert (result["image"], result["height"], result["width"]) == (path, height, width)
        detections = result["detections"]
        assert len(detections) == DETECTIONS  # the top TEST.DETECTIONS_PER_IMAGE, none dropped at threshold 0
        assert all(set(d) == {"label", "name", "score", "bbox_xyxy"} for d in detections)
        scores = [d["score"] for d in detections]
        assert scores == sorted(scores, reverse=True)
        assert all(d["name"] == CLASS_NAMES[d["label"]] for d in detections)

        expected = _reference(model, read_image(path), size, height, width)
        torch.testing.assert_close(torch.tensor(scores), expected["scores"], rtol=0, atol=1e-6)
        torch.testing.assert_close(torch.tensor([d["bbox_xyxy"] for d in detections]), expected["boxes"],
                                   rtol=0, atol=1e-4)
        assert [d["label"] for d in detections] == expected["labels"].tolist()

        drawn = torch.from_numpy(np.array(Image.open(tmp_path / "out" / f"{stem}.png"))).permute(2, 0, 1)
        scale = math.ceil(512 / min(height, width))  # small images are drawn enlarged, for readable labels
        assert drawn.shape == (3, height * scale, width * scale)
        plain = read_image(path).repeat_interleave(scale, 1).repeat_interleave(scale, 2)
        assert not torch.equal(drawn, plain)  # boxes were drawn


def test_threshold_and_fallback_names(tmp_path, setup):
    config, _, paths = setup
    demo = load_tool("demo")
    demo.main(["--config", config, "--input", paths[0], "--output", str(tmp_path / "all"), "--threshold", "0"])
    every = json.loads((tmp_path / "all" / "a.json").read_text())["detections"]
    threshold = every[4]["score"]
    # without dataset metadata, labels are named class_<label>
    demo.main(["--config", config, "--input", paths[0], "--output", str(tmp_path / "top"),
               "--threshold", str(threshold), "DATASETS.TEST", "[]"])
    kept = json.loads((tmp_path / "top" / "a.json").read_text())["detections"]
    assert [d["score"] for d in kept] == [d["score"] for d in every if d["score"] >= threshold]
    assert len(kept) >= 5 and all(d["name"] == f"class_{d['label']}" for d in kept)


def test_errors(tmp_path, setup, capsys):
    config, _, paths = setup
    demo = load_tool("demo")
    with pytest.raises(SystemExit):
        demo.parse_args(["--config", config, "--input", paths[0], str(tmp_path / "x" / "a.png"),
                         "--output", str(tmp_path)])
    assert "share the file names ['a']" in capsys.readouterr().err
    with pytest.raises(ValueError, match="MODEL.WEIGHTS is empty"):
        demo.main(["--config", config, "--input", paths[0], "--output", str(tmp_path), "MODEL.WEIGHTS", "''"])


def test_names_follow_the_label_space(tmp_path, setup):
    config, _, paths = setup
    demo = load_tool("demo")
    categories = [{"id": 1, "name": "ant"}, {"id": 3, "name": "bee"}]
    (tmp_path / "sparse.json").write_text(json.dumps({"images": [], "annotations": [], "categories": categories}))
    register_coco_instances("demo_test_sparse_ids", tmp_path / "sparse.json", tmp_path)
    try:
        demo.main(["--config", config, "--input", paths[0], "--output", str(tmp_path / "ids"), "--threshold", "0",
                   "MODEL.LABEL_SPACE", "category_id", "DATASETS.TEST", "['demo_test_sparse_ids']"])
    finally:
        remove_dataset("demo_test_sparse_ids")
    detections = json.loads((tmp_path / "ids" / "a.json").read_text())["detections"]
    expected = {0: "class_0", 1: "ant", 2: "class_2", 3: "bee", 4: "class_4"}  # labels are the category ids
    assert {d["label"] for d in detections} >= {1, 3}
    assert all(d["name"] == expected[d["label"]] for d in detections)

    # the setup's dataset has ids 10-14: too many for the model's 5 classes as category ids
    with pytest.raises(ValueError, match="MODEL.NUM_CLASSES is 5, too small for MODEL.LABEL_SPACE 'category_id' on "
                                         "dataset 'demo_test_classes'"):
        demo.main(["--config", config, "--input", paths[0], "--output", str(tmp_path), "MODEL.LABEL_SPACE",
                   "category_id"])
    with pytest.raises(ValueError, match="MODEL.LABEL_SPACE must be one of 'contiguous', 'category_id', got 'ids'"):
        demo.main(["--config", config, "--input", paths[0], "--output", str(tmp_path), "MODEL.LABEL_SPACE", "ids",
                   "DATASETS.TEST", "[]"])


def test_names_from_the_config_then_the_checkpoint_then_the_dataset(tmp_path, setup):
    config, model, paths = setup
    demo = load_tool("demo")
    stored = ["s0", "s1", "s2", "s3", "s4"]
    torch.save({"model": model.state_dict(), "class_names": stored}, tmp_path / "trained.pth")

    def names(*opts):
        out = tmp_path / f"out{len(list(tmp_path.iterdir()))}"
        demo.main(["--config", config, "--input", paths[0], "--output", str(out), "--threshold", "0",
                   "MODEL.WEIGHTS", str(tmp_path / "trained.pth"), *opts])
        return {d["label"]: d["name"] for d in json.loads((out / "a.json").read_text())["detections"]}

    assert all(name == stored[label] for label, name in names().items())  # the checkpoint's, over the dataset's
    own = ["c0", "c1", "c2", "c3", "c4"]
    assert all(name == own[label] for label, name in names("MODEL.CLASS_NAMES", str(own)).items())
    with pytest.raises(ValueError, match="MODEL.CLASS_NAMES has 2 names but MODEL.NUM_CLASSES is 5"):
        names("MODEL.CLASS_NAMES", "['a', 'b']")
