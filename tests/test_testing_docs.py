"""
docs/testing.md's test modules, run as a user runs them: each written to a directory of its
own and run by pytest in a child process, and the trial one by trial too; every test of the
page must pass, and the count must be the page's (so an empty run fails).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import portshare

DOC = Path(__file__).parent.parent / "docs" / "testing.md"
_BLOCK = re.compile(r"^```python\n# (test_\w+\.py)\n(.*?)^```", re.S | re.M)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def modules() -> dict[str, str]:
    return {name: body for name, body in _BLOCK.findall(DOC.read_text())}


def run(args: list[str], cwd: Path) -> str:
    env = dict(os.environ, PYTHONPATH=str(Path(portshare.__file__).parent.parent))
    done = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=100
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output


def test_thePageHasItsModules() -> None:
    """The parser finds the page's test modules (so the tests below can fail)."""
    assert set(modules()) == {
        "test_flask_and_chat.py",
        "test_chat_trial.py",
        "test_two_instances.py",
        "test_pytest_twisted.py",
        "test_users_and_hooks.py",
    }


def test_underPytest(tmp_path: Path) -> None:
    """Every test of the page passes under pytest (pytest-twisted's included): 7."""
    for name, body in modules().items():
        (tmp_path / name).write_text(body)
    output = run(["-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)], tmp_path)
    assert re.search(r"\b7 passed\b", output), output


def test_underTrial(tmp_path: Path) -> None:
    """The trial module's tests pass under trial: 2 of them."""
    (tmp_path / "test_chat_trial.py").write_text(modules()["test_chat_trial.py"])
    output = run(["-m", "twisted.trial", "test_chat_trial"], tmp_path)
    assert "PASSED (successes=2)" in output, output
