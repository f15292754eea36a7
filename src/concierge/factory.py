"""Turns `Settings` into live parts: the model, the session store, the tracer.

Kept apart from `settings.py` so that reading configuration never imports heavy providers.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

from opentelemetry import trace

from .core.errors import ConfigError
from .guardrails.caps import Measure, caps_check
from .guardrails.input import InputGuard
from .guardrails.turn import TurnGuardrails
from .guardrails.usage import SqlUsage, UsageStore, usage_from_url
from .llm.base import ChatModel, ModelSettings
from .llm.pricing import DEFAULT_PRICES, PriceTable
from .runtime.agent import Limits
from .runtime.sessions.base import SessionStore
from .runtime.sessions.memory import InMemorySessionStore
from .runtime.tracing import default_tracer, make_tracer_provider
from .settings import Settings
from .tools.ledger import InMemoryLedger, Ledger, SqlLedger
from .tools.pipeline import TransactionalExecutor

if TYPE_CHECKING:
    from .events.producer import EventProducer
    from .memory import Memory

logger = logging.getLogger(__name__)


def build_prices(settings: Settings) -> PriceTable:
    if not settings.prices:
        return DEFAULT_PRICES
    return PriceTable({"smollm2": (0.0, 0.0), **settings.prices})


def build_model(settings: Settings) -> ChatModel:
    cfg = settings.model
    api_key = cfg.api_key.get_secret_value() if cfg.api_key else None
    if cfg.provider == "embedded":
        from .llm.embedded import EmbeddedModel

        return EmbeddedModel()
    if not cfg.name:
        raise ConfigError(
            f"model.name is required for provider '{cfg.provider}'",
            hint="set [model] name in concierge.toml or CONCIERGE_MODEL__NAME",
        )
    if cfg.provider == "openai":
        from .llm.openai_compatible import OpenAICompatibleModel

        if not cfg.base_url:
            raise ConfigError(
                "model.base_url is required for provider 'openai'",
                hint="e.g. http://127.0.0.1:8000/v1 for vLLM or llama.cpp, https://api.openai.com/v1 for OpenAI",
            )
        return OpenAICompatibleModel(cfg.name, cfg.base_url, api_key=api_key, timeout_s=cfg.timeout_s,
                                     max_retries=cfg.max_retries, prices=build_prices(settings))
    from .llm.anthropic import AnthropicModel

    if not api_key:
        raise ConfigError("model.api_key is required for provider 'anthropic'",
                          hint="set CONCIERGE_MODEL__API_KEY")
    kwargs = {"base_url": cfg.base_url} if cfg.base_url else {}
    return AnthropicModel(cfg.name, api_key, prices=build_prices(settings), timeout_s=cfg.timeout_s,
                          max_retries=cfg.max_retries, **kwargs)


def build_model_settings(settings: Settings) -> ModelSettings:
    return ModelSettings(temperature=settings.model.temperature, max_tokens=settings.model.max_tokens)


def build_limits(settings: Settings) -> Limits:
    return Limits(**settings.limits.model_dump())


def build_store(settings: Settings) -> SessionStore:
    url = settings.sessions.url
    if url == "memory":
        return InMemorySessionStore()
    from .runtime.sessions.sql import SqlSessionStore

    return SqlSessionStore(url, durability=settings.sessions.durability)


def build_executor(settings: Settings, measures: Mapping[str, Measure] | None = None) -> TransactionalExecutor:
    """The transactional tool executor, its ledger in the sessions' database; with the tenants' policy
    caps checked before any effect when caps are configured and `measures` say what each tool would do."""
    url = settings.sessions.url
    ledger = InMemoryLedger() if url == "memory" else SqlLedger(url)
    caps = settings.caps
    if measures and not (caps.default.empty and all(c.empty for c in caps.tenants.values())):
        usage = build_usage(settings, ledger)
        return TransactionalExecutor(ledger, checks=[caps_check(caps, measures, ledger=ledger, usage=usage)])
    return TransactionalExecutor(ledger)


def build_usage(settings: Settings, ledger: Ledger | None = None) -> UsageStore:
    """Where refund totals are kept: `[caps] usage_url`, else the sessions' database, shared by every
    worker and kept across restarts (in this process only when sessions are in memory). On the
    sessions' database it shares the ledger's engine, so closing the ledger closes it too."""
    config = settings.caps
    if config.usage_url is None and isinstance(ledger, SqlLedger):
        return SqlUsage.from_engine(ledger.engine, lease_s=config.usage_lease_s)
    return usage_from_url(config.usage_url or settings.sessions.url, lease_s=config.usage_lease_s)


def build_memory(settings: Settings) -> Memory | None:
    """Long-term memory per `[memory]`; None when it is off."""
    config = settings.memory
    if not config.enabled:
        return None
    from .memory import Memory, MemoryPolicy

    policy = MemoryPolicy(alpha=config.alpha, half_life_days=config.half_life_days,
                          retention_months=config.retention_months)
    return Memory(config.db, config.index_dir, notes=config.notes_url, policy=policy)


def build_guardrails(settings: Settings) -> TurnGuardrails | None:
    """Input screening and reply checks per `[guardrails]`; the rules alone without scikit-learn."""
    config = settings.guardrails
    if not config.enabled:
        return None
    try:
        guard = InputGuard(use_classifier=config.classifier)
    except ConfigError as exc:
        logger.warning("injection classifier unavailable (%s): screening with the rules alone", exc)
        guard = InputGuard(use_classifier=False)
    return TurnGuardrails(input=guard, caps=settings.caps)


def build_tracer(settings: Settings) -> trace.Tracer:
    if settings.tracing.otlp_endpoint:
        provider = make_tracer_provider(service_name=settings.tracing.service_name,
                                        otlp_endpoint=settings.tracing.otlp_endpoint)
        return provider.get_tracer("concierge.runtime")
    return default_tracer()


def build_event_producer(settings: Settings) -> EventProducer | None:
    """The producer on the configured bus, or None when events are off. Start it before use."""
    if settings.events.bus == "off":
        return None
    from .events.bus import open_log
    from .events.producer import EventProducer

    log = open_log(settings.events.bus, partitions=settings.events.partitions)
    return EventProducer(log, capacity=settings.events.capacity)
