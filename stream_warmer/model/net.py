"""The LSTM over per-step candidate features (pure PyTorch, no I/O, no device choice).

Input per step: ``cats`` (categorical feature ids, one column per feature, already
offset into one shared embedding table) and ``bits`` (a float vector: which output
classes were correct at the previous step and which have a candidate now). Output: a
distribution over the output classes (NO-WARM, Markov-successor ranks, key deltas).

Two ways to run it:

* window mode, ``forward(cats, bits, lengths)``: each row a right-padded window, the
  logits of its newest step; packed sequences, so padding never changes an output;
  optional attention over the window's hidden states; optional bidirectional encoder.
* streaming mode, ``step(cats, bits, slots)``: one new step for each of B tenants whose
  (h, c) live in slots of the ``StateSlots`` tensors (unidirectional, no attention).

``forward_seq`` returns logits at every step (training, the threshold fit) and carries
state; ``forward_ragged`` runs B rows of different lengths from carried state (serve and
the evaluator's replay: a micro-batch holds a few steps of most tenants and hundreds of
a busy one's).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from stream_warmer.model.state import StateSlots

State = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class ModelConfig:
    """Constructor arguments; stored verbatim in every checkpoint manifest."""

    cat_vocab: int  # rows of the shared categorical embedding table
    n_cats: int  # categorical columns per step
    n_bits: int  # float inputs per step
    n_classes: int  # output classes
    embed_dim: int = 32
    hidden: int = 64
    layers: int = 1
    dropout: float = 0.0
    attention: bool = False
    bidirectional: bool = False
    # inputs left out (a feature ablation): categorical column i < n_cats, n_cats for
    # the ``correct`` half of ``bits``, n_cats + 1 for the ``present`` half; a dropped
    # input is multiplied by 0, so the weights keep their shapes
    drop_inputs: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "drop_inputs", tuple(sorted(set(self.drop_inputs))))
        if any(not 0 <= i < self.n_cats + 2 for i in self.drop_inputs):
            msg = (f"ModelConfig.drop_inputs must be in [0, {self.n_cats + 2}), "
                   f"got {self.drop_inputs}")
            raise ValueError(msg)
        for name in ("cat_vocab", "n_cats", "n_bits", "embed_dim", "hidden", "layers"):
            if getattr(self, name) < 1:
                msg = f"ModelConfig.{name} must be >= 1, got {getattr(self, name)}"
                raise ValueError(msg)
        if self.n_classes < 2:
            msg = f"ModelConfig.n_classes must be >= 2, got {self.n_classes}"
            raise ValueError(msg)
        if not 0.0 <= self.dropout < 1.0:
            msg = f"ModelConfig.dropout must be in [0, 1), got {self.dropout}"
            raise ValueError(msg)

    def to_dict(self) -> dict[str, object]:
        """Plain JSON-able constructor arguments (``drop_inputs`` only when set, so
        the manifests of models without an ablation stay as they were)."""
        data: dict[str, object] = asdict(self)
        if not self.drop_inputs:
            data.pop("drop_inputs")
        else:
            data["drop_inputs"] = list(self.drop_inputs)
        return data


class WarmNet(nn.Module):
    """Embedding -> multi-layer LSTM -> (attention) -> FC head over the classes."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        cfg = config
        self.embed = nn.Embedding(cfg.cat_vocab, cfg.embed_dim)
        self.bits_proj = nn.Linear(cfg.n_bits, cfg.embed_dim)
        self.in_proj = nn.Linear(cfg.n_cats * cfg.embed_dim, cfg.embed_dim)
        self.lstm = nn.LSTM(
            cfg.embed_dim,
            cfg.hidden,
            num_layers=cfg.layers,
            batch_first=True,
            dropout=cfg.dropout if cfg.layers > 1 else 0.0,
            bidirectional=cfg.bidirectional,
        )
        out_dim = cfg.hidden * (2 if cfg.bidirectional else 1)
        self.attn = nn.Linear(out_dim, out_dim, bias=False) if cfg.attention else None
        self.drop = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(out_dim * (2 if cfg.attention else 1), cfg.n_classes)
        # (K, 1) and (n_bits,): 0 for a dropped input (``drop_inputs``), None without
        cat_keep = bit_keep = None
        if cfg.drop_inputs:
            cat_keep, bit_keep = torch.ones(cfg.n_cats, 1), torch.ones(cfg.n_bits)
            half = cfg.n_bits // 2
            for i in cfg.drop_inputs:
                if i < cfg.n_cats:
                    cat_keep[i] = 0.0
                else:
                    bit_keep[(i - cfg.n_cats) * half : (i - cfg.n_cats + 1) * half] = 0.0
        self._cat_keep: torch.Tensor | None
        self._bit_keep: torch.Tensor | None
        self.register_buffer("_cat_keep", cat_keep, persistent=False)
        self.register_buffer("_bit_keep", bit_keep, persistent=False)

    def _inputs(self, cats: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
        b, t, k = cats.shape  # (B, T, K)
        e = self.embed(cats)  # (B, T, K, E)
        if self._cat_keep is not None and self._bit_keep is not None:
            e, bits = e * self._cat_keep, bits * self._bit_keep
        e = e.reshape(b, t, k * self.config.embed_dim)  # (B, T, K*E)
        return torch.tanh(self.in_proj(e) + self.bits_proj(bits))  # (B, T, E)

    def forward(self, cats: torch.Tensor, bits: torch.Tensor, lengths: torch.Tensor
                ) -> torch.Tensor:
        """Window mode: logits (B, C) at each window's newest step (lengths >= 1)."""
        x = self._inputs(cats, bits)  # (B, T, E)
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out_p, _ = self.lstm(packed)
        out, _ = pad_packed_sequence(out_p, batch_first=True, total_length=x.shape[1])  # (B,T,D)
        idx = (lengths - 1).to(out.device).clamp(min=0)  # (B,)
        last = out[torch.arange(out.shape[0], device=out.device), idx]  # (B, D)
        if self.config.bidirectional:
            h = self.config.hidden
            first = out[:, 0, h:]  # (B, H): the backward direction ends at step 0
            last = torch.cat([last[:, :h], first], dim=-1)  # (B, 2H)
        if self.attn is not None:
            last = torch.cat([last, self._attend(out, last, lengths)], dim=-1)  # (B, 2D)
        logits: torch.Tensor = self.head(self.drop(last))  # (B, C)
        return logits

    def _attend(self, out: torch.Tensor, query: torch.Tensor, lengths: torch.Tensor
                ) -> torch.Tensor:
        assert self.attn is not None
        scores = torch.einsum("btd,bd->bt", out, self.attn(query))  # (B, T)
        steps = torch.arange(out.shape[1], device=out.device)  # (T,)
        pad = steps[None, :] >= lengths.to(out.device)[:, None]  # (B, T)
        weights = torch.softmax(scores.masked_fill(pad, float("-inf")), dim=-1)  # (B, T)
        return torch.einsum("bt,btd->bd", weights, out)  # (B, D)

    def _streaming(self) -> None:
        if self.config.bidirectional or self.attn is not None:
            msg = "per-step (streaming) outputs need a unidirectional model without attention"
            raise ValueError(msg)

    def forward_seq(
        self, cats: torch.Tensor, bits: torch.Tensor, state: State | None = None
    ) -> tuple[torch.Tensor, State]:
        """Logits (B, T, C) at every step and the (h, c) after the last, rows of equal length."""
        self._streaming()
        x = self._inputs(cats, bits)  # (B, T, E)
        out, new_state = self.lstm(x, state)  # (B, T, H), ((L, B, H), (L, B, H))
        return self.head(self.drop(out)), new_state  # (B, T, C)

    def forward_ragged(
        self,
        cats: torch.Tensor,
        bits: torch.Tensor,
        steps: npt.NDArray[np.int64],
        lens: npt.NDArray[np.int64],
        state: State,
        *,
        every_step: bool,
    ) -> tuple[torch.Tensor, State]:
        """Advance B rows of different lengths from ``state`` ((L, B, H) each).

        ``cats`` (N, K) and ``bits`` (N, n_bits) are the rows' steps, flat in any order;
        ``steps`` (B, T) holds the flat index of row b's step t for t < ``lens[b]`` (the
        rest is ignored; every length >= 1). Returns the logits at every step in flat
        order (N, C) with ``every_step``, else at each row's newest step (B, C), and
        each row's (h, c) after its last step.

        No padding and no packed sequence: each LSTM call advances some rows by the same
        number of steps from wherever each row stands (``lstm_plan``), so a batch of
        2,048 events where one tenant has half of them costs about ten calls, not one
        per event (a packed sequence steps one time step per call: 34 us a step here at
        30 rows). The LSTM is called without ``nn.LSTM``'s per-call checks (``_lstm``).
        """
        self._streaming()
        x = self._inputs(cats[None], bits[None])[0]  # (N, E)
        h, c = state[0].clone(), state[1].clone()  # (L, B, H)
        out = x.new_empty(x.shape[0], self.config.hidden) if every_step else None  # (N, H)
        at = np.zeros(len(lens), dtype=np.int64)  # (B,) steps each row has run
        for rows, size in lstm_plan(lens):
            idx = torch.from_numpy(steps[rows[:, None], at[rows, None] + np.arange(size)])
            idx = idx.to(x.device)  # (n, S): flat step index of each row's next S steps
            if len(rows) == len(lens):  # every row, in place
                o, (h, c) = self._lstm(x[idx], h, c)
            else:
                rows_t = torch.from_numpy(rows).to(x.device)
                o, (hn, cn) = self._lstm(x[idx], h.index_select(1, rows_t),
                                         c.index_select(1, rows_t))
                h.index_copy_(1, rows_t, hn)
                c.index_copy_(1, rows_t, cn)
            if out is not None:
                out[idx.reshape(-1)] = o.reshape(-1, o.shape[-1])
            at[rows] += size
        last = out if out is not None else h[-1]  # the top layer's output is its h
        return self.head(self.drop(last)), (h, c)

    def _lstm(self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor
              ) -> tuple[torch.Tensor, State]:
        """``self.lstm(x, (h, c))`` for an inference call (batch first, unidirectional):
        the same kernel and result, less the module's ~20 us of checks per call."""
        lstm = self.lstm
        if lstm.training or torch.is_grad_enabled():
            o, (hn, cn) = lstm(x, (h, c))
            return o, (hn, cn)
        weights: list[torch.Tensor] = lstm._flat_weights  # type: ignore[assignment]
        o, hn, cn = torch._VF.lstm(
            x, (h, c), weights, lstm.bias, lstm.num_layers, 0.0, False, False, True)
        return o, (hn, cn)

    def step(
        self, cats: torch.Tensor, bits: torch.Tensor, slots: torch.Tensor, states: StateSlots
    ) -> torch.Tensor:
        """Streaming mode: advance B tenants one step; logits (B, C); updates ``states``."""
        state = states.read(slots)  # (L, B, H) each
        logits, (h, c) = self.forward_seq(cats[:, None], bits[:, None], state)  # (B, 1, C)
        states.write(slots, h, c)
        return logits[:, 0]  # (B, C)


def lstm_plan(lens: npt.NDArray[np.int64]) -> list[tuple[npt.NDArray[np.int64], int]]:
    """LSTM calls that run B rows of ``lens`` steps (each >= 1): (rows, steps) per call,
    in order; each call advances its rows by that many steps. Every row's steps are
    covered once and in order, so the result equals each row run alone (the oneDNN
    LSTM's rows do not depend on the batch they run in; a test checks it).

    The fewer calls of two plans (each call costs ~70 us beyond its work here):
    *segments*, one call per distinct length over the rows still running; or all rows
    by the shortest length, then the remainders by powers of two, longest first (a
    row joins the call of each bit set in its remainder): at most ~log2(max) calls.
    """
    distinct = np.unique(lens)
    low = int(distinct[0])
    rest = lens - low
    top = int(rest.max())
    bits = [j for j in range(top.bit_length() - 1, -1, -1) if np.any(rest & (1 << j))]
    if len(distinct) <= 1 + len(bits):
        plan, start = [], 0
        for end in distinct:
            plan.append((np.flatnonzero(lens >= end), int(end) - start))
            start = int(end)
        return plan
    return [(np.arange(len(lens)), low),
            *((np.flatnonzero(rest & (1 << j)), 1 << j) for j in bits)]
