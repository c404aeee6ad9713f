"""``bench pipeline``'s step 4 (DESIGN §6): warm latency while a separate process
produces at a fixed rate (the module docstring of ``bench.pipeline`` has the whole
protocol); and the trace reader both steps use."""

from __future__ import annotations

import itertools
import multiprocessing as mp
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stream_warmer.bench.swap import SWAP_TIMEOUT_S, Runner, Served, TrainedModel

WARMUP_EVENTS = 2_000  # produced before the clock starts: the app assigned, past a batch


def trace_events(trace: Path, limit: int | None, start: int = 0) -> Any:
    """The trace's events ``start`` ... ``start + limit`` (all after ``start``: None)."""
    from stream_warmer.evaluation.traces import read_normalized

    stop = None if limit is None else start + limit
    return itertools.islice(read_normalized(trace), start, stop)


def measure_latency(res: Any, trace: Path, strategy: str, rate: float, *, seconds: float,
                    warmup_s: float, offset: int = 0, model: TrainedModel | None = None,
                    swap_timeout_s: float = SWAP_TIMEOUT_S) -> tuple[list[float], list[float]]:
    """Latencies in ms at a fixed rate: (the first ``warmup_s`` at that rate, the rest).

    Before the clock starts, a few events get the app assigned and past its first batch
    (for ``lstm``: after the swap, so that every sample is the LSTM's). The events are
    the trace's from ``offset`` on.
    """
    from stream_warmer.replay import replay

    topic = res.topic("bench-latency")
    samples: list[tuple[float, float]] = []  # (monotonic time observed, latency s)

    def observe(latency: float) -> None:
        samples.append((time.monotonic(), latency))

    served = Served(res, topic, strategy, model, swap_timeout_s, latency_observer=observe)
    app = served.app
    try:
        served.loaded()
        replay(trace_events(trace, WARMUP_EVENTS, offset),
               res.settings.kafka.client_config(), topic)
        runner = Runner(app.run)
        try:
            served.swapped()
            _wait_for(lambda: app.stats.consumed >= WARMUP_EVENTS, 60)
            time.sleep(0.5)  # the warm-up's last micro-batch
            samples.clear()
            ctx = mp.get_context("spawn")
            sent = ctx.Value("q", 0)
            clock_start = ctx.Value("d", 0.0)  # the child's time.monotonic() at its start
            job = _PacedJob(res.settings.kafka.client_config(), str(trace), topic, rate,
                            int(rate * (warmup_s + seconds)), offset=offset)
            child = ctx.Process(target=_paced_producer, args=(job, sent, clock_start))
            child.start()
            child.join(warmup_s + seconds + 120)
            if child.exitcode != 0:
                msg = f"the paced producer failed (exit code {child.exitcode})"
                raise RuntimeError(msg)
            _wait_for(lambda: app.stats.consumed >= WARMUP_EVENTS + sent.value, 60)
            time.sleep(0.5)
            # from the pacing clock's start, not the child's: it reads the trace first
            # (seconds, more with an offset), and a warm-up timed from its launch would
            # leak warm-up samples into p99
            measured_from = clock_start.value + warmup_s
        finally:
            app.stop()
            runner.join(30)
    finally:
        served.stop_watcher()
    served.served_version()  # the lstm row's samples are the published version's
    warm = [lat * 1000.0 for at, lat in samples if at < measured_from]
    return warm, [lat * 1000.0 for at, lat in samples if at >= measured_from]


@dataclass(frozen=True)
class _PacedJob:
    conf: dict[str, Any]
    trace: str
    topic: str
    rate: float
    total: int
    offset: int = 0  # the trace's events from here on (after the LSTM's training events)
    # the default of librdkafka and of Kafka >= 4.0 clients; the wait is inside the
    # measured latency (``ts`` is set before produce). 1 ms made ~5x more produce
    # requests, and the broker's CPU for them showed as the latency tail on 2 cores
    # (110k ev/s: p99 ~40-50 ms at 5 vs ~120-145 ms at 1, broker 0.34 vs 0.5 cores)
    linger_ms: float = 5.0


def _paced_producer(job: _PacedJob, sent_out: Any, clock_out: Any = None) -> None:
    """In its own process (no GIL shared with the app): produce ``total`` events at ``rate``.

    Lighter than ``replay``'s per-event pacing: the events are read before the clock
    starts, and every slice that is due goes out with one wall-clock ``ts``. A trace
    shorter than ``total`` events is replayed again from its start (the same keys: the
    rate and the measured seconds are what this step is for, and a fast machine asks
    for more events than a small trace has).
    """
    from confluent_kafka import Producer

    from stream_warmer.events import AccessEvent, encode

    events = list(trace_events(Path(job.trace), job.total, job.offset + WARMUP_EVENTS))
    if events and len(events) < job.total:
        events = (events * -(-job.total // len(events)))[: job.total]
    producer = Producer(job.conf | {"linger.ms": job.linger_ms,
                                    "queue.buffering.max.messages": 1_000_000})
    rate, topic = job.rate, job.topic
    start, sent = time.monotonic(), 0
    if clock_out is not None:  # CLOCK_MONOTONIC: one clock for every process
        clock_out.value = start
    while sent < len(events):
        due = min(len(events), int((time.monotonic() - start) * rate) + 1)
        if due <= sent:
            time.sleep(0.0002)
            continue
        ts = time.time_ns() // 1_000_000
        for e in events[sent:due]:
            producer.produce(topic, encode(AccessEvent(e.tenant, e.key, ts, e.op, e.size)),
                             e.tenant)
        sent = due
        producer.poll(0)
    if producer.flush(60):
        raise SystemExit(1)
    sent_out.value = sent


def _wait_for(cond: Any, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            msg = "benchmark step timed out"
            raise TimeoutError(msg)
        time.sleep(0.05)
