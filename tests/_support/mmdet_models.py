"""mmdet's own DeformableDETR, from its packaged configs made small (same structure), with perturbed weights."""
import copy
import os

import torch
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmdet.utils import register_all_modules
from mmengine.config import Config

import ddetr_plugin.integrations.mmdet  # noqa: F401  registers PluginDeformableDETR

from .tiny_models import perturb_weights

register_all_modules()

PACKAGED = os.path.join(os.path.dirname(__import__("mmdet").__file__), ".mim", "configs", "deformable_detr")
VARIANTS = {
    "plain": "deformable-detr_r50_16xb2-50e_coco.py",
    "refine": "deformable-detr-refine_r50_16xb2-50e_coco.py",
    "two_stage": "deformable-detr-refine-twostage_r50_16xb2-50e_coco.py",
}
# two images of different sizes: the first is padded on the right, the second at the bottom
IMAGE_SIZES = ((96, 120), (80, 128))


def packaged_config(variant: str) -> Config:
    """mmdet's packaged config with ResNet-18 (no pretrained download), 1 + 2 layers and 20 queries.

    d_model stays 256: mmdet's two-stage query embedding is fixed at 128 features per coordinate.
    """
    cfg = Config.fromfile(os.path.join(PACKAGED, VARIANTS[variant]))
    cfg.model.backbone.update(depth=18, init_cfg=None)
    cfg.model.neck.in_channels = [128, 256, 512]
    cfg.model.encoder.num_layers = 1
    cfg.model.decoder.num_layers = 2
    cfg.model.num_queries = 20
    return cfg


def mmdet_model(cfg: Config, seed: int = 0) -> torch.nn.Module:
    """mmdet's model of ``cfg``, initialised (its level_embed is allocated uninitialised) and perturbed."""
    torch.manual_seed(seed)
    model = MODELS.build(copy.deepcopy(cfg.model))
    model.init_weights()
    torch.manual_seed(seed)
    return perturb_weights(model)


def plugin_model(cfg: Config) -> torch.nn.Module:
    """PluginDeformableDETR from mmdet's own model config, only ``type`` changed."""
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.type = "PluginDeformableDETR"
    return MODELS.build(model_cfg).eval()


def padded_batch(model, with_gt: bool = False, seed: int = 1):
    """(inputs (2, 3, 96, 128), data samples) after the model's DetDataPreprocessor."""
    torch.manual_seed(seed)
    images, samples = [], []
    for height, width in IMAGE_SIZES:
        images.append(torch.randint(0, 256, (3, height, width), dtype=torch.uint8))
        sample = DetDataSample(metainfo=dict(img_shape=(height, width), ori_shape=(2 * height, 2 * width),
                                             scale_factor=(0.5, 0.5)))
        if with_gt:
            from mmengine.structures import InstanceData
            corner = torch.tensor([[4.0, 6.0], [30.0, 20.0], [50.0, 40.0]])
            sizes = torch.tensor([[30.0, 40.0], [20.0, 25.0], [60.0, 35.0]])
            sample.gt_instances = InstanceData(bboxes=torch.cat([corner, corner + sizes], dim=1),
                                               labels=torch.tensor([3, 0, 7]))
        samples.append(sample)
    data = model.data_preprocessor({"inputs": images, "data_samples": samples}, False)
    return data["inputs"], data["data_samples"]
