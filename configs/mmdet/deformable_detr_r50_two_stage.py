# Two-stage Deformable DETR with box refinement: mmdet's config, with this package's model.
#   python tools/train_mmdet.py configs/mmdet/deformable_detr_r50_two_stage.py
_base_ = 'mmdet::deformable_detr/deformable-detr-refine-twostage_r50_16xb2-50e_coco.py'
custom_imports = dict(imports=['ddetr_plugin.integrations.mmdet'], allow_failed_imports=False)
model = dict(type='PluginDeformableDETR')
