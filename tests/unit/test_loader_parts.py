"""The loader's parts: origin resolution, the Redis cache, backoff, shares, outages, CLI."""

from __future__ import annotations

import random
from typing import Any

import pytest
import redis

from stream_warmer.backoff import FIRST_BACKOFF_S, Backoff
from stream_warmer.cli import COMMANDS, build_parser
from stream_warmer.errors import ConfigError
from stream_warmer.load import RedisCache, SimulatedOrigin, UnavailableError, resolve_origin
from stream_warmer.load.jobs import Job, attempt, backoff_s
from stream_warmer.load.outage import Outage
from stream_warmer.load.queue import WarmQueue, fair_shares
from stream_warmer.settings import LoaderSettings
from stream_warmer.warmqueue import QueueEntry
from tests.unit.loader_fakes import Clock, FakeQueueRedis


def origin_echo(tenant: str, key: str) -> bytes:
    return f"{tenant}/{key}".encode()


class Holder:
    @staticmethod
    def fetch(tenant: str, key: str) -> bytes:
        return b"held"


NOT_CALLABLE = 42


# ---------------------------------------------------------------------- origin
def test_simulated_origin_sleeps_and_returns_the_payload() -> None:
    slept: list[float] = []
    origin = SimulatedOrigin(latency_ms=3, payload_bytes=5, sleep=slept.append)
    assert origin("acme", "k") == b"xxxxx"
    assert slept == [0.003]
    assert isinstance(resolve_origin(LoaderSettings()), SimulatedOrigin)


def test_origin_module_function_is_imported() -> None:
    origin = resolve_origin(LoaderSettings(origin=f"{__name__}:origin_echo"))
    assert origin("acme", "k1") == b"acme/k1"
    nested = resolve_origin(LoaderSettings(origin=f"{__name__}:Holder.fetch"))
    assert nested("a", "b") == b"held"


@pytest.mark.parametrize(("spec", "needle"), [
    ("no_colon_here", "expected 'simulated' or 'module:function'"),
    (":fetch", "expected 'simulated'"),
    ("no_such_module_xyz:fetch", "cannot import module 'no_such_module_xyz'"),
    (f"{__name__}:nope", "has no attribute 'nope'"),
    (f"{__name__}:NOT_CALLABLE", "is a int, not a callable"),
])
def test_bad_origin_is_a_config_error_naming_the_variable(spec: str, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        resolve_origin(LoaderSettings(origin=spec))
    assert "STREAM_WARMER_LOADER__ORIGIN" in str(info.value)
    assert needle in str(info.value)


# ---------------------------------------------------------------------- cache
class RecordingRedis:
    """A cache client; with ``error`` set, ``SET`` raises it (``EXISTS`` too unless
    ``reads_ok``), as redis-py would for that reply."""

    def __init__(self, error: redis.RedisError | None = None, reads_ok: bool = False) -> None:
        self.data: dict[str, bytes] = {}
        self.sets: list[tuple[str, bytes, Any]] = []
        self.error, self.reads_ok = error, reads_ok

    def set(self, key: str, value: bytes, px: Any = None) -> None:
        if self.error is not None:
            raise self.error
        self.sets.append((key, value, px))
        self.data[key] = value

    def pipeline(self, transaction: bool = True) -> Any:
        outer = self

        class Pipe:
            def __init__(self) -> None:
                self.keys: list[str] = []

            def exists(self, key: str) -> None:
                self.keys.append(key)

            def execute(self) -> list[int]:
                if outer.error is not None and not outer.reads_ok:
                    note = f"Command # 1 (EXISTS {self.keys[0]}) of pipeline caused error: "
                    raise type(outer.error)(note + str(outer.error))
                return [int(k in outer.data) for k in self.keys]

        return Pipe()


def entry(tenant: str, key: str) -> QueueEntry:
    return QueueEntry(tenant, key, 0.5, 0)


def test_redis_cache_formats_keys_sets_ttl_and_checks_presence() -> None:
    client = RecordingRedis()
    cache = RedisCache(client, "c:{tenant}:{key}", ttl_s=1.5)  # type: ignore[arg-type]
    cache.put(entry("acme", "k1"), b"v")
    assert client.sets == [("c:acme:k1", b"v", 1500)]
    assert cache.present([entry("acme", "k1"), entry("acme", "k2")]) == [True, False]
    assert cache.present([]) == []
    no_ttl = RedisCache(client, "{key}")  # type: ignore[arg-type]
    no_ttl.put(entry("acme", "k3"), b"w")
    assert client.sets[-1] == ("k3", b"w", None)


def test_redis_cache_wraps_connection_errors() -> None:
    for error in (redis.TimeoutError("slow"), redis.ConnectionError("refused")):
        cache = RedisCache(RecordingRedis(error), "{tenant}:{key}")  # type: ignore[arg-type]
        with pytest.raises(UnavailableError):
            cache.put(entry("a", "k"), b"v")
        with pytest.raises(UnavailableError):
            cache.present([entry("a", "k")])


BUSY = "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE."


@pytest.mark.parametrize("error", [
    redis.ReadOnlyError("You can't write against a read only replica."),
    redis.exceptions.OutOfMemoryError("command not allowed when used memory > 'maxmemory'."),
    redis.ResponseError(BUSY),
    redis.BusyLoadingError("Redis is loading the dataset in memory"),
], ids=lambda e: type(e).__name__)
def test_cache_failover_oom_busy_and_loading_are_an_outage_like_the_queue(
        error: redis.RedisError) -> None:
    cache = RedisCache(RecordingRedis(error), "{tenant}:{key}")  # type: ignore[arg-type]
    with pytest.raises(UnavailableError, match="EXISTS of 1 keys"):
        cache.present([entry("a", "k")])  # a pipeline's error: quoted after the command
    with pytest.raises(UnavailableError, match="SET"):
        cache.put(entry("a", "k"), b"v")
    job = Job(entry("a", "k"), 0.0, attempts=1, value=b"v")
    outcome = attempt(job, lambda t, k: b"unused", cache, lambda: 0.0)
    assert outcome.kind == "cache_down" and job.value == b"v"  # kept, written again later


def test_cache_error_replies_that_are_bugs_still_raise() -> None:
    wrong = redis.ResponseError("WRONGTYPE Operation against a key holding the wrong kind")
    cache = RedisCache(RecordingRedis(wrong), "{tenant}:{key}")  # type: ignore[arg-type]
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        cache.present([entry("a", "k")])
    job = Job(entry("a", "k"), 0.0, attempts=1, value=b"v")
    outcome = attempt(job, lambda t, k: b"unused", cache, lambda: 0.0)
    assert outcome.kind == "cache_error" and "WRONGTYPE" in outcome.error


@pytest.mark.parametrize("fmt", ["{tenant}", "{tenant}:{bogus}", "{0}", "{tenant", "static"])
def test_bad_cache_key_format_is_a_config_error(fmt: str) -> None:
    with pytest.raises(ConfigError, match="STREAM_WARMER_LOADER__CACHE_KEY_FORMAT"):
        RedisCache(RecordingRedis(), fmt)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- backoff, shares
def test_backoff_doubles_is_capped_and_jittered_down_by_at_most_half() -> None:
    rng = random.Random(1)
    for attempts, full in [(1, 0.05), (2, 0.1), (3, 0.2), (6, 1.0), (30, 1.0)]:
        waits = [backoff_s(attempts, 0.05, 1.0, rng) for _ in range(200)]
        assert all(full / 2 <= w <= full for w in waits)
        assert max(waits) - min(waits) > full / 4  # jitter really spreads them


def test_fair_shares_split_the_budget_round_robin() -> None:
    assert fair_shares(["a", "b", "c"], 8, 8, 0) == [("a", 3), ("b", 3), ("c", 2)]
    assert fair_shares(["a", "b", "c"], 4, 8, 1) == [("b", 2), ("c", 2)]
    assert fair_shares(["a", "b", "c"], 100, 5, 2) == [("c", 5), ("a", 5), ("b", 5)]
    assert fair_shares(["a", "b", "c", "d"], 2, 8, 3) == [("d", 1), ("a", 1)]
    assert fair_shares([], 5, 5, 0) == [] and fair_shares(["a"], 0, 5, 0) == []


def test_queue_wait_never_blocks_past_its_cap_nor_for_ever() -> None:
    fake = FakeQueueRedis()
    waits: list[float] = []
    fake.blpop_hook = waits.append
    queue = WarmQueue(fake, "sw", max_block_s=0.25)
    assert queue.wait(10) is False
    assert queue.wait(0) is False
    fake.push("acme", "k", 0.5)
    assert queue.wait(0.1) is True
    assert waits == [0.25, 0.001, 0.1]
    fake.down = True
    with pytest.raises(UnavailableError, match="BLPOP"):
        queue.wait(0.1)


class FailingQueueRedis(FakeQueueRedis):
    """Every command fails with the error reply ``error``."""

    def __init__(self, error: redis.RedisError) -> None:
        super().__init__()
        self.error = error

    def _check(self, name: str) -> None:
        self.calls.append(name)
        raise self.error


@pytest.mark.parametrize("error", [
    redis.ReadOnlyError("You can't write against a read only replica."),
    redis.exceptions.OutOfMemoryError("command not allowed when used memory > 'maxmemory'."),
    redis.ResponseError("BUSY Redis is busy running a script."),
    redis.BusyLoadingError("Redis is loading the dataset in memory"),
], ids=lambda e: type(e).__name__)
def test_queue_failover_oom_busy_and_loading_are_an_outage_like_serve(
        error: redis.RedisError) -> None:
    queue = WarmQueue(FailingQueueRedis(error), "sw")
    with pytest.raises(UnavailableError, match="SMEMBERS"):
        queue.tenants()
    with pytest.raises(UnavailableError, match="POP"):
        queue.pop([("acme", 1)])
    with pytest.raises(UnavailableError, match="BLPOP"):
        queue.wait(0.1)


def test_queue_error_replies_that_are_bugs_still_raise() -> None:
    queue = WarmQueue(FailingQueueRedis(redis.ResponseError("WRONGTYPE Operation against "
                                                            "a key holding the wrong kind")), "sw")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        queue.tenants()
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        queue.pop([("acme", 1)])


# ---------------------------------------------------------------------- outage
class MaxRandom:
    """An rng whose jitter always keeps the whole backoff."""

    def uniform(self, _low: float, high: float) -> float:
        return high


def test_outage_backs_off_only_when_a_probe_fails() -> None:
    clock, changes = Clock(), list[bool]()
    outage = Outage("queue", clock, backoff_max_s=0.5, on_change=changes.append,
                    rng=MaxRandom())  # type: ignore[arg-type]
    assert outage.due() and outage.wait_s() == 0
    outage.fail("down")
    assert outage.active and not outage.due() and changes == [False]
    assert outage.wait_s() == pytest.approx(FIRST_BACKOFF_S)
    outage.fail("late failure of older work")  # not a probe: no further backoff
    assert outage.wait_s() == pytest.approx(FIRST_BACKOFF_S)
    for expected in (0.2, 0.4, 0.5, 0.5):
        clock.advance(outage.wait_s())
        assert outage.due()
        outage.fail("still down")
        assert outage.wait_s() == pytest.approx(expected)
    outage.ok()
    assert not outage.active and changes == [False, True]


def _probe_waits(outage: Outage, clock: Clock, probes: int) -> list[float]:
    """The waits of one outage's first ``probes`` failed probes, each at its retry time."""
    outage.fail("down")
    waits = []
    for _ in range(probes):
        waits.append(outage.wait_s())
        clock.advance(outage.wait_s())
        outage.fail("still down")
    return waits


def test_outage_waits_are_jittered_like_serves() -> None:
    clock = Clock()
    waits = _probe_waits(Outage("cache", clock, 1.0, rng=random.Random(7)), clock, 8)
    for wait, full in zip(waits, [0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0, 1.0], strict=True):
        assert full / 2 <= wait <= full + 1e-9
    assert len({round(w, 6) for w in waits[4:]}) > 1  # capped waits still spread
    again = Outage("cache", clock, 1.0, rng=random.Random(7))
    assert _probe_waits(again, clock, 8) == waits  # an injected rng: the same waits
    shared = Backoff(1.0, rng=random.Random(7))  # serve's Outage draws from this too
    assert [shared.start(0.0), *(shared.again() for _ in range(7))] == pytest.approx(waits)


def test_an_outage_right_after_a_recovery_goes_on_backing_off() -> None:
    clock = Clock()
    outage = Outage("cache", clock, backoff_max_s=1.0, rng=MaxRandom())  # type: ignore[arg-type]
    outage.fail("OOM on SET")
    assert outage.wait_s() == pytest.approx(0.1)
    for expected in (0.2, 0.4):  # EXISTS answers, SET still fails: a flapping cache
        clock.advance(outage.wait_s())
        outage.ok()
        outage.fail("OOM on SET")
        assert outage.wait_s() == pytest.approx(expected)
    clock.advance(outage.wait_s())
    outage.ok()
    clock.advance(5.0)  # long after the recovery: a new outage starts over
    outage.fail("down")
    assert outage.wait_s() == pytest.approx(FIRST_BACKOFF_S)


# ---------------------------------------------------------------------- cli
def test_load_is_a_command_after_serve() -> None:
    assert COMMANDS.index("load") == COMMANDS.index("serve") + 1
    args = build_parser().parse_args(["load", "--max-entries", "5", "--idle-timeout", "1.5"])
    assert (args.command, args.max_entries, args.idle_timeout) == ("load", 5, 1.5)


def test_load_with_a_bad_origin_fails_before_connecting() -> None:
    from stream_warmer.cli import load
    from stream_warmer.settings import load_settings

    settings = load_settings(None, {"STREAM_WARMER_LOADER__ORIGIN": "no_such_module_xyz:fetch",
                                    "STREAM_WARMER_REDIS__URL": "redis://127.0.0.1:1/0"})
    args = build_parser().parse_args(["load"])
    with pytest.raises(ConfigError, match="STREAM_WARMER_LOADER__ORIGIN"):
        load.run(args, settings)
