"""The version the model store could not deliver, and when the watcher fetches it again
(jittered exponential backoff; see ``trainer.watcher``)."""

from __future__ import annotations

import random
from collections.abc import Callable

from stream_warmer.backoff import jittered_s
from stream_warmer.trainer.updates import ModelUpdate


class FetchRetry:
    """The newest version the store could not deliver, and when to fetch it again."""

    def __init__(self, first_s: float, max_s: float, clock: Callable[[], float],
                 rng: random.Random | None = None) -> None:
        self._first_s, self._max_s, self._clock = first_s, max(first_s, max_s), clock
        self._rng = rng or random.Random()
        self.update: ModelUpdate | None = None
        self.failures = 0  # failed fetches of ``update``
        self._at = 0.0

    def failed(self, update: ModelUpdate) -> float | None:
        """``update`` could not be fetched: schedule it; return the wait (``None`` when
        another version is pending: catching up goes newest first, the newest stays)."""
        if self.update is None:
            self.update, self.failures = update, 0
        elif same_update(self.update, update):
            self.failures += 1
        else:
            return None
        wait = jittered_s(self.failures, self._first_s, self._max_s, self._rng)
        self._at = self._clock() + wait
        return wait

    def due(self) -> ModelUpdate | None:
        """The pending version once its wait has passed."""
        return self.update if self.update is not None and self._clock() >= self._at else None

    def clear(self) -> None:
        """Nothing to retry: the version loaded, or a newer record replaced it."""
        self.update, self.failures = None, 0


def same_update(a: ModelUpdate, b: ModelUpdate) -> bool:
    """The same version with the same weights."""
    return (a.version, a.sha256) == (b.version, b.sha256)
