"""``stream-warmer demo``: the whole system on one machine, with live progress.

Steps, in order: make sure Kafka and Redis answer (start the local devstack when the
configured ones are on loopback and down), create a fresh set of demo topics, start a
trainer and a warmer as child processes, replay a real trace into the access topic,
print progress from the warmer's and trainer's ``/metrics`` every interval, then stop
everything it started and print a summary.

What it prints (the scrapes, the progress line, the summary) is ``demoreport``'s; free
ports, the devstack and the child processes are ``localstack``'s.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from stream_warmer.demoreport import Sample, progress_line, sample, settled, summarize
from stream_warmer.localstack import DEVSTACK, child, ensure_stack, free_port
from stream_warmer.settings import Settings, TopicSettings

log = logging.getLogger(__name__)
LINGER_S = 60.0  # after the replay: how long to wait for an in-flight training round


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """What to replay, how fast, where to keep the children's logs, their base environment."""

    trace: Path
    rate: float
    limit: int | None
    interval_s: float
    log_dir: Path
    timeout_s: float
    environ: Mapping[str, str]
    cache_frac: float = 0.01


def demo_topics(topics: TopicSettings, run_id: str) -> TopicSettings:
    """The configured topics, renamed for this run so that demos never mix."""
    return topics.model_copy(
        update={
            "access_events": f"demo-{run_id}-{topics.access_events}",
            "warm_commands": f"demo-{run_id}-{topics.warm_commands}",
            "dead_letter": f"demo-{run_id}-{topics.dead_letter}",
            "model_updates": f"demo-{run_id}-{topics.model_updates}",
            "partitions": 4,
        }
    )


def child_env(
    topics: TopicSettings, run_id: str, warmer_port: int, trainer_port: int, replay_events: int
) -> tuple[dict[str, str], dict[str, str]]:
    """Environments of the warmer and the trainer: demo topics, groups, ports, schedule."""
    common = {
        "STREAM_WARMER_TOPICS__ACCESS_EVENTS": topics.access_events,
        "STREAM_WARMER_TOPICS__WARM_COMMANDS": topics.warm_commands,
        "STREAM_WARMER_TOPICS__DEAD_LETTER": topics.dead_letter,
        "STREAM_WARMER_TOPICS__MODEL_UPDATES": topics.model_updates,
        "STREAM_WARMER_REDIS__KEY_PREFIX": f"demo-{run_id}",
        "STREAM_WARMER_METRICS__LOG_FORMAT": "text",
        # trainer, warmer and replay share the machine: one torch thread each (torch's
        # default of one per core made a 60k-event round take minutes, not ~20 s)
        "STREAM_WARMER_MODEL__CPU_THREADS": "1",
    }
    every = retrain_every(replay_events)
    warmer = {
        **common,
        "STREAM_WARMER_KAFKA__CONSUMER_GROUP": f"demo-{run_id}",
        "STREAM_WARMER_STRATEGY__NAME": "lstm",
        "STREAM_WARMER_METRICS__PORT": str(warmer_port),
    }
    trainer = {
        **common,
        "STREAM_WARMER_TRAINER__CONSUMER_GROUP": f"demo-{run_id}-trainer",
        "STREAM_WARMER_TRAINER__RETRAIN_EVERY_EVENTS": str(every),
        "STREAM_WARMER_TRAINER__BUFFER_EVENTS": str(max(every, 20_000)),
        "STREAM_WARMER_METRICS__PORT": str(trainer_port),
    }
    return warmer, trainer


class Replayer(threading.Thread):
    """The application, in the background: each request of the trace is looked up in
    its cache (an exact LRU of ``cache_frac`` x the distinct keys), then produced.

    The loader's own code (``stream-warmer load``'s) runs in this process and fills
    that cache from the warmer's queues; a second LRU of the same size sees the same
    requests and no warms, so the hit ratio with warming and without it are measured
    side by side, live.
    """

    def __init__(self, settings: Settings, topic: str, opts: DemoOptions) -> None:
        from stream_warmer.bench.appcache import LiveLru
        from stream_warmer.evaluation.traces import read_trace
        from stream_warmer.evaluation.warmeval import capacity_for, scan

        super().__init__(name="demo-replay", daemon=True)
        self._settings, self._topic, self._opts = settings, topic, opts
        self._events = list(itertools.islice(read_trace(opts.trace), opts.limit))
        self.capacity = capacity_for(opts.cache_frac, scan(self._events).distinct)
        self.cache = LiveLru(self.capacity, 0, control=True)
        self.produced = 0
        self.error: BaseException | None = None
        self.stop_flag = threading.Event()

    def hit_ratios(self) -> tuple[float, float]:
        """(with warming, without) over every request so far."""
        control = self.cache.control
        assert control is not None
        return self.cache.sim.hit_ratio(), control.hit_ratio()

    def run(self) -> None:
        from confluent_kafka import Producer

        from stream_warmer.bench.appcache import replay_as_app, start_loader

        stop_loader = threading.Event()
        try:
            loader = start_loader(self._settings, self.cache, stop_loader)
            producer = Producer(self._settings.kafka.client_config() | {"linger.ms": 5})
            replay_as_app(self._events, self.cache, producer, self._topic, rate=self._opts.rate,
                          speedup=None, stop=self.stop_flag.is_set, progress=self._count)
            self.stop_flag.wait()  # the warms of the last events still land
            stop_loader.set()
            loader.join(30)
        except BaseException as exc:  # reported by the main thread
            self.error = exc

    def __len__(self) -> int:
        return len(self._events)

    def _count(self, n: int) -> None:
        self.produced = n


def retrain_every(replay_events: int) -> int:
    """Retrain every fifth of the replay (on that many recent events), so that a first
    version is published, swapped in and serves well before the replay ends."""
    return max(5_000, replay_events // 5)


def watch(
    replayer: Replayer,
    ports: tuple[int, int],
    opts: DemoOptions,
    alive: Callable[[], bool],
) -> tuple[Sample, Sample]:
    """Print progress until the warmer consumed all that was replayed, then for at most
    ``LINGER_S`` more until the trainer's last due round ended and its version is served."""
    first = prev = sample(*ports)
    deadline = time.monotonic() + opts.timeout_s
    linger_until: float | None = None
    while time.monotonic() < deadline and alive():
        time.sleep(opts.interval_s)
        now = sample(*ports)
        print(progress_line(prev, now, replayer.produced, replayer.hit_ratios()), flush=True)
        prev = now
        replaying = replayer.produced < len(replayer) and replayer.error is None
        if replaying or not replayer.produced or now.events < replayer.produced:
            continue
        linger_until = linger_until or time.monotonic() + LINGER_S
        if settled(now) or time.monotonic() >= linger_until:
            break
    return first, prev


def run_demo(settings: Settings, opts: DemoOptions) -> int:
    """The whole demo; returns 0 when the warmer consumed everything that was replayed."""
    from stream_warmer.topics import create_topics

    started_stack = ensure_stack(settings, opts.environ)
    run_id = uuid.uuid4().hex[:8]
    topics = demo_topics(settings.topics, run_id)
    opts.log_dir.mkdir(parents=True, exist_ok=True)
    ports = (free_port(), free_port())
    try:
        create_topics(settings.kafka, topics)
        print(
            f"demo {run_id}: topics {topics.access_events} ...; logs in {opts.log_dir}", flush=True
        )
        replay_n = opts.limit or 200_000
        warmer_env, trainer_env = child_env(topics, run_id, ports[0], ports[1], replay_n)
        with (
            child("train", {**opts.environ, **trainer_env}, opts.log_dir) as trainer,
            child("serve", {**opts.environ, **warmer_env}, opts.log_dir) as warmer,
        ):
            # the in-process loader drains the warmer's queues (the demo's key prefix)
            app_settings = settings.model_copy(update={
                "redis": settings.redis.model_copy(update={"key_prefix": f"demo-{run_id}"})})
            replayer = Replayer(app_settings, topics.access_events, opts)
            replayer.start()
            first, last = watch(
                replayer,
                ports,
                opts,
                lambda: warmer.poll() is None and trainer.poll() is None,
            )
            replayer.stop_flag.set()
            replayer.join(timeout=30)
            return summarize(replayer, first, last, warmer.poll(), trainer.poll())
    finally:
        _delete_topics(settings, topics)
        if started_stack:
            subprocess.run([str(DEVSTACK), "down"], check=False, env=dict(opts.environ))


def _delete_topics(settings: Settings, topics: TopicSettings) -> None:
    from confluent_kafka.admin import AdminClient

    names = [topics.access_events, topics.warm_commands, topics.dead_letter, topics.model_updates]
    admin = AdminClient(settings.kafka.client_config())
    for fut in admin.delete_topics(names, operation_timeout=30).values():
        with contextlib.suppress(Exception):  # best effort: the run is over
            fut.result(timeout=30)
