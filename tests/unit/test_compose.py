"""docker-compose.yml cannot run here (no Docker engine): check that it parses and that
its names, ports and environment agree with the settings and the devstack."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from stream_warmer.settings import ENV_PREFIX, load_settings

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def test_services_present(compose: dict[str, Any]) -> None:
    assert {"kafka", "redis", "cache", "topics", "warmer", "loader", "trainer",
            "replay"} <= set(compose["services"])


def test_kafka_image_matches_devstack_version(compose: dict[str, Any]) -> None:
    pom = (REPO / "scripts" / "kafka" / "pom.xml").read_text()
    version = re.search(r"<kafka.version>(.+?)</kafka.version>", pom)
    assert version is not None
    assert compose["services"]["kafka"]["image"] == f"apache/kafka:{version.group(1)}"


def test_every_stream_warmer_variable_is_a_valid_setting(compose: dict[str, Any]) -> None:
    seen = 0
    for name, service in compose["services"].items():
        env = {k: str(v) for k, v in (service.get("environment") or {}).items()}
        ours = {k: v for k, v in env.items() if k.startswith(ENV_PREFIX)}
        seen += len(ours)
        load_settings(None, ours)  # raises ConfigError naming any bad variable
        if name in {"warmer", "loader", "trainer", "topics", "replay"}:
            host = ours["STREAM_WARMER_KAFKA__BOOTSTRAP_SERVERS"].split(":")[0]
            assert host in compose["services"], f"{name} points at unknown host {host}"
    assert seen > 0


def test_ports_agree_with_defaults(compose: dict[str, Any]) -> None:
    defaults = load_settings(None, {})
    services = compose["services"]
    kafka_port = defaults.kafka.bootstrap_servers.rsplit(":", 1)[1]
    assert f"{kafka_port}:{kafka_port}" in services["kafka"]["ports"]
    assert "6379:6379" in services["redis"]["ports"]
    warmer_port = services["warmer"]["environment"]["STREAM_WARMER_METRICS__PORT"]
    assert warmer_port in str(services["warmer"]["healthcheck"]["test"])


def test_commands_are_real_subcommands(compose: dict[str, Any]) -> None:
    from stream_warmer.cli import COMMANDS

    for name in ("topics", "warmer", "loader", "trainer", "replay"):
        command = compose["services"][name]["command"][0]
        assert command in COMMANDS, f"service {name} runs unknown subcommand {command!r}"


def test_replay_service_arguments_parse(compose: dict[str, Any]) -> None:
    from stream_warmer.cli import build_parser

    for name in ("topics", "warmer", "loader", "trainer", "replay"):
        build_parser().parse_args(compose["services"][name]["command"])
