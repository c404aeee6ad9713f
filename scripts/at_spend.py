"""The LSTM at every peer's own spend: docs/at-spend.json, for the at-spend tables of
docs/RESULTS.md (``scripts/results.py`` ``iso-warm-spend``, ``delay-spend``).

    .venv/bin/python scripts/at_spend.py [--json PATH] [--publish | --refine-only] [TRACE ...]

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
docs/delay.png). Where a peer's spend falls in a wide gap of the grid, a second run
per delay measures the frontier finer there (``refine``; ``--refine-only``: just that,
on the rows already in --json). Needs the shared traces (``--traces-dir``, default
../shared/traces); minutes per trace (a model per delay).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
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
# where a peer's spend falls between two rows of the grid more than GAP warms per
# request apart (a trace's scores crowd at some value), REFINE thresholds between
# them, for up to ROUNDS rounds
GAP, REFINE, ROUNDS = 0.01, 4, 3


def _peer_rows() -> Iterator[dict[str, Any]]:
    """The peers' own k = 1 rows of docs/delay.json and docs/iso-warm.json."""
    for name in ("delay.json", "iso-warm.json"):
        rows: list[dict[str, Any]] = json.loads((DOCS / name).read_text())
        yield from (r for r in rows if r["k"] == 1 and r.get("warm_rate") is None
                    and r.get("threshold") is None and r["strategy"] in PEERS)


def plan() -> dict[str, tuple[list[float], list[int], list[float]]]:
    """Per trace: (the f, the delays, the peers' own rates) to run the LSTM at."""
    out: dict[str, tuple[set[float], set[int], set[float]]] = {}
    for r in _peer_rows():
        fs, ds, ws = out.setdefault(r["trace"], (set(), set(), set()))
        fs.add(r["cache_frac"])
        ds.add(r.get("delay", 0))
        if r["warms_per_request"] > 0:
            ws.add(round(r["warms_per_request"], 4))
    return {t: (sorted(fs), sorted(ds), sorted(ws)) for t, (fs, ds, ws) in out.items()}


def run(trace: str, fracs: list[float], delays: list[int], rates: list[float] | None,
        traces_dir: str, *, thresholds: Sequence[float] = THRESHOLDS) -> list[dict[str, Any]]:
    """``evaluate --strategies lstm`` at k 1 (with ``rates``: also held at each and at
    ``ISO_RATES``), each threshold a frontier cache; its rows."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rows.json"
        cmd = [sys.executable, "-m", "stream_warmer", "evaluate", trace,
               "--traces-dir", traces_dir, "--strategies", "lstm", "--k", "1",
               "--cache-frac", ",".join(f"{f:g}" for f in fracs),
               "--delay", ",".join(map(str, delays)),
               "--threshold", ",".join(f"{t:g}" for t in thresholds), "--json", str(out)]
        if rates is not None:
            cmd += ["--warm-rate", ",".join(f"{w:g}" for w in sorted({*rates, *ISO_RATES}))]
        print("at_spend:", " ".join(cmd[1:]), file=sys.stderr, flush=True)
        subprocess.run(cmd, check=True, cwd=ROOT)
        rows: list[dict[str, Any]] = json.loads(out.read_text())
        return rows


def refine(trace: str, rows: list[dict[str, Any]], traces_dir: str) -> list[dict[str, Any]]:
    """The frontier measured finer around every peer's own spend: where the rows on
    either side of it are more than ``GAP`` warms per request apart, ``REFINE`` more
    thresholds evenly between theirs, one ``evaluate`` per delay (the same model: its
    own rows must equal the first run's, else this raises), for up to ``ROUNDS``
    rounds. Every peer's spend alike, whether the LSTM wins there or not. Returns the
    new rows."""
    new: list[dict[str, Any]] = []
    fracs = sorted({r["cache_frac"] for r in rows})
    own = {(_cell(r), r["hit_ratio"], r["warms_per_request"]) for r in rows if _own(r)}
    peers = [r for r in _peer_rows() if r["trace"] == trace]
    for _ in range(ROUNDS):
        todo = _gaps(peers, rows + new)
        if not todo:
            break
        for delay, thresholds in sorted(todo.items()):
            got = run(trace, fracs, [delay], None, traces_dir, thresholds=thresholds)
            again = {(_cell(r), r["hit_ratio"], r["warms_per_request"]) for r in got if _own(r)}
            if not again <= own:
                msg = f"{trace} L={delay}: the refining run trained another model ({again - own})"
                raise RuntimeError(msg)
            new += [r for r in got if r.get("threshold") is not None]
    return new


def _gaps(peers: list[dict[str, Any]], rows: list[dict[str, Any]]) -> dict[int, list[float]]:
    """Per delay, the thresholds ``refine`` adds next around the spend of each of the
    ``peers``' rows (none that ``rows`` already has)."""
    todo: dict[int, set[float]] = {}
    for peer in peers:
        # by spend; of rows that spend alike, the one nearest the gap on its side
        front = sorted((r for r in rows if _cell(r) == _cell(peer)
                        and r.get("threshold") is not None),
                       key=lambda r: (r["warms_per_request"], -r["threshold"]))
        spend = peer["warms_per_request"]
        below = [r for r in front if r["warms_per_request"] <= spend]
        above = [r for r in front if r["warms_per_request"] > spend]
        if not below or not above or (
                above[0]["warms_per_request"] - below[-1]["warms_per_request"] <= GAP):
            continue
        hi, lo = below[-1]["threshold"], above[0]["threshold"]
        todo.setdefault(_cell(peer)[1], set()).update(
            round(lo + (hi - lo) * i / (REFINE + 1), 6) for i in range(1, REFINE + 1))
    for delay, ts in todo.items():
        ts -= {r["threshold"] for r in rows if r.get("threshold") is not None
               and r.get("delay", 0) == delay}
    return {d: sorted(ts) for d, ts in todo.items() if ts}


def _cell(r: dict[str, Any]) -> tuple[float, int]:
    return r["cache_frac"], r.get("delay", 0)


def _own(r: dict[str, Any]) -> bool:
    return r.get("warm_rate") is None and r.get("threshold") is None


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("traces", nargs="*", help="default: every trace with peer rows")
    parser.add_argument("--traces-dir", default="../shared/traces")
    parser.add_argument("--json", type=Path, default=DOCS / "at-spend.json")
    parser.add_argument("--publish", action="store_true",
                        help="also replace the trace's LSTM rows in docs/warm-eval.json, "
                        "iso-warm.json and delay.json with this run's (``publish``)")
    parser.add_argument("--refine-only", action="store_true",
                        help="only refine the frontier of the trace's rows already in "
                        "--json (``refine``)")
    args = parser.parse_args(argv)
    todo = plan()
    unknown = [t for t in args.traces if t not in todo]
    if unknown:
        parser.error(f"no peer rows for {unknown} (known: {sorted(todo)})")
    path: Path = args.json
    for trace in args.traces or list(todo):
        old = json.loads(path.read_text()) if path.exists() else []
        if args.refine_only:
            rows = [r for r in old if r["trace"] == trace]
        else:
            rows = run(trace, *todo[trace], args.traces_dir)
        rows += refine(trace, rows, args.traces_dir)
        kept = [r for r in old if r["trace"] != trace]
        path.write_text(json.dumps(kept + rows, indent=2) + "\n")
        if args.publish and not args.refine_only:
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
        theirs = [i for i, r in enumerate(old) if r["trace"] == trace]
        if not theirs:
            continue  # e.g. iso-warm.json without the trace
        mine = [r for r in old if r["trace"] == trace and r["strategy"] == "lstm" and r["k"] == 1]
        # every delay the table has for the trace (a delay new to it, such as one only
        # the peers have so far, gets the LSTM's rows too)
        delays = {0} if delay0 else {r.get("delay", 0) for r in old if r["trace"] == trace}
        new = sorted((r for r in rows if shown(r, rates, delays)), key=_layout)
        # where the LSTM's rows were, else after the trace's (the peers' alone so far)
        at = old.index(mine[0]) if mine else theirs[-1] + 1
        gone = {id(r) for r in mine}
        kept = [r for r in old if id(r) not in gone]
        path.write_text(json.dumps(kept[:at] + new + kept[at:], indent=2) + "\n")


def _layout(r: dict[str, Any]) -> tuple[float, float, int]:
    """The tables' row order within a strategy: own rows, then each W; f; delay."""
    rate = r.get("warm_rate")
    return (-1.0 if rate is None else rate, r["cache_frac"], r.get("delay", 0))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
