#!/usr/bin/env python3
"""Standalone GPU check for the stream_warmer LSTM (needs only torch and numpy).

1. Builds the same shape of model as ``stream_warmer.model.net.WarmNet`` (embedding,
   multi-layer LSTM, FC head), copies one set of weights to CPU and to --device.
2. Checks the device's outputs against the CPU's (window and streaming mode; top-1
   agreement and max |diff| of probabilities).
3. Times window and streaming mode at batch sizes up to 65,536 with a 32,768-class
   head; prints a table and writes JSON rows {mode, batch, vocab, device,
   predictions_per_s, ms_per_batch}.

    python scripts/gpu_check.py --device cuda --json gpu.json
    python scripts/gpu_check.py --device cpu --batches 1,64,1024 --vocab 4096   # smoke run
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, vocab_in: int, n_cats: int, n_bits: int, classes: int, embed: int,  # noqa: PLR0917
                 hidden: int, layers: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_in, embed)
        self.bits_proj = nn.Linear(n_bits, embed)
        self.in_proj = nn.Linear(n_cats * embed, embed)
        self.lstm = nn.LSTM(embed, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, classes)

    def seq(self, cats, bits, state=None):
        b, t, _ = cats.shape  # (B, T, K)
        x = torch.tanh(self.in_proj(self.embed(cats).reshape(b, t, -1)) + self.bits_proj(bits))
        out, state = self.lstm(x, state)  # (B, T, H)
        return self.head(out), state  # (B, T, C)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: torch.device, seconds: float) -> float:
    fn()
    sync(device)
    n, start = 0, time.perf_counter()
    while n < 3 or time.perf_counter() - start < seconds:
        fn()
        n += 1
    sync(device)
    return (time.perf_counter() - start) / n


def check(cpu: Net, dev: Net, device: torch.device, args: argparse.Namespace) -> dict:
    g = torch.Generator().manual_seed(0)
    cats = torch.randint(0, args.cat_vocab, (256, args.window, args.n_cats), generator=g)
    bits = torch.rand(256, args.window, args.n_bits, generator=g)
    with torch.inference_mode():
        ref, _ = cpu.seq(cats, bits)
        got, _ = dev.seq(cats.to(device), bits.to(device))
        p_ref, p_got = torch.softmax(ref, -1), torch.softmax(got.float().cpu(), -1)
        state, steps = None, []
        for t in range(args.window):  # streaming mode, one step at a time on the device
            out, state = dev.seq(cats[:, t : t + 1].to(device), bits[:, t : t + 1].to(device),
                                 state)
            steps.append(out.float().cpu())
        p_stream = torch.softmax(torch.cat(steps, 1), -1)
    return {
        "window_max_abs_diff": float((p_ref - p_got).abs().max()),
        "stream_max_abs_diff": float((p_ref - p_stream).abs().max()),
        "top1_agreement": float((p_ref.argmax(-1) == p_got.argmax(-1)).float().mean()),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batches", default="1,64,1024,4096,16384,65536")
    ap.add_argument("--vocab", type=int, default=32768)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--embed", type=int, default=64)
    ap.add_argument("--window", type=int, default=32)
    ap.add_argument("--n-cats", type=int, default=8)
    ap.add_argument("--n-bits", type=int, default=32)
    ap.add_argument("--cat-vocab", type=int, default=256)
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    cpu = Net(args.cat_vocab, args.n_cats, args.n_bits, args.vocab, args.embed, args.hidden,
              args.layers).eval()
    dev = Net(args.cat_vocab, args.n_cats, args.n_bits, args.vocab, args.embed, args.hidden,
              args.layers).to(device).eval()
    dev.load_state_dict(cpu.state_dict())
    agreement = check(cpu, dev, device, args)
    print("agreement:", json.dumps(agreement))
    rows = []
    for b in (int(x) for x in args.batches.split(",")):
        cats = torch.randint(0, args.cat_vocab, (b, args.window, args.n_cats), device=device)
        bits = torch.rand(b, args.window, args.n_bits, device=device)
        h = torch.zeros(args.layers, b, args.hidden, device=device)
        with torch.inference_mode():
            win = timed(lambda: dev.seq(cats, bits)[0][:, -1].argmax(-1),  # noqa: B023
                        device, args.seconds)
            stream = timed(lambda: dev.seq(cats[:, :1], bits[:, :1], (h, h))[0].argmax(-1),  # noqa: B023
                           device, args.seconds)
        for mode, sec in (("window", win), ("streaming", stream)):
            rows.append({"mode": mode, "batch": b, "vocab": args.vocab, "device": str(device),
                         "predictions_per_s": b / sec, "ms_per_batch": sec * 1e3})
            print(f"{mode:<10} {b:>6} {args.vocab:>6} {device!s:>6} {b / sec:>14,.0f} "
                  f"{sec * 1e3:>9.3f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"agreement": agreement, "rows": rows,
                       "numpy": np.__version__, "torch": torch.__version__}, fh, indent=2)
    ok = agreement["top1_agreement"] > 0.99 and agreement["stream_max_abs_diff"] < 1e-3
    print("outputs agree" if ok else "OUTPUTS DISAGREE")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
