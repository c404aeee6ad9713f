"""What the demo shows: scrapes of the warmer's and trainer's ``/metrics``, the live
progress line, and the closing summary."""

from __future__ import annotations

import math
import time
import urllib.request
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stream_warmer.demo import Replayer


@dataclass(slots=True)
class Sample:
    """One scrape of the warmer's and trainer's metrics."""

    t: float
    events: float = 0.0
    warms: float = 0.0
    precision: float = float("nan")
    useful: float = 0.0
    swaps: float = 0.0
    versions: set[str] = field(default_factory=set)
    rounds: dict[str, float] = field(default_factory=dict)
    training: bool = False


def scrape(port: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Parse a Prometheus text page into ``{name: [(labels, value), ...]}``; empty if down."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            text = resp.read().decode()
    except OSError:
        return {}
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((dict(s.labels), float(s.value)))
    return out


def sample(warmer_port: int, trainer_port: int) -> Sample:
    """Read the numbers the progress line shows."""
    w, t = scrape(warmer_port), scrape(trainer_port)

    def total(page: dict[str, list[tuple[dict[str, str], float]]], name: str) -> float:
        return sum(v for _, v in page.get(name, []))

    versions = {
        lab.get("version", "?") for lab, v in w.get("stream_warmer_model_version_info", []) if v > 0
    }
    rounds = {
        lab.get("result", "?"): v for lab, v in t.get("stream_warmer_trainer_rounds_total", [])
    }
    prec = w.get("stream_warmer_warm_precision", [])
    return Sample(
        t=time.monotonic(),
        events=total(w, "stream_warmer_events_total"),
        warms=total(w, "stream_warmer_warm_commands_total"),
        precision=prec[0][1] if prec else float("nan"),
        useful=total(w, "stream_warmer_useful_warms_total"),
        swaps=total(w, "stream_warmer_strategy_swaps_total"),
        versions=versions,
        rounds=rounds,
        training=total(t, "stream_warmer_trainer_round_running") > 0,
    )


def _ratio(part: float, whole: float) -> str:
    return f"{part / whole:6.1%}" if whole else "    - "


def progress_line(prev: Sample, now: Sample, produced: int, hits: tuple[float, float]) -> str:
    """One line of live progress (``hits``: the app's hit ratio with and without warming)."""
    dt = max(now.t - prev.t, 1e-9)
    version = ",".join(sorted(now.versions)) or "-"
    rounds = " ".join(f"{k}={int(v)}" for k, v in sorted(now.rounds.items())) or "-"
    return (
        f"replayed {produced:>8,}  consumed {int(now.events):>8,}  "
        f"{(now.events - prev.events) / dt:>8,.0f} ev/s  "
        f"{(now.warms - prev.warms) / dt:>7,.0f} warm/s  "
        f"hit ratio {_share(hits[0])} (no warming {_share(hits[1])})  "
        f"useful {_ratio(now.useful, now.warms)}  "
        f"model {version} (swaps {int(now.swaps)})  trainer rounds {rounds}"
    )


def _share(value: float) -> str:
    return "  -  " if math.isnan(value) else f"{value:.3f}"  # nan before the first request


def settled(now: Sample) -> bool:
    """No training round is in progress and the warmer swapped in every version that
    was published."""
    return not now.training and now.swaps >= now.rounds.get("published", 0)


def summarize(
    replayer: Replayer, first: Sample, last: Sample, warmer_rc: int | None, trainer_rc: int | None
) -> int:
    """Print the closing summary; non-zero when something failed or fell behind."""
    seconds = max(last.t - first.t, 1e-9)
    print("\n== demo summary ==")
    print(f"events replayed        {replayer.produced:,}")
    print(f"events consumed        {int(last.events):,} ({last.events / seconds:,.0f}/s average)")
    live, none = replayer.hit_ratios()
    print(f"cache hit ratio        {_share(live)} with warming, {_share(none)} without "
          f"(exact LRU of {replayer.capacity:,} objects, every request; both live)")
    print(f"warm commands          {int(last.warms):,}")
    print(f"useful warms so far    {int(last.useful):,} of {int(last.warms):,} "
          f"({_ratio(last.useful, last.warms)}; a warm counts as wasted only after the horizon)")
    print(f"online warm precision  {last.precision:.3f} (useful / resolved warms)")
    print(
        f"model versions served  {', '.join(sorted(last.versions)) or '-'} "
        f"(hot swaps {int(last.swaps)})"
    )
    print(f"trainer rounds         {last.rounds or '-'}")
    problems = []
    if replayer.error is not None:
        problems.append(f"replay failed: {replayer.error}")
    if warmer_rc is not None:
        problems.append(f"the warmer exited early with {warmer_rc}")
    if trainer_rc is not None:
        problems.append(f"the trainer exited early with {trainer_rc}")
    if last.events < replayer.produced:
        problems.append("the warmer did not consume everything in time")
    for p in problems:
        print(f"problem: {p}")
    return 1 if problems else 0
