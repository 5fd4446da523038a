"""A tiny mmengine config: our tiny two-stage model on four 64x64 shapes images, the same batch every iteration."""
from mmengine.config import Config

import ddetr_plugin.integrations.mmdet  # noqa: F401  (Config(dict) does not run custom_imports; fromfile does)

from .shapes_datasets import SMALL_SHAPES
from .tiny_configs import dump_config, tiny_cfg

SPEC = dict(num_images=4, seed=11, **SMALL_SHAPES)


def tiny_runner_config(tmp_path, max_iters: int, checkpoint_interval: int, val: bool = True,
                       log_level: str = "WARNING") -> Config:
    model = tiny_cfg("two_stage", "MODEL.TRANSFORMER.DROPOUT", 0.0, "MODEL.NUM_CLASSES", 4)
    yaml = dump_config(model, tmp_path / "tiny.yaml")
    pipeline = [dict(type="LoadImageFromFile"), dict(type="LoadAnnotations", with_bbox=True),
                dict(type="Resize", scale=(64, 64), keep_ratio=True), dict(type="PackDetInputs")]
    data = dict(type="ShapesDataset", root=str(tmp_path / "shapes"), spec=SPEC, pipeline=pipeline)
    cfg = dict(
        default_scope="mmdet",
        custom_imports=dict(imports=["ddetr_plugin.integrations.mmdet"], allow_failed_imports=False),
        model=dict(type="PluginDeformableDETR", ddetr_config=yaml),
        work_dir=str(tmp_path / "work_dir"),
        train_dataloader=dict(batch_size=4, num_workers=0, sampler=dict(type="InfiniteSampler", shuffle=False),
                              dataset=data),
        train_cfg=dict(type="IterBasedTrainLoop", max_iters=max_iters, val_interval=max_iters),
        optim_wrapper=dict(type="OptimWrapper", optimizer=dict(type="AdamW", lr=1e-3, weight_decay=1e-4),
                           clip_grad=dict(max_norm=0.1, norm_type=2)),
        param_scheduler=[dict(type="ConstantLR", factor=1.0, by_epoch=False)],
        default_hooks=dict(logger=dict(type="LoggerHook", interval=1),
                           checkpoint=dict(type="CheckpointHook", by_epoch=False, interval=checkpoint_interval)),
        log_processor=dict(by_epoch=False, window_size=1),
        env_cfg=dict(dist_cfg=dict(backend="gloo")),
        log_level=log_level,
    )
    if val:
        cfg.update(val_dataloader=dict(batch_size=2, num_workers=0, sampler=dict(type="DefaultSampler", shuffle=False),
                                       dataset=dict(data, test_mode=True)),
                   val_cfg=dict(type="ValLoop"),
                   val_evaluator=dict(type="ShapesCocoMetric", root=str(tmp_path / "shapes"), spec=SPEC))
    return Config(cfg)
