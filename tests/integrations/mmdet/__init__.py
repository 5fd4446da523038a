"""Tests of the MMDetection integration: where mmdet is missing each module skips, saying how to install it."""
MMDET_MISSING = ("the MMDetection integration tests need mmdet 3.x, mmengine and mmcv with its ops: pip install "
                 "'ddetr_plugin[mmdet]' and ../shared/wheels/mmcv-*.whl (README, 'Use it from MMDetection')")
