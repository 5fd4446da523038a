"""Our test pipeline and mmdet's (quickstart_shapes.py's) feed the model the same pixels: same detections."""
import pytest
import torch

from tests._support.install_hints import MMDET_MISSING

pytest.importorskip("mmdet", reason=MMDET_MISSING)

from mmdet.registry import DATASETS, MODELS  # noqa: E402
from mmdet.utils import register_all_modules  # noqa: E402
from mmengine.dataset import pseudo_collate  # noqa: E402
from mmengine.runner import load_checkpoint  # noqa: E402

from ddetr_plugin.data import ShapesSpec, build_test_loader, register_shapes, remove_dataset  # noqa: E402
from tests._support.mmdet_runner import SPEC  # noqa: E402
from tests._support.tiny_configs import dump_config, tiny_cfg  # noqa: E402
from tests._support.tiny_models import perturbed_model  # noqa: E402


def test_same_detections_as_our_evaluation(tmp_path):
    # d_model 64: GroupNorm(32) needs 2 values per group on the 1x1 coarsest level of a 64x64 image
    cfg = tiny_cfg("two_stage", "MODEL.NUM_CLASSES", 4, "MODEL.TRANSFORMER.D_MODEL", 64,
                   "INPUT.MIN_SIZE_TEST", 64, "INPUT.MAX_SIZE_TEST", 64,
                   "TEST.NMS_THRESH", 0.7, "DATASETS.TEST", ["mmdet_parity_val"])
    ours = perturbed_model(cfg)
    torch.save({"model": ours.state_dict()}, tmp_path / "model.pth")
    register_shapes("mmdet_parity_val", ShapesSpec(**SPEC), tmp_path / "shapes")
    try:
        with torch.no_grad():
            expected = {x["image_id"]: ours(batch)[i] for batch in build_test_loader(cfg, "mmdet_parity_val")
                        for i, x in enumerate(batch)}
    finally:
        remove_dataset("mmdet_parity_val")

    register_all_modules()  # the pipeline's transforms are looked up in mmdet's scope
    plugin = MODELS.build(dict(type="PluginDeformableDETR", ddetr_config=dump_config(cfg, tmp_path / "ours.yaml")))
    load_checkpoint(plugin, str(tmp_path / "model.pth"), map_location="cpu")
    pipeline = [dict(type="LoadImageFromFile"), dict(type="Resize", scale=(64, 64), keep_ratio=True),
                dict(type="LoadAnnotations", with_bbox=True),
                dict(type="PackDetInputs", meta_keys=("img_id", "img_path", "ori_shape", "img_shape", "scale_factor"))]
    dataset = DATASETS.build(dict(type="ShapesDataset", root=str(tmp_path / "shapes"), spec=SPEC, test_mode=True,
                                  pipeline=pipeline))
    results = plugin.eval().test_step(pseudo_collate([dataset[i] for i in range(len(dataset))]))
    assert sorted(sample.img_id for sample in results) == sorted(expected) and len(expected) == 4
    for sample in results:
        detection, predicted = expected[sample.img_id], sample.pred_instances
        assert torch.equal(predicted.labels, detection["labels"])
        assert torch.allclose(predicted.scores, detection["scores"], atol=1e-6)
        assert torch.allclose(predicted.bboxes, detection["boxes"], atol=1e-4)
