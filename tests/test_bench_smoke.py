"""
The benchmark's smoke run: every scenario against every server for a moment, so that
bench/ never rots.  No timing is asserted; only that each cell produced its figures.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

EXPECTED = {
    "echo": "msgs_per_s",
    "fanout": "sizes",
    "idle": "rss_per_conn",
    "slow": "others_ratio",
    "publishers": "says_per_s",
}


@pytest.mark.e2e
@pytest.mark.timeout(300)
def test_smoke(tmp_path: Path) -> None:
    """A smoke run of bench/run.py fills every scenario's cell for every available server."""
    # the generator needs picows and uvloop (test extra): missing, this fails, never skips
    import picows  # noqa: F401
    import uvloop  # noqa: F401

    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--smoke", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    results = json.loads((tmp_path / "latest.json").read_text())
    assert results["machine"]["nvx"].get("HAS_NVX") is not None
    ran = results["results"]
    assert "portshare" in ran["echo"]
    for scenario, key in EXPECTED.items():
        for server, cell in ran[scenario].items():
            assert "error" not in cell, (scenario, server, cell)
            assert key in cell, (scenario, server, cell)
    for server, cell in ran["fanout"].items():
        steps = cell["sizes"]["10"]["steps"]
        assert steps and all(s["achieved"] > 0 for s in steps), (server, steps)
    for server, cell in ran["http"].items():
        if shutil.which("wrk") is None:
            assert "error" in cell["alone"]
        else:
            assert cell["alone"]["rps"] > 0, (server, cell)
            assert cell["during_fanout"]["rps"] > 0, (server, cell)
            assert cell["during_fanout_moderate"]["rps"] > 0, (server, cell)
    table = (tmp_path / "results.md").read_text()
    assert "| A echo msgs/s |" in table
