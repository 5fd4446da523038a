"""Why a host codebase's tests skip and how to install it: the reasons given to ``pytest.importorskip``."""
MMDET_MISSING = ("the MMDetection integration tests need mmdet 3.x, mmengine and mmcv with its ops: pip install "
                 "'ddetr_plugin[mmdet]' and ../shared/wheels/mmcv-*.whl (README, 'Use it from MMDetection')")
DETECTRON2_MISSING = ("detectron2 is not installed (not on the package index: see the README's 'Use it from "
                      "detectron2'; CI installs the wheel in ../shared/wheels)")
