"""Render the tables of docs/RESULTS.md from the JSON the commands wrote (never by hand).

    .venv/bin/python scripts/results.py            # rewrite every table (make results)
    .venv/bin/python scripts/results.py --check    # exit 1 if a table differs from its JSON

Each table sits between ``<!-- NAME:begin -->`` and ``<!-- NAME:end -->`` in
docs/RESULTS.md and is replaced whole; NAME and its JSON:

- ``bench-live``: docs/bench-live/*.json (``bench live --json``, scripts/bench-live-table)
- ``warm-eval-k1``, ``warm-eval-k4``: docs/warm-eval.json (``evaluate --json``)
- ``iso-warm``: docs/iso-warm.json (``evaluate --warm-rate ... --json``)
- ``iso-warm-spend``, ``delay-spend``: the LSTM at each peer's own spend, from those two
  and docs/at-spend.json (the LSTM held at the peers' own rates)
- ``delay``: docs/delay.json (``evaluate --delay 0,4,12,16 --warm-rate ... --json``)
- ``model-size``, ``ablation``: docs/model-sweep.json (scripts/model_sweep.py)
- ``pipeline``: docs/bench-pipeline/*.json (``bench pipeline --json``, one file a run)
- ``inference``: docs/bench-inference.json (``bench inference --json``)
- ``memory``: docs/memory-per-tenant.json (scripts/memory_per_tenant.py --json)
- ``reliability``: docs/reliability.json (the reliability suite, scripts/reliability-table)
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
RESULTS = DOCS / "RESULTS.md"
# the closed-loop table's rows, in order (scripts/bench-live-table's names)
BENCH_LIVE = ("lirs_mix5-40-lru", "lirs_mix5-400-lru", "lirs_mix5-2000-lru",
              "lirs_mix5-2000-lru-linger0", "lirs_mix5-2000-lru-linger0-cut",
              "lirs_mix5-2000-redis", "cloudphysics_vm-40-lru", "cloudphysics_vm-400-lru",
              "cloudphysics_vm-2000-lru", "cloudphysics_vm-2000-lru-linger0",
              "cloudphysics_vm-2000-lru-linger0-cut", "cloudphysics_vm-x100-lru")
RELIABILITY_COLUMNS = ("test", "load", "faults", "bad_inputs", "lost")
BASELINES = ("markov1", "nextkey")


def _table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _load(path: Path) -> Any:
    return json.loads(path.read_text())


def bench_live() -> str:
    """The closed-loop table (``bench.live.format_rows``) of docs/bench-live."""
    from stream_warmer.bench.live import LiveRow, format_rows

    directory = DOCS / "bench-live"
    rows = [LiveRow(**row) for name in BENCH_LIVE if (directory / f"{name}.json").exists()
            for row in _load(directory / f"{name}.json")]
    return format_rows(rows)


def _warm_eval(k: int) -> str:
    """markov1, nextkey and lstm side by side per (trace, f) at ``k``; the better
    baseline in bold; the LSTM's gain over it and whether it warmed no more."""
    rows = _load(DOCS / "warm-eval.json")
    cells: dict[tuple[str, float], dict[str, dict[str, Any]]] = {}
    for r in rows:
        if r["k"] == k and r.get("delay", 0) == 0:
            cells.setdefault((r["trace"], r["cache_frac"]), {})[r["strategy"]] = r
    out = []
    for (trace, f), by in cells.items():
        if "lstm" not in by or not all(b in by for b in BASELINES):
            continue
        best = max(BASELINES, key=lambda b: by[b]["hit_ratio"])
        lstm, base = by["lstm"], by[best]
        gain = lstm["hit_ratio"] - base["hit_ratio"]

        def cell(r: dict[str, Any], name: str, best: str = best) -> str:
            text = (f"{r['hit_ratio']:.4f} / {r['warm_precision']:.3f} / "
                    f"{r['warms_per_request']:.3f}")
            return f"**{text}**" if name == best else text

        fewer = lstm["warms_per_request"] <= base["warms_per_request"]
        more = lstm["warms_per_request"] / base["warms_per_request"] - 1
        spend = (f"yes ({lstm['warms_per_request']:.3f} vs {base['warms_per_request']:.3f})"
                 if fewer else f"**no ({more:.0%} more)**")
        gain_text = f"+{gain:.4f}" if gain >= 0 else f"**\u2212{-gain:.4f}**"
        out.append([trace, f"{f:g}", f"{lstm['capacity']}",
                    *(cell(by[b], b) for b in BASELINES), cell(lstm, "lstm"), gain_text, spend])
    head = ["trace", "f", "C", *BASELINES, "lstm", "gain vs better baseline",
            "lstm warms \u2264 baseline's?"]
    return _table(head, out)


def _held(name: str, *, with_delay: bool) -> str:
    """Per (trace, f, k, [delay,] W): each strategy's hit ratio / warms per request when
    held at W (``evaluate --warm-rate``), the best in bold; its own rate's row beside it."""
    rows = [r for r in _load(DOCS / name) if r.get("threshold") is None]  # own, held
    if not with_delay:
        rows = [r for r in rows if r.get("delay", 0) == 0]
    names = list(dict.fromkeys(r["strategy"] for r in rows))
    groups: dict[tuple[Any, ...], dict[str, dict[str, Any]]] = {}
    for r in rows:
        key = (r["trace"], r["cache_frac"], r["k"], *([r["delay"]] if with_delay else []),
               r.get("warm_rate"))
        groups.setdefault(key, {})[r["strategy"]] = r
    out = []
    for (trace, f, k, *rest), by in groups.items():
        rate = rest[-1]
        best = max((r["hit_ratio"] for r in by.values()), default=None)
        cells = []
        for strategy in names:
            r = by.get(strategy)
            text = "-" if r is None else f"{r['hit_ratio']:.4f} / {r['warms_per_request']:.3f}"
            cells.append(f"**{text}**" if r is not None and rate is not None
                         and r["hit_ratio"] == best else text)
        delay = [str(rest[0])] if with_delay else []
        out.append([trace, f"{f:g}", str(k), *delay, "own" if rate is None else f"{rate:g}",
                    *cells])
    return _table(["trace", "f", "k", *(["L"] if with_delay else []), "W", *names], out)


PEERS = ("markov1", "nextkey", "pg", "mithril")
SPEND_SLACK = 0.005  # the rate gate holds W to within this (its rows' own spend)


def _own(r: dict[str, Any]) -> bool:
    """A strategy's own row: neither held at a W nor at a fixed threshold T."""
    return r.get("warm_rate") is None and r.get("threshold") is None


def _spent(r: dict[str, Any]) -> float:
    """What a row spent, for "no more than a peer": a gate's row within its slack of W
    (the gate holds the rate it was set to, give or take), any other as measured."""
    return r["warms_per_request"] - (SPEND_SLACK if r.get("warm_rate") is not None else 0.0)


def _at_spend(name: str) -> str:
    """Issue 12's comparison: for each of markov1, nextkey, pg and mithril, its own row
    (hit / warms per request) against the LSTM's best row of the same (trace, f, delay)
    that spends no more (its own, one at a fixed threshold T, or one held at a W within
    ``SPEND_SLACK``; docs/at-spend.json has them: ``evaluate --strategies lstm
    --warm-rate`` at every peer's own rate, ``--threshold`` over a grid). Bold: the LSTM
    is higher; the last column counts the peers it beats."""
    def where(r: dict[str, Any]) -> tuple[Any, ...]:
        return r["trace"], r["cache_frac"], r.get("delay", 0)

    rows = [r for r in _load(DOCS / name) if r["k"] == 1]
    keys = {where(r) for r in rows}
    held = [r for r in _load(DOCS / "at-spend.json") if where(r) in keys]
    # a run there that has the LSTM's own row trained its own model (training is not
    # bit-reproducible under load): its LSTM rows stand alone, never mixed with another's
    alone = {where(r) for r in held if _own(r)}
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in [r for r in rows if r["strategy"] != "lstm" or where(r) not in alone] + held:
        groups.setdefault(where(r), []).append(r)
    out = []
    for (trace, f, d), group in groups.items():
        own = {r["strategy"]: r for r in group if _own(r)}
        lstm = [r for r in group if r["strategy"] == "lstm"]
        if not lstm or not all(p in own for p in PEERS):
            continue
        cells, wins = [], 0
        for peer in PEERS:
            spend = own[peer]["warms_per_request"]
            fits = [r["hit_ratio"] for r in lstm if _spent(r) <= spend]
            if not fits:
                cells.append(f"- vs {own[peer]['hit_ratio']:.4f} @ {spend:.3f}")
                continue
            ours, theirs = max(fits), own[peer]["hit_ratio"]
            wins += ours > theirs
            text = f"{ours:.4f} vs {theirs:.4f} @ {spend:.3f}"
            cells.append(f"**{text}**" if ours > theirs else text)
        out.append([trace, f"{f:g}", str(d), *cells, f"{wins} of {len(PEERS)}"])
    return _table(["trace", "f", "L", *(f"lstm vs {p} @ its spend" for p in PEERS),
                   "peers beaten"], out)


def iso_warm() -> str:
    """The iso-warm table at delay 0 (docs/iso-warm.json)."""
    return _held("iso-warm.json", with_delay=False)


def delay() -> str:
    """The iso-warm table at each delay L (docs/delay.json, ``--delay 0,4,12,16``)."""
    return _held("delay.json", with_delay=True)


def _sweep(sweep: str) -> str:
    """``scripts/model_sweep.py``'s LSTM rows of one sweep: per configuration and trace,
    the hit ratio held at each warm rate W and at its own rate (with its warms per
    request); the change from the default configuration, averaged over the traces, at
    each W."""
    rows = [r for r in _load(DOCS / "model-sweep.json") if r["strategy"] == "lstm"]
    traces = list(dict.fromkeys(r["trace"] for r in rows))
    rates = sorted({r["warm_rate"] for r in rows if r["warm_rate"] is not None})
    by = {(r["config"], r["trace"], r["warm_rate"]): r for r in rows}
    configs = ["default", *dict.fromkeys(
        r["config"] for r in rows if r["sweep"] == sweep and r["config"] != "default")]
    out = []
    for config in configs:
        cells, gains = [], {w: [] for w in rates}
        for trace in traces:
            own = by.get((config, trace, None))
            held = [by.get((config, trace, w)) for w in rates]
            if own is None or None in held:
                cells.append("-")
                continue
            for w, r in zip(rates, held, strict=True):
                gains[w].append(r["hit_ratio"] - by[("default", trace, w)]["hit_ratio"])
            cells.append(" / ".join(f"{r['hit_ratio']:.4f}" for r in held if r is not None)
                         + f" ({own['hit_ratio']:.4f} at {own['warms_per_request']:.3f})")
        means = ["-" if config == "default" or not g else f"{sum(g) / len(g):+.4f}"
                 for g in gains.values()]
        first = next(r for r in rows if r["config"] == config)
        size = [f"{first['params']:,}", f"{first['step_us']:,.0f}"] if sweep == "size" else []
        out.append([config, *size, *cells, *means])
    held = " / ".join(f"W={w:g}" for w in rates)
    head = ["configuration" if sweep == "size" else "input dropped"]
    head += ["parameters", "us per serving step"] if sweep == "size" else []
    return _table(head + [f"{t}: {held} (own)" for t in traces]
                  + [f"mean change at W={w:g}" for w in rates], out)


def pipeline() -> str:
    """One row per strategy per run file in docs/bench-pipeline."""
    from stream_warmer.bench.pipeline import COLUMNS

    names = [name for name, _ in COLUMNS]
    out = []
    for path in sorted((DOCS / "bench-pipeline").glob("*.json")):
        data = _load(path)
        for r in data if isinstance(data, list) else [data]:
            out.append([path.stem] + [
                "-" if r.get(name) is None else fmt.format(r[name])
                for name, fmt in COLUMNS])
    return _table(["run", *names], out)


def inference() -> str:
    """``bench inference``'s rows."""
    rows = _load(DOCS / "bench-inference.json")
    out = [[r["mode"], f"{r['batch']:,}", f"{r['vocab']:,}", r["device"],
            f"{r['predictions_per_s']:,.0f}", f"{r['ms_per_batch']:.2f}",
            f"{r['ratio_to_bare']:.3f}" if "ratio_to_bare" in r else "-"] for r in rows]
    return _table(["mode", "batch", "classes", "device", "predictions/s", "ms/batch",
                   "ratio to bare model"], out)


def memory() -> str:
    """Bytes per tenant by part, and the bound at 1M tenants."""
    data = _load(DOCS / "memory-per-tenant.json")
    out = [[f"{r['keys_per_tenant']:,}", f"{r['tenants']:,}",
            f"{r['tracker_bytes_per_tenant']:,.0f}", f"{r['window_bytes_per_tenant']:,.0f}",
            f"{r['slot_bytes_per_tenant']:,.0f}", f"{r['rss_growth_bytes_per_tenant']:,.0f}",
            f"{r['bound_bytes_at_1m_tenants'] / 2**20:,.0f} MiB"] for r in data["rows"]]
    held = f"{data['held_tenants']:,}"
    return _table(["keys per tenant", "tenants measured", "tracker B", "windows B",
                   "state slots B", "RSS growth B", f"at 1M tenants ({held} held)"], out)


def reliability() -> str:
    """One row per reliability test, as the suite reported it."""
    rows = _load(DOCS / "reliability.json")
    return _table(list(RELIABILITY_COLUMNS),
                  [[str(r[c]) for c in RELIABILITY_COLUMNS] for r in rows])


SECTIONS: dict[str, Callable[[], str]] = {
    "bench-live": bench_live,
    "warm-eval-k1": lambda: _warm_eval(1),
    "warm-eval-k4": lambda: _warm_eval(4),
    "iso-warm": iso_warm,
    "iso-warm-spend": lambda: _at_spend("iso-warm.json"),
    "delay": delay,
    "delay-spend": lambda: _at_spend("delay.json"),
    "model-size": lambda: _sweep("size"),
    "ablation": lambda: _sweep("ablation"),
    "pipeline": pipeline,
    "inference": inference,
    "memory": memory,
    "reliability": reliability,
}


def replace_section(text: str, name: str, table: str) -> str:
    """``text`` with the lines between ``name``'s markers replaced by ``table``."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    head, found, rest = text.partition(begin)
    _, found_end, tail = rest.partition(end)
    if not found or not found_end:
        msg = f"{RESULTS.name} has no {begin} ... {end} section"
        raise SystemExit(msg)
    return f"{head}{begin}\n{table}\n{end}{tail}"


def render(text: str, names: list[str] | None = None) -> str:
    """``text`` (RESULTS.md) with the tables ``names`` (all by default) rendered anew."""
    for name in names or list(SECTIONS):
        text = replace_section(text, name, SECTIONS[name]())
    return text


def plots() -> None:
    """The frontier plots (``evaluation.plot``) of the delay-0 iso-warm rows with the
    LSTM's frontier (docs/iso-warm.png), and of L = 16 (docs/delay.png): every strategy's
    own rows and rows held at W, and the LSTM's rows of docs/at-spend.json at its fixed
    thresholds (its rows held at the peers' rates there are left out: a frontier drawn
    through both would zigzag)."""
    from stream_warmer.evaluation.plot import plot_rows
    from stream_warmer.evaluation.rows import EvalRow

    held = [r for r in _load(DOCS / "at-spend.json") if r.get("warm_rate") is None]
    for name, rows, d in (("iso-warm", _load(DOCS / "iso-warm.json"), 0),
                          ("delay", _load(DOCS / "delay.json"), 16)):
        traces = {r["trace"] for r in rows}
        picked = [r for r in rows + held
                  if r.get("delay", 0) == d and r["k"] == 1 and r["trace"] in traces]
        plot_rows([EvalRow(**r) for r in picked], DOCS / f"{name}.png")


def main(argv: list[str]) -> int:
    check = "--check" in argv
    names = [a for a in argv if a != "--check"]
    if any(n not in SECTIONS for n in names):
        print(__doc__, file=sys.stderr)
        return 2
    text = RESULTS.read_text()
    new = render(text, names or None)
    if check:
        if new != text:
            print(f"{RESULTS}: a table differs from its JSON; run `make results`",
                  file=sys.stderr)
            return 1
        return 0
    RESULTS.write_text(new)
    if not names:
        plots()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
