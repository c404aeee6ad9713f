#!/usr/bin/env python3
"""Memory per tenant of the LSTM serve path, measured (docs/RESULTS.md, "Memory per tenant").

Runs the product's own pieces with the shipped settings: ``TenantWindows`` (serve's
windows) and ``LstmStrategy`` (``observe`` + ``predict`` per micro-batch: the native
tracker's successor tables and last steps, the recurrent state slots), over synthetic
tenants that each touch K distinct keys in a loop. It reports bytes per tenant for
each part: the tracker's own count (``memory_bytes``, from capacities), the windows'
Python heap (tracemalloc), the state slots (the slot table and a fixed tensor,
``LstmStrategy.memory_bytes``), and the process RSS growth as a cross-check. The bound
at 1M tenants follows from the settings: at most ``window.max_tenants`` tenants are
held (the rest are evicted, and counted); their successor tables together are held to
one memory budget (``FeatureSpec.table_bytes``, 512 MiB; native/src/table.rs). The
50,000-key row measures a tenant with many keys.

    .venv/bin/python scripts/memory_per_tenant.py --json docs/memory-per-tenant.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from stream_warmer.events import AccessEvent
from stream_warmer.model.features import FeatureSpec
from stream_warmer.model.net import WarmNet
from stream_warmer.model.train import build_config
from stream_warmer.serve.windows import TenantWindows
from stream_warmer.settings import Settings
from stream_warmer.strategies.base import Window
from stream_warmer.strategies.lstm import LstmStrategy


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def measure(settings: Settings, tenants: int, keys: int, batch: int = 1024) -> dict[str, float]:
    spec = FeatureSpec(deltas=tuple(range(1, 9)))  # the table bounds training ships
    model = WarmNet(build_config(spec, settings.model)).eval()
    ms = settings.model.model_copy(update={"budget_online": False,
                                           "max_state_slots": max(tenants, 1)})
    rss0 = rss_bytes()
    strategy = LstmStrategy(model, spec, 0.0, ms)
    win_settings = settings.window.model_copy(update={"max_tenants": max(tenants, 1)})
    windows = TenantWindows(win_settings)
    tracemalloc.start()
    for rnd in range(max(keys, settings.window.length)):  # every tenant: K keys, windows full
        evs = [AccessEvent(tenant=f"tenant-{t:07d}", key=str(t * 1_000_003 + rnd % keys),
                           ts=rnd) for t in range(tenants)]
        for start in range(0, tenants, batch):
            chunk = evs[start : start + batch]
            for ev in chunk:
                strategy.observe(ev)
                windows.append(0, ev, 0.0)
            strategy.predict([Window(ev.tenant, (ev,)) for ev in chunk], 1)
    del evs, chunk
    win_heap = sum(s.size for s in tracemalloc.take_snapshot().statistics("filename")
                   if "windows.py" in str(s.traceback) or "events" in str(s.traceback))
    tracemalloc.stop()
    rss = rss_bytes() - rss0
    held = strategy.memory_bytes()
    return {"tenants": tenants, "keys_per_tenant": keys,
            "tracker_bytes_per_tenant": held["tracker"] / tenants,
            "window_bytes_per_tenant": win_heap / tenants,
            "slot_bytes_per_tenant": (held["slot_table"] + held["state_tensors"]) / tenants,
            "rss_growth_bytes_per_tenant": rss / tenants}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=20_000)
    parser.add_argument("--keys", default="1,16,256,50000", help="distinct keys per tenant")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    settings = Settings()
    rows = [measure(settings, args.tenants if int(k) <= 256 else 8, int(k))
            for k in args.keys.split(",")]
    held = settings.window.max_tenants
    print(f"{'keys/tenant':>11} {'tracker B':>10} {'windows B':>10} {'slots B':>8} "
          f"{'RSS B':>8} {'bound at 1M tenants (held ' + format(held, ',') + ')':>34}")
    for r in rows:
        per = (r["tracker_bytes_per_tenant"] + r["window_bytes_per_tenant"]
               + r["slot_bytes_per_tenant"])
        r["bound_bytes_at_1m_tenants"] = per * min(1_000_000, held)
        print(f"{r['keys_per_tenant']:>11,} {r['tracker_bytes_per_tenant']:>10,.0f} "
              f"{r['window_bytes_per_tenant']:>10,.0f} {r['slot_bytes_per_tenant']:>8,.0f} "
              f"{r['rss_growth_bytes_per_tenant']:>8,.0f} "
              f"{r['bound_bytes_at_1m_tenants'] / 2**20:>30,.0f} MiB")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"held_tenants": held, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
