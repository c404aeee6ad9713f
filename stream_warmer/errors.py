"""One small exception tree; foreign errors are wrapped with ``raise X(...) from exc``."""

from __future__ import annotations


class StreamWarmerError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigError(StreamWarmerError):
    """A setting is missing or out of range; the message names the variable."""


class KafkaError(StreamWarmerError):
    """The Kafka cluster refused or failed an operation (not a bad payload)."""


class SinkUnavailableError(StreamWarmerError):
    """A sink (Redis, the producer) cannot take writes right now; retry later."""


class ModelError(StreamWarmerError):
    """A model artifact or manifest is invalid (hash, architecture, shapes, values)."""


class TraceError(StreamWarmerError):
    """A trace file cannot be read or has the wrong layout."""
