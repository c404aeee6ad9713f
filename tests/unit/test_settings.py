"""Settings precedence (env > file > defaults) and validation errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream_warmer.errors import ConfigError
from stream_warmer.settings import BatchSettings, Settings, load_settings

REPO = Path(__file__).resolve().parents[2]


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sw.toml"
    path.write_text(text)
    return path


def test_defaults_without_file_or_env() -> None:
    s = load_settings(None, {})
    assert s.kafka.bootstrap_servers == "127.0.0.1:9092"
    assert s.batch.max_batch == 1024
    assert s.topics.model_updates == "model-updates"


def test_file_overrides_defaults(tmp_path: Path) -> None:
    path = _toml(tmp_path, '[batch]\nmax_batch = 64\n[kafka]\nconsumer_group = "g1"\n')
    s = load_settings(path, {})
    assert s.batch.max_batch == 64
    assert s.kafka.consumer_group == "g1"
    assert s.batch.max_delay_ms == BatchSettings().max_delay_ms  # untouched default


def test_env_overrides_file(tmp_path: Path) -> None:
    path = _toml(tmp_path, "[batch]\nmax_batch = 64\nmax_delay_ms = 8.0\n")
    s = load_settings(path, {"STREAM_WARMER_BATCH__MAX_BATCH": "128"})
    assert s.batch.max_batch == 128
    assert s.batch.max_delay_ms == 8.0


def test_config_file_from_env(tmp_path: Path) -> None:
    path = _toml(tmp_path, '[strategy]\nname = "nextkey"\n')
    s = load_settings(None, {"STREAM_WARMER_CONFIG_FILE": str(path)})
    assert s.strategy.name == "nextkey"


def test_unrelated_env_is_ignored() -> None:
    s = load_settings(None, {"HOME": "/x", "OTHER__BATCH__MAX_BATCH": "0"})
    assert s.batch.max_batch == 1024


def test_out_of_range_names_variable_and_range() -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings(None, {"STREAM_WARMER_BATCH__MAX_BATCH": "0"})
    text = str(exc.value)
    assert "STREAM_WARMER_BATCH__MAX_BATCH" in text
    assert "greater than or equal to 1" in text


def test_bad_choice_is_explained() -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings(None, {"STREAM_WARMER_STRATEGY__NAME": "magic"})
    assert "STREAM_WARMER_STRATEGY__NAME" in str(exc.value)
    assert "markov" in str(exc.value)


def test_successor_bounds_must_leave_the_lstm_its_ranks() -> None:
    """The markov baseline and the LSTM's tracker share one table and its bounds."""
    with pytest.raises(ConfigError) as exc:
        load_settings(None, {"STREAM_WARMER_STRATEGY__MARKOV_MAX_SUCCESSORS": "1"})
    assert "STREAM_WARMER_TRAINER__RANKS" in str(exc.value)
    ok = load_settings(None, {"STREAM_WARMER_STRATEGY__MARKOV_MAX_SUCCESSORS": "1",
                              "STREAM_WARMER_TRAINER__RANKS": "1"})
    assert ok.strategy.markov_max_successors == 1


def test_the_online_budget_replaces_the_presence_filter() -> None:
    assert load_settings(None, {}).model.presence  # on by default
    off = load_settings(None, {"STREAM_WARMER_MODEL__PRESENCE_FILTER": "false"})
    assert not off.model.presence
    budget = load_settings(None, {"STREAM_WARMER_MODEL__BUDGET_ONLINE": "true"})
    assert budget.model.presence_filter and not budget.model.presence


def test_model_inputs_can_be_dropped_by_name() -> None:
    s = load_settings(None, {"STREAM_WARMER_MODEL__DROP_INPUTS": '["gap", "present"]'})
    assert s.model.drop_inputs == ("gap", "present")
    with pytest.raises(ConfigError) as exc:
        load_settings(None, {"STREAM_WARMER_MODEL__DROP_INPUTS": '["colour"]'})
    assert "STREAM_WARMER_MODEL__DROP_INPUTS" in str(exc.value)


def test_unknown_key_in_file_is_rejected(tmp_path: Path) -> None:
    path = _toml(tmp_path, "[batch]\nmax_btach = 3\n")
    with pytest.raises(ConfigError, match="max_btach"):
        load_settings(path, {})


def test_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml", {})


def test_bad_topic_name() -> None:
    with pytest.raises(ConfigError, match="STREAM_WARMER_TOPICS__WARM_COMMANDS"):
        load_settings(None, {"STREAM_WARMER_TOPICS__WARM_COMMANDS": "no spaces allowed"})


def test_secret_is_not_shown_but_reaches_librdkafka() -> None:
    s = load_settings(
        None,
        {
            "STREAM_WARMER_KAFKA__SASL_PASSWORD": "hunter2",
            "STREAM_WARMER_KAFKA__SASL_USERNAME": "u",
        },
    )
    assert "hunter2" not in repr(s)
    assert s.kafka.client_config()["sasl.password"] == "hunter2"


def test_extra_librdkafka_options_pass_through() -> None:
    s = load_settings(None, {"STREAM_WARMER_KAFKA__EXTRA": '{"socket.keepalive.enable": "true"}'})
    assert s.kafka.client_config()["socket.keepalive.enable"] == "true"


def test_settings_are_frozen() -> None:
    s = load_settings(None, {})
    with pytest.raises(Exception, match="frozen"):
        s.batch.max_batch = 3  # type: ignore[misc]


def test_shipped_config_matches_defaults() -> None:
    """config/stream-warmer.toml documents the defaults; it must not drift from them."""
    shipped = load_settings(REPO / "config" / "stream-warmer.toml", {})
    assert shipped == Settings(_environ={})  # type: ignore[call-arg]


@pytest.mark.parametrize("name", ["serve.env.example", "train.env.example"])
def test_example_env_files_are_valid(name: str) -> None:
    env: dict[str, str] = {}
    for raw in (REPO / "config" / name).read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip()
    assert env, "example file is empty"
    load_settings(None, env)


@pytest.mark.parametrize("option", ["enable.auto.commit", "enable.auto.offset.store",
                                    "auto.commit.enable", "group.id", " Group.Id "])
def test_extra_may_not_switch_off_manual_offsets_or_change_the_group(option: str) -> None:
    # serve commits only after the side effects; these would commit (or split the
    # group) behind its back, and the extra options used to win over serve's own
    env = {"STREAM_WARMER_KAFKA__EXTRA": f'{{"{option}": "true"}}'}
    with pytest.raises(ConfigError, match="STREAM_WARMER_KAFKA__EXTRA") as exc:
        load_settings(None, env)
    assert option.strip().lower() in str(exc.value)


@pytest.mark.parametrize(("acks", "ok"), [("all", True), ("-1", True), ("1", False),
                                          ("0", False)])
def test_extra_may_not_weaken_acks(acks: str, ok: bool) -> None:
    env = {"STREAM_WARMER_KAFKA__EXTRA": f'{{"acks": "{acks}"}}'}
    if ok:
        assert load_settings(None, env).kafka.client_config()["acks"] == acks
        return
    with pytest.raises(ConfigError, match="acks"):
        load_settings(None, env)


def test_the_producer_takes_any_dead_letter_the_app_can_make() -> None:
    from stream_warmer.serve.wiring import producer_conf

    s = load_settings(None, {"STREAM_WARMER_EVENTS__DEAD_LETTER_MAX_BYTES": "200000"})
    assert producer_conf(s)["message.max.bytes"] >= 200_000
    assert producer_conf(load_settings(None, {}))["message.max.bytes"] <= 1_048_588
    low = load_settings(None, {"STREAM_WARMER_KAFKA__EXTRA": '{"message.max.bytes": "50000"}'})
    with pytest.raises(ConfigError, match="dead_letter_max_bytes"):
        producer_conf(low)
