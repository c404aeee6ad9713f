"""Output classes and per-step input features, fitted offline and shipped as plain arrays.

The output classes are *candidate generators*, not absolute keys, so one model serves
any key space:

* ``0`` NO-WARM (correct when no candidate names the next key),
* ``1..R`` the rank-r successor of the current key in an online per-tenant successor
  table (updated on every observed access, like the ``markov`` baseline),
* ``SIZE`` ``key + size // unit`` (block traces step by the request size; the unit is
  chosen on the training data), ``STRIDE`` ``key + last delta``,
* one class per frequent key delta of the training data (integer keys),
* ``AHEAD`` ``1..A`` the top successors of the current key in a per-tenant *window*
  table (keys asked for within the tenant's next ``ahead_window`` requests once a
  warm would land, ``ahead_lead`` requests of the stream later: PG's graph past the
  delay) that no class above names (native/src/ahead.rs; none when ``ahead_ranks``
  is 0).

Per-step inputs: categorical ids (signed log2 key delta, successor-count buckets, op,
inter-arrival and size quantile buckets from scikit-learn's ``KBinsDiscretizer``,
hashed tenant, key-known) and bit vectors (classes correct at the previous step,
classes with a candidate now). ``FeatureSpec`` is JSON; nothing is pickled.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from stream_warmer.events import AccessEvent, is_ascii_digits

Key = int | str
DELTA_BITS = 40
TABLE_BYTES = 512 << 20  # the successor tables' default memory budget (strategy.markov_table_mb)
MAX_KEYS = 10_000_000  # the default per-tenant cap on top of it (off)
TENANT_BUCKETS = 32
OPS = {"get": 0, "set": 1, "del": 2}
CAT_NAMES = ("delta", "top_count", "n_succ", "op", "gap", "size", "tenant", "known")
INPUT_NAMES = (*CAT_NAMES, "correct", "present")  # what ``model.drop_inputs`` may name


@dataclass(frozen=True)
class FeatureSpec:
    """Everything needed to turn events into model inputs; JSON-serialisable."""

    ranks: int = 2
    deltas: tuple[int, ...] = ()
    size_unit: int = 1
    max_successors: int = 8
    max_keys_per_tenant: int = MAX_KEYS
    gap_edges: tuple[float, ...] = ()
    size_edges: tuple[float, ...] = ()
    ahead_window: int = 0
    ahead_ranks: int = 0
    # successors kept per key of the window table (0: max_successors, as manifests
    # written before the field had it)
    ahead_successors: int = 0
    # the window starts once a warm named at the key would land: this many requests of
    # the stream later (the delay the model is trained for; 0 in manifests before it)
    ahead_lead: int = 0
    # the byte budget of all tenants' successor tables (native/src/table.rs); manifests
    # written before it existed load with the default (and their per-tenant cap)
    table_bytes: int = TABLE_BYTES
    version: int = 1
    cat_sizes: tuple[int, ...] = field(init=False)

    def with_lead(self, lead: int) -> FeatureSpec:
        """This spec with its window tables counting from ``lead`` requests after each key
        (no lead without AHEAD classes, as no window)."""
        return replace(self, ahead_lead=lead if self.ahead_ranks else 0)

    def __post_init__(self) -> None:
        sizes = (2 + 2 * (DELTA_BITS + 1), 16, self.max_successors + 1, len(OPS),
                 len(self.gap_edges) + 2, len(self.size_edges) + 2, TENANT_BUCKETS, 2)
        object.__setattr__(self, "cat_sizes", sizes)

    @property
    def n_classes(self) -> int:
        """NO-WARM + ranks + SIZE + STRIDE + deltas + AHEAD."""
        return 3 + self.ranks + len(self.deltas) + self.ahead_ranks

    @property
    def cat_offsets(self) -> npt.NDArray[np.int64]:
        """Offset of each categorical column in the shared embedding table."""
        return np.concatenate([[0], np.cumsum(self.cat_sizes)[:-1]]).astype(np.int64)

    @property
    def cat_vocab(self) -> int:
        """Rows of the shared embedding table."""
        return int(sum(self.cat_sizes))

    def to_json(self) -> dict[str, Any]:
        """Plain dict for the manifest."""
        data = asdict(self)
        data.pop("cat_sizes")
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FeatureSpec:
        """Inverse of ``to_json`` (raises TypeError/ValueError on a bad dict)."""
        args = dict(data)
        for name in ("deltas", "gap_edges", "size_edges"):
            args[name] = tuple(args.get(name, ()))
        spec = cls(**args)
        if (spec.ranks < 1 or spec.size_unit < 1 or spec.max_successors < spec.ranks
                or spec.max_keys_per_tenant < 1 or spec.table_bytes < 1
                or spec.ahead_ranks < 0 or (spec.ahead_ranks > 0) > (spec.ahead_window > 0)
                or spec.ahead_successors < 0 or spec.ahead_lead < 0):
            msg = f"invalid feature spec {data!r}"
            raise ValueError(msg)
        return spec


def parse_key(key: str) -> Key:
    """The key as an int when it is a canonical decimal integer (ASCII digits, no
    leading zero, int64), else the string."""
    if is_ascii_digits(key) and (key == "0" or key[0] != "0") and len(key) < 19:
        return int(key)
    return key


def fit_spec(events: Sequence[AccessEvent], *, n_deltas: int = 8, ranks: int = 2,
             max_successors: int = 8, max_keys_per_tenant: int = MAX_KEYS,
             table_bytes: int = TABLE_BYTES, ahead_window: int = 0, ahead_ranks: int = 0,
             ahead_successors: int = 0, ahead_lead: int = 0) -> FeatureSpec:
    """Fit deltas, the size unit and the quantile buckets on training events."""
    last: dict[str, tuple[Key, int, int]] = {}
    deltas: Counter[int] = Counter()
    unit_hits: Counter[int] = Counter()
    gaps: list[float] = []
    for ev in events:
        key = parse_key(ev.key)
        prev = last.get(ev.tenant)
        if prev is not None:
            pkey, pts, psize = prev
            gaps.append(math.log1p(max(0, ev.ts - pts)))
            if isinstance(key, int) and isinstance(pkey, int) and key != pkey:
                deltas[key - pkey] += 1
                _count_units(unit_hits, key - pkey, psize)
        last[ev.tenant] = (key, ev.ts, ev.size or 1)
    sizes = [math.log1p(ev.size or 0) for ev in events[:: max(1, len(events) // 200_000)]]
    return FeatureSpec(
        ranks=ranks,
        deltas=tuple(d for d, _ in deltas.most_common(n_deltas)),
        size_unit=unit_hits.most_common(1)[0][0] if unit_hits else 1,
        max_successors=max_successors,
        max_keys_per_tenant=max_keys_per_tenant,
        table_bytes=table_bytes,
        gap_edges=_quantile_edges(gaps[:: max(1, len(gaps) // 200_000)]),
        size_edges=_quantile_edges(sizes),
        ahead_window=ahead_window if ahead_ranks else 0,
        ahead_ranks=ahead_ranks,
        ahead_successors=ahead_successors if ahead_ranks else 0,
    ).with_lead(ahead_lead)


def _count_units(hits: Counter[int], delta: int, last_size: int) -> None:
    for shift in range(17):
        unit = 1 << shift
        if last_size // unit >= 1 and delta == last_size // unit:
            hits[unit] += 1


def _quantile_edges(values: list[float], n_bins: int = 8) -> tuple[float, ...]:
    """Inner bin edges of a quantile ``KBinsDiscretizer`` (empty when values are constant)."""
    from sklearn.preprocessing import KBinsDiscretizer

    arr = np.asarray(values, dtype=np.float64).reshape(-1, 1)
    if arr.shape[0] < n_bins or float(arr.min()) == float(arr.max()):
        return ()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kb = KBinsDiscretizer(n_bins=n_bins, encode="ordinal", strategy="quantile",
                              quantile_method="averaged_inverted_cdf")
        kb.fit(arr)
    edges = np.asarray(kb.bin_edges_[0], dtype=np.float64)
    return tuple(float(x) for x in edges[1:-1])


def signed_log_bucket(delta: int) -> int:
    """0 reserved (no delta), 1 for 0, then sign x bit length (capped)."""
    if delta == 0:
        return 1
    bits = min(abs(delta).bit_length(), DELTA_BITS)
    return 1 + bits if delta > 0 else 2 + DELTA_BITS + bits
