"""``bench pipeline``: its arguments, rows, table and JSON, without a broker."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from stream_warmer.bench import latency, pipeline
from stream_warmer.bench import swap as bench_swap
from stream_warmer.bench.pipeline import (
    PipelineResult,
    format_rows,
    parse_strategies,
)
from stream_warmer.cli import build_parser, main
from stream_warmer.errors import ConfigError
from stream_warmer.settings import load_settings

# DESIGN §6: what every ``bench pipeline`` row has
DESIGN_KEYS = {"strategy", "events", "events_per_s", "ceiling_events_per_s", "ratio",
               "latency_p50_ms", "latency_p99_ms"}


def _result(strategy: str, **extra: Any) -> PipelineResult:
    return PipelineResult(strategy, 1000, 900.0, 1000.0, 0.9, 2.0, 9.0, 50, 450.0, 400, 1.0,
                          12.0, **extra)


MARKOV = _result("markov", trace_offset=500)
LSTM = _result("lstm", model_version="20261202T000000-abcdef12", trace_offset=500,
               train_events=500, train_s=3.2)


def _pipe_args(*argv: str) -> Any:
    return build_parser().parse_args(["bench", "pipeline", "--trace", "t.csv", *argv])


def test_strategy_defaults_to_markov_and_takes_a_comma_list() -> None:
    args = _pipe_args()
    assert args.strategy == ("markov",)
    assert args.train_events is None and args.swap_timeout == 120.0
    args = _pipe_args("--strategy", "markov, lstm", "--train-events", "5000",
                      "--swap-timeout", "30")
    assert args.strategy == ("markov", "lstm")
    assert args.train_events == 5000 and args.swap_timeout == 30.0
    assert _pipe_args("--strategy", "lstm").strategy == ("lstm",)


@pytest.mark.parametrize("text", ["lstm2", "markov,bogus", "", "markov,markov", ","])
def test_bad_strategy_lists_are_refused(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _pipe_args("--strategy", text)
    assert "--strategy" in capsys.readouterr().err
    with pytest.raises(ValueError, match="strategy"):
        parse_strategies(text)


def test_rows_have_the_design_keys_and_say_what_served() -> None:
    row = LSTM.row()
    assert set(row) >= DESIGN_KEYS | {"model_version", "train_s", "train_events",
                                      "trace_offset", "warm_commands"}
    assert row["strategy"] == "lstm" and row["model_version"].endswith("abcdef12")
    assert row["train_s"] == 3.2 and row["train_events"] == 500
    baseline = _result("markov").row()
    assert baseline["model_version"] == "baseline"
    assert baseline["train_s"] is None and baseline["train_events"] == 0
    assert baseline["trace_offset"] == 0
    json.dumps(row)  # JSON-able as it is
    assert MARKOV.goals_met
    assert not PipelineResult(**{**MARKOV.row(), "ratio": 0.4}).goals_met


def test_table_has_one_line_per_strategy() -> None:
    lines = format_rows([MARKOV, LSTM]).splitlines()
    assert len(lines) == 3
    assert lines[0].split()[:2] == ["strategy", "model_version"]
    assert "train_s" in lines[0]
    assert lines[1].split()[:2] == ["markov", "baseline"]
    assert lines[1].split()[-1] == "-"  # nothing trained
    assert lines[2].split()[0] == "lstm" and lines[2].split()[-1] == "3.2"


def _fake_runs(monkeypatch: pytest.MonkeyPatch, results: list[PipelineResult]) -> list[Any]:
    calls: list[Any] = []

    def fake(settings: Any, trace: Path, events: int, strategies: tuple[str, ...],
             latency_s: float, **kw: Any) -> list[PipelineResult]:
        calls.append((trace, events, strategies, latency_s, kw))
        return results

    monkeypatch.setattr(pipeline, "run_benches", fake)
    return calls


def test_one_strategy_keeps_its_json_object(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    calls = _fake_runs(monkeypatch, [MARKOV])
    out = tmp_path / "bench.json"
    assert main(["bench", "pipeline", "--trace", "t.csv", "--events", "1000",
                 "--latency-seconds", "2", "--json", str(out)]) == 0
    assert calls[0][1:4] == (1000, ("markov",), 2.0)
    assert calls[0][4]["train_events"] is None
    assert json.loads(out.read_text()) == MARKOV.row()
    text = capsys.readouterr().out
    assert "ceiling_events_per_s" in text and "goals (ratio >= 0.5" in text


def test_several_strategies_print_a_table_and_write_a_list(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    calls = _fake_runs(monkeypatch, [MARKOV, LSTM])
    out = tmp_path / "bench.json"
    assert main(["bench", "pipeline", "--trace", "t.csv", "--strategy", "markov,lstm",
                 "--train-events", "500", "--swap-timeout", "9", "--json", str(out)]) == 0
    assert calls[0][2] == ("markov", "lstm")
    assert calls[0][4]["train_events"] == 500 and calls[0][4]["swap_timeout_s"] == 9.0
    assert json.loads(out.read_text()) == [MARKOV.row(), LSTM.row()]
    text = capsys.readouterr().out
    assert "model_version" in text.splitlines()[0]
    assert "goals markov" in text and "goals lstm" in text


def test_trace_events_start_after_the_offset(tmp_path: Path) -> None:
    path = tmp_path / "t.csv.gz"
    with gzip.open(path, "wt") as fh:
        fh.write("ts,tenant,key,size\n" + "".join(f"{i},t,{i},1\n" for i in range(20)))
    keys = [e.key for e in latency.trace_events(path, 5, 10)]
    assert keys == ["10", "11", "12", "13", "14"]
    assert [e.key for e in latency.trace_events(path, None, 18)] == ["18", "19"]
    assert len(list(latency.trace_events(path, 3))) == 3


def test_lstm_settings_that_serve_or_the_trainer_refuse_fail_first() -> None:
    settings = load_settings(None, {"STREAM_WARMER_WINDOW__MAX_TENANTS": "100",
                                    "STREAM_WARMER_MODEL__MAX_STATE_SLOTS": "10"})
    with pytest.raises(ConfigError, match="max_state_slots"):
        bench_swap.check_lstm_settings(settings, 10_000)
    with pytest.raises(ConfigError, match="min_events"):
        bench_swap.check_lstm_settings(load_settings(None, {}), 10)
    bench_swap.check_lstm_settings(load_settings(None, {}), 10_000)


class _App:
    def __init__(self) -> None:
        self.stats = type("Stats", (), {"consumed": 0})()


class _Model:
    model_version = "v1"


def test_swap_notes_the_version_and_the_events_before_it() -> None:
    offers: list[Any] = [None, _Model(), None]
    app = _App()
    swap = bench_swap.Swap(lambda: offers.pop(0), app)
    assert swap() is None and not swap.done.is_set()
    app.stats.consumed = 7
    assert isinstance(swap(), _Model)
    assert swap.done.is_set() and swap.version == "v1" and swap.consumed_before == 7
    assert swap() is None and swap.consumed_before == 7


class _Watcher:
    current = None
    rejected = [("v1", "ModelError: weights hash mismatch")]
    stopped = False

    def stop(self) -> None:
        self.stopped = True


def _served_without_swap(timeout_s: float) -> Any:
    served = object.__new__(bench_swap.Served)
    served.watcher = _Watcher()
    served.swap = bench_swap.Swap(lambda: None, _App())
    served._timeout_s = timeout_s
    served._model = bench_swap.TrainedModel("v1", "updates", 500, 1.0)
    return served


def test_a_version_the_watcher_rejects_fails_the_run_with_its_reason() -> None:
    served = _served_without_swap(0.1)
    with pytest.raises(RuntimeError, match=r"did not load lstm v1.*weights hash mismatch"):
        served.loaded()
    assert served.watcher.stopped
    with pytest.raises(RuntimeError, match="did not swap to the lstm within"):
        served.swapped()
