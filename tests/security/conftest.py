"""Shared pieces of the security tests.

`retail_site`: the real server (HTTP, WebSocket, audit index) over the real retail store, its
tools, the transactional executor and the turn guardrails, driven by `looping_planner`: a scripted
double of a small model that keeps proposing the same write whatever happened to it before.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select

from concierge import Runtime
from concierge.core.messages import Message, message_text
from concierge.domains.retail.agent import make_retail_agent
from concierge.domains.retail.demo import store_client, walkthrough_store
from concierge.domains.retail.store.schema import orders, users
from concierge.events.bus import open_log
from concierge.events.producer import EventProducer
from concierge.guardrails.turn import TurnGuardrails
from concierge.runtime.sessions.sql import SqlSessionStore
from concierge.security.auth import JwtConfig, issue_jwt
from concierge.security.tenants import TenantDirectory
from concierge.serving.app import create_app
from concierge.serving.ratelimit import InProcessRateLimiter
from concierge.serving.records import SessionDirectory
from concierge.serving.server import attach_audit
from concierge.serving.service import TurnService
from concierge.serving.webhooks import DeliveryLog
from concierge.testing import FunctionModel, call
from concierge.testing.serving import ServerThread
from concierge.tools.ledger import SqlLedger
from concierge.tools.pipeline import TransactionalExecutor

ORDER = re.compile(r"#W\d{7}")
EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
REASON = re.compile(r"reason: ([a-z ]+)")


def looping_planner(messages: Sequence[Message], tools: object) -> Any:
    """What the small model did: after any tool result it answers, and on any customer message (a
    confirmation, a decline, a question) it proposes the cancel again, with the same arguments.
    An email makes it look the customer up; "status" makes it read the order."""
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


@dataclass(frozen=True)
class PendingOrder:
    order_id: str
    user_id: str
    email: str


@dataclass
class RetailSite:
    server: ServerThread
    engine: Engine
    jwt: JwtConfig
    operator_key: str

    def customer(self, name: str) -> httpx.Client:
        token = issue_jwt(self.jwt, subject=name, role="customer")
        return httpx.Client(base_url=self.server.url, headers={"Authorization": f"Bearer {token}"}, timeout=60)

    def customer_token(self, name: str) -> str:
        return issue_jwt(self.jwt, subject=name, role="customer")

    def operator(self) -> httpx.Client:
        return httpx.Client(base_url=self.server.url, headers={"Authorization": f"Bearer {self.operator_key}"},
                            timeout=60)

    def pending_orders(self) -> list[PendingOrder]:
        """Pending orders of the store with their customers, one per customer."""
        query = (select(orders.c.order_id, users.c.user_id, users.c.email)
                 .join(users, users.c.user_id == orders.c.user_id)
                 .where(orders.c.status == "pending").order_by(orders.c.order_id))
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        seen: dict[str, PendingOrder] = {}
        for row in rows:
            seen.setdefault(row.user_id, PendingOrder(row.order_id, row.user_id, row.email))
        return list(seen.values())

    def order_status(self, order_id: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(select(orders.c.status).where(orders.c.order_id == order_id)).scalar_one_or_none()


@pytest.fixture(scope="module")
def retail_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RetailSite]:
    folder = tmp_path_factory.mktemp("retail-site")
    url = f"sqlite+aiosqlite:///{folder}/serve.db"
    engine = walkthrough_store()
    model = FunctionModel(looping_planner, record=False)
    holder: dict[str, TurnService] = {}

    def make_app() -> Any:
        producer = EventProducer(open_log(f"embedded:{folder}/events.db", partitions=2))
        runtime = Runtime(make_retail_agent(model, store_client(engine)), store=SqlSessionStore(url),
                          executor=TransactionalExecutor(SqlLedger(url)), events=producer,
                          guardrails=TurnGuardrails(output=None))  # input screening on
        service = TurnService(runtime, TenantDirectory(url), SessionDirectory(url), DeliveryLog(url),
                              InProcessRateLimiter())
        index = attach_audit(service, producer, f"sqlite+aiosqlite:///{folder}/audit.db")
        holder["service"] = service

        async def shutdown() -> None:
            await producer.close()
            await producer.log.close()
            if index is not None:
                await index.close()

        return create_app(service, startup=producer.start, shutdown=shutdown)

    with ServerThread(make_app) as server:
        tenants = holder["service"].tenants

        async def setup() -> tuple[JwtConfig, str]:
            record = await tenants.create_tenant("shop", rate=(100.0, 200), user_rate=(100.0, 200))
            return record.jwt_config, await tenants.issue_key("shop", "operator", "console")

        jwt, operator_key = server.call(setup())
        yield RetailSite(server, engine, jwt, operator_key)
