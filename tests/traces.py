"""Where the tests find the shared real traces: ``$STREAM_WARMER_TRACES_DIR`` or
``<repo>/../shared/traces``. A missing trace fails the test under CI (``CI=true``) and
skips it elsewhere, with the path it looked for."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TRACES = Path(os.environ.get("STREAM_WARMER_TRACES_DIR", REPO.parent / "shared" / "traces"))
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require_trace(name: str) -> Path:
    """The path of trace ``name`` under ``TRACES``; fail (CI) or skip when it is missing."""
    path = TRACES / name
    if not path.exists():
        missing(f"shared trace not found: {path} (set STREAM_WARMER_TRACES_DIR)")
    return path


def missing(msg: str) -> None:
    """Fail under CI, skip elsewhere."""
    if IN_CI:
        pytest.fail(msg)
    pytest.skip(msg)
