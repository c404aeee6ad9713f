#!/usr/bin/env python3
"""Standalone GPU check of the served LSTM (needs only torch and numpy, no services).

It runs the product's own code: ``WarmNet``/``StateSlots`` (stream_warmer/model/net.py)
and ``Staging``/``PrecisionCheck`` (stream_warmer/model/runtime.py), which import
nothing but torch and numpy.

1. Correctness: one set of weights on the CPU and on --device. Window mode and
   streaming mode (StateSlots stepped T times) on the device against the CPU's window
   mode: max |diff| of probabilities and top-1 agreement. Then bf16 autocast against
   fp32 on the device through ``PrecisionCheck`` (top-k set agreement), the check that
   decides whether serve may use bf16. Then ``forward_ragged`` (serve's and the
   evaluator's path: a micro-batch where one tenant has half the steps) on the device
   against the CPU.
2. Speed, at batch sizes up to 65,536 with a 32,768-class head, fp32 and bf16:
   ``window`` (whole window each time, newest step's logits), ``streaming`` (one step
   from state slots), and ``streaming+io`` (what serve does per micro-batch: inputs
   staged from host memory (pinned, non-blocking on CUDA), one step, softmax, top-k on
   the device, the (B, k) result copied back and waited for), and ``ragged`` (one
   micro-batch of that many events in serve's ragged layout, the newest logits back).

Prints a table and writes JSON rows {mode, batch, vocab, device, precision,
predictions_per_s, ms_per_batch}; exits 1 if the device disagrees with the CPU.

    python scripts/gpu_check.py --json gpu.json                 # on the GPU machine
    python scripts/gpu_check.py --device cpu --batches 1,64 --vocab 512 --seconds 0.2
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from stream_warmer.model.net import ModelConfig, WarmNet
from stream_warmer.model.runtime import PrecisionCheck, Staging, autocast
from stream_warmer.model.state import StateSlots


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], object], device: torch.device, seconds: float) -> float:
    """Seconds per call (after one warm-up call; at least 3 calls)."""
    fn()
    sync(device)
    n, start = 0, time.perf_counter()
    while n < 3 or time.perf_counter() - start < seconds:
        fn()
        n += 1
    sync(device)
    return (time.perf_counter() - start) / n


def inputs(cfg: ModelConfig, b: int, t: int, device: torch.device, seed: int = 0
           ) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    cats = torch.randint(0, cfg.cat_vocab, (b, t, cfg.n_cats), generator=g)  # (B, T, K)
    bits = (torch.rand(b, t, cfg.n_bits, generator=g) < 0.1).float()  # (B, T, N)
    return cats.to(device), bits.to(device)


def ragged(cfg: ModelConfig, events: int, device: torch.device, seed: int = 0
           ) -> tuple[torch.Tensor, torch.Tensor, np.ndarray, np.ndarray]:
    """A serve micro-batch of ``events`` steps: one tenant has half, up to 31 share the
    rest (as on cache2k_orm_busy). (cats (N, K), bits (N, n_bits), steps (B, T), lens)."""
    rest = events - events // 2
    k = min(31, rest)
    lens = np.array([n for n in [events // 2] + [rest // k + (i < rest % k) for i in range(k)]
                     if n > 0], dtype=np.int64)
    cats, bits = inputs(cfg, 1, int(lens.sum()), device, seed)
    steps = np.zeros((len(lens), int(lens.max())), dtype=np.int64)
    start = 0
    for r, n in enumerate(lens):  # row r's steps, contiguous in the flat order
        steps[r, :n] = np.arange(start, start + n)
        start += int(n)
    return cats[0], bits[0], steps, lens


def check(cpu: WarmNet, dev: WarmNet, device: torch.device, args: argparse.Namespace
          ) -> dict[str, Any]:
    cfg, n, t = cpu.config, 256, args.window
    cats, bits = inputs(cfg, n, t, torch.device("cpu"))
    lengths = torch.full((n,), t)
    with torch.inference_mode():
        p_ref = torch.softmax(cpu(cats, bits, lengths), -1)  # (N, C)
        p_win = torch.softmax(dev(cats.to(device), bits.to(device), lengths).float().cpu(), -1)
        slots = StateSlots(cfg.layers, n, cfg.hidden, device)
        ids = torch.arange(n, device=device)
        for step in range(t):  # streaming mode on the device, one step at a time
            logits = dev.step(cats[:, step].to(device), bits[:, step].to(device), ids, slots)
        p_stream = torch.softmax(logits.float().cpu(), -1)
        precision = PrecisionCheck("bf16", predictions=n * 4, top_k=args.top_k,
                                   min_agreement=args.min_agreement)
        for seed in range(4):
            c, b = inputs(cfg, n, t, device, seed + 1)
            ref = dev(c, b, lengths)
            with autocast("bf16", device):
                cand = dev(c, b, lengths)
            precision.compare(ref, cand)
        r_cats, r_bits, steps, lens = ragged(cfg, 2048, torch.device("cpu"))
        zero = torch.zeros(cfg.layers, len(lens), cfg.hidden)
        r_ref, _ = cpu.forward_ragged(r_cats, r_bits, steps, lens, (zero, zero), every_step=True)
        zero_d = zero.to(device)
        r_dev, _ = dev.forward_ragged(r_cats.to(device), r_bits.to(device), steps, lens,
                                      (zero_d, zero_d), every_step=True)
        ragged_diff = (torch.softmax(r_ref, -1) - torch.softmax(r_dev.float().cpu(), -1)).abs()
    return {
        "ragged_max_abs_diff": float(ragged_diff.max()),
        "window_max_abs_diff": float((p_ref - p_win).abs().max()),
        "stream_max_abs_diff": float((p_ref - p_stream).abs().max()),
        "top1_agreement": float((p_ref.argmax(-1) == p_win.argmax(-1)).float().mean()),
        "bf16_topk_agreement": precision.agreement,
        "bf16_top_k": args.top_k,
        "bf16_served": precision.active == "bf16",
    }


def bench(dev: WarmNet, device: torch.device, b: int, precision: str,
          args: argparse.Namespace) -> dict[str, float]:
    cfg = dev.config
    cats, bits = inputs(cfg, b, args.window, device)
    lengths = torch.full((b,), args.window)
    slots = StateSlots(cfg.layers, b, cfg.hidden, device)
    ids = torch.arange(b, device=device)
    host_cats, host_bits = cats[:, 0].cpu(), bits[:, 0].cpu()
    stage = Staging(device)

    def serve_step() -> np.ndarray:
        c, x = stage.to_device("cats", host_cats), stage.to_device("bits", host_bits)
        with autocast(precision, device):
            logits = dev.step(c, x, ids, slots)  # (B, C)
        top = torch.softmax(logits.float(), -1).topk(args.top_k, dim=-1)  # (B, k)
        return stage.to_host("top", top.values)

    with torch.inference_mode(), autocast(precision, device):
        times = {
            "window": timed(lambda: dev(cats, bits, lengths).argmax(-1), device, args.seconds),
            "streaming": timed(lambda: dev.step(cats[:, 0], bits[:, 0], ids, slots).argmax(-1),
                               device, args.seconds),
        }
    r_cats, r_bits, steps, lens = ragged(cfg, b, device)
    state = (torch.zeros(cfg.layers, len(lens), cfg.hidden, device=device),) * 2

    def ragged_step() -> torch.Tensor:  # what serve runs per micro-batch (last_only)
        with autocast(precision, device):
            logits, _ = dev.forward_ragged(r_cats, r_bits, steps, lens, state, every_step=False)
        return stage.to_host("ragged", logits.float())

    with torch.inference_mode():
        times["streaming+io"] = timed(serve_step, device, args.seconds)
        times["ragged"] = timed(ragged_step, device, args.seconds)
    return times


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batches", default="1,64,1024,4096,16384,65536")
    ap.add_argument("--vocab", type=int, default=32768, help="classes of the head")
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--embed", type=int, default=64)
    ap.add_argument("--window", type=int, default=32)
    ap.add_argument("--n-cats", type=int, default=4)
    ap.add_argument("--n-bits", type=int, default=32)
    ap.add_argument("--cat-vocab", type=int, default=256)
    ap.add_argument("--top-k", type=int, default=4)
    ap.add_argument("--min-agreement", type=float, default=0.999)
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    cfg = ModelConfig(cat_vocab=args.cat_vocab, n_cats=args.n_cats, n_bits=args.n_bits,
                      n_classes=args.vocab, embed_dim=args.embed, hidden=args.hidden,
                      layers=args.layers)
    cpu = WarmNet(cfg).eval()
    dev = WarmNet(cfg).to(device).eval()
    dev.load_state_dict(cpu.state_dict())
    agreement = check(cpu, dev, device, args)
    print("agreement:", json.dumps(agreement))
    rows = []
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"{'mode':<13} {'batch':>6} {'vocab':>6} {'prec':>5} {'pred/s':>14} {'ms/batch':>9}")
    for b in (int(x) for x in args.batches.split(",")):
        for precision in args.precisions.split(","):
            for mode, sec in bench(dev, device, b, precision, args).items():
                rows.append({"mode": mode, "batch": b, "vocab": args.vocab,
                             "device": str(device), "precision": precision,
                             "predictions_per_s": b / sec, "ms_per_batch": sec * 1e3})
                print(f"{mode:<13} {b:>6} {args.vocab:>6} {precision:>5} {b / sec:>14,.0f} "
                      f"{sec * 1e3:>9.3f}", flush=True)
    ok = (agreement["top1_agreement"] > 0.99 and agreement["stream_max_abs_diff"] < 1e-3
          and agreement["ragged_max_abs_diff"] < 1e-3)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"device_name": name, "agreement": agreement, "outputs_agree": ok,
                       "rows": rows, "numpy": np.__version__, "torch": torch.__version__},
                      fh, indent=2)
    print("outputs agree" if ok else "OUTPUTS DISAGREE")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
