"""Fixtures and markers every test folder shares; their definitions live in tests/_support/."""
from tests._support.coco_detections import gt_path  # noqa: F401
from tests._support.fake_training import no_plots  # noqa: F401
from tests._support.threads import single_thread, single_thread_for_module  # noqa: F401
from tests._support.train_net_runs import run_dir  # noqa: F401


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: end-to-end runs of a training tool (tens of seconds each)")
