"""Every test of this folder runs on one intra-op thread (tests/_support/threads.py says why)."""
from tests._support.threads import single_thread_in_this_folder  # noqa: F401
