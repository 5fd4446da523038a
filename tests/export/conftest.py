import pytest

from ..checkpoint.helpers import run_single_threaded


@pytest.fixture(autouse=True)
def single_thread():
    yield from run_single_threaded()
