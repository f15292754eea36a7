"""Shared pieces of the security tests.

`retail_site`: the real server (HTTP, WebSocket, audit index) over the real retail store, its
tools, the transactional executor and the turn guardrails, driven by `looping_planner`: a scripted
double of a small model that keeps proposing the same write whatever happened to it before.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import Engine, select

from concierge.domains.retail.demo import walkthrough_store
from concierge.domains.retail.store.schema import orders, users
from concierge.security.auth import JwtConfig, issue_jwt
from concierge.testing import FunctionModel
from concierge.testing.retail_site import RetailApp, looping_planner
from concierge.testing.serving import ServerThread


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
    engine = walkthrough_store()
    app = RetailApp(FunctionModel(looping_planner, record=False), engine, folder)
    with ServerThread(app.make_app) as server:
        tenants = app.service.tenants

        async def setup() -> tuple[JwtConfig, str]:
            record = await tenants.create_tenant("shop", rate=(100.0, 200), user_rate=(100.0, 200))
            return record.jwt_config, await tenants.issue_key("shop", "operator", "console")

        jwt, operator_key = server.call(setup())
        yield RetailSite(server, engine, jwt, operator_key)
