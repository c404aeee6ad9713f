"""The LSTM at every peer's own spend: docs/at-spend.json, for the at-spend tables of
docs/RESULTS.md (``scripts/results.py`` ``iso-warm-spend``, ``delay-spend``).

    .venv/bin/python scripts/at_spend.py [--json PATH] [--publish] [TRACE ...]  # default: all

For each trace of docs/delay.json (cache2k_orm_busy: docs/iso-warm.json, delay 0 only),
the warms per request that markov1, nextkey, pg and mithril spend on their own at each
(f, delay), with the iso-warm tables' W (``ISO_RATES``), become the ``--warm-rate`` list
of one ``evaluate --strategies lstm`` run (k 1, the same f and delays), which also draws
the LSTM's frontier over a fixed grid of thresholds (``--threshold``, ``THRESHOLDS``: a
log-spaced grid of scores, the same for every trace); its rows replace that trace's rows
in docs/at-spend.json (or ``--json PATH``, e.g. for a run with other settings in the
environment); with ``--publish`` its own and iso-warm rows also become the LSTM's rows
of the other tables (``publish``). The LSTM gives its trained threshold up to the gate
and to the grid (``release_floor``), so it can spend more than its own rate. The tables
take the LSTM's best row that spends no more than the peer (``scripts/results.py``,
which also draws the LSTM's frontier from these rows in docs/iso-warm.png and
docs/delay.png). Needs the shared traces (``--traces-dir``, default ../shared/traces);
minutes per trace (a model per delay).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PEERS = ("markov1", "nextkey", "pg", "mithril")
ISO_RATES = (0.1, 0.3)  # the iso-warm tables' W (docs/iso-warm.json, docs/delay.json)
# scores: 0 (every candidate named), then the R10 preferred numbers (ten per decade,
# 1, 1.25, 1.6, 2, 2.5, 3.15, 4, 5, 6.3, 8), from 0.001 to 0.5 in T and from 0.5 down
# to 0.001 in 1 - T (where a trace's scores crowd near 1, as lirs_mix5's and
# cloudphysics_vm's: at 0.99 they still spend more than markov1 and mithril); one rule
# for every trace, not fitted to any. (Five per decade, as before 2026-12-07, left gaps
# of 0.05 warms per request between neighbouring rows, wider than some peers' margins.)
_R10 = (1.0, 1.25, 1.6, 2.0, 2.5, 3.15, 4.0, 5.0, 6.3, 8.0)
_STEPS = tuple(round(m * 10.0 ** e, 6) for e in (-3, -2, -1) for m in _R10 if m * 10.0 ** e < 0.5)
THRESHOLDS = (0.0, *_STEPS, 0.5, *(round(1 - s, 6) for s in reversed(_STEPS)))


def plan() -> dict[str, tuple[list[float], list[int], list[float]]]:
    """Per trace: (the f, the delays, the peers' own rates) to run the LSTM at."""
    out: dict[str, tuple[set[float], set[int], set[float]]] = {}
    for name in ("delay.json", "iso-warm.json"):
        rows: list[dict[str, Any]] = json.loads((DOCS / name).read_text())
        for r in rows:
            if (r["k"] != 1 or r.get("warm_rate") is not None or r.get("threshold") is not None
                    or r["strategy"] not in PEERS):
                continue
            fs, ds, ws = out.setdefault(r["trace"], (set(), set(), set()))
            fs.add(r["cache_frac"])
            ds.add(r.get("delay", 0))
            if r["warms_per_request"] > 0:
                ws.add(round(r["warms_per_request"], 4))
    return {t: (sorted(fs), sorted(ds), sorted(ws)) for t, (fs, ds, ws) in out.items()}


def run(trace: str, fracs: list[float], delays: list[int], rates: list[float],
        traces_dir: str) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rows.json"
        cmd = [sys.executable, "-m", "stream_warmer", "evaluate", trace,
               "--traces-dir", traces_dir, "--strategies", "lstm", "--k", "1",
               "--cache-frac", ",".join(f"{f:g}" for f in fracs),
               "--delay", ",".join(map(str, delays)),
               "--warm-rate", ",".join(f"{w:g}" for w in sorted({*rates, *ISO_RATES})),
               "--threshold", ",".join(f"{t:g}" for t in THRESHOLDS), "--json", str(out)]
        print("at_spend:", " ".join(cmd[1:]), file=sys.stderr, flush=True)
        subprocess.run(cmd, check=True, cwd=ROOT)
        rows: list[dict[str, Any]] = json.loads(out.read_text())
        return rows


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("traces", nargs="*", help="default: every trace with peer rows")
    parser.add_argument("--traces-dir", default="../shared/traces")
    parser.add_argument("--json", type=Path, default=DOCS / "at-spend.json")
    parser.add_argument("--publish", action="store_true",
                        help="also replace the trace's LSTM rows in docs/warm-eval.json, "
                        "iso-warm.json and delay.json with this run's (``publish``)")
    args = parser.parse_args(argv)
    todo = plan()
    unknown = [t for t in args.traces if t not in todo]
    if unknown:
        parser.error(f"no peer rows for {unknown} (known: {sorted(todo)})")
    path: Path = args.json
    for trace in args.traces or list(todo):
        rows = run(trace, *todo[trace], args.traces_dir)
        old = json.loads(path.read_text()) if path.exists() else []
        kept = [r for r in old if r["trace"] != trace]
        path.write_text(json.dumps(kept + rows, indent=2) + "\n")
        if args.publish:
            publish(trace, rows)
    return 0


def publish(trace: str, rows: list[dict[str, Any]]) -> None:
    """The run's LSTM rows that the other tables show (its own rows, and those held at
    ``ISO_RATES``) replace the trace's LSTM k = 1 rows in docs/warm-eval.json (own, delay
    0), docs/iso-warm.json (delay 0) and docs/delay.json (every delay it has), so that
    every table's LSTM is this one run's model, in the configuration it ran."""
    def shown(r: dict[str, Any], rates: tuple[float | None, ...], delays: set[int]) -> bool:
        return (r.get("threshold") is None and r.get("warm_rate") in rates
                and r.get("delay", 0) in delays)

    for name, rates, delay0 in (("warm-eval.json", (None,), True),
                                ("iso-warm.json", (None, *ISO_RATES), True),
                                ("delay.json", (None, *ISO_RATES), False)):
        path = DOCS / name
        old: list[dict[str, Any]] = json.loads(path.read_text())
        mine = [r for r in old if r["trace"] == trace and r["strategy"] == "lstm" and r["k"] == 1]
        if not mine:
            continue  # e.g. delay.json has no cache2k_orm_busy
        # every delay the table has for the trace (a delay new to it, such as one only
        # the peers have so far, gets the LSTM's rows too)
        delays = {0} if delay0 else {r.get("delay", 0) for r in old if r["trace"] == trace}
        new = sorted((r for r in rows if shown(r, rates, delays)), key=_layout)
        at = old.index(mine[0])
        gone = {id(r) for r in mine}
        kept = [r for r in old if id(r) not in gone]
        path.write_text(json.dumps(kept[:at] + new + kept[at:], indent=2) + "\n")


def _layout(r: dict[str, Any]) -> tuple[float, float, int]:
    """The tables' row order within a strategy: own rows, then each W; f; delay."""
    rate = r.get("warm_rate")
    return (-1.0 if rate is None else rate, r["cache_frac"], r.get("delay", 0))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
