"""docs/OPERATIONS.md lists serve's metrics: every one it names is on serve's registry
(with the model watcher's, which serve includes when it serves the LSTM)."""

from __future__ import annotations

import re
from pathlib import Path

from stream_warmer.serve.metrics import ServeMetrics
from stream_warmer.trainer.metrics import WATCHER_METRICS

DOC = Path(__file__).resolve().parents[2] / "docs" / "OPERATIONS.md"


def test_every_serve_metric_the_docs_list_exists() -> None:
    text = DOC.read_text()
    listed = text[text.index("Serve's metrics"): text.index("The trainer's:")]
    names = {re.sub(r"\{.*", "", n) for n in re.findall(r"`([a-z_]+(?:\{[a-z_,]+\})?)`", listed)}
    names -= {"stream_warmer_"}
    metrics = ServeMetrics()
    metrics.include(WATCHER_METRICS)
    registered = set()
    for family in metrics.registry.collect():
        registered.add(family.name.removeprefix("stream_warmer_"))
    missing = {n for n in names if n.removesuffix("_total") not in registered}
    assert len(names) > 20
    assert not missing, missing
