"""The LSTM's scored micro-batch: every event's logits and candidates, warms chosen
only for the events serve asks about.

Serve asks the LSTM about every event of a micro-batch (``per_event``), but the
batcher hands it at most ``batch.max_events_per_tenant`` of each tenant's events, and
the model must step all of them anyway (its recurrent state). So the strategy scores
the whole batch as the evaluator's ``predict_stream`` does and keeps it here; the
softmax and the pooled choice of warms (``Cands.choose``, native) run only over the
rows asked about. A row's numbers do not depend on the rows beside it, so each asked
event gets exactly the evaluator's prediction.
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import attrgetter, itemgetter

import numpy as np
import numpy.typing as npt

from stream_warmer.events import AccessEvent
from stream_warmer.model.stepper import probabilities
from stream_warmer.model.tracker import Cands
from stream_warmer.strategies.base import Prediction, Window


class ScoredBatch:
    """The newest micro-batch's events, each with its scored step (warms chosen when
    its window is asked about) or its answer (with the online budget). Events are
    found by identity: the engine hands back the very objects it observed, and while
    they are held here no other live object can have their ``id``."""

    def __init__(self) -> None:
        self._events: list[AccessEvent] = []  # held: their ids stay theirs
        self._ids: list[npt.NDArray[np.int64]] = []  # per part, its events' ids
        self._parts: list[tuple[Cands, np.ndarray, np.ndarray] | list[list[Prediction]]] = []
        self._index: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]] | None = None

    def add_scored(self, events: list[AccessEvent], cands: Cands, logits: np.ndarray,
                   known: np.ndarray) -> None:
        """Scored events: their logits (N, C) and the probabilities already taken
        (N, C; NaN rows where not)."""
        self._add(events, (cands, logits, known))

    def add_answers(self, events: list[AccessEvent], answers: list[list[Prediction]]) -> None:
        self._add(events, answers)

    def _add(self, events: list[AccessEvent],
             part: tuple[Cands, np.ndarray, np.ndarray] | list[list[Prediction]]) -> None:
        self._events += events
        self._ids.append(np.fromiter(map(id, events), dtype=np.int64, count=len(events)))
        self._parts.append(part)
        self._index = None

    def answer(self, windows: Sequence[Window], k: int, threshold: float
               ) -> list[list[Prediction] | None]:
        """Up to ``k`` warms for each window whose newest event is in the batch (None
        for the others), from one ``choose`` per part over the asked rows only."""
        out: list[list[Prediction] | None] = [None] * len(windows)
        if not self._parts or not windows:
            return out
        if self._index is None:  # (ids sorted, their place in the batch)
            ids = np.concatenate(self._ids)
            order = np.argsort(ids, kind="stable")
            self._index = ids[order], order
        ids, order = self._index
        ask = np.fromiter(map(id, _newest_events(windows)), dtype=np.int64, count=len(windows))
        at = np.minimum(np.searchsorted(ids, ask), len(ids) - 1)
        found = np.flatnonzero(ids[at] == ask)  # (M,) windows answered from the batch
        flat = order[at[found]]  # (M,) their event's place in the batch
        starts = np.cumsum([0] + [len(x) for x in self._ids])
        part_of = np.searchsorted(starts, flat, side="right") - 1
        for part in np.unique(part_of).tolist():
            sel = part_of == part
            ix, rows = found[sel].tolist(), (flat[sel] - starts[part]).tolist()
            scored = self._parts[part]
            if isinstance(scored, list):
                picks = [scored[r] for r in rows]
            else:
                cands, logits, known = scored
                probs = known[rows]
                missing = np.isnan(probs[:, 0])
                if missing.any():
                    probs[missing] = probabilities(logits[np.asarray(rows)[missing]])
                picks = cands.choose(probs.tobytes(), k, as_str=True, threshold=threshold,
                                     make=Prediction, steps=rows)
            for i, preds in zip(ix, picks, strict=True):
                out[i] = preds
        return out


def _newest_events(windows: Sequence[Window]) -> list[object]:
    """Each window's newest event (None for an empty window), without a Python frame
    per window in the usual case."""
    try:
        return list(map(_LAST, map(_EVENTS, windows)))
    except IndexError:  # an empty window
        return [w.events[-1] if w.events else None for w in windows]


_EVENTS, _LAST = attrgetter("events"), itemgetter(-1)
