"""``stream-warmer bench inference``: model predictions/s per batch size (CPU here).

Rows ``{mode, batch, vocab, device, predictions_per_s, ms_per_batch}`` for window mode
(whole window each time) and streaming mode (one step from per-tenant state slots),
then the real serve path (``LstmStrategy.observe`` + the windows + ``predict``, on
events built untimed beforehand, as the decoder hands them over) against the bare
model on the same feature-sized head, as a ratio; both are measured in interleaved
rounds and the medians reported. ``serve-path`` runs with the GC heap
frozen after warm-up, as serve runs by default (``batch.gc_freeze``: full collections
over long-lived tracker state are otherwise a large share of the time), and
``serve-gc`` without freezing.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

BATCHES = (1, 16, 64, 256, 1024, 4096)
ROUNDS = 5  # serve-path: interleaved measurements of the bare model and the path
T = TypeVar("T")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``bench inference``."""
    parser.add_argument("--batches", default=",".join(map(str, BATCHES)),
                        help="comma-separated batch sizes")
    parser.add_argument("--vocab", type=int, default=4096, help="classes of the head")
    parser.add_argument("--window", type=int, default=None,
                        help="window length in window mode (default: settings.window.length)")
    parser.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    parser.add_argument("--json", type=Path, default=None, help="write the rows here")


def _time(fn: Callable[[], object], seconds: float) -> float:
    """Seconds per call of ``fn`` (at least 3 calls, about ``seconds`` in all)."""
    return _time_fed(lambda: None, lambda _: fn(), seconds)


def _time_fed(feed: Callable[[], T], fn: Callable[[T], object], seconds: float) -> float:
    """Seconds per call of ``fn`` on a fresh ``feed()`` each time (``feed`` not timed)."""
    fn(feed())
    calls, spent = 0, 0.0
    while calls < 3 or spent < seconds:
        arg = feed()
        start = time.perf_counter()
        fn(arg)
        spent += time.perf_counter() - start
        calls += 1
    return spent / calls


def run(args: argparse.Namespace, settings: Any) -> int:
    """Measure, print the table, write JSON."""
    import torch

    from stream_warmer.model.features import FeatureSpec
    from stream_warmer.model.net import ModelConfig, WarmNet
    from stream_warmer.model.runtime import configure_torch_threads
    from stream_warmer.model.state import StateSlots

    configure_torch_threads(settings.model.infer_threads)
    spec = FeatureSpec(deltas=tuple(range(1, 9)))
    ms = settings.model
    cfg = ModelConfig(cat_vocab=spec.cat_vocab, n_cats=len(spec.cat_sizes), n_bits=8,
                      n_classes=args.vocab, embed_dim=ms.embed_dim, hidden=ms.hidden,
                      layers=ms.layers)
    model = WarmNet(cfg).eval()
    window = args.window or settings.window.length
    rows = []
    for b in (int(x) for x in args.batches.split(",")):
        cats = torch.randint(0, spec.cat_vocab, (b, window, cfg.n_cats))  # (B, T, K)
        bits = torch.rand(b, window, cfg.n_bits)  # (B, T, 2C)
        lengths = torch.full((b,), window)
        states = StateSlots(cfg.layers, b, cfg.hidden, torch.device("cpu"))
        slots = torch.arange(b)
        with torch.inference_mode():
            win_s = _time(lambda: model(cats, bits, lengths), args.seconds)  # noqa: B023
            stream_s = _time(lambda: model.step(cats[:, 0], bits[:, 0], slots, states),  # noqa: B023
                             args.seconds)
        for mode, sec in (("window", win_s), ("streaming", stream_s)):
            rows.append({"mode": mode, "batch": b, "vocab": args.vocab, "device": "cpu",
                         "predictions_per_s": b / sec, "ms_per_batch": sec * 1e3})
    rows.extend(_serve_path(settings, spec, args.seconds))
    _print(rows)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


def _serve_path(settings: Any, spec: Any, seconds: float, batch: int = 1024
                ) -> list[dict[str, Any]]:
    """The real ``observe`` + ``predict`` path vs the bare model with the same head."""
    import torch

    from stream_warmer.events import AccessEvent
    from stream_warmer.model.net import WarmNet
    from stream_warmer.model.state import StateSlots
    from stream_warmer.model.train import build_config
    from stream_warmer.strategies.base import Window
    from stream_warmer.strategies.lstm import LstmStrategy

    model = WarmNet(build_config(spec, settings.model)).eval()
    ms = settings.model.model_copy(update={"budget_online": False, "max_state_slots": batch})
    strategy = LstmStrategy(model, spec, 0.0, ms)
    tick = [0]

    def events() -> list[AccessEvent]:  # the decoder's output: not timed
        tick[0] += 1
        return [AccessEvent(tenant=f"t{i}", key=str(8 * tick[0] + i), ts=tick[0])
                for i in range(batch)]

    def serve(events: list[AccessEvent]) -> None:
        for ev in events:
            strategy.observe(ev)
        strategy.predict([Window(ev.tenant, (ev,)) for ev in events], 1)

    cfg = model.config
    cats = torch.zeros(batch, cfg.n_cats, dtype=torch.long)  # (B, K)
    bits = torch.zeros(batch, cfg.n_bits)  # (B, 2C)
    states = StateSlots(cfg.layers, batch, cfg.hidden, torch.device("cpu"))

    def bare_model() -> None:
        with torch.inference_mode():
            model.step(cats, bits, torch.arange(batch), states)

    # interleaved rounds, medians: the ceiling and the path see the same machine
    bare_s, frozen_s, unfrozen_s = [], [], []
    for _ in range(ROUNDS):
        bare_s.append(_time(bare_model, seconds / ROUNDS))
        unfrozen_s.append(_time_fed(events, serve, seconds / ROUNDS))
        gc.collect()
        gc.freeze()  # what serve does at each checkpoint
        try:
            frozen_s.append(_time_fed(events, serve, seconds / ROUNDS))
        finally:
            gc.unfreeze()
    bare, frozen, unfrozen = (statistics.median(x) for x in (bare_s, frozen_s, unfrozen_s))
    row = {"batch": batch, "vocab": cfg.n_classes, "device": "cpu"}
    return [
        {"mode": "bare-model", **row, "predictions_per_s": batch / bare,
         "ms_per_batch": bare * 1e3},
        *({"mode": mode, **row, "predictions_per_s": batch / sec, "ms_per_batch": sec * 1e3,
           "ratio_to_bare": bare / sec}
          for mode, sec in (("serve-path", frozen), ("serve-gc", unfrozen))),
    ]


def _print(rows: list[dict[str, Any]]) -> None:
    print(f"{'mode':<11} {'batch':>6} {'vocab':>6} {'device':>6} {'pred/s':>12} {'ms/batch':>9}")
    for r in rows:
        extra = f"  ratio {r['ratio_to_bare']:.3f}" if "ratio_to_bare" in r else ""
        print(f"{r['mode']:<11} {r['batch']:>6} {r['vocab']:>6} {r['device']:>6} "
              f"{r['predictions_per_s']:>12,.0f} {r['ms_per_batch']:>9.3f}{extra}")
