"""WarmNet: shapes, determinism, padding invariance, streaming == window mode ==
ragged rows."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from stream_warmer.model.net import ModelConfig, WarmNet, lstm_plan
from stream_warmer.model.state import StateSlots


def _cfg(**kw: object) -> ModelConfig:
    base = dict(cat_vocab=20, n_cats=3, n_bits=8, n_classes=4, embed_dim=8, hidden=16, layers=2)
    base.update(kw)
    return ModelConfig(**base)  # type: ignore[arg-type]


def _inputs(b: int, t: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    cats = torch.randint(0, 20, (b, t, 3), generator=g)
    bits = torch.randint(0, 2, (b, t, 8), generator=g).float()
    return cats, bits


def _model(**kw: object) -> WarmNet:
    torch.manual_seed(0)
    return WarmNet(_cfg(**kw)).eval()


def test_window_and_sequence_shapes() -> None:
    model = _model()
    cats, bits = _inputs(5, 7)
    assert model(cats, bits, torch.full((5,), 7)).shape == (5, 4)
    logits, (h, c) = model.forward_seq(cats, bits)
    assert logits.shape == (5, 7, 4)
    assert h.shape == c.shape == (2, 5, 16)


def test_deterministic_under_seed() -> None:
    cats, bits = _inputs(3, 6)
    lengths = torch.tensor([6, 4, 1])
    assert torch.equal(_model()(cats, bits, lengths), _model()(cats, bits, lengths))


@pytest.mark.parametrize("kw", [{}, {"attention": True}, {"bidirectional": True},
                                {"attention": True, "bidirectional": True}])
def test_padding_never_changes_an_output(kw: dict[str, bool]) -> None:
    model = _model(**kw)
    cats, bits = _inputs(1, 5)
    alone = model(cats, bits, torch.tensor([5]))
    pad_c = torch.cat([cats, torch.randint(0, 20, (1, 4, 3))], dim=1)
    pad_b = torch.cat([bits, torch.rand(1, 4, 8)], dim=1)
    padded = model(pad_c, pad_b, torch.tensor([5]))
    assert torch.allclose(alone, padded, atol=1e-6)


def test_streaming_equals_window_mode() -> None:
    model = _model()
    cats, bits = _inputs(3, 9)
    states = StateSlots(2, 10, 16, torch.device("cpu"))
    slots = torch.tensor([7, 2, 5])
    with torch.inference_mode():
        for t in range(9):
            streamed = model.step(cats[:, t], bits[:, t], slots, states)
            window = model(cats[:, : t + 1], bits[:, : t + 1], torch.full((3,), t + 1))
            assert torch.allclose(streamed, window, atol=1e-5)


@pytest.mark.parametrize("lens", [[6, 1, 3, 6, 2],  # a call per distinct length
                                  [2, 9, 3, 4, 17, 5, 6, 7, 8]])  # by powers of two
def test_ragged_rows_equal_each_row_run_alone(lens: list[int]) -> None:
    model = _model()
    lens = np.array(lens)
    b, total = len(lens), int(lens.sum())
    cats, bits = _inputs(1, total, seed=3)
    cats, bits = cats[0], bits[0]  # (N, K), (N, n_bits): steps of all rows, interleaved
    owner = np.repeat(np.arange(b), lens)
    flat = np.random.default_rng(0).permutation(total)  # row b's steps at these indices
    steps = np.zeros((b, int(lens.max())), dtype=np.int64)
    for r in range(b):
        steps[r, : lens[r]] = np.sort(flat[owner == r])
    g = torch.Generator().manual_seed(1)
    state = (torch.randn(2, b, 16, generator=g), torch.randn(2, b, 16, generator=g))
    with torch.inference_mode():
        every, (h, c) = model.forward_ragged(cats, bits, steps, lens, state, every_step=True)
        newest, (h2, c2) = model.forward_ragged(cats, bits, steps, lens, state,
                                                every_step=False)
        assert torch.equal(h, h2) and torch.equal(c, c2)
        for r in range(b):
            idx = torch.from_numpy(steps[r, : lens[r]])
            alone, (ha, ca) = model.forward_seq(
                cats[idx][None], bits[idx][None],
                (state[0][:, r : r + 1].contiguous(), state[1][:, r : r + 1].contiguous()))
            assert torch.allclose(every[idx], alone[0], atol=1e-6)  # every step, flat order
            assert torch.allclose(newest[r], alone[0, -1], atol=1e-6)
            assert torch.allclose(h[:, r], ha[:, 0], atol=1e-6)
            assert torch.allclose(c[:, r], ca[:, 0], atol=1e-6)


@given(st.lists(st.integers(1, 300), min_size=1, max_size=40))
def test_an_lstm_plan_covers_every_row_once_in_order(lens: list[int]) -> None:
    arr = np.array(lens, dtype=np.int64)
    at = np.zeros(len(lens), dtype=np.int64)
    plan = lstm_plan(arr)
    for rows, size in plan:
        assert size >= 1 and len(rows) == len(set(rows.tolist())) >= 1
        at[rows] += size
        assert np.all(at <= arr)
    assert np.array_equal(at, arr)
    bound = 1 + max(int(arr.max() - arr.min()), 1).bit_length()
    assert len(plan) <= min(len(set(lens)), bound)


def test_streaming_refuses_bidirectional_and_attention() -> None:
    cats, bits = _inputs(1, 2)
    for kw in ({"bidirectional": True}, {"attention": True}):
        with pytest.raises(ValueError, match="unidirectional"):
            _model(**kw).forward_seq(cats, bits)


def test_config_ranges_are_checked() -> None:
    with pytest.raises(ValueError, match="hidden"):
        _cfg(hidden=0)
    with pytest.raises(ValueError, match="dropout"):
        _cfg(dropout=1.0)


def test_slot_reset_zeroes_only_those_slots() -> None:
    states = StateSlots(1, 4, 3, torch.device("cpu"))
    states.h += 1.0
    states.reset(torch.tensor([2]))
    assert float(states.h[:, 2].abs().sum()) == 0.0
    assert float(states.h[:, 1].sum()) == 3.0


def test_dropped_inputs_do_not_reach_the_model() -> None:
    """An ablation: a dropped categorical column or bits half changes no output, the
    others do; the weights keep their shapes; the setting's names are INPUT_NAMES."""
    from typing import get_args

    from stream_warmer.model.features import INPUT_NAMES
    from stream_warmer.settings import InputName

    assert get_args(InputName) == INPUT_NAMES
    model = _model(drop_inputs=(1, 3))  # categorical column 1, the ``correct`` bits
    assert model.config.to_dict()["drop_inputs"] == [1, 3]
    assert "drop_inputs" not in _model().config.to_dict()  # old manifests unchanged
    assert {k: v.shape for k, v in model.state_dict().items()} == {
        k: v.shape for k, v in _model().state_dict().items()}
    cats, bits = _inputs(4, 5)
    base, _ = model.forward_seq(cats, bits)
    other = cats.clone()
    other[..., 1] = (other[..., 1] + 7) % 20
    other_bits = bits.clone()
    other_bits[..., :4] = 1.0 - other_bits[..., :4]
    assert torch.equal(model.forward_seq(other, other_bits)[0], base)
    changed = cats.clone()
    changed[..., 0] = (changed[..., 0] + 7) % 20
    assert not torch.equal(model.forward_seq(changed, bits)[0], base)
    flipped = bits.clone()
    flipped[..., 4:] = 1.0 - flipped[..., 4:]
    assert not torch.equal(model.forward_seq(cats, flipped)[0], base)
    with pytest.raises(ValueError, match="drop_inputs"):
        _cfg(drop_inputs=(5,))
