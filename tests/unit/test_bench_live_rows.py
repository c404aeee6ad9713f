"""bench live's rows: the table says which cut a row ran with, and which LSTM rows were
trained on the trace's timestamps rather than the events as serve received them."""

from __future__ import annotations

from stream_warmer.bench.live import LiveRow, format_rows


def _row(strategy: str = "lstm", **kw: float) -> LiveRow:
    return LiveRow("t", strategy, 2000.0, 10, 100, 0.4, 0.2, 0.6, 0.5, 10.0, 0.45, 0.3,
                   5.0, 9.0, **{"paced": True, **kw})  # type: ignore[arg-type]


def test_a_row_cut_by_the_policy_says_at_what_score() -> None:
    own, cut = format_rows([_row(), _row(min_confidence=0.11)]).splitlines()[2:]
    assert own.split(" | ")[2] == "lstm"
    assert cut.split(" | ")[2] == "lstm ≥ 0.11"
    assert LiveRow(**_row(min_confidence=0.11).row()).min_confidence == 0.11


def test_an_lstm_row_trained_on_the_trace_timestamps_is_marked() -> None:
    rows = [_row(paced=False), _row("markov", paced=False), _row(min_confidence=0.1, paced=False)]
    old, markov, cut = (line.split(" | ")[2] for line in format_rows(rows).splitlines()[2:])
    assert (old, markov, cut) == ("lstm †", "markov", "lstm ≥ 0.1 †")
    written = _row().row()
    assert written["paced"] and not LiveRow(**{k: v for k, v in written.items()
                                               if k != "paced"}).paced  # an older row
