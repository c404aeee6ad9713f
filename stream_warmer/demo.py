"""``stream-warmer demo``: the whole system on one machine, with live progress.

Steps, in order: make sure Kafka and Redis answer (start the local devstack when the
configured ones are on loopback and down), create a fresh set of demo topics, start a
trainer and a warmer as child processes, replay a real trace into the access topic,
print progress from the warmer's and trainer's ``/metrics`` every interval, then stop
everything it started and print a summary.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from stream_warmer.errors import StreamWarmerError
from stream_warmer.settings import Settings, TopicSettings

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[1]
DEVSTACK = REPO / "scripts" / "devstack"
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


@dataclass(slots=True)
class Sample:
    """One scrape of the warmer's and trainer's metrics."""

    t: float
    events: float = 0.0
    warms: float = 0.0
    precision: float = float("nan")
    useful: float = 0.0
    swaps: float = 0.0
    versions: set[str] = field(default_factory=set)
    rounds: dict[str, float] = field(default_factory=dict)
    training: bool = False


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def ensure_stack(settings: Settings, environ: Mapping[str, str]) -> bool:
    """Start the local devstack if the configured loopback services are down.

    Returns True when this call started it (so the demo stops it at the end).
    """
    host, _, port = settings.kafka.bootstrap_servers.split(",")[0].rpartition(":")
    redis_host, redis_port = _redis_address(settings.redis.url)
    if _answers(host, int(port)) and _answers(redis_host, redis_port):
        return False
    if host not in {"127.0.0.1", "localhost"} or not DEVSTACK.exists():
        msg = (
            f"Kafka at {settings.kafka.bootstrap_servers} or Redis at {redis_host}:{redis_port}"
            " does not answer; start them (scripts/devstack up or docker compose up -d)"
        )
        raise StreamWarmerError(msg)
    print("demo: starting the local stack (scripts/devstack up)", flush=True)
    env = {"KAFKA_PORT": port, "REDIS_PORT": str(redis_port)}
    subprocess.run([str(DEVSTACK), "up"], check=True, env={**environ, **env})
    return True


def _redis_address(url: str) -> tuple[str, int]:
    from urllib.parse import urlparse

    parsed = urlparse(url)
    return parsed.hostname or "127.0.0.1", parsed.port or 6379


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


@contextlib.contextmanager
def child(name: str, env: Mapping[str, str], log_dir: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``python -m stream_warmer <name>`` with ``env``; SIGTERM, then SIGKILL, on exit."""
    out: IO[bytes] = (log_dir / f"{name}.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "stream_warmer", name],
        env=dict(env),
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        out.close()


def scrape(port: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Parse a Prometheus text page into ``{name: [(labels, value), ...]}``; empty if down."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            text = resp.read().decode()
    except OSError:
        return {}
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((dict(s.labels), float(s.value)))
    return out


def sample(warmer_port: int, trainer_port: int) -> Sample:
    """Read the numbers the progress line shows."""
    w, t = scrape(warmer_port), scrape(trainer_port)

    def total(page: dict[str, list[tuple[dict[str, str], float]]], name: str) -> float:
        return sum(v for _, v in page.get(name, []))

    versions = {
        lab.get("version", "?") for lab, v in w.get("stream_warmer_model_version_info", []) if v > 0
    }
    rounds = {
        lab.get("result", "?"): v for lab, v in t.get("stream_warmer_trainer_rounds_total", [])
    }
    prec = w.get("stream_warmer_warm_precision", [])
    return Sample(
        t=time.monotonic(),
        events=total(w, "stream_warmer_events_total"),
        warms=total(w, "stream_warmer_warm_commands_total"),
        precision=prec[0][1] if prec else float("nan"),
        useful=total(w, "stream_warmer_useful_warms_total"),
        swaps=total(w, "stream_warmer_strategy_swaps_total"),
        versions=versions,
        rounds=rounds,
        training=total(t, "stream_warmer_trainer_round_running") > 0,
    )


def _ratio(part: float, whole: float) -> str:
    return f"{part / whole:6.1%}" if whole else "    - "


def progress_line(prev: Sample, now: Sample, produced: int, hits: tuple[float, float]) -> str:
    """One line of live progress (``hits``: the app's hit ratio with and without warming)."""
    dt = max(now.t - prev.t, 1e-9)
    version = ",".join(sorted(now.versions)) or "-"
    rounds = " ".join(f"{k}={int(v)}" for k, v in sorted(now.rounds.items())) or "-"
    return (
        f"replayed {produced:>8,}  consumed {int(now.events):>8,}  "
        f"{(now.events - prev.events) / dt:>8,.0f} ev/s  "
        f"{(now.warms - prev.warms) / dt:>7,.0f} warm/s  "
        f"hit ratio {_share(hits[0])} (no warming {_share(hits[1])})  "
        f"useful {_ratio(now.useful, now.warms)}  "
        f"model {version} (swaps {int(now.swaps)})  trainer rounds {rounds}"
    )


def _share(value: float) -> str:
    return "  -  " if math.isnan(value) else f"{value:.3f}"  # nan before the first request


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


def settled(now: Sample) -> bool:
    """No training round is in progress and the warmer swapped in every version that
    was published."""
    return not now.training and now.swaps >= now.rounds.get("published", 0)


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


def summarize(
    replayer: Replayer, first: Sample, last: Sample, warmer_rc: int | None, trainer_rc: int | None
) -> int:
    """Print the closing summary; non-zero when something failed or fell behind."""
    seconds = max(last.t - first.t, 1e-9)
    print("\n== demo summary ==")
    print(f"events replayed        {replayer.produced:,}")
    print(f"events consumed        {int(last.events):,} ({last.events / seconds:,.0f}/s average)")
    live, none = replayer.hit_ratios()
    print(f"cache hit ratio        {_share(live)} with warming, {_share(none)} without "
          f"(exact LRU of {replayer.capacity:,} objects, every request; both live)")
    print(f"warm commands          {int(last.warms):,}")
    print(f"useful warms so far    {int(last.useful):,} of {int(last.warms):,} "
          f"({_ratio(last.useful, last.warms)}; a warm counts as wasted only after the horizon)")
    print(f"online warm precision  {last.precision:.3f} (useful / resolved warms)")
    print(
        f"model versions served  {', '.join(sorted(last.versions)) or '-'} "
        f"(hot swaps {int(last.swaps)})"
    )
    print(f"trainer rounds         {last.rounds or '-'}")
    problems = []
    if replayer.error is not None:
        problems.append(f"replay failed: {replayer.error}")
    if warmer_rc is not None:
        problems.append(f"the warmer exited early with {warmer_rc}")
    if trainer_rc is not None:
        problems.append(f"the trainer exited early with {trainer_rc}")
    if last.events < replayer.produced:
        problems.append("the warmer did not consume everything in time")
    for p in problems:
        print(f"problem: {p}")
    return 1 if problems else 0


def _delete_topics(settings: Settings, topics: TopicSettings) -> None:
    from confluent_kafka.admin import AdminClient

    names = [topics.access_events, topics.warm_commands, topics.dead_letter, topics.model_updates]
    admin = AdminClient(settings.kafka.client_config())
    for fut in admin.delete_topics(names, operation_timeout=30).values():
        with contextlib.suppress(Exception):  # best effort: the run is over
            fut.result(timeout=30)
