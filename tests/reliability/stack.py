"""The faults-under-load suite's stack: a private broker, a steady stream, and the checks.

- ``PrivateKafka``: a single-node KRaft broker of the devstack's Kafka distribution
  (``.devstack/kafka-<version>/lib``, resolved by ``scripts/devstack up``) on free ports,
  with its own data directory, that a test may stop and start again (never the shared
  broker). Without the distribution or ``java`` it skips locally and fails under CI.
- ``SteadyStream``: a thread producing access events at a fixed rate while a fault
  happens. Tenant ``i`` always goes to partition ``i % partitions`` and its keys step by
  2, so with the ``nextkey`` strategy every event ``(tenant, k)`` must cause exactly the
  warm ``(tenant, k + 1)``, a key the tenant never requests itself.
- ``CommitMonitor``: samples the group's committed offsets while serve runs. A commit
  seen at time T must only cover events whose warm command was on ``warm-commands``
  (a ``LogAppendTime`` topic: the broker's own clock) by T; ``Outcome`` checks that
  and, after recovery, that every event is committed and warmed in Redis and on the topic.
"""

from __future__ import annotations

import base64
import itertools
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import msgspec
import pytest
import redis
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from tests.conftest import IN_CI
from tests.integration.serve_helpers import (
    event_bytes,
    free_port,
    metric,
    serve_env,
    start_command,
    stop_process,
    wait_for,
)
from tests.traces import REPO

Where = tuple[int, int]  # (partition, offset) of an access event
WARM_TOPIC_CONFIG = {"message.timestamp.type": "LogAppendTime"}


def fault_env(kafka: str, redis_url: str, group: str, topics: dict[str, str], prefix: str,
              **extra: str) -> dict[str, str]:
    """``serve_env`` for a deterministic warm per event: ``nextkey``, one prediction per
    event (no coalescing), nothing stale, budgets and queues far above the load, queue
    entries that outlive the test, no adaptive threshold."""
    settings = {
        "STRATEGY__NAME": "nextkey",
        "BATCH__MAX_EVENTS_PER_TENANT": "4096",
        "BATCH__POLL_BATCH": "500",
        "POLICY__STALE_AFTER_MS": "3600000",
        "POLICY__TENANT_BUDGET_PER_S": "1000000",
        "POLICY__GLOBAL_BUDGET_PER_S": "1000000",
        "POLICY__COMMAND_TTL_S": "3600",
        "POLICY__ADAPTIVE_THRESHOLD": "false",
        "REDIS__QUEUE_MAX_LEN": "1000000",
        "METRICS__LOG_FORMAT": "text",
    }
    return serve_env(kafka, redis_url, group, topics, prefix, **(settings | extra))


def create_topics(kafka: str, partitions: int) -> dict[str, str]:
    """uuid-named events (``partitions``), warm (``LogAppendTime``) and dlq topics."""
    tag = uuid.uuid4().hex[:10]
    topics = {"events": f"events-{tag}", "warm": f"warm-{tag}", "dlq": f"dlq-{tag}"}
    admin = AdminClient({"bootstrap.servers": kafka})
    new = [NewTopic(topics["events"], partitions, 1), NewTopic(topics["dlq"], 1, 1),
           NewTopic(topics["warm"], 1, 1, config=WARM_TOPIC_CONFIG)]
    for fut in admin.create_topics(new).values():
        fut.result(timeout=30)
    return topics


# ---------------------------------------------------------------------- a private broker
def _kafka_lib() -> Path:
    devstack = Path(os.environ.get("DEVSTACK_DIR", REPO / ".devstack"))
    pom = (REPO / "scripts/kafka/pom.xml").read_text()
    version = re.search(r"<kafka.version>(.*)</kafka.version>", pom)
    lib = devstack / f"kafka-{version.group(1) if version else '?'}" / "lib"
    if (lib / ".complete").exists() and shutil.which("java"):
        return lib
    msg = f"no Kafka distribution in {lib} or no java (run scripts/devstack resolve)"
    if IN_CI:
        pytest.fail(msg)
    pytest.skip(msg)


class PrivateKafka:
    """A KRaft broker of our own (the devstack's configuration, on free ports)."""

    def __init__(self, workdir: Path) -> None:
        self._lib = _kafka_lib()
        self.dir = workdir
        self.port, controller = free_port(), free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._config = workdir / "server.properties"
        self._config.write_text(
            "process.roles=broker,controller\nnode.id=1\n"
            f"controller.quorum.voters=1@127.0.0.1:{controller}\n"
            f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{controller}\n"
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}\n"
            "controller.listener.names=CONTROLLER\ninter.broker.listener.name=PLAINTEXT\n"
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT\n"
            f"log.dirs={workdir / 'data'}\nnum.partitions=1\n"
            "offsets.topic.replication.factor=1\noffsets.topic.num.partitions=4\n"
            "transaction.state.log.replication.factor=1\ntransaction.state.log.min.isr=1\n"
            "share.coordinator.state.topic.replication.factor=1\n"
            "share.coordinator.state.topic.min.isr=1\n"
            "group.initial.rebalance.delay.ms=0\nauto.create.topics.enable=false\n")
        (workdir / "log4j2.yaml").write_text(
            "Configuration:\n  Appenders:\n    Console: {name: STDOUT, PatternLayout: "
            '{pattern: "[%d] %p %m (%c)%n"}}\n  Loggers:\n    Root: {level: WARN, '
            "AppenderRef: [{ref: STDOUT}]}\n    Logger: [{name: kafka.server.KafkaRaftServer,"
            " level: INFO}]\n")
        cluster = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        subprocess.run([*self._java(), "kafka.tools.StorageTool", "format", "-t", cluster,
                        "-c", str(self._config)], check=True, capture_output=True, timeout=120)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _java(self) -> list[str]:
        return ["java", "-Xmx512M", "-Xms512M", "-server", "-XX:+UseG1GC",
                "-XX:MaxGCPauseMillis=20", "-XX:InitiatingHeapOccupancyPercent=35",
                "-XX:+ExplicitGCInvokesConcurrent", "-XX:MaxInlineLevel=15",
                "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={self.dir / 'log4j2.yaml'}", "-cp", f"{self._lib}/*"]

    def start(self, timeout_s: float = 120.0) -> None:
        """Start (again, on the same data directory) and wait until it serves metadata."""
        with (self.dir / "kafka.log").open("ab") as out:
            self.proc = subprocess.Popen([*self._java(), "kafka.Kafka", str(self._config)],
                                         stdout=out, stderr=subprocess.STDOUT)
        admin = AdminClient({"bootstrap.servers": self.bootstrap})

        def answers() -> bool:
            assert self.proc is not None and self.proc.poll() is None, self.log_tail()
            try:
                return bool(admin.list_topics(timeout=2).brokers)
            except KafkaException:
                return False

        wait_for(answers, timeout_s, "the private broker", every_s=0.5)

    def stop(self) -> None:
        """A clean shutdown (SIGTERM: controlled shutdown, logs flushed)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def log_tail(self) -> str:
        return (self.dir / "kafka.log").read_text(errors="replace")[-3000:]


# ---------------------------------------------------------------------- the load
class SteadyStream(threading.Thread):
    """Produces ``rate`` events/s round-robin over ``tenants`` until ``finish()``."""

    def __init__(self, kafka: str, topic: str, tenants: int, partitions: int,
                 rate: float) -> None:
        super().__init__(daemon=True, name="steady-stream")
        self._kafka, self._topic, self.rate = kafka, topic, rate
        self.tenants = [f"tenant{i}" for i in range(tenants)]
        self._partitions = partitions
        self._done = threading.Event()
        self.sent = 0
        self.errors: list[str] = []
        self.seconds = 0.0
        self._ends: dict[int, int] = {}  # partition -> 1 + the last delivered offset

    def run(self) -> None:
        producer = Producer({"bootstrap.servers": self._kafka, "linger.ms": 5,
                             "enable.idempotence": True})
        started = time.monotonic()
        while not self._done.is_set():
            due = int((time.monotonic() - started) * self.rate)
            while self.sent < due:
                i, n = self.sent % len(self.tenants), self.sent // len(self.tenants)
                tenant = self.tenants[i]
                producer.produce(self._topic, event_bytes(tenant, str(1000 + 2 * n)), tenant,
                                 partition=i % self._partitions, on_delivery=self._delivered)
                self.sent += 1
            producer.poll(0.01)
        self.seconds = time.monotonic() - started
        if producer.flush(120) != 0:
            self.errors.append("not every event was delivered within 120 s")

    def _delivered(self, err: Any, msg: Any) -> None:
        if err is not None:
            self.errors.append(str(err))
            return
        p = msg.partition()
        self._ends[p] = max(self._ends.get(p, 0), msg.offset() + 1)

    def delivered_ends(self) -> dict[int, int]:
        """1 + the last offset delivered so far, per partition."""
        return dict(self._ends)

    def finish(self) -> None:
        """Stop producing; wait until every event is delivered (and say so)."""
        self.halt()
        assert not self.is_alive() and self.errors == [], self.errors[:5]

    def halt(self) -> None:
        """Stop producing and wait for the deliveries, whatever they did (cleanup)."""
        self._done.set()
        if self.ident is not None:
            self.join(150)

    def describe(self, partitions: int) -> str:
        rate = self.sent / self.seconds if self.seconds else self.rate
        return (f"{self.sent:,} events at {rate:,.0f} events/s, {partitions} partitions, "
                f"{len(self.tenants)} tenants")


# ---------------------------------------------------------------------- the checks
class CommitMonitor(threading.Thread):
    """Samples the committed offsets of ``group`` every ``every_s`` until ``finish()``."""

    def __init__(self, kafka: str, group: str, topic: str, partitions: int,
                 every_s: float = 0.2) -> None:
        super().__init__(daemon=True, name="commit-monitor")
        self._conf = {"bootstrap.servers": kafka, "group.id": group}
        self._tps = [TopicPartition(topic, p) for p in range(partitions)]
        self._every_s = every_s
        self._done = threading.Event()
        self.samples: list[tuple[int, dict[int, int]]] = []  # (read by, epoch ms; offsets)

    def run(self) -> None:
        consumer = Consumer(self._conf)
        try:
            while not self._done.wait(self._every_s):
                try:
                    tps = consumer.committed(self._tps, timeout=2)
                except KafkaException:
                    continue  # the broker is down: nothing can be committed either
                seen_by = time.time_ns() // 1_000_000 + 1
                self.samples.append((seen_by, {tp.partition: tp.offset for tp in tps
                                               if tp.offset >= 0}))
        finally:
            consumer.close()

    def finish(self) -> None:
        self._done.set()
        if self.ident is not None:
            self.join(30)


def committed_now(kafka: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    """The group's committed offsets (0 where none), retried while the broker is busy."""
    consumer = Consumer({"bootstrap.servers": kafka, "group.id": group})
    try:
        for _ in range(10):
            try:
                tps = consumer.committed([TopicPartition(topic, p) for p in range(partitions)],
                                         timeout=5)
                return {tp.partition: max(tp.offset, 0) for tp in tps}
            except KafkaException:
                time.sleep(0.5)
        raise AssertionError("committed offsets could not be read")
    finally:
        consumer.close()


def read_topic(kafka: str, topic: str) -> list[tuple[int, int, int, dict[str, object]]]:
    """(partition, offset, timestamp ms, decoded value) of every record now in ``topic``."""
    consumer = Consumer({"bootstrap.servers": kafka, "group.id": f"check-{uuid.uuid4().hex}",
                         "enable.auto.commit": False})
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in parts}
        consumer.assign([TopicPartition(topic, p, 0) for p in parts if ends[p] > 0])
        out: list[tuple[int, int, int, dict[str, object]]] = []
        left = {p: end for p, end in ends.items() if end > 0}
        deadline = time.monotonic() + 60
        while left and time.monotonic() < deadline:
            for msg in consumer.consume(1000, 0.5):
                if msg.error() is not None:
                    continue
                p, o, value = int(msg.partition() or 0), int(msg.offset() or 0), msg.value()
                out.append((p, o, msg.timestamp()[1], msgspec.json.decode(value or b"null")))
                if o + 1 >= left.get(p, 0):
                    left.pop(p, None)
        assert not left, f"{topic} not read to its end: {left}"
        return out
    finally:
        consumer.close()


class Outcome:
    """What the stack holds after a run: the events, their warms, the commits."""

    def __init__(self, kafka: str, topics: dict[str, str], redis_url: str, prefix: str,
                 tenants: Iterable[str]) -> None:
        self.topic = topics["events"]
        self.events: dict[Where, tuple[str, str]] = {
            (p, o): (str(v["tenant"]), str(v["key"])) for p, o, _t, v in
            read_topic(kafka, topics["events"])}
        self.first_on_topic: dict[Where, int] = {}  # the cause's first warm, append ms
        warms = read_topic(kafka, topics["warm"])
        self.warms = [v for _p, _o, _ts, v in warms]
        for _p, _o, ts, v in warms:
            _topic, part, offset = str(v["source"]).rsplit("/", 2)
            where = (int(part), int(offset))
            if self.events.get(where, ("", ""))[0] != v["tenant"]:
                continue
            if int(self.events[where][1]) + 1 == int(str(v["key"])):
                self.first_on_topic[where] = min(ts, self.first_on_topic.get(where, ts))
        client = redis.Redis.from_url(redis_url, decode_responses=True)
        try:
            self.queued = {t: set(client.zrange(f"{prefix}:{t}:queue", 0, -1)) for t in tenants}
        finally:
            client.close()

    def ends(self) -> dict[int, int]:
        ends: dict[int, int] = {}
        for p, o in self.events:
            ends[p] = max(ends.get(p, 0), o + 1)
        return ends

    def unwarmed(self, below: dict[int, int] | None = None) -> list[Where]:
        """Events (below these offsets) whose warm is missing from Redis or the topic."""
        return sorted(w for w, (tenant, key) in self.events.items()
                      if (below is None or w[1] < below.get(w[0], 0))
                      and (w not in self.first_on_topic
                           or str(int(key) + 1) not in self.queued.get(tenant, set())))

    def unprocessed(self, committed: dict[int, int]) -> list[Where]:
        """Events at or past the committed offsets."""
        return sorted(w for w in self.events if w[1] >= committed.get(w[0], 0))

    def commits_ahead(self, samples: list[tuple[int, dict[int, int]]]) -> list[str]:
        """Commits seen before the warm of an event they covered was on the topic."""
        never = 1 << 62
        latest: dict[int, list[int]] = {}  # partition -> latest first warm of offsets <= o
        for p, end in self.ends().items():
            firsts = (self.first_on_topic.get((p, o), never) for o in range(end))
            latest[p] = list(itertools.accumulate(firsts, max))
        bad = []
        for seen_by, offsets in samples:
            for p, committed in offsets.items():
                if committed > 0 and latest[p][committed - 1] > seen_by:
                    late = next(o for o in range(committed)
                                if self.first_on_topic.get((p, o), never) > seen_by)
                    bad.append(f"partition {p} committed to {committed} by {seen_by} ms, "
                               f"before the warm of offset {late} was on the topic")
        return bad

    def lost(self, committed: dict[int, int]) -> int:
        """Events unprocessed or committed without their warm: what the tests call lost."""
        return len(set(self.unprocessed(committed)) | set(self.unwarmed()))


class Replica:
    """One ``python -m stream_warmer serve`` subprocess with its own /metrics port."""

    def __init__(self, env: dict[str, str], logs: Path, name: str) -> None:
        self.port, self.name, self._logs = free_port(), name, logs
        self.proc = start_command("serve", env | {"STREAM_WARMER_METRICS__PORT": str(self.port)},
                                  logs, log=name)

    def metric(self, name: str, **labels: str) -> float:
        return metric(self.port, name, **labels)

    def wait_up(self, timeout_s: float = 60.0) -> None:
        """Until /metrics answers (the app is built and subscribed)."""
        def up() -> bool:
            assert self.proc.poll() is None, self.log_tail()
            return self.metric("stream_warmer_events_total") >= 0

        wait_for(up, timeout_s, f"{self.name} to serve /metrics")

    def kill(self) -> None:
        """SIGKILL: no final batch, no final checkpoint, no goodbye to the group."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> int:
        return stop_process(self.proc)

    def log_tail(self) -> str:
        return (self._logs / f"{self.name}.log").read_text(errors="replace")[-3000:]


def tiny_artifact(nudge: float) -> Any:
    """The artifact of ``tests.tiny_model``'s LSTM, one weight moved by ``nudge`` (so two
    nudges are two versions); it warms n + 1 after an integer key n whatever its weights."""
    import torch

    from stream_warmer.model.checkpoint import to_artifact
    from stream_warmer.trainer.store import Artifact
    from tests.tiny_model import tiny_lstm

    strategy = tiny_lstm()
    with torch.no_grad():
        next(strategy.model.parameters()).view(-1)[0] += nudge
    weights, manifest = to_artifact(strategy.model, strategy.spec, strategy.threshold)
    return Artifact(weights, manifest)
