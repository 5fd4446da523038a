"""Runs ``kernels/`` on CPU tensors under Triton's interpreter, in a child pytest process.

TRITON_INTERPRET=1 must be set before anything imports triton, and in this process other
tests (torch.compile, torch._dynamo) have imported it already; so a child process with the
variable set runs the kernel tests once, and each of its test files is one test here that
fails with the child's failure reports for that file.
"""
import importlib.util
import os
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

KERNEL_TESTS = Path(__file__).resolve().parent / "kernels"
REPO_ROOT = Path(__file__).resolve().parents[3]
CHILD_TIMEOUT_S = 600

pytestmark = pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")


@pytest.fixture(scope="module")
def child_results(tmp_path_factory):
    """{test file name: [(test name, outcome, message)]} from one interpreted pytest run."""
    report = tmp_path_factory.mktemp("interpreter") / "junit.xml"
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "junit_family=xunit1",
               f"--junitxml={report}", str(KERNEL_TESTS)]
    child = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S)
    if not report.exists():
        pytest.fail(f"the interpreted pytest run wrote no report (exit {child.returncode}):\n"
                    f"{child.stdout[-6000:]}\n{child.stderr[-6000:]}")
    results: dict[str, list[tuple[str, str, str]]] = {}
    for case in ElementTree.parse(report).iter("testcase"):
        outcome, message = "passed", ""
        for kind in ("failure", "error", "skipped"):
            element = case.find(kind)
            if element is not None:
                outcome = kind
                message = element.get("message", "") + "\n" + (element.text or "")
        file_name = Path(case.get("file", "")).name
        results.setdefault(file_name, []).append((case.get("name"), outcome, message))
    return results


@pytest.mark.parametrize("test_file", sorted(p.name for p in KERNEL_TESTS.glob("test_*.py")))
def test_kernels_under_interpreter(child_results, test_file):
    cases = child_results.get(test_file)
    assert cases, f"the interpreted run reported no test of {test_file}"
    failed = [f"--- {name}: {outcome}\n{message}" for name, outcome, message in cases
              if outcome in ("failure", "error")]
    if failed:
        pytest.fail(f"{len(failed)} of {len(cases)} tests in kernels/{test_file} failed under "
                    f"TRITON_INTERPRET=1:\n" + "\n".join(failed), pytrace=False)
    skipped = [f"{name}: {message.strip()}" for name, outcome, message in cases if outcome == "skipped"]
    if len(skipped) == len(cases):
        pytest.skip("; ".join(skipped))
