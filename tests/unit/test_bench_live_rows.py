"""bench live's rows: the table says which cut a row ran with."""

from __future__ import annotations

from stream_warmer.bench.live import LiveRow, format_rows


def _row(**kw: float) -> LiveRow:
    return LiveRow("t", "lstm", 2000.0, 10, 100, 0.4, 0.2, 0.6, 0.5, 10.0, 0.45, 0.3,
                   5.0, 9.0, **kw)  # type: ignore[arg-type]


def test_a_row_cut_by_the_policy_says_at_what_score() -> None:
    own, cut = format_rows([_row(), _row(min_confidence=0.11)]).splitlines()[2:]
    assert own.split(" | ")[2] == "lstm"
    assert cut.split(" | ")[2] == "lstm ≥ 0.11"
    assert LiveRow(**_row(min_confidence=0.11).row()).min_confidence == 0.11
