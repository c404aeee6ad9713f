"""PNG plot of ``evaluate`` rows: hit ratio against warms per request, per strategy.

One panel per (trace, cache fraction); each strategy is a line through its points in
order of warms per request: its own rows (labelled by k) and its iso-warm rows
(``evaluate --warm-rate``, labelled by W) and its fixed-threshold rows
(``evaluate --threshold``, labelled by T), so the line is its frontier and a strategy
up and to the left of another is better. Rows of
several delays (``evaluate --delay``) get a line per (strategy, delay), ``L=`` in the
legend for a delay other than 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from stream_warmer.evaluation.warmeval import EvalRow


def plot_rows(rows: Sequence[EvalRow], path: Path) -> None:
    """Draw ``rows`` into a PNG at ``path`` (matplotlib, Agg backend, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = sorted({(r.trace, r.cache_frac) for r in rows})
    if not panels:
        msg = "no rows to plot"
        raise ValueError(msg)
    cols = min(len(panels), 2)
    nrows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(6 * cols, 4 * nrows), squeeze=False)
    for ax, (trace, frac) in zip(axes.flat, panels, strict=False):
        _panel(ax, [r for r in rows if r.trace == trace and r.cache_frac == frac])
        ax.set_title(f"{trace}, f={frac:g}")
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _panel(ax: Any, rows: Sequence[EvalRow]) -> None:
    lines = list(dict.fromkeys((r.strategy, r.delay) for r in rows))
    for name, delay in lines:
        mine = sorted((r for r in rows if (r.strategy, r.delay) == (name, delay)),
                      key=lambda r: (r.warms_per_request, r.k))
        xs = [r.warms_per_request for r in mine]
        ys = [r.hit_ratio for r in mine]
        ax.plot(xs, ys, marker="o", label=f"{name} L={delay}" if delay else name)
        for r in mine:
            label = f"k={r.k}" if r.held() == "-" else r.held()
            ax.annotate(label, (r.warms_per_request, r.hit_ratio),
                        textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlabel("warms per request")
    ax.set_ylabel("hit ratio")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
