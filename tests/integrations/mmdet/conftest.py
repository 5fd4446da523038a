import pytest

pytest.importorskip("mmdet", reason="the MMDetection integration tests need mmdet 3.x, mmengine and mmcv with its "
                                    "ops: pip install 'ddetr_plugin[mmdet]' and ../shared/wheels/mmcv-*.whl "
                                    "(README, 'Use it from MMDetection')")

from tests.checkpoint.helpers import run_single_threaded  # noqa: E402


@pytest.fixture(autouse=True)
def single_thread():
    yield from run_single_threaded()
