"""LstmStrategy: trains on a small synthetic stream, predicts it, both paths agree."""

from __future__ import annotations

import dataclasses
import itertools
import random

import pytest

from stream_warmer.events import AccessEvent
from stream_warmer.model.features import FeatureSpec
from stream_warmer.model.net import WarmNet
from stream_warmer.settings import ModelSettings, Settings, TrainerSettings
from stream_warmer.strategies.base import Window
from stream_warmer.strategies.lstm import (
    LstmStrategy,
    fit_strategy,
)
from stream_warmer.trainer.lstm import lstm_loader, lstm_trainer


def _stream(n: int) -> list[AccessEvent]:
    """Tenant ``seq`` scans by 8 (4 KiB requests); tenant ``loop`` cycles 12 random keys."""
    rng = random.Random(3)
    loop = [str(rng.randrange(10**6)) for _ in range(12)]
    events = []
    for i in range(n):
        if i % 2:
            events.append(AccessEvent(tenant="seq", key=str(5000 + 8 * (i // 2)), ts=i,
                                      size=4096))
        else:
            events.append(AccessEvent(tenant="loop", key=loop[(i // 2) % 12], ts=i, size=512))
    return events


@pytest.fixture(scope="module")
def settings() -> Settings:
    return Settings(
        model=ModelSettings(embed_dim=8, hidden=16, layers=1, dropout=0.0, cpu_threads=1,
                            max_state_slots=8, budget_online=False),
        trainer=TrainerSettings(epochs=15, batch_size=16, seq_len=32, max_windows=64,
                                val_fraction=0.2, burn_in=64, horizon=1),
    )


@pytest.fixture(scope="module")
def strategy(settings: Settings) -> LstmStrategy:
    fitted = fit_strategy(_stream(1200), settings)
    assert isinstance(fitted, LstmStrategy)
    return fitted


def test_learns_both_the_scan_and_the_loop(settings: Settings, strategy: LstmStrategy) -> None:
    events = _stream(1600)
    unthresholded = LstmStrategy(strategy.model, strategy.spec, 0.0, settings.model)
    preds = list(unthresholded.predict_stream(events, 1))
    right = total = 0
    for i in range(1000, 1598):
        nxt = events[i + 2]
        total += 1
        right += bool(preds[i]) and preds[i][0].key == nxt.key
    assert right / total > 0.9


def test_a_model_trained_for_a_delay_names_the_key_that_comes_after_its_warm_lands(
        settings: Settings) -> None:
    """Trained for warms that land 4 requests of the stream late (2 of the loop
    tenant's), the model names the loop's key 3 steps on (an AHEAD class of the window
    table), not the next one, which is asked for before the warm would land."""
    late = settings.model_copy(update={"trainer": settings.trainer.model_copy(
        update={"gate_delay": 4})})
    strategy = fit_strategy(_stream(1200), late)
    assert isinstance(strategy, LstmStrategy)
    events = _stream(1600)
    preds = list(LstmStrategy(strategy.model, strategy.spec, 0.0, settings.model)
                 .predict_stream(events, 1))
    loop = [i for i in range(1000, 1590) if events[i].tenant == "loop"]
    right = sum(bool(preds[i]) and preds[i][0].key == events[i + 6].key for i in loop)
    nxt = sum(bool(preds[i]) and preds[i][0].key == events[i + 2].key for i in loop)
    assert right / len(loop) > 0.9
    assert nxt / len(loop) < 0.1


def test_predict_matches_predict_stream(settings: Settings, strategy: LstmStrategy) -> None:
    events = _stream(300)
    streamed = list(LstmStrategy(strategy.model, strategy.spec, 0.0, settings.model)
                    .predict_stream(events, 2))
    fresh = LstmStrategy(strategy.model, strategy.spec, 0.0, settings.model)
    for event, expected in zip(events, streamed, strict=True):
        fresh.observe(event)
        got = fresh.predict([Window(event.tenant, (event,))], 2)[0]
        assert [p.key for p in got] == [p.key for p in expected]
        assert [p.score for p in got] == pytest.approx([p.score for p in expected], abs=1e-5)


def test_scores_are_confidences(strategy: LstmStrategy) -> None:
    for preds in strategy.predict_stream(_stream(200), 3):
        assert all(0.0 <= p.score <= 1.0 for p in preds)
        assert [p.score for p in preds] == sorted((p.score for p in preds), reverse=True)


def test_slots_are_bounded_and_forget_frees_them(settings: Settings,
                                                 strategy: LstmStrategy) -> None:
    fresh = LstmStrategy(strategy.model, strategy.spec, strategy.threshold, settings.model)
    events = [AccessEvent(tenant=f"t{i}", key=str(i), ts=i) for i in range(20)]
    list(fresh.predict_stream(events, 1))
    assert len(fresh._stepper.slots) <= settings.model.max_state_slots
    fresh.forget(["t19"])
    assert "t19" not in fresh._stepper.slots


def test_artifact_round_trip_and_warm_start(settings: Settings) -> None:
    train, load = lstm_trainer(settings), lstm_loader(settings)  # the trainer's one path
    first = train(_stream(600), None).artifact
    loaded = load(first, "v1")
    assert isinstance(loaded, LstmStrategy) and loaded.model_version == "v1"
    again = train(_stream(600), first).artifact  # warm start from the live artifact
    assert again.manifest["arch"] == first.manifest["arch"]
    assert again.manifest["features"] == first.manifest["features"]  # keeps the features


def _serve(strategy: LstmStrategy, events: list[AccessEvent], k: int = 2) -> list[list[str]]:
    out = []
    for event in events:
        strategy.observe(event)
        out.append([p.key for p in strategy.predict([Window(event.tenant, (event,))], k)[0]])
    return out


def test_adopt_state_continues_the_stream_as_if_never_swapped(settings: Settings,
                                                             strategy: LstmStrategy) -> None:
    events = _stream(400)
    whole = LstmStrategy(strategy.model, strategy.spec, 0.0, settings.model)
    expected = _serve(whole, events)
    before = LstmStrategy(strategy.model, strategy.spec, 0.0, settings.model)
    _serve(before, events[:250])
    after = LstmStrategy(strategy.model, strategy.spec, 0.0, settings.model)
    after.adopt_state(before)
    assert _serve(after, events[250:]) == expected[250:]
    cold = LstmStrategy(strategy.model, strategy.spec, 0.0, settings.model)
    assert _serve(cold, events[250:]) != expected[250:]  # the state is what made the difference


def test_adopt_state_keeps_the_tracker_when_the_state_shape_differs(
        settings: Settings, strategy: LstmStrategy) -> None:
    from stream_warmer.model.net import WarmNet
    from stream_warmer.model.train import build_config

    before = LstmStrategy(strategy.model, strategy.spec, 0.0, settings.model)
    _serve(before, _stream(250))
    wider = WarmNet(build_config(strategy.spec, settings.model.model_copy(update={"hidden": 8})))
    after = LstmStrategy(wider, strategy.spec, 0.0, settings.model)
    after.adopt_state(before)
    assert after._tracker is before._tracker
    assert after._stepper.slots.states.h.shape[-1] == 8 and not after._stepper.slots
    assert _serve(after, _stream(260)[250:])  # runs on fresh slots, the tracker's candidates


def test_adopt_state_keeps_the_tracker_of_a_model_trained_for_another_delay(
        settings: Settings, strategy: LstmStrategy) -> None:
    before = LstmStrategy(strategy.model, strategy.spec, 0.0, settings.model)
    _serve(before, _stream(250))
    later = dataclasses.replace(strategy.spec, ahead_lead=strategy.spec.ahead_lead + 5)
    after = LstmStrategy(strategy.model, later, 0.0, settings.model)
    after.adopt_state(before)
    assert after._tracker is before._tracker
    assert after._tracker.spec == later  # its window tables now start 5 requests later
    other = dataclasses.replace(strategy.spec, max_successors=strategy.spec.max_successors + 1)
    fresh = LstmStrategy(strategy.model, other, 0.0, settings.model)
    fresh.adopt_state(after)
    assert fresh._tracker is not after._tracker  # any other change: a tracker of its own


def test_adopt_state_seeds_successors_from_the_markov_fallback(settings: Settings,
                                                               strategy: LstmStrategy) -> None:
    from stream_warmer.strategies.baselines import Markov

    events = _stream(600)
    markov = Markov()
    for event in events[:500]:
        markov.observe(event)
    seeded = LstmStrategy(strategy.model, strategy.spec, 0.0, settings.model)
    seeded.adopt_state(markov)
    cold = LstmStrategy(strategy.model, strategy.spec, 0.0, settings.model)
    loop_event = next(e for e in events[500:] if e.tenant == "loop")
    seeded_step = seeded._tracker.step(loop_event)
    cold_step = cold._tracker.step(loop_event)
    successor = markov.predict([Window("loop", (loop_event,))], 1)[0][0].key
    assert seeded_step.cands[1] == int(successor)  # the Markov top successor is rank 1
    assert cold_step.cands[1] is None


def _reference(strategy: LstmStrategy, events: list[AccessEvent], k: int
               ) -> list[list[tuple[str, float]]]:
    """Per event, the plain computation: whole-sequence forward per tenant, dict pooling."""
    import torch

    from stream_warmer.model.dataset import expand_bits
    from stream_warmer.model.tracker import CandidateTracker

    tracker = CandidateTracker(strategy.spec)
    steps = [tracker.step(e) for e in events]
    probs: dict[str, list[list[float]]] = {}
    for tenant in {e.tenant for e in events}:
        mine = [s for s, e in zip(steps, events, strict=True) if e.tenant == tenant]
        cats = torch.tensor([s.cats for s in mine])[None]  # (1, T, K)
        bits = expand_bits(torch.tensor([s.correct for s in mine]),
                           torch.tensor([s.present for s in mine]),
                           strategy.spec.n_classes)[None]  # (1, T, 2C)
        with torch.inference_mode():
            logits, _ = strategy.model.forward_seq(cats, bits)  # (1, T, C)
        probs[tenant] = torch.softmax(logits[0], dim=-1).tolist()
    seen: dict[str, int] = {}
    out = []
    for step, event in zip(steps, events, strict=True):
        row = probs[event.tenant][seen.setdefault(event.tenant, 0)]
        seen[event.tenant] += 1
        pooled: dict[object, float] = {}
        for c, key in enumerate(step.cands):
            if key is not None:
                pooled[key] = pooled.get(key, 0.0) + row[c]
        best = sorted(pooled.items(), key=lambda kv: -kv[1])[:k]
        out.append([(str(key), min(1.0, p)) for key, p in best])
    return out


@pytest.mark.parametrize("k", [1, 3])
def test_serve_path_matches_the_plain_computation(settings: Settings, k: int) -> None:
    from stream_warmer.model.features import FeatureSpec
    from stream_warmer.model.net import WarmNet
    from stream_warmer.model.train import build_config

    torch_seed = __import__("torch").manual_seed
    torch_seed(7)
    spec = FeatureSpec(deltas=(1, 2, 8, -1), gap_edges=(0.5, 2.0), size_edges=(6.0, 8.0))
    model = WarmNet(build_config(spec, settings.model)).eval()
    ms = settings.model.model_copy(update={"max_state_slots": 16})
    rng = random.Random(11)
    keys = [str(rng.randrange(40)) for _ in range(20)] + ["a", "b"]
    events = [AccessEvent(tenant=f"t{rng.randrange(6)}", ts=3 * i,
                          key=rng.choice(keys) if rng.random() < 0.6 else str(100 + i),
                          size=rng.choice([None, 512, 4096])) for i in range(900)]
    expected = _reference(LstmStrategy(model, spec, 0.0, ms), events, k)
    serve = LstmStrategy(model, spec, 0.0, ms)
    i = checked = 0
    while i < len(events):
        batch = events[i : i + rng.randrange(1, 30)]
        for event in batch:
            serve.observe(event)
        last = {e.tenant: i + j for j, e in enumerate(batch)}  # newest event per tenant
        got = serve.predict([Window(t, (events[j],)) for t, j in last.items()], k)
        for j, preds in zip(last.values(), got, strict=True):
            assert [p.key for p in preds] == [key for key, _ in expected[j]]
            assert [p.score for p in preds] == pytest.approx([s for _, s in expected[j]],
                                                             abs=1e-5)
            checked += 1
        i += len(batch)
    assert checked > 300
    streamed = list(LstmStrategy(model, spec, 0.0, ms).predict_stream(events, k))
    assert [[p.key for p in ps] for ps in streamed] == [[key for key, _ in e] for e in expected]


@pytest.mark.parametrize("mode", ["plain", "budget", "presence"])
def test_every_event_of_a_micro_batch_gets_the_evaluators_prediction(
        settings: Settings, mode: str) -> None:
    """Serve asks about the events of a batch (``per_event``; the batcher hands over at
    most ``max_events_per_tenant`` of a tenant's), any subset, in any order, in one call
    or in chunks: each gets what ``predict_stream`` (the evaluator) gives it, plain,
    with the online budget (whose threshold moves with every request) and with the
    presence filter (whose shadow takes in every request and what it names; a batch's
    requests before its picks, ``predict_stream(batch=True)`` per batch)."""
    from stream_warmer.model.features import FeatureSpec
    from stream_warmer.model.net import WarmNet
    from stream_warmer.model.train import build_config

    __import__("torch").manual_seed(3)
    spec = FeatureSpec(deltas=(1, 2, -1), gap_edges=(0.5, 2.0), size_edges=(6.0, 8.0),
                       ahead_window=4, ahead_ranks=2)
    model = WarmNet(build_config(spec, settings.model)).eval()
    ms = settings.model.model_copy(update={"budget_online": mode == "budget",
                                           "presence_filter": mode == "presence",
                                           "cache_capacity": 20})
    rng = random.Random(5)
    events = [AccessEvent(tenant=f"t{rng.randrange(4)}", ts=2 * i,
                          key=str(rng.randrange(30)) if rng.random() < 0.7 else str(50 + i))
              for i in range(600)]
    cuts = [0]
    while cuts[-1] < len(events):
        cuts.append(min(len(events), cuts[-1] + rng.randrange(1, 40)))
    if mode == "presence":  # its shadow takes in a batch's requests before any pick
        ref = LstmStrategy(model, spec, 0.05, ms)
        streamed = [p for a, b in itertools.pairwise(cuts)
                    for p in ref.predict_stream(events[a:b], 2, batch=True)]
    else:
        streamed = list(LstmStrategy(model, spec, 0.05, ms).predict_stream(events, 2))
    assert sum(map(len, streamed)) > 100  # the threshold passes some, not all
    serve = LstmStrategy(model, spec, 0.05, ms)
    assert serve.per_event
    i = asked = 0
    for a, b in itertools.pairwise(cuts):
        batch = events[a:b]
        for event in batch:
            serve.observe(event)
        which = rng.sample(range(len(batch)), rng.randrange(1, len(batch) + 1))
        windows = [Window(batch[j].tenant, (batch[j],)) for j in which]
        cut = rng.randrange(len(windows) + 1)  # a flush asks in chunks of tenants
        got = serve.predict(windows[:cut], 2) + serve.predict(windows[cut:], 2)
        for j, preds in zip(which, got, strict=True):
            expected = streamed[i + j]
            assert [p.key for p in preds] == [p.key for p in expected]
            assert [p.score for p in preds] == pytest.approx([p.score for p in expected],
                                                             abs=1e-5)
        asked += len(which)
        i += len(batch)
    assert asked < len(events)


@pytest.mark.parametrize(("key", "expected"), [
    ("41", ["42", "43"]), ("²", []), ("١٢", []), ("user:1", []),
])
def test_the_budgets_nextkey_shadow_takes_ascii_digits_only(key: str,
                                                             expected: list[str]) -> None:
    from stream_warmer.strategies.lstm import _next_keys

    assert _next_keys(key, 2) == expected  # int("²") raised ValueError on every event


def _presence_case(settings: Settings, seed: int, keys: int, n: int
                   ) -> tuple[WarmNet, FeatureSpec, ModelSettings, list[AccessEvent]]:
    """An untrained model (seeded), its spec, model settings with the presence filter,
    and ``n`` random events of 3 tenants over ``keys`` keys."""
    from stream_warmer.model.train import build_config

    __import__("torch").manual_seed(seed)
    spec = FeatureSpec(deltas=(1, 2, -1), ahead_window=4, ahead_ranks=2)
    model = WarmNet(build_config(spec, settings.model)).eval()
    ms = settings.model.model_copy(update={"presence_filter": True})
    rng = random.Random(seed + 2)
    events = [AccessEvent(tenant=f"t{rng.randrange(3)}", ts=i, key=str(rng.randrange(keys)))
              for i in range(n)]
    return model, spec, ms, events


def test_serves_presence_filter_names_no_key_asked_for_later_in_the_batch(
        settings: Settings) -> None:
    """A micro-batch has been served by the time its warms land: with the presence
    filter no event's warm names a key that a later event of the same batch asks for
    (the evaluator's per-event stream does, where a later request is the future)."""
    model, spec, ms, events = _presence_case(settings, 6, keys=25, n=1200)
    ms = ms.model_copy(update={"cache_capacity": 400})  # holds any batch: nothing evicted
    strategy = LstmStrategy(model, spec, 0.0, ms)
    strategy.set_cache_capacity(400)
    per_event = LstmStrategy(model, spec, 0.0, ms)
    per_event.set_cache_capacity(400)
    named = named_later = 0
    for a in range(0, len(events), 30):
        batch = events[a : a + 30]
        picks = list(strategy.predict_stream(batch, 2, batch=True))
        named += sum(map(len, picks))
        for i, preds in enumerate(picks):
            later = {(ev.tenant, ev.key) for ev in batch[i + 1 :]}
            assert not any((batch[i].tenant, p.key) in later for p in preds)
        for i, preds in enumerate(per_event.predict_stream(batch, 2)):
            later = {(ev.tenant, ev.key) for ev in batch[i + 1 :]}
            named_later += sum((batch[i].tenant, p.key) in later for p in preds)
    # both name keys, and the per-event stream names some asked for later in the batch
    assert named > 50 and named_later > 0


def test_with_the_presence_filter_every_named_key_is_an_effective_warm(
        settings: Settings) -> None:
    """At delay 0 the shadow is the evaluator's cache: the LSTM names only keys the
    cache does not hold, and the top key it skips is the one the cache has."""
    from stream_warmer.lru import LruSim

    model, spec, ms, events = _presence_case(settings, 4, keys=40, n=1500)
    plain = LstmStrategy(model, spec, 0.0,
                         settings.model.model_copy(update={"presence_filter": False}))
    strategy = LstmStrategy(model, spec, 0.0, ms)
    assert not strategy.nested_k and strategy.release_floor() is None
    assert plain.picking() is None  # the evaluator cuts its warms after the fact
    picking = strategy.picking()  # the shadow's picks are its own: the frontier picks too
    assert picking is not None
    twin, n = picking
    assert n == ms.presence_candidates and twin.threshold == 0.0 and twin.presence is None
    strategy.set_cache_capacity(12)
    sim, named, skipped = LruSim(12), 0, 0
    for event, preds, top in zip(events, strategy.predict_stream(events, 1),
                                 plain.predict_stream(events, 1), strict=True):
        sim.request((event.tenant, event.key), True)
        if top and preds and top[0].key != preds[0].key:
            skipped += 1
            assert (event.tenant, top[0].key) in sim.lru
        for p in preds:
            assert sim.warm((event.tenant, p.key), True)
            named += 1
    assert named > 500 and skipped > 50


def test_the_presence_filters_frontier_row_is_an_instance_at_that_threshold(
        settings: Settings) -> None:
    """``evaluate --threshold`` picks each T's warms from one twin's candidates with a
    shadow per cache: the T row equals the own row of an instance trained to T."""
    from stream_warmer.evaluation.warmeval import StrategySpec, evaluate

    model, spec, ms, events = _presence_case(settings, 5, keys=60, n=2000)

    def at(t: float) -> StrategySpec:
        return StrategySpec("lstm", lambda: LstmStrategy(model, spec, t, ms))

    rows = evaluate("t", lambda: events, [at(0.0)], [1], [0.2], delays=[0, 3],
                    thresholds=[0.1, 0.4])
    for t in (0.1, 0.4):
        alone = evaluate("t", lambda: events, [at(t)], [1], [0.2], delays=[0, 3])
        mine = [r for r in rows if r.threshold == t]
        assert [(r.hit_ratio, r.warms_per_request, r.delay) for r in mine] == [
            (r.hit_ratio, r.warms_per_request, r.delay) for r in alone]
    cut = [r for r in rows if r.threshold == 0.4 and r.delay == 0]
    assert cut[0].warms_per_request < rows[0].warms_per_request  # T = 0.4 names fewer
