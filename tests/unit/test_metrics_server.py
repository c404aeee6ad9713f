"""MetricsServer: prometheus_client's WSGI app for /metrics, a /healthz beside it."""

from __future__ import annotations

import urllib.error
import urllib.request

from prometheus_client import CollectorRegistry, Counter

from stream_warmer.serve.metrics import MetricsServer


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_metrics_of_its_registry_only_and_health_as_told() -> None:
    registry = CollectorRegistry()
    Counter("demo_things", "Things", registry=registry).inc(3)
    healthy = [True]
    with MetricsServer(registry, lambda: healthy[0], "127.0.0.1", 0) as server:
        code, body = _get(server.port, "/metrics")
        assert code == 200 and "demo_things_total 3.0" in body
        assert "python_gc_objects_collected_total" not in body  # not the default registry
        assert _get(server.port, "/healthz") == (200, "ok\n")
        healthy[0] = False
        assert _get(server.port, "/healthz") == (503, "unhealthy\n")
