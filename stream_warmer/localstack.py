"""The local machine's side of a run on one host (the demo, the live bench): free ports,
the devstack (started when the Kafka or Redis configured on loopback does not answer),
and ``python -m stream_warmer`` child processes."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO

from stream_warmer.errors import StreamWarmerError
from stream_warmer.settings import Settings

REPO = Path(__file__).resolve().parents[1]
DEVSTACK = REPO / "scripts" / "devstack"


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
