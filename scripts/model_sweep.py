"""The LSTM's model-size sweep and feature ablation: ``evaluate`` rows per configuration.

    .venv/bin/python scripts/model_sweep.py [--traces T,...] [--json docs/model-sweep.json]
                                            [--plot docs/model-sweep.png] [--only size|ablation]

Each configuration is the shipped defaults with one setting changed, passed to
``stream-warmer evaluate --strategies lstm --cache-frac 0.01 --k 1 --warm-rate 0.1,0.3``
as the
environment variables a user would set (``STREAM_WARMER_MODEL__HIDDEN`` ...), so
training, the threshold fit, the budget and the replay are those of the product.
The default configuration also runs markov1 and nextkey (the yardsticks). Per
configuration it records the parameter count and the bare model's cost per
serving step (``forward_ragged``, one step each for a batch of 1,024 tenants, one
thread, the median of repeated calls, measured here), so the table and the plot
set hit ratio against model size and inference cost.

- ``size``: hidden 16 / 32 / 64 / 128, layers 1 / 2, embedding 8 / 16 / 32, training
  window (``trainer.seq_len``) 16 / 64 / 128;
- ``ablation``: each per-step input dropped alone (``model.drop_inputs``).

One evaluation at a time with one torch thread for training and for the replay:
run it on a quiet machine (rows move in the 4th decimal under load, see RESULTS.md).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "traces"
SHIPPED = ROOT / "stream_warmer" / "data" / "traces" / "cache2k_orm_busy_300k.csv.gz"
DEFAULT_TRACES = (str(SHARED / "lirs_mix5.csv.gz"), str(SHARED / "cloudphysics_vm.csv.gz"),
                  f"{SHIPPED}@150000")  # path@N: the first N events

# iso-warm rows too (``evaluate --warm-rate``): at its own rate a configuration may
# buy hits with warms (the shipped serve has no warm budget), so configurations are
# compared held at the same effective warms per request
WARM_RATES = (0.1, 0.3)
DEFAULTS = {"embed_dim": 16, "hidden": 64, "layers": 1, "seq_len": 64}
SIZE = [("default", {})] + [
    (f"hidden={h}", {"MODEL__HIDDEN": str(h)}) for h in (16, 32, 128)] + [
    ("layers=2", {"MODEL__LAYERS": "2"})] + [
    (f"embed_dim={e}", {"MODEL__EMBED_DIM": str(e)}) for e in (8, 32)] + [
    (f"seq_len={t}", {"TRAINER__SEQ_LEN": str(t)}) for t in (16, 128)]
INPUTS = ("delta", "top_count", "n_succ", "op", "gap", "size", "tenant", "known", "correct",
          "present")
ABLATION = [(f"-{name}", {"MODEL__DROP_INPUTS": json.dumps([name])}) for name in INPUTS]


def _sizes(env: dict[str, str]) -> dict[str, int]:
    sizes = dict(DEFAULTS)
    for key, value in env.items():
        name = key.split("__", 1)[1].lower()
        if name in sizes:
            sizes[name] = int(value)
    return sizes


def step_cost(sizes: dict[str, int], batch: int = 1024, reps: int = 200) -> tuple[int, float]:
    """(parameters, median microseconds of one serving step for ``batch`` tenants) of a
    model of ``sizes`` over the default feature spec (8 deltas, 2 ranks)."""
    import numpy as np
    import torch

    from stream_warmer.model.features import FeatureSpec
    from stream_warmer.model.net import ModelConfig, WarmNet

    torch.set_num_threads(1)
    spec = FeatureSpec(deltas=tuple(range(1, 9)))
    cfg = ModelConfig(cat_vocab=spec.cat_vocab, n_cats=len(spec.cat_sizes),
                      n_bits=2 * spec.n_classes, n_classes=spec.n_classes,
                      embed_dim=sizes["embed_dim"], hidden=sizes["hidden"],
                      layers=sizes["layers"])
    torch.manual_seed(0)
    model = WarmNet(cfg).eval()
    params = sum(p.numel() for p in model.parameters())
    cats = torch.randint(0, spec.cat_vocab, (batch, cfg.n_cats))
    bits = torch.randint(0, 2, (batch, cfg.n_bits)).float()
    steps = np.arange(batch, dtype=np.int64)[:, None]
    lens = np.ones(batch, dtype=np.int64)
    state = (torch.zeros(cfg.layers, batch, cfg.hidden), torch.zeros(cfg.layers, batch, cfg.hidden))
    times = []
    with torch.inference_mode():
        for _ in range(reps):
            t0 = time.perf_counter()
            model.forward_ragged(cats, bits, steps, lens, state, every_step=False)
            times.append(time.perf_counter() - t0)
    return params, float(np.median(times) * 1e6)


def evaluate(traces: list[str], env: dict[str, str], strategies: str) -> list[dict[str, Any]]:
    """``evaluate`` rows of ``traces`` under ``env`` (one process per max-events group)."""
    groups: dict[str | None, list[str]] = {}
    for trace in traces:
        path, _, n = trace.partition("@")
        groups.setdefault(n or None, []).append(path)
    rows: list[dict[str, Any]] = []
    for n, paths in groups.items():
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "rows.json"
            cmd = [str(ROOT / ".venv" / "bin" / "stream-warmer"), "evaluate", *paths,
                   "--strategies", strategies, "--cache-frac", "0.01", "--k", "1",
                   "--warm-rate", ",".join(map(str, WARM_RATES)),
                   "--json", str(out), "--no-progress"]
            if n:
                cmd += ["--max-events", n]
            full_env = {**os.environ, "STREAM_WARMER_MODEL__CPU_THREADS": "1",
                        "STREAM_WARMER_MODEL__INFER_THREADS": "1",
                        **{f"STREAM_WARMER_{k}": v for k, v in env.items()}}
            subprocess.run(cmd, check=True, env=full_env, stdout=subprocess.DEVNULL)
            rows += json.loads(out.read_text())
    return rows


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--traces", default=",".join(DEFAULT_TRACES),
                        help="comma-separated; PATH@N evaluates the first N events")
    parser.add_argument("--json", type=Path, default=ROOT / "docs" / "model-sweep.json")
    parser.add_argument("--plot", type=Path, default=ROOT / "docs" / "model-sweep.png")
    parser.add_argument("--only", choices=("size", "ablation"), default=None)
    parser.add_argument("--recost", action="store_true",
                        help="only measure the step cost of the configurations in --json "
                             "again (on a quiet machine) and rewrite it and the plot")
    args = parser.parse_args(argv)
    if args.recost:
        return recost(args.json, args.plot)
    traces = args.traces.split(",")
    configs = [("size", name, env) for name, env in SIZE] if args.only != "ablation" else []
    if args.only != "size":
        configs += [("ablation", name, env) for name, env in ABLATION]
    out: list[dict[str, Any]] = []
    for sweep, name, env in configs:
        started = time.monotonic()
        strategies = "markov1,nextkey,lstm" if name == "default" else "lstm"
        params, step_us = step_cost(_sizes(env))
        for row in evaluate(traces, env, strategies):
            row.update(sweep=sweep, config=name, params=params, step_us=round(step_us, 1))
            out.append(row)
        print(f"{sweep:9} {name:16} {time.monotonic() - started:6.0f} s  params {params:7d}  "
              f"step {step_us:7.0f} us  " + "  ".join(
                  f"{r['trace']}={r['hit_ratio']:.4f}" for r in out
                  if r["config"] == name and r["strategy"] == "lstm"
                  and r["warm_rate"] is None), flush=True)
        args.json.write_text(json.dumps(out, indent=1) + "\n")  # partial results survive
    if args.plot and args.only != "ablation":
        plot(out, args.plot)
    return 0


def recost(path: Path, plot_path: Path | None) -> int:
    """Measure each configuration's step cost again; rewrite ``path`` (and the plot)."""
    rows = json.loads(path.read_text())
    envs = dict(SIZE + ABLATION)
    for name in dict.fromkeys(r["config"] for r in rows):
        params, step_us = step_cost(_sizes(envs[name]))
        for r in rows:
            if r["config"] == name:
                r.update(params=params, step_us=round(step_us, 1))
        print(f"{name:16} params {params:7d}  step {step_us:7.0f} us", flush=True)
    path.write_text(json.dumps(rows, indent=1) + "\n")
    if plot_path:
        plot(rows, plot_path)
    return 0


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Hit ratio against parameters and against step cost, one line per trace."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    size = [r for r in rows if r["sweep"] == "size" and r["strategy"] == "lstm"
            and r["warm_rate"] == max(WARM_RATES)]
    for trace in dict.fromkeys(r["trace"] for r in size):
        mine = sorted((r for r in size if r["trace"] == trace), key=lambda r: r["params"])
        for ax, x in zip(axes, ("params", "step_us"), strict=True):
            ax.scatter([r[x] for r in mine], [r["hit_ratio"] for r in mine], label=trace)
            for r in mine:
                ax.annotate(r["config"], (r[x], r["hit_ratio"]), fontsize=6)
    axes[0].set_xscale("log")
    axes[0].set_xlabel("parameters")
    axes[1].set_xlabel("bare model, us per serving step (batch 1,024, 1 thread)")
    for ax in axes:
        ax.set_ylabel(f"hit ratio (f=0.01, k=1, held at {max(WARM_RATES)} warms/request)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
