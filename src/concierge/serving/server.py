"""Build the server from settings: the retail agent, the stores in the sessions' database, Redis parts.

`concierge serve` calls `build_app`; with several workers uvicorn imports `app_from_env`, which
reads the same settings (file and `CONCIERGE_*` variables) in each worker process.
"""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI

from ..core.errors import ConfigError, ValidationError
from ..llm.base import ChatModel
from ..runtime.runtime import Runtime
from ..security.auth import NotFound
from ..security.tenants import TenantDirectory
from ..settings import Settings, load_settings
from .app import ServeOptions, create_app
from .ratelimit import limiter_from_url
from .records import SessionDirectory
from .routing import locks_from_url
from .service import TurnService
from .webhooks import DeliveryLog

if TYPE_CHECKING:
    from ..events.producer import EventProducer
    from ..guardrails.audit import AuditIndex

logger = logging.getLogger(__name__)
CONFIG_ENV = "CONCIERGE_CONFIG_FILE"


def test_model(spec: str) -> ChatModel:
    """The test double a `serve.test_model` spec names ("echo" or "echo:MS")."""
    from ..testing.models import EchoModel

    _, _, millis = spec.partition(":")
    return EchoModel(int(millis or 0) / 1000)


def build_app(settings: Settings, *, model: ChatModel | None = None) -> FastAPI:
    """The whole server for `settings`; `model` replaces the configured one (tests)."""
    from ..domains.retail.agent import make_retail_agent
    from ..domains.retail.caps import retail_measures
    from ..domains.retail.tenant_stores import TenantStores
    from ..factory import (
        build_event_producer,
        build_executor,
        build_guardrails,
        build_memory,
        build_model,
        build_store,
        build_tracer,
    )

    url = settings.sessions.url
    if url == "memory":
        raise ConfigError("the server keeps tenants and sessions in a database, not in memory",
                          hint="set [sessions] url to a SQLite file or a PostgreSQL URL")
    serve = settings.serve
    serve.check_demo_exposure()
    if model is None:
        model = test_model(serve.test_model) if serve.test_model else build_model(settings)
    # Each tenant's business data in a store of its own; the tools' calls go to their session's tenant's.
    tenants = TenantDirectory(url)
    stores = TenantStores(serve.stores, demo_tenant=serve.demo_tenant, known=_known_tenant(tenants))
    client = stores.client()
    agent = make_retail_agent(model, client)
    producer = build_event_producer(settings)
    runtime = Runtime(agent, store=build_store(settings), executor=build_executor(settings, retail_measures(client)),
                      tracer=build_tracer(settings), locks=locks_from_url(serve.redis_url),  # type: ignore[arg-type]
                      events=producer, guardrails=build_guardrails(settings), memory=build_memory(settings),
                      memory_tokens=settings.memory.context_tokens)
    directory = SessionDirectory(url, durability=settings.sessions.durability)
    service = TurnService(runtime, tenants, directory, DeliveryLog(url), limiter_from_url(serve.redis_url),
                          drain_timeout_s=serve.drain_timeout_s)
    audit_index = attach_audit(service, producer, settings.events.audit_url)

    async def startup() -> None:
        if producer is not None:
            await producer.start()
        if serve.demo_tenant and await tenants.get_tenant(serve.demo_tenant) is None:
            try:
                await tenants.create_tenant(serve.demo_tenant)
            except ValidationError:  # another worker created it first
                if await tenants.get_tenant(serve.demo_tenant) is None:
                    raise
        if serve.demo_tenant:  # built (generated on a first start) in a thread, before the first visitor
            await stores.prepare(serve.demo_tenant)
        # What start-up loaded (modules, models, the classifier) lives as long as the worker: keep it out
        # of the cyclic collector, whose full passes over it would otherwise pause every request.
        gc.collect()
        gc.freeze()

    async def shutdown() -> None:
        if producer is not None:  # after the drain: every turn's events reach the bus
            await producer.close()
            await producer.log.close()
        await service.limiter.close()
        close_locks = getattr(runtime.locks, "close", None)
        if close_locks is not None:
            await close_locks()
        await runtime.store.close()
        if runtime.memory is not None:
            await runtime.memory.close()
        ledger_close = getattr(getattr(runtime.executor, "ledger", None), "close", None)
        if ledger_close is not None:
            await ledger_close()
        for store in (tenants, service.sessions, service.deliveries):
            await store.close()
        if audit_index is not None:
            await audit_index.close()
        await client.aclose()
        stores.close()

    console_token = serve.console_token.get_secret_value() if serve.console_token else None
    options = ServeOptions(demo_tenant=serve.demo_tenant, webhook_tolerance_s=serve.webhook_tolerance_s,
                           console_token=console_token, webhook_lease_s=serve.webhook_lease_s,
                           webhook_accept_legacy_signatures=serve.webhook_accept_legacy_signatures,
                           max_body_bytes=serve.max_body_bytes, max_frame_bytes=serve.max_frame_bytes)
    return create_app(service, options, startup=startup, shutdown=shutdown)


def _known_tenant(directory: TenantDirectory) -> Callable[[str], Awaitable[bool]]:
    """Whether a tenant exists: a store is built only for a tenant of the directory."""

    async def known(tenant: str) -> bool:
        return await directory.get_tenant(tenant) is not None

    return known


def app_from_env() -> FastAPI:
    """The uvicorn factory for multi-worker serving: settings from the file named in the environment."""
    path = os.environ.get(CONFIG_ENV)
    return build_app(load_settings(Path(path) if path else None))


def attach_audit(service: TurnService, producer: EventProducer | None, url: str) -> AuditIndex | None:
    """The console's decision trace: the audit index, caught up with the bus on each request."""
    if producer is None:
        return None
    from ..guardrails.audit import AuditIndex, AuditTrail, UnknownConversationError

    index = AuditIndex(url)
    ledger = getattr(service.runtime.executor, "ledger", None)

    async def trail(tenant: str, conversation_id: str) -> dict[str, Any]:
        await producer.flush()
        await index.catch_up(producer.log)
        try:
            return (await AuditTrail(index, ledger=ledger)(tenant, conversation_id)).to_dict()
        except UnknownConversationError:
            raise NotFound("no decisions recorded for this session yet") from None

    service.audit = trail
    return index
