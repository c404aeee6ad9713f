"""``bench.timeliness``: tying each warm in the cache to its request, and its stages."""

from __future__ import annotations

from stream_warmer.bench.appcache import Produced
from stream_warmer.bench.timeliness import Landed, match_warms, stage_ms
from stream_warmer.events import WarmCommand


def command(key: str, offset: int, issued_at: int) -> WarmCommand:
    return WarmCommand("acme", key, 0.9, "markov", "v", f"events/0/{offset}", issued_at,
                       issued_at + 10_000)


def test_a_put_is_tied_to_the_newest_command_issued_before_it() -> None:
    produced = Produced(ts=[1000, 1010, 1020], where={(0, 7): 0, (0, 8): 1, (0, 9): 2},
                        appended={0: 1004, 1: 1013})
    commands = [command("k", 7, 1008), command("k", 8, 1016), command("k", 9, 1040)]
    # put at 1030, while the app served request 2: the command of request 1 caused it
    [landed] = match_warms([("acme", "k", 1030, 2)], commands, produced)
    assert landed == Landed(cause=1, issued_at=1016, at_ms=1030, delay=1)
    assert landed.latency_ms(produced) == 20.0
    assert match_warms([("acme", "k", 1005, 0)], commands, produced) == []  # none before
    assert match_warms([("other", "k", 1030, 2)], commands, produced) == []


def test_stages_split_a_warm_where_it_is_timed() -> None:
    produced = Produced(ts=[1000, 1010], appended={0: 1004})
    stages = stage_ms([Landed(0, 1011, 1030, 3), Landed(1, 1016, 1030, 1)], produced)
    # request 1 has no broker time (not a LogAppendTime topic): not split
    assert stages == {"produce": [4.0], "serve": [7.0], "load": [19.0]}
