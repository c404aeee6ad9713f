"""The demo's pure parts: topic renaming, child environments, metric scraping, progress."""

from __future__ import annotations

import http.server
import math
import threading
from collections.abc import Iterator

import pytest

from stream_warmer.demo import child_env, demo_topics
from stream_warmer.demoreport import Sample, progress_line, sample
from stream_warmer.settings import TopicSettings, load_settings

PAGE = b"""# TYPE stream_warmer_events_total counter
stream_warmer_events_total 1200.0
# TYPE stream_warmer_warm_commands_total counter
stream_warmer_warm_commands_total 300.0
# TYPE stream_warmer_warm_precision gauge
stream_warmer_warm_precision 0.75
# TYPE stream_warmer_useful_warms_total counter
stream_warmer_useful_warms_total 150.0
# TYPE stream_warmer_model_version_info gauge
stream_warmer_model_version_info{strategy="lstm",version="v3"} 1.0
stream_warmer_model_version_info{strategy="markov",version="baseline"} 0.0
# TYPE stream_warmer_trainer_rounds_total counter
stream_warmer_trainer_rounds_total{result="published"} 2.0
# TYPE stream_warmer_trainer_round_running gauge
stream_warmer_trainer_round_running 1.0
"""


@pytest.fixture
def metrics_port() -> Iterator[int]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(PAGE)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_demo_topics_are_renamed_per_run() -> None:
    t = demo_topics(TopicSettings(), "abc")
    assert t.access_events == "demo-abc-access-events"
    assert t.model_updates == "demo-abc-model-updates"


def test_child_envs_are_valid_settings() -> None:
    warmer, trainer = child_env(demo_topics(TopicSettings(), "r1"), "r1", 9200, 9201, 90_000)
    w = load_settings(None, warmer)
    t = load_settings(None, trainer)
    assert w.topics.access_events == t.topics.access_events == "demo-r1-access-events"
    assert w.kafka.consumer_group != t.trainer.consumer_group
    assert w.strategy.name == "lstm"
    assert t.trainer.retrain_every_events == 18_000
    assert t.trainer.buffer_events == 20_000
    assert w.model.cpu_threads == t.model.cpu_threads == 1
    assert w.metrics.port != t.metrics.port


def test_sample_reads_metrics_pages(metrics_port: int) -> None:
    s = sample(metrics_port, metrics_port)
    assert s.events == 1200 and s.warms == 300 and s.precision == 0.75 and s.useful == 150
    assert s.versions == {"v3"}
    assert s.rounds == {"published": 2.0}
    assert s.training


def test_sample_of_a_dead_port_is_empty() -> None:
    from stream_warmer.localstack import free_port

    s = sample(free_port(), free_port())
    assert s.events == 0 and not s.versions


def test_settled_waits_for_due_rounds_and_their_swaps() -> None:
    from stream_warmer.demoreport import settled

    done = Sample(t=0.0, rounds={"rejected": 1.0, "published": 1.0}, swaps=1)
    assert settled(done)
    assert not settled(Sample(t=0.0, rounds={"published": 1.0}, swaps=1, training=True))
    assert not settled(Sample(t=0.0, rounds={"published": 2.0}, swaps=1))  # not swapped in yet


def test_progress_line_rates() -> None:
    a = Sample(t=10.0, events=0, warms=0)
    b = Sample(t=12.0, events=4000, warms=1000, precision=0.5, useful=250, versions={"v1"})
    line = progress_line(a, b, 5000, (0.75, 0.5))
    assert "2,000 ev/s" in line and "500 warm/s" in line and "model v1" in line
    assert "useful  25.0%" in line
    assert "hit ratio 0.750 (no warming 0.500)" in line
    assert "hit ratio   -   (no warming   -  )" in progress_line(a, b, 0, (math.nan, math.nan))
