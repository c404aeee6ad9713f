"""``stream-warmer evaluate`` end to end on a tiny trace, and its helpers."""

from __future__ import annotations

import gzip
import json
import sys
import time
import types
from collections.abc import Iterable, Iterator
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
from stream_warmer.model import runtime
from stream_warmer.settings import load_settings
from stream_warmer.strategies.base import Prediction, WarmingStrategy
from stream_warmer.strategies.baselines import Markov, NoWarm


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
    assert main(["evaluate", str(tiny), "--threshold", "1.5"]) == 1
    assert "scores, in [0, 1]" in capsys.readouterr().err
    assert main(["evaluate", str(tiny), "--threshold", "-0.1"]) == 1


def test_cli_threshold_rows_trace_each_strategys_frontier(
    tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_json = tmp_path / "rows.json"
    rc = main(["evaluate", "tiny", "--traces-dir", str(tmp_path), "--strategies", "markov1",
               "--k", "1", "--cache-frac", "0.5", "--threshold", "0,1.0", "--json",
               str(out_json), "--no-progress"])
    assert rc == 0
    assert "T=1" in capsys.readouterr().out
    own, zero, one = json.loads(out_json.read_text())
    assert (own["threshold"], zero["threshold"], one["threshold"]) == (None, 0.0, 1.0)
    # markov1 names its top key whatever its score: T = 0 is its own row
    assert zero["hit_ratio"] == own["hit_ratio"]
    assert one["warms_per_request"] <= own["warms_per_request"]


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

    def fit_strategy(train: list[AccessEvent], _settings: object, delay: int = 0
                     ) -> WarmingStrategy:
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


def test_cli_delay_gives_one_row_per_delay(
    tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "rows.json"
    rc = main(["evaluate", "tiny", "--traces-dir", str(tmp_path), "--strategies",
               "none,nextkey", "--k", "1", "--cache-frac", "0.5", "--delay", "0,1,4",
               "--json", str(out), "--no-progress"])
    assert rc == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert "delay" in header.split()
    rows = json.loads(out.read_text())
    assert [(r["strategy"], r["delay"]) for r in rows] == [
        ("none", 0), ("none", 1), ("none", 4), ("nextkey", 0), ("nextkey", 1), ("nextkey", 4)]
    fields = {"trace", "strategy", "cache_frac", "k", "capacity", "requests", "hit_ratio",
              "warm_precision", "warms_per_request"}  # DESIGN §6, plus delay and timing
    extra = {"delay", "warm_rate", "threshold", "train_s", "replay_s"}
    assert all(set(r) == fields | extra for r in rows)
    nextkey = {r["delay"]: r["hit_ratio"] for r in rows if r["strategy"] == "nextkey"}
    assert nextkey[0] > nextkey[4]  # this trace's next key is timely only at L = 0


def test_cli_default_delay_is_zero_and_ms_are_converted_at_the_rate(
    tiny: Path, tmp_path: Path
) -> None:
    out = tmp_path / "rows.json"
    base = ["evaluate", str(tiny), "--strategies", "markov1", "--k", "1",
            "--cache-frac", "0.5", "--json", str(out), "--no-progress"]
    assert main(base) == 0
    assert [r["delay"] for r in json.loads(out.read_text())] == [0]
    # 0.5 ms x 2000/s = 1 request, 1.2 ms -> 2.4 -> 3, 1.4 ms -> 2.8 -> 3 (one row)
    assert main([*base, "--delay-ms", "0,0.5,1.2,1.4", "--rate", "2000"]) == 0
    assert [r["delay"] for r in json.loads(out.read_text())] == [0, 1, 3]


def test_cli_rejects_bad_delays(tiny: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["evaluate", str(tiny), "--strategies", "none", "--no-progress"]
    assert main([*base, "--delay-ms", "5"]) == 1
    assert "--rate" in capsys.readouterr().err
    assert main([*base, "--delay", "1", "--delay-ms", "5", "--rate", "100"]) == 1
    assert "not both" in capsys.readouterr().err
    assert main([*base, "--delay", "-1"]) == 1
    assert main([*base, "--delay", "1.5"]) == 1
    assert main([*base, "--rate", "100"]) == 1
    assert main([*base, "--delay-ms", "5", "--rate", "0"]) == 1


class Slow(Markov):
    """Markov that takes ``pause`` seconds per prediction call (to be seen in replay_s)."""

    def __init__(self, pause: float) -> None:
        super().__init__()
        self.pause = pause

    def predict_stream(self, events: Iterable[AccessEvent], k: int) -> Iterator[list[Prediction]]:
        for preds in super().predict_stream(events, k):
            time.sleep(self.pause)
            yield preds


def fake_lstm(monkeypatch: pytest.MonkeyPatch, fit_s: float, pause: float) -> list[int]:
    """A stand-in ``stream_warmer.strategies.lstm`` (fit sleeps ``fit_s``) and a recorder
    of ``configure_torch_threads`` calls (no torch threads are changed)."""
    def fit_strategy(_train: list[AccessEvent], _settings: object, delay: int = 0
                     ) -> WarmingStrategy:
        time.sleep(fit_s)
        return Slow(pause)

    fake = types.ModuleType("stream_warmer.strategies.lstm")
    fake.fit_strategy = fit_strategy  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "stream_warmer.strategies.lstm", fake)
    calls: list[int] = []

    def configure(requested: int) -> int:
        calls.append(requested)
        return requested or 1

    monkeypatch.setattr(runtime, "configure_torch_threads", configure)
    return calls


def test_json_rows_carry_train_and_replay_seconds(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str]
) -> None:
    calls = fake_lstm(monkeypatch, fit_s=0.2, pause=0.002)
    monkeypatch.setenv("STREAM_WARMER_MODEL__CPU_THREADS", "1")
    monkeypatch.setenv("STREAM_WARMER_MODEL__INFER_THREADS", "3")
    out = tmp_path / "rows.json"
    rc = main(["evaluate", str(tiny), "--strategies", "markov1,lstm", "--k", "1",
               "--cache-frac", "0.25,0.5", "--json", str(out), "--no-progress"])
    assert rc == 0
    # at start, then around the one training: model.cpu_threads, then infer_threads
    assert calls == [1, 1, 3]
    captured = capsys.readouterr()
    assert "train s" in captured.out and "replay s" in captured.out
    assert "scan" in captured.err and "trace reads" in captured.err
    rows = json.loads(out.read_text())
    assert all(isinstance(r["train_s"], float) and isinstance(r["replay_s"], float)
               for r in rows)
    by = {r["strategy"]: r for r in rows}
    assert by["lstm"]["train_s"] >= 0.2 > by["markov1"]["train_s"]
    assert by["lstm"]["replay_s"] >= 200 * 0.002  # a sleep per event, both fs together
    assert by["markov1"]["replay_s"] < by["lstm"]["replay_s"]
    # one value per strategy, repeated on each of its rows
    assert len({(r["train_s"], r["replay_s"]) for r in rows if r["strategy"] == "lstm"}) == 1


def test_timing_never_changes_the_numbers(tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_lstm(monkeypatch, fit_s=0.0, pause=0.0)
    settings = load_settings(None, {})
    a = evaluate_trace(TraceSource("tiny", tiny), ["lstm", "markov"], [1, 2], [0.5], settings)
    fake_lstm(monkeypatch, fit_s=0.05, pause=0.001)
    b = evaluate_trace(TraceSource("tiny", tiny), ["lstm", "markov"], [1, 2], [0.5], settings)
    assert a == b  # rows that differ only in their seconds are equal
    assert [r.train_s for r in a] != [r.train_s for r in b]


def test_no_torch_threads_without_lstm(tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = fake_lstm(monkeypatch, fit_s=0.0, pause=0.0)
    assert main(["evaluate", str(tiny), "--strategies", "markov1", "--k", "1",
                 "--no-progress"]) == 0
    assert calls == []


def test_max_events_evaluates_a_prefix(tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "rows.json"
    base = ["evaluate", str(tiny), "--strategies", "markov1", "--k", "1",
            "--cache-frac", "0.5", "--json", str(out), "--no-progress"]
    assert main([*base, "--max-events", "60"]) == 0
    [row] = json.loads(out.read_text())
    assert row["trace"] == "tiny[:60]" and row["requests"] == 30
    assert row["capacity"] == 7  # the first 60 events already hold all 14 pairs
    assert main([*base, "--max-events", "1"]) == 1
    events = list(TraceSource("tiny", tiny, max_events=60).events())
    assert len(events) == 60 and events[-1].ts == 59


def test_lstm_is_trained_for_each_delay_it_is_judged_at(
        tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As serve's trainer trains for the delay serve measures: one training per --delay,
    and a delay's rows come from its own model (here: one that warms nothing unless
    trained for delay 0)."""
    delays: list[int] = []

    def fit_strategy(_train: list[AccessEvent], _settings: object, delay: int = 0
                     ) -> WarmingStrategy:
        delays.append(delay)
        return Markov() if delay == 0 else NoWarm()

    fake = types.ModuleType("stream_warmer.strategies.lstm")
    fake.fit_strategy = fit_strategy  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "stream_warmer.strategies.lstm", fake)
    rows = evaluate_trace(TraceSource("tiny", tiny), ["lstm"], [1], [0.5],
                          load_settings(None, {}), delays=[0, 4])
    assert delays == [0, 4]
    assert [r.delay for r in rows] == [0, 4]
    assert rows[0].warms_per_request > 0 and rows[1].warms_per_request == 0
    fixed = load_settings(None, {"STREAM_WARMER_TRAINER__GATE_DELAY": "2"})
    delays.clear()
    evaluate_trace(TraceSource("tiny", tiny), ["lstm"], [1], [0.5], fixed, delays=[0, 4])
    assert set(delays) == {2}  # a fixed trainer.gate_delay: every model trained for it
