"""model.runtime: device choice, host staging, and the checked (bf16) precision."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from stream_warmer.events import AccessEvent
from stream_warmer.model.features import FeatureSpec
from stream_warmer.model.net import WarmNet
from stream_warmer.model.runtime import (
    PrecisionCheck,
    Staging,
    candidate_precision,
    pick_device,
)
from stream_warmer.model.train import build_config
from stream_warmer.serve.metrics import ServeMetrics
from stream_warmer.settings import ModelSettings
from stream_warmer.strategies.base import Prediction, Window
from stream_warmer.strategies.lstm import LstmStrategy

CPU = torch.device("cpu")


def test_auto_and_cpu_pick_the_cpu_without_a_gpu() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert pick_device("auto") == CPU
    assert pick_device("cpu") == CPU
    with pytest.raises(RuntimeError, match="no CUDA device"):
        pick_device("cuda")


@pytest.mark.parametrize(("setting", "device", "expected"), [
    ("auto", "cpu", None), ("auto", "cuda", "bf16"), ("fp32", "cuda", None),
    ("fp32", "cpu", None), ("bf16", "cpu", "bf16"), ("bf16", "cuda", "bf16"),
])
def test_candidate_precision(setting: str, device: str, expected: str | None) -> None:
    assert candidate_precision(setting, torch.device(device)) == expected


def test_candidate_precision_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match=r"model\.precision"):
        candidate_precision("int4", CPU)


def test_cpu_staging_is_a_plain_round_trip() -> None:
    stage = Staging(CPU)
    assert not stage.pinned
    x = torch.arange(12, dtype=torch.int64).reshape(3, 4)
    assert torch.equal(stage.to_device("x", x), x)
    np.testing.assert_array_equal(stage.to_host("x", x.float()), x.float().numpy())


def test_no_candidate_means_fp32_and_no_check() -> None:
    check = PrecisionCheck(None)
    assert check.active == "fp32" and not check.checking


def _rows(n: int, disagree: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, 6) scores; the last ``disagree`` rows have a different top-2 set."""
    ref = torch.tensor([[6.0, 5.0, 1.0, 0.5, 0.2, 0.1]]).repeat(n, 1)
    cand = ref.clone()
    cand[n - disagree:, 2] = 9.0  # class 2 enters the top 2, class 1 leaves it
    return ref, cand


def test_check_decides_only_after_enough_rows_and_on_the_threshold() -> None:
    accept = PrecisionCheck("bf16", predictions=20, top_k=2, min_agreement=0.5)
    accept.compare(*_rows(10, 5))
    assert accept.checking and accept.active == "fp32" and accept.agreement == 0.5
    accept.compare(*_rows(10, 5))
    assert accept.active == "bf16" and not accept.checking and accept.seen == 20

    reject = PrecisionCheck("bf16", predictions=20, top_k=2, min_agreement=0.51)
    reject.compare(*_rows(20, 10))
    assert reject.active == "fp32" and not reject.checking
    reject.compare(*_rows(20, 0))  # decided for good
    assert reject.active == "fp32" and reject.seen == 20


def test_order_inside_the_top_k_does_not_count_as_disagreement() -> None:
    check = PrecisionCheck("bf16", predictions=1, top_k=2, min_agreement=1.0)
    ref = torch.tensor([[5.0, 6.0, 0.0]])
    check.compare(ref, torch.tensor([[6.0, 5.0, 0.0]]))
    assert check.active == "bf16"


def _events(tick: int, rng: random.Random) -> list[AccessEvent]:
    return [AccessEvent(tenant=f"t{i}", key=str(rng.randrange(40)), ts=tick) for i in range(64)]


def _serve(strategy: LstmStrategy, ticks: int) -> list[list[list[Prediction]]]:
    rng, out = random.Random(5), []
    for tick in range(ticks):
        events = _events(tick, rng)
        for ev in events:
            strategy.observe(ev)
        out.append(strategy.predict([Window(ev.tenant, (ev,)) for ev in events], 2))
    return out


@pytest.fixture(scope="module")
def model() -> tuple[WarmNet, FeatureSpec]:
    spec = FeatureSpec(deltas=(1, 2, 4, 8))
    torch.manual_seed(0)
    ms = ModelSettings(embed_dim=8, hidden=16, cpu_threads=1)
    return WarmNet(build_config(spec, ms)).eval(), spec


def _strategy(model: tuple[WarmNet, FeatureSpec], **update: object) -> LstmStrategy:
    ms = ModelSettings(embed_dim=8, hidden=16, cpu_threads=1, budget_online=False,
                       max_state_slots=64).model_copy(update=update)
    return LstmStrategy(model[0], model[1], 0.0, ms)


def test_fp32_is_served_while_bf16_is_checked_then_bf16(
        model: tuple[WarmNet, FeatureSpec]) -> None:
    reference = _serve(_strategy(model, precision="fp32"), 12)
    checked = _strategy(model, precision="bf16", precision_check_rows=6 * 64,
                        precision_min_agreement=0.0)
    served = _serve(checked, 12)
    assert checked.precision == "bf16" and checked.precision_check.seen == 6 * 64
    assert served[:6] == reference[:6]  # identical while checking: fp32 is served
    later = [(p.key, p.score) for batch in served[6:] for row in batch for p in row]
    ref_later = [(p.key, p.score) for batch in reference[6:] for row in batch for p in row]
    assert later != ref_later  # bf16 now, so not bit-identical ...
    top1 = [row[0].key if row else None for batch in served[6:] for row in batch]
    ref_top1 = [row[0].key if row else None for batch in reference[6:] for row in batch]
    agree = sum(a == b for a, b in zip(top1, ref_top1, strict=True)) / len(top1)
    assert agree > 0.9  # ... but close


def test_a_candidate_that_loses_the_top_k_is_never_served(
        model: tuple[WarmNet, FeatureSpec]) -> None:
    reference = _serve(_strategy(model, precision="fp32"), 8)
    checked = _strategy(model, precision="bf16", precision_check_rows=2 * 64, precision_top_k=1,
                        precision_min_agreement=1.0)
    checked.precision_check.compare = _always_disagree(checked.precision_check)  # type: ignore[method-assign]
    assert _serve(checked, 8) == reference
    assert checked.precision == "fp32" and not checked.precision_check.checking


def _always_disagree(check: PrecisionCheck) -> object:
    real = check.compare

    def compare(ref: torch.Tensor, cand: torch.Tensor) -> None:
        real(ref, -ref)  # the candidate's ranking turned upside down
    return compare


def test_serve_metrics_show_the_served_precision() -> None:
    metrics = ServeMetrics()
    metrics.set_precision("fp32", 1.0)
    metrics.set_precision("bf16", 0.9995)
    text = metrics.render().decode()
    assert 'stream_warmer_model_precision_info{precision="bf16"} 1.0' in text
    assert 'precision="fp32"' not in text
    assert "stream_warmer_model_precision_topk_agreement 0.9995" in text


def test_serve_refuses_to_start_on_cuda_without_a_gpu(monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    from stream_warmer.cli import main

    monkeypatch.setenv("STREAM_WARMER_STRATEGY__NAME", "lstm")
    monkeypatch.setenv("STREAM_WARMER_MODEL__DEVICE", "cuda")
    assert main(["serve", "--max-messages", "1"]) != 0
    assert "STREAM_WARMER_MODEL__DEVICE" in capsys.readouterr().err
