# Deformable DETR (ResNet-50, 4 levels) on COCO: MMDetection's own config, 50 epochs at total batch 32,
# with this package's model. Only `type` changes: PluginDeformableDETR builds the same network from
# the same fields, our op underneath. Data in data/coco/, as mmdet's configs expect.
#   python tools/train_mmdet.py configs/mmdet/deformable_detr_r50.py
_base_ = 'mmdet::deformable_detr/deformable-detr_r50_16xb2-50e_coco.py'
custom_imports = dict(imports=['ddetr_plugin.integrations.mmdet'], allow_failed_imports=False)
model = dict(type='PluginDeformableDETR')
