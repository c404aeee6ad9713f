"""stream_warmer: a predictive cache warmer that runs as a Kafka consumer group."""

__version__ = "0.1.0"
