"""``stream-warmer evaluate`` end to end on a tiny trace, and its helpers."""

from __future__ import annotations

import gzip
import json
import sys
import types
from pathlib import Path

import pytest

from stream_warmer.cli import main
from stream_warmer.errors import ConfigError, ModelError, TraceError
from stream_warmer.evaluation.compare import (
    TraceSource,
    evaluate_trace,
    parse_strategies,
    resolve_trace,
)
from stream_warmer.events import AccessEvent
from stream_warmer.settings import load_settings
from stream_warmer.strategies.base import WarmingStrategy
from stream_warmer.strategies.baselines import Markov


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    rows = [f"{i},t{i % 2},{(i // 2) % 7},1" for i in range(200)]
    path = tmp_path / "tiny.csv.gz"
    with gzip.open(path, "wt") as fh:
        fh.write("ts,tenant,key,size\n" + "\n".join(rows) + "\n")
    return path


def test_cli_prints_table_and_writes_json_and_plot(
    tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_json, out_png = tmp_path / "rows.json", tmp_path / "plot.png"
    rc = main(["evaluate", "tiny", "--traces-dir", str(tmp_path), "--strategies",
               "none,markov1,nextkey", "--k", "1,2", "--cache-frac", "0.5",
               "--json", str(out_json), "--plot", str(out_png), "--no-progress"])
    assert rc == 0
    table = capsys.readouterr().out
    assert "markov1" in table and "nextkey" in table
    rows = json.loads(out_json.read_text())
    assert [(r["strategy"], r["k"]) for r in rows] == [
        ("none", 1), ("markov1", 1), ("markov1", 2), ("nextkey", 1), ("nextkey", 2)]
    assert rows[0]["warm_precision"] is None  # nan is written as null
    assert {r["capacity"] for r in rows} == {7}  # 14 pairs x 0.5
    assert {r["requests"] for r in rows} == {100}
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_rejects_bad_arguments(tiny: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", str(tiny), "--strategies", "magic"]) == 1
    assert "unknown strategies" in capsys.readouterr().err
    assert main(["evaluate", str(tiny), "--cache-frac", "2"]) == 1
    assert main(["evaluate", str(tiny), "--k", "x"]) == 1
    assert main(["evaluate", "no-such-trace", "--traces-dir", "/nonexistent"]) == 1


def test_resolve_and_parse(tiny: Path, tmp_path: Path) -> None:
    assert resolve_trace(str(tiny), Path("/nowhere")) == ("tiny", tiny)
    assert resolve_trace("tiny", tmp_path) == ("tiny", tiny)
    with pytest.raises(TraceError, match="neither a file"):
        resolve_trace("other", tmp_path)
    assert parse_strategies("none, markov1,nextkey,none") == ["none", "markov1", "nextkey"]
    with pytest.raises(ConfigError):
        parse_strategies("")


def test_lstm_missing_is_a_clear_error(tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "stream_warmer.strategies.lstm", None)
    with pytest.raises(ModelError, match="lstm strategy is not available"):
        evaluate_trace(TraceSource("tiny", tiny), ["lstm"], [1], [0.5], load_settings(None, {}))


def test_lstm_is_fitted_on_the_first_half(tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[AccessEvent]] = []

    def fit_strategy(train: list[AccessEvent], _settings: object) -> WarmingStrategy:
        seen.append(train)
        return Markov()

    fake = types.ModuleType("stream_warmer.strategies.lstm")
    fake.fit_strategy = fit_strategy  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "stream_warmer.strategies.lstm", fake)
    settings = load_settings(None, {})
    rows = evaluate_trace(TraceSource("tiny", tiny), ["lstm", "markov"], [1, 2], [0.5], settings)
    assert len(seen) == 1 and len(seen[0]) == 100
    assert seen[0][-1].ts == 99
    lstm = [r.hit_ratio for r in rows if r.strategy == "lstm"]
    markov = [r.hit_ratio for r in rows if r.strategy == "markov"]
    assert lstm == markov  # same strategy underneath, same protocol
