"""The reliability suite's report: each test states what it held, and the table is built from it.

A test asks for ``reliability`` and calls it last, once its assertions have held,
with the figures it measured (the load, the faults injected, the bad inputs tried,
the events lost). With
``STREAM_WARMER_RELIABILITY_REPORT=path`` set, the rows of the session are written
there as JSON; ``scripts/reliability-table`` runs the suite that way and renders the
Reliability table of docs/RESULTS.md from them, so the table is never edited by hand.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

_ROWS: list[dict[str, object]] = []
Report = Callable[..., None]


@pytest.fixture
def reliability(request: pytest.FixtureRequest) -> Report:
    """``reliability(load=..., faults=..., bad_inputs=..., lost=...)`` for this test."""

    def report(*, load: str, faults: str = "none", bad_inputs: str = "none", lost: int) -> None:
        _ROWS.append({"test": request.node.name, "load": load, "faults": faults,
                      "bad_inputs": bad_inputs, "lost": lost})

    return report


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = os.environ.get("STREAM_WARMER_RELIABILITY_REPORT")
    if path and _ROWS:
        Path(path).write_text(json.dumps(_ROWS, indent=2) + "\n")
