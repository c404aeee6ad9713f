"""The settings of the learning side: the strategy and its baselines' bounds, the LSTM,
and the trainer (``stream_warmer.settings`` re-exports them)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    Field,
    SecretStr,
)

from stream_warmer.model.features import MAX_KEYS, TABLE_BYTES
from stream_warmer.settings.stream import Section


class StrategySettings(Section):
    """Which strategy serves, its fallback, and the baselines' bounds."""

    name: Literal["none", "popularity", "markov", "nextkey", "pg", "mithril", "lstm"] = "markov"
    fallback: Literal["none", "popularity", "markov", "nextkey", "pg", "mithril"] = "markov"
    k: int = Field(1, ge=1, le=64)
    # the successor tables' bounds, for the markov baseline and the LSTM's tracker alike
    # (one implementation: native/src/table.rs); at least trainer.ranks successors.
    # markov_table_mb: the memory budget (MiB) of one strategy's tables, all its tenants
    # (and the LSTM's window tables) together: past it the least recently used rows of
    # any tenant go, so a tenant with many keys holds many; markov_max_keys_per_tenant
    # is a per-tenant cap on top (the maximum, 10M: off)
    markov_max_keys_per_tenant: int = Field(MAX_KEYS, ge=1, le=MAX_KEYS)
    markov_max_successors: int = Field(8, ge=1, le=256)
    markov_table_mb: float = Field(TABLE_BYTES / (1 << 20), ge=0.001, le=1_048_576.0)
    popularity_top: int = Field(64, ge=1, le=100_000)
    popularity_halflife_events: int = Field(10_000, ge=1, le=1_000_000_000)
    # pg (probability graph, Griffioen & Appleton '94; strategies/peers.py): arcs x->y for
    # every y within the next pg_lookahead requests of the tenant after x; warm the
    # successors with count(x->y) / all arcs out of x above pg_threshold (0.0025: the
    # classic 5% spread over a 20-request window, as PEERS.md ran it). Memory: at most
    # pg_max_keys_per_tenant keys with arcs out (least recently requested dropped), each
    # with at most pg_max_successors successors (a full key drops its less counted half)
    pg_lookahead: int = Field(20, ge=1, le=1_000)
    pg_threshold: float = Field(0.0025, ge=0.0, lt=1.0)
    pg_max_keys_per_tenant: int = Field(50_000, ge=1, le=10_000_000)
    pg_max_successors: int = Field(64, ge=1, le=1_024)
    # mithril (Yang et al., SoCC '17; strategies/mithril.py): keys requested between
    # min_support and max_support times whose request times pair up within
    # mithril_lookahead requests are associated, and a request warms its associations.
    # mithril_confidence: the share of the paired times that must be that close (1 = all);
    # mining runs when mithril_mining_threshold keys have reached min_support. Memory: at
    # most mithril_max_keys_per_tenant keys recorded and as many with associations, each
    # with at most mithril_max_associations (oldest dropped)
    mithril_lookahead: int = Field(20, ge=1, le=1_000)
    mithril_min_support: int = Field(2, ge=1, le=64)
    mithril_max_support: int = Field(8, ge=1, le=64)
    mithril_confidence: float = Field(1.0, gt=0.0, le=1.0)
    mithril_mining_threshold: int = Field(256, ge=1, le=1_000_000)
    mithril_max_keys_per_tenant: int = Field(50_000, ge=1, le=10_000_000)
    mithril_max_associations: int = Field(8, ge=1, le=256)

    @property
    def markov_table_bytes(self) -> int:
        """``markov_table_mb`` in bytes (the native tables' budget)."""
        return max(1, int(self.markov_table_mb * (1 << 20)))


InputName = Literal["delta", "top_count", "n_succ", "op", "gap", "size", "tenant", "known",
                    "correct", "present"]


class ModelSettings(Section):
    """LSTM architecture and inference options."""

    name: str = Field("stream-warmer-lstm", min_length=1, pattern=r"^[A-Za-z0-9._-]+$")
    # the sizes (the head's classes follow from the features: model/features.py). No
    # attention or bidirectional setting: the model serves in streaming mode, one step
    # per event from each tenant's carried state, where neither applies (WarmNet's
    # window mode has both, for experiments); they were read nowhere and are gone
    embed_dim: int = Field(16, ge=1, le=4096)
    hidden: int = Field(64, ge=1, le=8192)
    layers: int = Field(1, ge=1, le=8)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    # per-step inputs the model does not see (a feature ablation; model/features.py
    # INPUT_NAMES): the categorical features, and the previous step's ``correct`` and
    # this step's ``present`` class bits. Stored in the model's manifest
    drop_inputs: tuple[InputName, ...] = ()
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # served precision: ``auto`` tries bf16 on CUDA (fp32 on the CPU); a candidate is
    # served only after its top-k classes matched fp32's on ``precision_check_rows``
    # live rows at least ``precision_min_agreement`` of the time
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    precision_check_rows: int = Field(20_000, ge=1, le=10_000_000)
    precision_top_k: int = Field(4, ge=1, le=64)
    precision_min_agreement: float = Field(0.999, ge=0.0, le=1.0)
    # torch CPU threads for training (the trainer, the evaluator's training; see
    # model/runtime.py configure_torch_threads); 0 = the cores this process may use
    # (affinity, cgroup quota). Two runs on the same cores should each get their share
    # (STREAM_WARMER_MODEL__CPU_THREADS)
    cpu_threads: int = Field(0, ge=0, le=256)
    # torch CPU threads while the model serves (serve, the evaluator's replay, the
    # benches' serve): a micro-batch is hundreds of small LSTM calls, and each wakes
    # every intra-op thread; measured on 2 cores, the serve path on cache2k_orm_busy ran
    # 139k events/s on 1 thread and 41k on 2. 0 = the cores this process may use
    infer_threads: int = Field(1, ge=0, le=256)
    max_state_slots: int = Field(65_536, ge=1, le=10_000_000)
    store: Literal["redis", "dir"] = "redis"
    store_dir: Path = Path("models")
    # HMAC-SHA256 key shared by the trainer (signs each manifest it stores) and the
    # replicas (reject a version that is unsigned or signed with another key); unset:
    # nothing is signed or checked. At least 16 characters, checked where the store is
    # opened (trainer/signing.py), so that a validation error never echoes the secret
    signing_key: SecretStr | None = None
    # the LSTM's online warm budget (model/budget.py): holds its effective warms per
    # request within budget_margin under the better baseline's (markov, nextkey), in
    # three shadow LRU caches of the warmed cache's capacity. Off by default, in serve
    # and in ``evaluate`` alike (the evaluator's rows are serve's configuration): it
    # needs the cache's capacity, and it costs a Python step per event (8 to 19 us per
    # event in the evaluator's replay of lirs_mix5 and cloudphysics_vm). On: serve needs
    # model.cache_capacity (without it serve warns and keeps the trained threshold);
    # ``evaluate`` and ``bench live`` tell the strategy the C they replay
    budget_online: bool = False
    # objects the warmed cache holds (all tenants this process warms; with several
    # replicas, the share of one); sizes the online budget's shadow caches and the
    # peers' (pg, mithril) presence shadow, which without it skips a tenant's recent keys
    cache_capacity: int = Field(0, ge=0, le=1_000_000_000)
    # the LSTM names the first k of its top ``presence_candidates`` keys (at or above its
    # threshold) that a shadow LRU of the cache (``cache_capacity`` objects; in
    # ``evaluate`` and ``bench live``, the C they replay) does not hold, as pg and mithril
    # do (strategies/presence.py): a key the cache has would spend a warm on nothing. On
    # by default wherever C is known (docs/RESULTS.md: it raised the LSTM's frontier on
    # every shared trace); without cache_capacity serve names its top k. The online
    # budget, when on, replaces it (``presence``)
    presence_filter: bool = True
    presence_candidates: int = Field(8, ge=1, le=64)
    budget_margin: float = Field(0.06, ge=0, lt=1)

    @property
    def presence(self) -> bool:
        """Whether the LSTM picks with the presence filter: on, and the online budget
        (which replaces it) off."""
        return self.presence_filter and not self.budget_online


class TrainerSettings(Section):
    """The trainer process: buffer, schedule, optimisation, promotion gate."""

    consumer_group: str = Field("stream-warmer-trainer", min_length=1)
    buffer_events: int = Field(200_000, ge=1_000, le=50_000_000)
    retrain_every_events: int = Field(100_000, ge=100)
    retrain_every_s: float = Field(600.0, gt=0)
    epochs: int = Field(40, ge=1, le=1000)
    batch_size: int = Field(32, ge=1, le=65_536)
    seq_len: int = Field(64, ge=2, le=4096)
    lr: float = Field(3e-3, gt=0, le=1)
    grad_clip: float = Field(1.0, gt=0)
    patience: int = Field(4, ge=0, le=100)
    val_fraction: float = Field(0.2, gt=0, lt=0.9)
    promote_margin: float = Field(0.0, ge=-1, le=1)
    # a candidate may warm at most (1 + this) x the live model's warms per request
    promote_warm_slack: float = Field(0.1, ge=0, le=1000)
    seed: int = 0
    max_windows: int = Field(4096, ge=1, le=10_000_000)
    burn_in: int = Field(512, ge=0, le=1_000_000)
    n_deltas: int = Field(8, ge=0, le=256)
    ranks: int = Field(2, ge=1, le=8)
    # lookahead (native/src/ahead.rs): candidate classes from a window successor table
    # over each tenant's next ahead_window requests once a warm would land (the
    # round's delay: gate_delay; FeatureSpec.ahead_lead), and the training target: the
    # classes asked for within `horizon` tenant requests once a warm would land
    # (the round's delay: gate_delay)
    ahead_window: int = Field(16, ge=1, le=256)
    ahead_ranks: int = Field(8, ge=0, le=16)
    # successors kept per key of the window table (a new one replaces the least
    # frequent): a window names up to ahead_window - 1 keys per request, so a cap as
    # small as the one-step table's (strategy.markov_max_successors) keeps the first
    # few seen and thrashes the rest, as PG's graph (pg_max_successors 64) does not
    ahead_successors: int = Field(64, ge=1, le=1024)
    horizon: int = Field(8, ge=1, le=4096)
    val_cache_frac: float = Field(0.01, gt=0, le=1)
    warm_budget_margin: float = Field(0.03, ge=0, lt=1)
    min_events: int = Field(1_000, ge=10, le=50_000_000)
    gate_fraction: float = Field(0.1, gt=0, lt=0.5)
    gate_cache_fracs: tuple[Annotated[float, Field(gt=0, le=1)], ...] = Field(
        (0.01, 0.1), min_length=1
    )
    # the delay (requests of the whole stream) at which the gate replays every strategy
    # (DESIGN §8): -1 = the one serve measures and reports in Redis (serve/delay.py;
    # reports older than gate_delay_max_age_s are ignored, none: 0), >= 0 = fixed
    gate_delay: int = Field(-1, ge=-1, le=1_000_000)
    gate_delay_max_age_s: float = Field(120.0, gt=0)
    gate_baselines: tuple[Literal["none", "popularity", "markov", "nextkey"], ...] = (
        "popularity",
        "markov",
        "nextkey",
    )
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    poll_batch: int = Field(2048, ge=1, le=100_000)


