"""The retail agent behind the real server, for tests that drive it over HTTP, WebSockets or a browser.

`RetailApp.make_app` builds what `concierge serve` builds around the retail store's tools (SQL
sessions, the transactional executor with its SQL ledger, input screening, and, with `audit`, the
event bus and the audit index) with a scripted model in place of a real one, so a page or a probe
sees the same routes and records a customer would. `looping_planner` is that scripted model when
a test needs the behaviour of a small model that keeps proposing the same write.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from sqlalchemy import Engine

from ..core.messages import Message, message_text
from ..domains.retail.agent import make_retail_agent
from ..domains.retail.demo import store_client
from ..guardrails.turn import TurnGuardrails
from ..llm.base import ChatModel
from ..runtime.runtime import Runtime
from ..runtime.sessions.sql import SqlSessionStore
from ..security.tenants import TenantDirectory
from ..serving.app import ServeOptions, create_app
from ..serving.ratelimit import InProcessRateLimiter
from ..serving.records import SessionDirectory
from ..serving.service import TurnService
from ..serving.webhooks import DeliveryLog
from ..tools.ledger import SqlLedger
from ..tools.pipeline import TransactionalExecutor
from .models import call

ORDER = re.compile(r"#W\d{7}")
EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
REASON = re.compile(r"reason: ([a-z ]+)")


def looping_planner(messages: Sequence[Message], tools: object) -> Any:
    """What a small model does: after any tool result it answers, and on any customer message (a
    confirmation, a decline, a question) it proposes the cancel again, with the same arguments.
    An email makes it look the customer up; "status" and an order id make it read the order."""
    last = messages[-1]
    if last.role == "tool":
        return f"I ran {last.name}."
    text = message_text(last)
    if found := EMAIL.search(text):
        return call("find_user_id_by_email", email=found.group())
    said = [message_text(m) for m in messages if m.role == "user"]
    if "status" in text.lower() and (order := ORDER.search(text)):
        return call("get_order_details", order_id=order.group())
    order_id = next((m.group() for t in reversed(said) if (m := ORDER.search(t))), None)
    if order_id is None:
        return "Which order is it?"
    reason = next((m.group(1).strip() for t in reversed(said) if (m := REASON.search(t))), "ordered by mistake")
    return call("cancel_pending_order", order_id=order_id, reason=reason)


@dataclass
class RetailApp:
    """The app factory for `ServerThread`; `service` is the running app's, once it is made."""

    model: ChatModel
    engine: Engine
    folder: Path
    options: ServeOptions | None = None
    audit: bool = True  # the event bus and the audit index, as `concierge serve` has them
    _service: TurnService | None = field(default=None, init=False, repr=False)

    @property
    def service(self) -> TurnService:
        if self._service is None:
            raise RuntimeError("the app has not been made yet: start the ServerThread first")
        return self._service

    def make_app(self) -> FastAPI:
        from ..events.bus import open_log
        from ..events.producer import EventProducer
        from ..serving.server import attach_audit

        url = f"sqlite+aiosqlite:///{self.folder}/serve.db"
        producer = EventProducer(open_log(f"embedded:{self.folder}/events.db", partitions=2)) if self.audit else None
        runtime = Runtime(make_retail_agent(self.model, store_client(self.engine)), store=SqlSessionStore(url),
                          executor=TransactionalExecutor(SqlLedger(url)), events=producer,
                          guardrails=TurnGuardrails(output=None))  # input screening on; replies stream word by word
        service = TurnService(runtime, TenantDirectory(url), SessionDirectory(url), DeliveryLog(url),
                              InProcessRateLimiter())
        index = attach_audit(service, producer, f"sqlite+aiosqlite:///{self.folder}/audit.db")
        self._service = service

        async def startup() -> None:
            if producer is not None:
                await producer.start()

        async def shutdown() -> None:
            if producer is not None:
                await producer.close()
                await producer.log.close()
            if index is not None:
                await index.close()

        return create_app(service, self.options, startup=startup, shutdown=shutdown)
