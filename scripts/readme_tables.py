"""Render the README's result tables from their JSON (never edited by hand).

    .venv/bin/python scripts/readme_tables.py bench-live    # docs/bench-live/*.json
    .venv/bin/python scripts/readme_tables.py reliability   # docs/reliability.json

Each table sits between ``<!-- NAME:begin -->`` and ``<!-- NAME:end -->`` in README.md
and is replaced whole. ``scripts/bench-live-table`` and ``scripts/reliability-table``
call this after writing their JSON.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
# the closed-loop table's rows, in the README's order (scripts/bench-live-table's names)
BENCH_LIVE = ("lirs_mix5-40-lru", "lirs_mix5-400-lru", "lirs_mix5-2000-lru",
              "lirs_mix5-2000-redis", "cloudphysics_vm-40-lru", "cloudphysics_vm-400-lru",
              "cloudphysics_vm-2000-lru", "cloudphysics_vm-x100-lru")
RELIABILITY_COLUMNS = ("test", "load", "faults", "bad_inputs", "lost")


def bench_live(directory: Path) -> str:
    """The closed-loop table (``bench.live.format_rows``) of the JSON files there."""
    from stream_warmer.bench.live import LiveRow, format_rows

    rows = [LiveRow(**row) for name in BENCH_LIVE if (directory / f"{name}.json").exists()
            for row in json.loads((directory / f"{name}.json").read_text())]
    return format_rows(rows)


def reliability(path: Path) -> str:
    """One row per reliability test, as the suite reported it."""
    rows = json.loads(path.read_text())
    lines = ["| " + " | ".join(RELIABILITY_COLUMNS) + " |",
             "|" + "---|" * len(RELIABILITY_COLUMNS)]
    lines += ["| " + " | ".join(str(r[c]).replace("|", "\\|") for c in RELIABILITY_COLUMNS)
              + " |" for r in rows]
    return "\n".join(lines)


def replace_section(text: str, name: str, table: str) -> str:
    """``text`` with the lines between ``name``'s markers replaced by ``table``."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    head, found, rest = text.partition(begin)
    _, found_end, tail = rest.partition(end)
    if not found or not found_end:
        msg = f"README.md has no {begin} ... {end} section"
        raise SystemExit(msg)
    return f"{head}{begin}\n{table}\n{end}{tail}"


def main(argv: list[str]) -> int:
    if argv == ["bench-live"]:
        table = bench_live(ROOT / "docs" / "bench-live")
    elif argv == ["reliability"]:
        table = reliability(ROOT / "docs" / "reliability.json")
    else:
        print(__doc__, file=sys.stderr)
        return 2
    README.write_text(replace_section(README.read_text(), argv[0], table))
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
