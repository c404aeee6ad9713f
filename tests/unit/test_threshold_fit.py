"""The LSTM's threshold fit replays the validation slice as serve will pick."""

from __future__ import annotations

import pytest

from stream_warmer.events import AccessEvent
from stream_warmer.lru import replay
from stream_warmer.model.threshold import _replay_presence

CYCLE = 10


def _cycle(n: int) -> list[AccessEvent]:
    return [AccessEvent(tenant="t", key=str(i % CYCLE), ts=i) for i in range(n)]


def _named(events: list[AccessEvent], ahead: int) -> list[list[tuple[str, float]]]:
    """Best first: the key just asked for (cached, so worthless), then the one asked for
    ``ahead`` requests later."""
    return [[(ev.key, 0.9), (str((int(ev.key) + ahead) % CYCLE), 0.5)] for ev in events]


@pytest.mark.parametrize("delay", [0, 2])
def test_the_presence_replay_warms_the_first_named_key_the_cache_lacks(delay: int) -> None:
    events = _cycle(400)
    # a cycle longer than the cache: the key due once the warm lands, every request
    assert _replay_presence(events, _named(events, 1 + delay), 0.4, capacity=3, count_from=200,
                            delay=delay) == (1.0, 1.0)
    # named too soon, it is asked for (a miss, cached) before its warm lands: no use
    assert _replay_presence(events, _named(events, 1), 0.4, capacity=3, count_from=200,
                            delay=delay) == (
        (1.0, 1.0) if delay == 0 else (0.0, 0.0))
    # the top key alone (the fit before the presence filter) warms what is cached
    pairs = [(ev.tenant, ev.key) for ev in events]
    top = [(ev.tenant, ev.key) for ev in events]
    assert replay(pairs, top, 3, 200, delay) == (0.0, 0.0)


def test_the_presence_replay_takes_no_key_below_the_threshold() -> None:
    events = _cycle(400)
    assert _replay_presence(events, _named(events, 1), 0.6, capacity=3, count_from=200,
                            delay=0) == (0.0, 0.0)
