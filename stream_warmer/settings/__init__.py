"""Typed, frozen settings, read once at the entry point.

Precedence (highest first): environment variables (``STREAM_WARMER_`` prefix, ``__``
between nested names, e.g. ``STREAM_WARMER_KAFKA__BOOTSTRAP_SERVERS``), then a TOML
file (``config/stream-warmer.toml`` by default, or the path given with ``--config``
or ``STREAM_WARMER_CONFIG_FILE``), then the defaults (``settings.stream``: Kafka, topics,
Redis, events, windows, batches, policy, loader, metrics; ``settings.learning``: the
strategy, the model, the trainer). Everything inside the
package receives the sub-model it needs; nothing else reads the environment.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pydantic import ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from pydantic_settings.sources.utils import parse_env_vars

from stream_warmer.errors import ConfigError
from stream_warmer.settings.learning import (
    InputName,
    ModelSettings,
    StrategySettings,
    TrainerSettings,
)
from stream_warmer.settings.stream import (
    ENV_PREFIX,
    BatchSettings,
    EventSettings,
    KafkaSettings,
    LoaderSettings,
    MetricsSettings,
    PolicySettings,
    RedisSettings,
    TopicSettings,
    WindowSettings,
)

__all__ = [
    "DEFAULT_CONFIG_FILE", "ENV_PREFIX", "BatchSettings", "EventSettings", "InputName",
    "KafkaSettings", "LoaderSettings", "MetricsSettings", "ModelSettings", "PolicySettings",
    "RedisSettings", "Settings", "StrategySettings", "TopicSettings", "TrainerSettings",
    "WindowSettings", "check_lstm_bounds", "load_settings",
]

DEFAULT_CONFIG_FILE = Path("config/stream-warmer.toml")


class Settings(BaseSettings):
    """All settings of every process; each component takes only its section."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        frozen=True,
        extra="forbid",
        toml_file=None,
    )

    kafka: KafkaSettings = KafkaSettings()
    topics: TopicSettings = TopicSettings()
    redis: RedisSettings = RedisSettings()
    events: EventSettings = EventSettings()
    window: WindowSettings = WindowSettings()
    batch: BatchSettings = BatchSettings()
    strategy: StrategySettings = StrategySettings()
    model: ModelSettings = ModelSettings()
    trainer: TrainerSettings = TrainerSettings()
    policy: PolicySettings = PolicySettings()
    loader: LoaderSettings = LoaderSettings()
    metrics: MetricsSettings = MetricsSettings()

    @model_validator(mode="after")
    def _bounds_agree(self) -> Settings:
        # ConfigError, not ValueError: pydantic would quote the whole input back (with
        # any secrets in it) and name no variable
        if self.strategy.name == "lstm":
            check_lstm_bounds(self.window.max_tenants, self.model.max_state_slots)
        if self.strategy.markov_max_successors < self.trainer.ranks:
            msg = (f"{ENV_PREFIX}STRATEGY__MARKOV_MAX_SUCCESSORS (strategy.markov_max_successors"
                   f"={self.strategy.markov_max_successors}) is below {ENV_PREFIX}TRAINER__RANKS "
                   f"(trainer.ranks={self.trainer.ranks}): the LSTM's successor tables have "
                   "the markov baseline's bounds, and a rank class needs a successor to name")
            raise ConfigError(msg)
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        kwargs = init_settings.init_kwargs  # type: ignore[attr-defined]
        toml_file = kwargs.pop("_config_file", None)
        environ = kwargs.pop("_environ", None)
        env_source = env_settings if environ is None else _MappingEnvSource(settings_cls, environ)
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_source]
        if toml_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
        return tuple(sources)


class _MappingEnvSource(EnvSettingsSource):
    """The env layer, read from a given mapping instead of ``os.environ``."""

    def __init__(self, settings_cls: type[BaseSettings], environ: dict[str, str]) -> None:
        self._mapping = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(
            self._mapping, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str
        )


def load_settings(
    config_file: Path | None = None,
    environ: dict[str, str] | None = None,
) -> Settings:
    """Build settings once: env over the TOML file over defaults.

    ``environ`` is the process environment (passed in by the CLI, never read here
    directly, so tests can inject their own). A bad value raises ``ConfigError``
    naming the environment variable and what is allowed.
    """
    env = environ if environ is not None else {}
    path = config_file or _config_file_from(env)
    if path is not None and not path.is_file():
        msg = f"config file {str(path)!r} does not exist"
        raise ConfigError(msg)
    try:
        return _build(path, env)
    except ValidationError as exc:
        raise ConfigError(_explain(exc)) from exc


def _config_file_from(env: dict[str, str]) -> Path | None:
    explicit = env.get(f"{ENV_PREFIX}CONFIG_FILE")
    if explicit:
        return Path(explicit)
    return DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.is_file() else None


def _build(path: Path | None, env: dict[str, str]) -> Settings:
    environ = {k: v for k, v in env.items() if k != f"{ENV_PREFIX}CONFIG_FILE"}
    return Settings(_config_file=path, _environ=environ)  # type: ignore[call-arg]


def _explain(exc: ValidationError) -> str:
    lines = ["invalid configuration:"]
    for err in exc.errors():
        loc = [str(part) for part in err["loc"]]
        var = ENV_PREFIX + "__".join(part.upper() for part in loc)
        lines.append(f"  {var} ({'.'.join(loc)}): {err['msg']}; got {err.get('input')!r}")
    return "\n".join(lines)


def check_lstm_bounds(max_tenants: int, max_state_slots: int) -> None:
    """Raise ``ConfigError`` when the LSTM would serve more windows than state slots."""
    if max_tenants > max_state_slots:
        msg = (f"{ENV_PREFIX}WINDOW__MAX_TENANTS (window.max_tenants="
               f"{max_tenants}) is above {ENV_PREFIX}MODEL__MAX_STATE_SLOTS "
               f"(model.max_state_slots={max_state_slots}): with "
               "strategy.name=lstm a tenant beyond the model's state slots would lose "
               "its recurrent state and candidates while its window is still held; "
               "lower window.max_tenants or raise model.max_state_slots")
        raise ConfigError(msg)

