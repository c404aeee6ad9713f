"""Data shipped inside the package: a small real trace for the demo and the tests.

``TRACES_DIR`` is where bare trace names resolve by default (``--traces-dir``
overrides it); see ``traces/README.md`` for the source and licence of each file.
"""

from __future__ import annotations

from pathlib import Path

TRACES_DIR = Path(__file__).resolve().parent / "traces"
SAMPLE_TRACE_NAME = "cache2k_orm_busy_300k"
SAMPLE_TRACE = TRACES_DIR / f"{SAMPLE_TRACE_NAME}.csv.gz"
