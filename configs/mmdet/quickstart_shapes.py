# The quick-start model (configs/quickstart/shapes.yaml) trained and evaluated by MMDetection's Runner on
# the built-in shapes dataset: the same model, data sizes and schedule as `make train`, with mmdet's
# pipeline, CocoMetric and optimizer wrapper. The data is generated on first use where our own
# training finds it ($DDETR_DATASETS/shapes, else ~/.cache/ddetr_plugin/shapes).
#   python tools/train_mmdet.py configs/mmdet/quickstart_shapes.py
# Evaluate our own checkpoint (or one of this config's) on shapes_val:
#   python tools/train_mmdet.py configs/mmdet/quickstart_shapes.py --eval-only \
#       --cfg-options load_from=output/quickstart/model_final.pth
_base_ = 'mmdet::_base_/default_runtime.py'
custom_imports = dict(imports=['ddetr_plugin.integrations.mmdet'], allow_failed_imports=False)

model = dict(type='PluginDeformableDETR', ddetr_config='{{fileDirname}}/../quickstart/shapes.yaml')

# 128x128 images are trained and tested at their own size (shapes.yaml: MIN/MAX_SIZE_* 128), so
# Resize leaves the pixels as they are and the predictions are those of our own evaluation.
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(128, 128), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(128, 128), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
# shapes.yaml: SOLVER.IMS_PER_BATCH 8 (total over all processes; here per process), 1 data worker
train_dataloader = dict(
    batch_size=8, num_workers=1, persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type='ShapesDataset', split='train', filter_cfg=dict(filter_empty_gt=False),
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8, num_workers=1, persistent_workers=True, drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='ShapesDataset', split='val', test_mode=True, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='ShapesCocoMetric', split='val', metric='bbox')
test_evaluator = val_evaluator

# shapes.yaml's solver: AdamW 4e-4, weight decay 1e-4, gradient norm clipped at 0.1, 1,500 iterations with
# a drop at 1,270. paramwise_cfg as mmdet's Deformable DETR configs, except the backbone: trained from
# scratch here, it learns at the full rate (SOLVER.BACKBONE_LR_MULTIPLIER 1.0; the official 0.1 is for an
# ImageNet-pretrained one). sampling_offsets and reference_points at 0.1 (SOLVER.LINEAR_PROJ_LR_MULTIPLIER).
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=4e-4, weight_decay=1e-4),
    clip_grad=dict(max_norm=0.1, norm_type=2),
    paramwise_cfg=dict(custom_keys={
        'backbone': dict(lr_mult=1.0),
        'sampling_offsets': dict(lr_mult=0.1),
        'reference_points': dict(lr_mult=0.1),
    }))
max_iters = 1500
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [dict(type='MultiStepLR', begin=0, end=max_iters, by_epoch=False, milestones=[1270], gamma=0.1)]

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=20),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=750))
log_processor = dict(by_epoch=False)
