"""Helpers of the serve integration tests: settings from env, producing, reading back,
a private redis-server, and the CLI as a subprocess (start, scrape /metrics, stop)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path

import msgspec
import pytest
import redis
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from stream_warmer.events import AccessEvent, encode
from stream_warmer.localstack import free_port
from stream_warmer.settings import Settings, load_settings
from tests.conftest import IN_CI
from tests.traces import REPO

__all__ = ["free_port"]  # re-exported for the tests that start their own servers


def serve_env(kafka: str, redis_url: str, group: str, topics: dict[str, str], prefix: str,
              **extra: str) -> dict[str, str]:
    """STREAM_WARMER_* variables for one warmer (also usable for a subprocess)."""
    env = {
        "STREAM_WARMER_KAFKA__BOOTSTRAP_SERVERS": kafka,
        "STREAM_WARMER_KAFKA__CONSUMER_GROUP": group,
        "STREAM_WARMER_KAFKA__SESSION_TIMEOUT_MS": "6000",
        "STREAM_WARMER_TOPICS__ACCESS_EVENTS": topics["events"],
        "STREAM_WARMER_TOPICS__WARM_COMMANDS": topics["warm"],
        "STREAM_WARMER_TOPICS__DEAD_LETTER": topics["dlq"],
        "STREAM_WARMER_REDIS__URL": redis_url,
        "STREAM_WARMER_REDIS__KEY_PREFIX": prefix,
        "STREAM_WARMER_REDIS__SOCKET_TIMEOUT_S": "0.5",
        "STREAM_WARMER_REDIS__RETRY_BACKOFF_MAX_S": "0.5",
        "STREAM_WARMER_METRICS__PORT": "0",
        "STREAM_WARMER_METRICS__HOST": "127.0.0.1",
        "STREAM_WARMER_STRATEGY__NAME": "markov",
        "STREAM_WARMER_BATCH__CHECKPOINT_INTERVAL_S": "0.2",
    }
    env.update({f"STREAM_WARMER_{k.upper()}": v for k, v in extra.items()})
    return env


def settings_from(env: dict[str, str]) -> Settings:
    """Settings exactly as the CLI would build them from ``env``."""
    return load_settings(None, env)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def produce(kafka: str, topic: str, records: Iterable[tuple[str, bytes]],
            partition: int | None = None) -> int:
    """Produce (key, value) records in order and wait for delivery; return how many."""
    producer = Producer({"bootstrap.servers": kafka, "linger.ms": 5})
    n = 0
    for key, value in records:
        if partition is None:
            producer.produce(topic, value, key)
        else:
            producer.produce(topic, value, key, partition=partition)
        n += 1
        if n % 10_000 == 0:
            producer.poll(0)
    assert producer.flush(30) == 0
    return n


def event_bytes(tenant: str, key: str, ts: int | None = None) -> bytes:
    return encode(AccessEvent(tenant, key, now_ms() if ts is None else ts))


Record = tuple[str | None, dict, int, int]


def read_all(kafka: str, topic: str, expected: int, timeout_s: float = 30.0) -> list[Record]:
    """(key, decoded JSON value, partition, offset) of the first ``expected`` records."""
    consumer = Consumer({"bootstrap.servers": kafka, "group.id": f"reader-{time.time_ns()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    out: list[Record] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(out) < expected and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            key = msg.key().decode() if msg.key() else None
            out.append((key, msgspec.json.decode(msg.value()), msg.partition(), msg.offset()))
        # anything beyond ``expected`` would be a bug too: read a little longer
        extra_deadline = time.monotonic() + 1.0
        while time.monotonic() < extra_deadline:
            msg = consumer.poll(0.2)
            if msg is not None and not msg.error():
                out.append((None, msgspec.json.decode(msg.value()), msg.partition(), msg.offset()))
    finally:
        consumer.close()
    return out


def committed(kafka: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    """The group's committed offset per partition (-1001 when none)."""
    consumer = Consumer({"bootstrap.servers": kafka, "group.id": group})
    try:
        tps = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
    finally:
        consumer.close()
    return {tp.partition: tp.offset for tp in tps}


def high_watermarks(kafka: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": kafka, "group.id": "wm"})
    try:
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in range(partitions)}
    finally:
        consumer.close()


def delete_group(kafka: str, group: str) -> None:
    admin = AdminClient({"bootstrap.servers": kafka})
    try:
        for fut in admin.delete_consumer_groups([group], request_timeout=10).values():
            fut.result(timeout=10)
    except Exception:  # best effort cleanup
        pass


class OwnRedis:
    """A private redis-server we may stop and start (append-only file, fsync always, so
    what was written before a stop survives the restart)."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.dir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
             str(self.dir), "--appendonly", "yes", "--appendfsync", "always", "--save", ""],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis(port=self.port, socket_timeout=0.5).ping()
                return
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "own redis-server did not start"
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


def require_redis_server() -> None:
    """Skip without ``redis-server`` (Debian's ``redis-server`` package); fail under CI."""
    if shutil.which("redis-server") is not None:
        return
    msg = "redis-server is not installed (apt-get install redis-server)"
    if IN_CI:
        pytest.fail(msg)
    pytest.skip(msg)


def start_command(name: str, env: dict[str, str], logs: Path, *args: str,
                  log: str | None = None) -> subprocess.Popen[bytes]:
    """``python -m stream_warmer <name> <args>`` with ``env`` added; output to
    ``logs/<log or name>.log``."""
    with (logs / f"{log or name}.log").open("wb") as out:  # the child keeps its own fd
        return subprocess.Popen(
            [sys.executable, "-m", "stream_warmer", name, *args],
            cwd=REPO, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT,
        )


def stop_process(proc: subprocess.Popen[bytes]) -> int:
    """SIGTERM (a graceful stop), SIGKILL after 30 s; the exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def metric(port: int, name: str, **labels: str) -> float:
    """The sum of the samples ``name`` (with these labels) on ``/metrics``; -1 if no answer."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            text = resp.read().decode()
    except OSError:
        return -1.0
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == name and labels.items() <= s.labels.items())


def wait_for(cond: Callable[[], bool], timeout_s: float, what: str, every_s: float = 0.2
             ) -> None:
    """Poll ``cond`` until it holds; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(every_s)
