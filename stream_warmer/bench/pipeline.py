"""``bench pipeline`` (DESIGN §6): serve throughput against a bare consumer, then latency.

1. Load: the first ``events`` requests of a real trace go into a fresh uuid topic
   (``replay``, as fast as the broker takes them).
2. Ceiling: a bare consumer (own group, from the earliest offset) that only consumes
   and decodes every event; run before and after step 3, the better run counts.
3. Pipeline: one serve app with the chosen strategy over the same topic from the
   earliest offset to the end: windows, micro-batches, policy, warm commands flushed
   to Redis and Kafka, offsets committed. Both are timed from their first message to
   their last (the app: to its final checkpoint).
4. Latency: a fresh topic, the app running, the next events of the trace produced at
   a fixed rate (half the measured throughput) by a separate process (producer
   linger 5 ms, the clients' default); each event's ``ts`` is its produce time (ms),
   and the app reports, per warm command, the time Redis acknowledged it minus that
   ``ts`` (so the producer's linger is part of the latency). The first
   ``latency_warmup_s`` at that rate are a warm-up: their samples are reported apart
   (``latency_warmup_p99_ms``), not in p50/p99. On 2 cores a freshly started broker
   spends its first ~15-20 s at this rate compiling (JIT): the machine saturates, a
   backlog builds (p99 ~570 ms) and drains; measured after the warm-up the same
   run's steady state is what a long-running deployment sees.

Several strategies (``--strategy markov,lstm``) share one loaded topic and one
ceiling (bare runs before the first pipeline and after the last); each gets its own
pipeline run and latency step, one row each.

``lstm``: before step 1 the trainer's own code trains on the ``train_events`` events
that come before the loaded ones (``trainer.lstm.lstm_trainer``, the artifact packed as
a training round packs it) and publishes it with ``ModelPublisher.publish`` into a
fresh compacted updates topic and the run's model store (Redis, under the run's key
prefix). The loaded topic and the latency step's events then start after those
events, for every strategy of the run. Each serve app of the ``lstm`` row starts on
``strategy.fallback`` with a model watcher of its own (``cli.serve.start_watcher``)
and swaps to the LSTM between micro-batches, as a replica does; nothing is counted
until the LSTM serves (step 3: the swap must come before the app's first event;
step 4: before the warm-up events), and a version that is not serving within
``swap_timeout_s`` fails the run with the watcher's reasons.

Everything created (topics, groups, Redis keys) is deleted afterwards. The preloaded
events are older than the policy's ``stale_after_ms`` by design, so step 3 runs
with staleness off; every other setting is the one given.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from stream_warmer.bench.latency import measure_latency, trace_events
from stream_warmer.bench.swap import (
    SWAP_TIMEOUT_S,
    Runner,
    Served,
    TrainedModel,
    check_lstm_settings,
    train_and_publish,
)
from stream_warmer.bench.timeliness import percentile
from stream_warmer.errors import ConfigError
from stream_warmer.events import EventDecoder
from stream_warmer.settings import Settings
from stream_warmer.strategies.base import BASELINE_VERSION

log = logging.getLogger(__name__)
STRATEGIES = ("none", "popularity", "markov", "nextkey", "lstm")
_NEVER_STALE_MS = 1e12
# the bare consumer polls like the app does when a micro-batch is open
CEILING_POLL_S = 0.02


@dataclass(frozen=True)
class PipelineResult:
    """The JSON row of ``bench pipeline``."""

    strategy: str
    events: int
    events_per_s: float
    ceiling_events_per_s: float
    ratio: float
    latency_p50_ms: float
    latency_p99_ms: float
    warm_commands: int
    latency_rate_per_s: float
    latency_samples: int
    latency_warmup_s: float
    latency_warmup_p99_ms: float
    # what served (``baseline`` for the baselines; the LSTM's published version)
    model_version: str = BASELINE_VERSION
    # the measured events start after this many of the trace (the LSTM's training events)
    trace_offset: int = 0
    train_events: int = 0
    train_s: float | None = None  # the LSTM's training time (None: nothing trained)

    def row(self) -> dict[str, Any]:
        """As a dict for ``--json``."""
        return asdict(self)

    @property
    def goals_met(self) -> bool:
        """DESIGN §6's goals: ratio >= 0.5 and p99 <= 50 ms."""
        return self.ratio >= 0.5 and self.latency_p99_ms <= 50.0


def parse_strategies(text: str) -> tuple[str, ...]:
    """``markov,lstm`` -> ``("markov", "lstm")``: known names, each once, in order."""
    names = tuple(s.strip() for s in text.split(",") if s.strip())
    unknown = [s for s in names if s not in STRATEGIES]
    if not names or unknown:
        msg = f"unknown strategy {', '.join(unknown)}" if unknown else "no strategy given"
        msg += f" (choose from {', '.join(STRATEGIES)}, comma-separated)"
        raise ValueError(msg)
    if len(set(names)) != len(names):
        msg = f"a strategy is named twice in {text!r}"
        raise ValueError(msg)
    return names


def run_bench(settings: Settings, trace: Path, events: int, strategy: str,
              latency_s: float, *, latency_warmup_s: float = 20.0,
              train_events: int | None = None,
              swap_timeout_s: float = SWAP_TIMEOUT_S) -> PipelineResult:
    """Run all four steps for one strategy; clean up whatever was created."""
    return run_benches(settings, trace, events, (strategy,), latency_s,
                       latency_warmup_s=latency_warmup_s, train_events=train_events,
                       swap_timeout_s=swap_timeout_s)[0]


def run_benches(settings: Settings, trace: Path, events: int, strategies: Sequence[str],
                latency_s: float, *, latency_warmup_s: float = 20.0,
                train_events: int | None = None,
                swap_timeout_s: float = SWAP_TIMEOUT_S) -> list[PipelineResult]:
    """One loaded topic and one ceiling; a pipeline run and a latency step per strategy.

    ``train_events``: the LSTM trains on the trace's first events, this many
    (default ``trainer.buffer_events``, what the trainer holds), and every strategy
    is then measured on the events after them; without ``lstm`` the trace is read
    from its start.
    """
    from stream_warmer.bench import resources

    strategies = parse_strategies(",".join(strategies))
    lstm = "lstm" in strategies
    n_train = settings.trainer.buffer_events if train_events is None else train_events
    offset = n_train if lstm else 0
    if lstm:
        from stream_warmer.model.runtime import configure_torch_threads

        check_lstm_settings(settings, n_train)
        # as the trainer and serve processes do at their start
        configure_torch_threads(settings.model.cpu_threads)
    with resources.BenchResources(settings) as res:
        model = (train_and_publish(res, trace, list(trace_events(trace, n_train)), n_train)
                 if lstm else None)
        if lstm:
            configure_torch_threads(settings.model.infer_threads)
        events_topic = res.topic("bench-events")
        loaded = _load(settings, trace, events_topic, events, offset)
        if loaded == 0:
            msg = f"{trace} has no events after the first {offset}"
            raise ConfigError(msg)
        before = _ceiling(settings, events_topic, loaded)
        runs = {s: _pipeline(res, events_topic, loaded, s, model=model,
                              swap_timeout_s=swap_timeout_s)
                for s in strategies}
        after = _ceiling(settings, events_topic, loaded)
        # the machine is shared: the better of two bare runs is the ceiling
        ceiling = max(before, after)
        log.info("throughput", extra={
            "ceiling_before": round(before), "ceiling_after": round(after),
            **{f"pipeline_{s}": round(r[0]) for s, r in runs.items()},
            **{f"commands_{s}": r[1] for s, r in runs.items()}})
        results = []
        for strategy in strategies:
            served, commands, version = runs[strategy]
            rate = served / 2
            warmup, samples = measure_latency(res, trace, strategy, rate, seconds=latency_s,
                                              warmup_s=latency_warmup_s, offset=offset,
                                              model=model, swap_timeout_s=swap_timeout_s)
            trained = model if strategy == "lstm" else None
            results.append(PipelineResult(
                strategy, loaded, round(served, 1), round(ceiling, 1),
                round(served / ceiling, 3), round(percentile(samples, 50), 2),
                round(percentile(samples, 99), 2), commands, round(rate, 1), len(samples),
                latency_warmup_s, round(percentile(warmup, 99), 2), version, offset,
                trained.events if trained else 0,
                round(trained.train_s, 1) if trained else None))
    return results


COLUMNS = (("strategy", "{}"), ("model_version", "{}"), ("events", "{:,}"),
            ("events_per_s", "{:,.0f}"), ("ceiling_events_per_s", "{:,.0f}"),
            ("ratio", "{:.3f}"), ("latency_rate_per_s", "{:,.0f}"),
            ("latency_p50_ms", "{:.1f}"), ("latency_p99_ms", "{:.1f}"),
            ("latency_warmup_p99_ms", "{:.1f}"), ("latency_samples", "{:,}"),
            ("warm_commands", "{:,}"), ("train_events", "{:,}"), ("train_s", "{:.1f}"))


def format_rows(results: Sequence[PipelineResult]) -> str:
    """A plain-text table, one row per strategy (``-`` where a value does not apply)."""
    rows = [[name] + [_cell(fmt, r.row()[name]) for name, fmt in COLUMNS[1:]]
            for r in results for name in [r.strategy]]
    head = [name for name, _ in COLUMNS]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) if i < 2 else h.rjust(w)
                       for i, (h, w) in enumerate(zip(head, widths, strict=True)))]
    lines += ["  ".join(c.ljust(w) if i < 2 else c.rjust(w)
                        for i, (c, w) in enumerate(zip(row, widths, strict=True)))
              for row in rows]
    return "\n".join(lines)


def _cell(fmt: str, value: Any) -> str:
    return "-" if value is None else fmt.format(value)


def _pipeline(res: Any, topic: str, events: int, strategy: str, *,
              model: TrainedModel | None = None,
              swap_timeout_s: float = SWAP_TIMEOUT_S) -> tuple[float, int, str]:
    """(events/s from the app's first event to its final checkpoint, commands, version)."""
    served = Served(res, topic, strategy, model, swap_timeout_s,
                     stale_after_ms=_NEVER_STALE_MS)
    app = served.app
    try:
        served.loaded()
        runner = Runner(lambda: app.run(max_messages=events))
        try:
            served.swapped()
        except BaseException:
            app.stop()
            runner.join(30)
            raise
        runner.join(None)
    finally:
        served.stop_watcher()
    swap = served.swap
    if swap is not None and swap.consumed_before:
        msg = (f"the fallback handled {swap.consumed_before} events before the lstm "
               "took over: the run would not measure the lstm")
        raise RuntimeError(msg)
    stats = app.stats
    assert stats.first_at is not None and stats.finished_at is not None
    return (stats.consumed / (stats.finished_at - stats.first_at), stats.commands,
            served.served_version())


def _load(settings: Settings, trace: Path, topic: str, events: int, offset: int = 0) -> int:
    from stream_warmer.replay import replay

    started = time.monotonic()
    count = replay(trace_events(trace, events, offset), settings.kafka.client_config(), topic)
    log.info("loaded", extra={"events": count, "from": offset,
                              "s": round(time.monotonic() - started, 1)})
    return count


def _ceiling(settings: Settings, topic: str, events: int) -> float:
    """A bare consumer: consume and decode, nothing else."""
    from confluent_kafka import Consumer

    conf = settings.kafka.client_config() | {
        "group.id": f"bench-bare-{uuid.uuid4().hex[:10]}", "auto.offset.reset": "earliest",
        "enable.auto.commit": False}
    consumer = Consumer(conf)
    consumer.subscribe([topic])
    decode = EventDecoder(settings.events.max_key_bytes).decode
    count, first = 0, None
    try:
        while count < events:
            messages = consumer.consume(settings.batch.poll_batch, CEILING_POLL_S)
            if messages and first is None:
                first = time.monotonic()
            for msg in messages:
                if msg.error() is None:
                    decode(msg.value())
                    count += 1
        elapsed = time.monotonic() - (first or 0.0)
    finally:
        consumer.close()
    return count / elapsed
