"""The online warm budget: shadow caches sized by the told capacity, the threshold moves
against over- and under-spending, and the LSTM gets its capacity from the hook/setting."""

from __future__ import annotations

import torch

from stream_warmer.model.budget import WarmBudget
from stream_warmer.model.features import FeatureSpec
from stream_warmer.model.net import WarmNet
from stream_warmer.model.train import build_config
from stream_warmer.settings import ModelSettings
from stream_warmer.strategies.lstm import LstmStrategy


def _step(budget: WarmBudget, pair: tuple[str, str], scored: list[tuple[str, float]],
          markov: list[str], nextkey: list[str]) -> None:
    """One request as serve and the evaluator drive it: request, then the warms that
    pass the threshold it left."""
    budget.request(pair, markov, nextkey)
    budget.warm(pair[0], [key for key, s in scored if s >= budget.threshold])


def test_shadow_caches_hold_the_told_capacity() -> None:
    budget = WarmBudget(0.5, 10, 0.0)
    for i in range(200):
        _step(budget, ("t", str(i)), [(str(i + 1), 0.9)], [str(i + 2)], [str(i + 1)])
    assert all(len(shadow.lru) == 10 for shadow in budget._shadows)
    budget.capacity = 3
    _step(budget, ("t", "x"), [], [], [])
    assert all(len(shadow.lru) == 3 for shadow in budget._shadows)


def test_threshold_rises_when_warming_more_than_the_baseline_and_falls_otherwise() -> None:
    spender = WarmBudget(0.5, 50, 0.0, halflife=50, base_halflife=500)
    for i in range(2000):  # we warm a fresh key each time; the baselines warm nothing new
        _step(spender, ("t", str(i % 40)), [(f"w{i}", 0.99)], [], [])
    assert spender.threshold > 0.5
    saver = WarmBudget(0.5, 50, 0.0, halflife=50, base_halflife=500)
    for i in range(2000):  # we warm nothing; the Markov baseline warms fresh keys
        _step(saver, ("t", str(i % 40)), [("0", 0.1)], [f"m{i}"], [])
    assert saver.threshold < 0.5


def test_the_serve_drive_counts_warms_at_the_next_request() -> None:
    budget = WarmBudget(0.5, 50, 0.0, halflife=1)  # alpha 0.5
    budget.request(("t", "a"), [], [])
    budget.warm("t", ["b", "c"])
    assert budget.warm_rate[0] == 0.0
    budget.request(("t", "d"), [], [])
    assert budget.warm_rate[0] == 1.0  # 0.5 * 2 effective warms


def test_the_baselines_shadows_warm_their_top_k() -> None:
    one, four = WarmBudget(0.5, 100, 0.0, halflife=1), WarmBudget(0.5, 100, 0.0, halflife=1)
    one.request(("t", "1"), ["7"], ["2"])
    four.request(("t", "1"), ["7", "8", "9", "10"], ["2", "3", "4", "5"])
    assert one.warm_rate[1:] == [0.5, 0.5]  # alpha 0.5 x one effective warm each
    assert four.warm_rate[1:] == [2.0, 2.0]  # x four


def test_lstm_shadows_follow_the_k_it_is_asked_for() -> None:
    ms = ModelSettings(embed_dim=4, hidden=8, cpu_threads=1, budget_online=True,
                       cache_capacity=1000)
    strategy = _strategy(ms)
    from stream_warmer.events import AccessEvent

    events = [AccessEvent(tenant="t", key=str(k), ts=i)
              for i, k in enumerate([1, 5, 1, 6, 1, 7, 1, 8, 1, 9, 1])]
    list(strategy.predict_stream(events, 4))
    batch = strategy._tracker.step_batch([events[-1]], keep=True, marks_k=strategy._marks_k())
    assert batch.cands is not None
    assert strategy._markov(batch.cands, 0) == [
        "5", "6", "7", "8"]  # four successors of 1, beyond the model's 2 ranks
    assert strategy._k == 4


def _strategy(ms: ModelSettings) -> LstmStrategy:
    spec = FeatureSpec(deltas=(1,))
    torch.manual_seed(0)
    return LstmStrategy(WarmNet(build_config(spec, ms)), spec, 0.2, ms)


def test_lstm_budget_capacity_from_the_hook_or_the_setting_never_a_fraction() -> None:
    ms = ModelSettings(embed_dim=4, hidden=8, cpu_threads=1, budget_online=True)
    unknown = _strategy(ms)
    assert unknown.budget is None  # no capacity known: the trained threshold serves
    unknown.set_cache_capacity(123)
    assert unknown.budget is not None and unknown.budget.capacity == 123
    configured = _strategy(ms.model_copy(update={"cache_capacity": 77}))
    assert configured.budget is not None and configured.budget.capacity == 77
    off = _strategy(ms.model_copy(update={"budget_online": False}))
    off.set_cache_capacity(5)
    assert off.budget is None


def test_with_the_online_budget_each_k_needs_its_own_run() -> None:
    ms = ModelSettings(embed_dim=4, hidden=8, cpu_threads=1, budget_online=True)
    assert _strategy(ms).nested_k is False  # the threshold follows k
    plain = ms.model_copy(update={"budget_online": False, "presence_filter": False})
    assert _strategy(plain).nested_k is True


def test_serve_and_the_evaluator_drive_the_budget_alike() -> None:
    """With the budget on (a small cache, so the threshold moves all the time), serve
    fed one event per micro-batch warms exactly what the evaluator's replay warms, and
    their budgets end in the same state: one inference path, one way to drive it."""
    import random

    from stream_warmer.events import AccessEvent
    from stream_warmer.strategies.base import Window

    ms = ModelSettings(embed_dim=4, hidden=8, cpu_threads=1, budget_online=True, cache_capacity=20,
                       budget_margin=0.0)
    rng = random.Random(5)
    events = [AccessEvent(tenant=f"t{rng.randrange(3)}", key=str(rng.randrange(30)), ts=i)
              for i in range(600)]
    def fast(strategy: LstmStrategy) -> LstmStrategy:  # a threshold that jumps per request
        assert strategy.budget is not None
        strategy.budget.lr = 0.05
        return strategy

    streamed = [[p.key for p in ps] for ps in fast(_strategy(ms)).predict_stream(events, 2)]
    serve = fast(_strategy(ms))
    served = []
    for event in events:
        serve.observe(event)
        served.append([p.key for p in serve.predict([Window(event.tenant, (event,))], 2)[0]])
    assert served == streamed
    replay = fast(_strategy(ms))
    list(replay.predict_stream(events, 2))
    assert serve.budget is not None and replay.budget is not None
    assert serve.budget.threshold == replay.budget.threshold != 0.2  # it moved
    assert sum(map(len, served)) > 50
