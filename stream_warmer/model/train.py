"""Training: fit features, train the LSTM, choose the confidence threshold.

``train_model(events, settings, previous=None)`` is the one entry point the trainer
service and the evaluator use. Steps:

1. fit the ``FeatureSpec`` on the events (or reuse the previous model's, to warm start);
   its successor tables have the served ``markov``'s bounds (``strategy.markov_*``),
   its window table starts ``delay`` requests after each key (``ahead_lead``);
2. encode the stream; cut per-tenant windows; split them in time order (the newest
   ``val_fraction`` validates);
3. train with Adam, gradient clipping and early stopping on the validation loss;
   warm start from ``previous`` when its architecture matches;
4. on the validation slice, replay the LRU protocol and choose the confidence threshold
   with the best hit ratio whose warms per request stay within the better baseline's
   (markov successor or next key) on that same slice, less a margin.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from stream_warmer.events import AccessEvent
from stream_warmer.model.dataset import Encoded, batch, encode_stream, tenant_sequences, windows
from stream_warmer.model.features import INPUT_NAMES, FeatureSpec, fit_spec
from stream_warmer.model.net import ModelConfig, WarmNet
from stream_warmer.model.threshold import choose_threshold
from stream_warmer.settings import ModelSettings, Settings, TrainerSettings

log = logging.getLogger(__name__)


@dataclass
class Trained:
    """A trained model with its features, threshold and validation metrics."""

    model: WarmNet
    spec: FeatureSpec
    threshold: float
    metrics: dict[str, float] = field(default_factory=dict)


def multi_label_loss(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor
                     ) -> torch.Tensor:
    """Mean over valid steps of -log(sum of softmax over the correct classes)."""
    logp = torch.log_softmax(logits, dim=-1)  # (B, T, C)
    right = torch.logsumexp(logp.masked_fill(~target, float("-inf")), dim=-1)  # (B, T)
    right = torch.where(valid, right, torch.zeros_like(right))  # (B, T)
    return -right.sum() / valid.sum().clamp(min=1)


def offline_delay(trainer: TrainerSettings) -> int:
    """The delay a model trained outside a trainer round is trained for (the evaluator,
    the benches): ``trainer.gate_delay`` when fixed, else 0 (no serve reports one)."""
    return max(0, trainer.gate_delay)


def build_config(spec: FeatureSpec, ms: ModelSettings) -> ModelConfig:
    """Model constructor arguments for a feature spec and the model settings."""
    return ModelConfig(cat_vocab=spec.cat_vocab, n_cats=len(spec.cat_sizes),
                       n_bits=2 * spec.n_classes, n_classes=spec.n_classes,
                       embed_dim=ms.embed_dim, hidden=ms.hidden, layers=ms.layers,
                       dropout=ms.dropout,
                       drop_inputs=tuple(INPUT_NAMES.index(name) for name in ms.drop_inputs))


def train_model(events: Sequence[AccessEvent], settings: Settings,
                previous: Trained | None = None, *, delay: int = 0) -> Trained:
    """Train on ``events`` (in stream order) for warms that land ``delay`` requests
    after they are named; see the module docstring."""
    started = time.monotonic()
    trainer, ms, strategy = settings.trainer, settings.model, settings.strategy
    torch.manual_seed(trainer.seed)
    if previous is not None:  # warm start: the same classes, the window past this delay
        spec = previous.spec.with_lead(delay)
    else:
        spec = fit_spec(
            events, n_deltas=trainer.n_deltas, ranks=trainer.ranks,
            max_successors=strategy.markov_max_successors,
            max_keys_per_tenant=strategy.markov_max_keys_per_tenant,
            table_bytes=strategy.markov_table_bytes,
            ahead_window=trainer.ahead_window, ahead_ranks=trainer.ahead_ranks,
            ahead_successors=trainer.ahead_successors, ahead_lead=delay)
    split = int(len(events) * (1.0 - trainer.val_fraction))
    enc = encode_stream(events, spec, keep_from=max(0, split - trainer.burn_in),
                        lead=delay, horizon=trainer.horizon)
    config = build_config(spec, ms)
    model = WarmNet(config)
    if previous is not None and previous.model.config == config:
        model.load_state_dict(previous.model.state_dict(), strict=True)
    train_w, val_w = windows(tenant_sequences(enc), trainer.seq_len, split)
    best_val = _fit(model, enc, train_w, val_w, trainer=trainer, n_classes=spec.n_classes)
    threshold, metrics = choose_threshold(
        model, enc, events, split, trainer, strategy=strategy, delay=delay,
        presence=ms.presence_candidates if ms.presence else 0)
    metrics.update(val_loss=best_val, train_s=time.monotonic() - started,
                   train_windows=float(len(train_w)), events=float(len(events)))
    log.info("trained lstm: %s", {k: round(v, 4) for k, v in metrics.items()})
    return Trained(model, spec, threshold, metrics)


def _fit(model: WarmNet, enc: Encoded, train_w: list[np.ndarray], val_w: list[np.ndarray], *,
         trainer: TrainerSettings, n_classes: int) -> float:
    if not train_w:
        return float("nan")
    rng = np.random.default_rng(trainer.seed)
    opt = torch.optim.Adam(model.parameters(), lr=trainer.lr)
    best, best_state, bad = float("inf"), None, 0
    for _ in range(trainer.epochs):
        picks = rng.permutation(len(train_w))[: trainer.max_windows]
        model.train()
        for start in range(0, len(picks), trainer.batch_size):
            b = batch(enc, [train_w[i] for i in picks[start : start + trainer.batch_size]],
                      n_classes)
            logits, _ = model.forward_seq(b["cats"], b["bits"])  # (B, T, C)
            loss = multi_label_loss(logits, b["target"], b["valid"])
            opt.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            torch.nn.utils.clip_grad_norm_(model.parameters(), trainer.grad_clip)
            opt.step()
        val = _evaluate(model, enc, val_w or train_w[-trainer.batch_size :], trainer, n_classes)
        if val < best - 1e-4:
            best, bad = val, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            bad += 1
            if bad > trainer.patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state, strict=True)
    model.eval()
    return best


def _evaluate(model: WarmNet, enc: Encoded, wins: list[np.ndarray], trainer: TrainerSettings,
              n_classes: int) -> float:
    model.eval()
    picks = wins[:: max(1, len(wins) // trainer.max_windows)]
    total = n = 0.0
    with torch.inference_mode():
        for start in range(0, len(picks), trainer.batch_size):
            b = batch(enc, picks[start : start + trainer.batch_size], n_classes)
            logits, _ = model.forward_seq(b["cats"], b["bits"])
            steps = float(b["valid"].sum())
            total += float(multi_label_loss(logits, b["target"], b["valid"])) * steps
            n += steps
    return total / max(n, 1.0)
