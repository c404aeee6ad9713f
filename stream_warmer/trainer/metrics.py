"""Prometheus metrics of the trainer and of the model watcher in each serve replica."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

TRAINER_EVENTS = Counter(
    "stream_warmer_trainer_events_total", "Access events read by the trainer", ["result"]
)
TRAINER_BUFFER = Gauge("stream_warmer_trainer_buffer_events", "Events held in the training buffer")
TRAINER_ROUNDS = Counter(
    "stream_warmer_trainer_rounds_total",
    "Training rounds by outcome (published, rejected, skipped, failed)",
    ["result"],
)
TRAINER_ROUND_RUNNING = Gauge(
    "stream_warmer_trainer_round_running", "1 while a training round is in progress"
)
TRAINER_ROUND_SECONDS = Histogram(
    "stream_warmer_trainer_round_seconds",
    "Wall time of one training round (train + gate + publish)",
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600),
)
TRAINER_GATE_HIT_RATIO = Gauge(
    "stream_warmer_trainer_gate_hit_ratio",
    "Hit ratio on the gate's held-out slice in the last round",
    ["model"],
)
MODEL_UPDATES = Counter(
    "stream_warmer_model_updates_total",
    "Model versions seen on model-updates by outcome (loaded, rejected, bad_record, same)"
    " and reason (rejected: unsigned, bad_signature, store_unavailable, invalid;"
    " bad_record: empty, schema, not_json; empty otherwise)",
    ["result", "reason"],
)
MODEL_LOAD_SECONDS = Histogram(
    "stream_warmer_model_load_seconds",
    "Fetch + check + load time of one model version (background thread)",
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30),
)
MODEL_SERVING = Gauge(
    "stream_warmer_model_serving_info",
    "1 for the model version this process serves",
    ["name", "version"],
)

# the model watcher's metrics: each serve replica shows them on its own /metrics too
WATCHER_METRICS = (MODEL_UPDATES, MODEL_LOAD_SECONDS, MODEL_SERVING)
