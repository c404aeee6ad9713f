"""scripts/at_spend.py: where the frontier is refined, and that refining keeps one model."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.scripts import load_script


def _at_spend() -> ModuleType:
    return load_script("at_spend")


def _row(t: float | None, hit: float, spend: float, *, delay: int = 0, f: float = 0.1,
         strategy: str = "lstm") -> dict[str, Any]:
    return {"trace": "x", "strategy": strategy, "cache_frac": f, "k": 1, "delay": delay,
            "threshold": t, "warm_rate": None, "hit_ratio": hit, "warms_per_request": spend}


def test_a_peer_spend_in_a_wide_gap_gets_thresholds_between_its_neighbours() -> None:
    m = _at_spend()
    front = [_row(0.99, 0.38, 0.194), _row(0.992, 0.33, 0.145), _row(0.995, 0.32, 0.138)]
    peers = [_row(None, 0.335, 0.161, strategy="mithril"),
             _row(None, 0.32, 0.14, strategy="pg")]  # between 0.138 and 0.145: narrow
    assert m._gaps(peers, front) == {0: [0.9904, 0.9908, 0.9912, 0.9916]}
    # a row of the first round narrows the gap
    again = m._gaps(peers, [*front, _row(0.9908, 0.36, 0.183)])
    assert again == {0: [0.99104, 0.99128, 0.99152, 0.99176]}


def test_of_rows_that_spend_nothing_the_nearest_threshold_bounds_the_gap() -> None:
    m = _at_spend()
    front = [_row(0.75, 0.259, 0.078, delay=4), *(_row(t, 0.187, 0.0, delay=4)
                                                  for t in (0.999, 0.8, 0.9))]
    peers = [_row(None, 0.2308, 0.057, delay=4, strategy="mithril")]
    assert m._gaps(peers, front) == {4: [0.76, 0.77, 0.78, 0.79]}


def test_refining_refuses_rows_of_another_model(monkeypatch: pytest.MonkeyPatch) -> None:
    m = _at_spend()
    own = _row(None, 0.76, 0.69)
    rows = [own, _row(0.99, 0.38, 0.194), _row(0.992, 0.33, 0.145)]
    monkeypatch.setattr(m, "_peer_rows", lambda: [_row(None, 0.335, 0.161, strategy="pg")])
    ran: list[list[float]] = []

    def same(trace: str, fracs: list[float], delays: list[int], rates: None, traces_dir: str,
             *, thresholds: list[float]) -> list[dict[str, Any]]:
        ran.append(thresholds)  # spends linear in T between the grid's two rows
        return [dict(own), *(_row(t, 0.35, 0.145 + (0.992 - t) * 24.5) for t in thresholds)]

    monkeypatch.setattr(m, "run", same)
    new = m.refine("x", rows, "traces")
    assert ran[0] == [0.9904, 0.9908, 0.9912, 0.9916]
    assert len(ran) == 1 and len(new) == 4  # the gap closed: no second round

    def other(trace: str, fracs: list[float], delays: list[int], rates: None, traces_dir: str,
              *, thresholds: list[float]) -> list[dict[str, Any]]:
        return [_row(None, 0.75, 0.69), *(_row(t, 0.35, 0.16) for t in thresholds)]

    monkeypatch.setattr(m, "run", other)
    with pytest.raises(RuntimeError, match="another model"):
        m.refine("x", rows, "traces")


def test_publishing_to_a_table_with_only_the_peers_puts_the_lstm_after_them(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    m = _at_spend()
    other = {**_row(None, 0.5, 0.1, strategy="pg"), "trace": "y"}
    peers = [_row(None, 0.3, 0.2, strategy="pg", delay=d) for d in (0, 4)]
    (tmp_path / "delay.json").write_text(json.dumps([*peers, other]))
    for name in ("warm-eval.json", "iso-warm.json"):
        (tmp_path / name).write_text(json.dumps([other]))
    monkeypatch.setattr(m, "DOCS", tmp_path)
    own = [_row(None, 0.4, 0.2, delay=d) for d in (0, 4, 16)]
    m.publish("x", [*own, _row(0.5, 0.35, 0.1, delay=4)])  # not the frontier's row
    assert json.loads((tmp_path / "delay.json").read_text()) == [*peers, *own[:2], other]
    assert json.loads((tmp_path / "warm-eval.json").read_text()) == [other]  # no trace x
