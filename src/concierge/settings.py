"""Settings from `concierge.toml` and `CONCIERGE_*` environment variables.

This is the only place that reads the environment. Environment variables win over the file
(`CONCIERGE_MODEL__PROVIDER=openai` overrides `[model] provider`). A bad value becomes a
`ConfigError` naming the key and what is allowed.
"""

from __future__ import annotations

import ipaddress
import tomllib
from pathlib import Path
from typing import Any, ClassVar, Literal

import pydantic
from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from .core.errors import ConfigError
from .guardrails.caps import TenantCaps

DEFAULT_CONFIG_FILE = Path("concierge.toml")


class _Section(BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")


class ModelConfig(_Section):
    provider: Literal["embedded", "openai", "anthropic"] = "embedded"
    # Model name at the endpoint (e.g. "gpt-4o-mini", "qwen2.5:7b"); the embedded model ignores it.
    name: str | None = None
    base_url: str | None = None
    api_key: SecretStr | None = None
    timeout_s: float = Field(60.0, gt=0)
    max_retries: int = Field(3, ge=0, le=10)
    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int | None = Field(None, gt=0)


class LimitsConfig(_Section):
    max_steps: int = Field(8, ge=1, le=100)
    timeout_s: float = Field(120.0, gt=0)
    max_tokens: int | None = Field(None, gt=0)
    max_cost_usd: float | None = Field(None, ge=0)
    max_tool_result_tokens: int = Field(800, ge=16)
    context_tokens: int = Field(6000, ge=64)


class SessionsConfig(_Section):
    # "memory" keeps sessions in the process; anything else is an SQLAlchemy async URL.
    url: str = "sqlite+aiosqlite:///.concierge/sessions.db"
    # SQLite: "process" — a turn whose commit returned survives the server being killed (kill -9, OOM);
    # "power" — it also survives a power cut or OS crash (each group commit waits for the disk).
    # PostgreSQL's durability is the server's own (synchronous_commit).
    durability: Literal["process", "power"] = "process"


class TracingConfig(_Section):
    otlp_endpoint: str | None = None
    service_name: str = "concierge"


def is_loopback(host: str) -> bool:
    """True for 'localhost' and loopback addresses (127.0.0.0/8, ::1); 0.0.0.0 listens everywhere."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class ServeConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    workers: int = Field(1, ge=1, le=64)
    # Rate limits and session locks shared by workers; without it both are per process.
    redis_url: str | None = None
    # The tenant whose visitors the chat page signs in as fresh demo customers (POST /v1/demo/login,
    # see docs/security.md); off when empty ("" or `--no-demo`).
    demo_tenant: str | None = "demo"
    # Demo sign-in on a host other than loopback lets anyone who reaches the port chat: only when asked.
    demo_public: bool = False
    # The one-time token that signs the operator console in while demo sign-in is on. `concierge
    # serve` sets a fresh one at every start (through the environment, so all workers share it).
    console_token: SecretStr | None = None
    drain_timeout_s: float = Field(30.0, gt=0)
    webhook_tolerance_s: int = Field(300, ge=1, le=3600)
    # Request bodies over this many bytes get 413 before they are read; WebSocket frames over
    # max_frame_bytes close the stream with 1009 (docs/serving.md, "Limits").
    max_body_bytes: int = Field(256 * 1024, ge=1024, le=64 * 1024 * 1024)
    max_frame_bytes: int = Field(256 * 1024, ge=1024, le=64 * 1024 * 1024)
    # A webhook delivery claimed this long ago and not finished is a dead worker's: a redelivery
    # runs it. Keep it longer than a turn's timeout (300 s for the retail agent), or a slow turn runs twice.
    webhook_lease_s: float = Field(900.0, gt=0, le=86_400)
    # Also accept v1 webhook signatures, which do not sign the delivery id: only while migrating senders.
    webhook_accept_legacy_signatures: bool = False
    # Each tenant's retail store (its business data, never shared): a folder holding one SQLite store
    # per tenant (<folder>/<tenant>/store.db), or a store URL with {tenant} in it (docs/retail.md).
    stores: str = Field(".concierge/stores", min_length=1)
    # A test double instead of [model], for load tests and multi-worker tests: "echo:MS" answers
    # with the user's words after MS milliseconds.
    test_model: str | None = Field(None, pattern=r"^echo(:\d{1,6})?$")

    @pydantic.field_validator("demo_tenant", "console_token", mode="before")
    @classmethod
    def _empty_is_off(cls, value: object) -> object:
        """`--no-demo` sets CONCIERGE_SERVE__DEMO_TENANT to "": that means off, not a tenant named ''."""
        return None if isinstance(value, str) and not value.strip() else value

    def check_demo_exposure(self) -> None:
        """Demo sign-in hands out tokens to anyone who asks, so only on loopback unless `demo_public`."""
        if self.demo_tenant and not self.demo_public and not is_loopback(self.host):
            raise ConfigError(f"demo sign-in is on and host {self.host!r} is not a loopback address",
                              hint="pass --no-demo, or --demo-public (serve.demo_public = true) to let anyone "
                                   "who can reach this port sign in")


class EventsConfig(_Section):
    # Where every turn's AgentEvents go: "embedded:PATH" (a SQLite log), "redis://host:6379/0"
    # (Redis Streams, for several processes) or "off".
    bus: str = Field("embedded:.concierge/events.db", pattern=r"^(off|embedded:.+|rediss?://.+|unix://.+)$")
    partitions: int = Field(8, ge=1, le=1024)
    # Events held in memory while the bus catches up; beyond half of it telemetry is sampled.
    capacity: int = Field(10_000, ge=100)
    # The audit index (events by conversation, for `concierge audit` and the console): an SQLAlchemy URL.
    audit_url: str = "sqlite+aiosqlite:///.concierge/audit.db"


class LakeConfig(_Section):
    folder: str = ".concierge/lake"
    # The Iceberg SQL catalog (default: folder/catalog.db) and warehouse (default: folder/warehouse).
    catalog_url: str | None = None
    warehouse: str | None = None


class GuardrailsConfig(_Section):
    # Screen messages and tool results, check replies (see docs/guardrails-*.md); off: none of it.
    enabled: bool = True
    # The injection classifier (needs the `guardrails` extra); off: the rules alone.
    classifier: bool = True


class MemoryConfig(_Section):
    # Remember customers across conversations (docs/memory.md); off: no recall, no extraction.
    enabled: bool = True
    db: str = ".concierge/memory.db"
    index_dir: str = ".concierge/memory-index"
    notes_url: str | None = None  # redis://… keeps session notes in Redis; default: the memory database
    alpha: float = Field(0.7, ge=0, le=1)  # weight of similarity against recency
    half_life_days: float = Field(7.0, gt=0)
    retention_months: float = Field(6.0, gt=0)  # expiry of memories not linked to an open issue
    context_tokens: int = Field(300, ge=0)  # recalled memories per turn, at most


class CapsConfig(TenantCaps):
    """`[caps]`: the tenants' policy caps (`default`, `tenants`) and where refund totals are kept."""

    # Refund totals shared by workers: unset = the sessions' database ([sessions] url; in this
    # process when that is "memory"); or "memory", redis://host:6379/0, or an SQLAlchemy URL.
    usage_url: str | None = None
    # How long a refund reserved by a worker that then died keeps counting against the caps.
    usage_lease_s: float = Field(900.0, gt=0, le=86_400)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CONCIERGE_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    model: ModelConfig = ModelConfig()
    limits: LimitsConfig = LimitsConfig()
    sessions: SessionsConfig = SessionsConfig()
    tracing: TracingConfig = TracingConfig()
    serve: ServeConfig = ServeConfig()
    events: EventsConfig = EventsConfig()
    lake: LakeConfig = LakeConfig()
    guardrails: GuardrailsConfig = GuardrailsConfig()
    memory: MemoryConfig = MemoryConfig()
    # Deterministic policy caps per tenant, enforced by the tool executor (docs/guardrails-caps.md).
    caps: CapsConfig = CapsConfig()
    # USD per million tokens: {"gpt-4o-mini": [0.15, 0.6]}.
    prices: dict[str, tuple[float, float]] = {}

    _config_file: ClassVar[Path | None] = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if cls._config_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=cls._config_file))
        return tuple(sources)


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Settings from the file (default ./concierge.toml if present), the environment and overrides."""
    if config_file is not None and not config_file.is_file():
        raise ConfigError(f"config file {config_file} does not exist", hint="pass the path of a concierge.toml")
    path = config_file or (DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.is_file() else None)
    Settings._config_file = path
    try:
        return Settings(**overrides)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}", hint="fix the file's syntax") from None
    except pydantic.ValidationError as exc:
        raise ConfigError(_describe(exc, path)) from None
    finally:
        Settings._config_file = None


def _describe(exc: pydantic.ValidationError, path: Path | None) -> str:
    """One line per problem: the key (as written in TOML and as an env var) and what is allowed."""
    lines = []
    for error in exc.errors():
        key = ".".join(str(p) for p in error["loc"])
        env = "CONCIERGE_" + "__".join(str(p) for p in error["loc"]).upper()
        given = error.get("input")
        shown = "" if isinstance(given, dict) or given is None else f" (got {given!r})"
        where = f" in {path}" if path else ""
        lines.append(f"invalid setting '{key}'{where} / {env}: {error['msg']}{shown}")
    return "; ".join(lines)
