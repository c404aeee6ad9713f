"""``bench pipeline`` end to end on small real traces: it runs, cleans up, and reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis

from stream_warmer.cli import main
from stream_warmer.data import SAMPLE_TRACE
from tests.integration.serve_helpers import serve_env
from tests.traces import require_trace

pytestmark = pytest.mark.integration


def test_bench_pipeline_writes_its_row(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    trace = require_trace("lirs_mix5.csv.gz")
    topics = {"events": "unused", "warm": "unused", "dlq": "unused"}
    env = serve_env(kafka_bootstrap, redis_url, "unused", topics, "unused",
                    TOPICS__PARTITIONS="2")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    out = tmp_path / "bench.json"
    code = main(["bench", "pipeline", "--trace", str(trace), "--events", "20000",
                 "--latency-seconds", "1", "--latency-warmup-seconds", "1", "--json", str(out)])
    assert code == 0
    row = json.loads(out.read_text())
    assert set(row) >= {"strategy", "events", "events_per_s", "ceiling_events_per_s", "ratio",
                        "latency_p50_ms", "latency_p99_ms"}
    assert row["strategy"] == "markov" and row["events"] == 20000
    assert row["events_per_s"] > 0 and row["ceiling_events_per_s"] > 0
    assert row["ratio"] == pytest.approx(row["events_per_s"] / row["ceiling_events_per_s"], 0.01)
    assert row["latency_samples"] > 0 and row["latency_p50_ms"] <= row["latency_p99_ms"]
    assert row["latency_warmup_s"] == 1.0 and row["latency_warmup_p99_ms"] > 0
    assert "ceiling_events_per_s" in capsys.readouterr().out
    client = redis.Redis.from_url(redis_url)
    assert list(client.scan_iter("bench-*", count=1000)) == []  # its keys are gone
    client.close()


# a tiny LSTM (as the trainer tests shrink it): a training round of seconds on 2 cores
TINY_LSTM = {
    "TRAINER__EPOCHS": "1", "TRAINER__MAX_WINDOWS": "64", "TRAINER__SEQ_LEN": "16",
    "MODEL__HIDDEN": "8", "MODEL__EMBED_DIM": "4", "MODEL__DEVICE": "cpu",
    "MODEL__CPU_THREADS": "1",
}


def test_bench_pipeline_lstm_row_beside_markov(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    topics = {"events": "unused", "warm": "unused", "dlq": "unused"}
    env = serve_env(kafka_bootstrap, redis_url, "unused", topics, "unused",
                    TOPICS__PARTITIONS="2", **TINY_LSTM)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    out = tmp_path / "bench.json"
    code = main(["bench", "pipeline", "--trace", str(SAMPLE_TRACE), "--events", "3000",
                 "--strategy", "markov,lstm", "--train-events", "3000", "--swap-timeout", "60",
                 "--latency-seconds", "1", "--latency-warmup-seconds", "1", "--json", str(out)])
    assert code == 0
    markov, lstm = json.loads(out.read_text())
    assert markov["strategy"] == "markov" and markov["model_version"] == "baseline"
    assert markov["train_s"] is None
    assert lstm["strategy"] == "lstm"
    assert lstm["model_version"] not in {"baseline", "untrained", "candidate"}
    assert lstm["train_events"] == 3000 and lstm["train_s"] > 0
    assert lstm["warm_commands"] > 0 and lstm["latency_samples"] > 0
    for row in (markov, lstm):  # the same loaded topic, after the training events
        assert row["events"] == 3000 and row["trace_offset"] == 3000
        assert row["ceiling_events_per_s"] == markov["ceiling_events_per_s"]
        assert row["events_per_s"] > 0
    printed = capsys.readouterr().out
    assert lstm["model_version"] in printed and "goals lstm" in printed
    client = redis.Redis.from_url(redis_url)
    assert list(client.scan_iter("bench-*", count=1000)) == []  # the model store too
    client.close()
