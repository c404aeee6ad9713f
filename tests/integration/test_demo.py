"""The README's main command, end to end on the real stack (a short replay)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.traces import REPO

pytestmark = pytest.mark.integration


def test_demo_runs_and_stops_what_it_started(kafka_bootstrap: str, redis_url: str,
                                             tmp_path: Path) -> None:
    env = {**os.environ,
           "STREAM_WARMER_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
           "STREAM_WARMER_REDIS__URL": redis_url}
    proc = subprocess.run(
        # no --trace: the demo's default, the trace shipped in the package
        [sys.executable, "-m", "stream_warmer", "demo",
         "--limit", "12000", "--rate", "4000", "--interval", "1", "--timeout", "240",
         "--log-dir", str(tmp_path)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "events consumed        12,000" in proc.stdout
    assert "warm commands" in proc.stdout
    assert "cache hit ratio" in proc.stdout and "with warming" in proc.stdout
    assert "ev/s" in proc.stdout  # live progress was shown
    # both children were stopped gracefully (SIGTERM -> final checkpoint) by the demo
    assert "serve finished" in (tmp_path / "serve.log").read_text()
    assert "trainer finished" in (tmp_path / "train.log").read_text()
