"""Where the tests find the large shared real traces: ``$STREAM_WARMER_TRACES_DIR``, else
``<repo>/../shared/traces``, else, for a clone of a local checkout (``git clone
/work/main /tmp/x/main``), ``<origin>/../shared/traces``. A missing trace fails the
test under CI (``CI=true``) and skips it elsewhere, saying where the traces come from.

Only the tests that need whole traces use these (the REFERENCE reproduction, the bench
smoke test); everything else runs on the trace shipped in the package
(``stream_warmer.data.SAMPLE_TRACE``)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _traces_dir() -> Path:
    if "STREAM_WARMER_TRACES_DIR" in os.environ:
        return Path(os.environ["STREAM_WARMER_TRACES_DIR"])
    beside = REPO.parent / "shared" / "traces"
    if beside.is_dir():
        return beside
    origin = subprocess.run(["git", "-C", str(REPO), "config", "--get", "remote.origin.url"],
                            capture_output=True, text=True, check=False).stdout.strip()
    if origin and Path(origin).is_dir():  # a local clone: its origin's neighbours
        from_origin = Path(origin).resolve().parent / "shared" / "traces"
        if from_origin.is_dir():
            return from_origin
    return beside


TRACES = _traces_dir()
WHERE = ("The large real traces are not in the repository: they come in a `shared/traces` "
         "folder beside the checkout (its README gives their sources and licences); "
         "set STREAM_WARMER_TRACES_DIR to a folder that holds them.")
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require_trace(name: str) -> Path:
    """The path of trace ``name`` under ``TRACES``; fail (CI) or skip when it is missing."""
    path = TRACES / name
    if not path.exists():
        missing(f"shared trace not found: {path}. {WHERE}")
    return path


def missing(msg: str) -> None:
    """Fail under CI, skip elsewhere."""
    if IN_CI:
        pytest.fail(msg)
    pytest.skip(msg)
