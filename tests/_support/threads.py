"""One intra-op thread for the tests of tiny models.

These models are tiny, so a second thread gains nothing, and on a machine whose other core is busy, OpenMP's
spin-waiting at every operator's barrier makes two threads ten or more times slower than one.
"""
import contextlib
from typing import Iterator

import pytest
import torch


@contextlib.contextmanager
def one_intra_op_thread() -> Iterator[None]:
    """torch runs on one intra-op thread inside the block; the previous count comes back after it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture
def single_thread() -> Iterator[None]:
    """One intra-op thread during the test (``pytestmark = pytest.mark.usefixtures("single_thread")``)."""
    with one_intra_op_thread():
        yield


@pytest.fixture(scope="module")
def single_thread_for_module() -> Iterator[None]:
    """One intra-op thread while a module-scoped fixture that asks for it is alive (set up before
    the per-test ``single_thread``)."""
    with one_intra_op_thread():
        yield


@pytest.fixture(autouse=True)
def single_thread_in_this_folder(single_thread) -> None:
    """Imported by a folder's conftest.py: every test of that folder runs on one intra-op thread."""
