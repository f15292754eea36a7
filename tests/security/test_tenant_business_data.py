"""Row 9: every tenant's agent used one retail store, so tenant isolation stopped at the sessions.

Observed on the landed server (`serving/server.py` `build_app`: one `open_demo_store`, one
client, one agent for all tenants): a second tenant's agent read the demo tenant's customers and
orders. A tenant mints its own end-user tokens, so it can name any `customer_id`, and an
anonymous chat binds whichever customer an email lookup finds: with one shared store both reached
another business's data. Now each tenant has a store of its own and the tools' requests go only
to the store of their session's tenant.

The server is the real one (`build_app` from settings, real HTTP through `ServerThread`, SQLite
stores on disk); the only double is the scripted model, which calls the retail tools named in
each message.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from concierge.core.messages import Message, message_text
from concierge.domains.retail import create_store_engine, export_db
from concierge.domains.retail.demo import DEMO_ORDERS, DEMO_USERS
from concierge.domains.retail.generator import generate_store, write_store
from concierge.security.auth import JwtConfig, issue_jwt
from concierge.security.tenants import TenantDirectory
from concierge.serving.server import build_app
from concierge.settings import Settings
from concierge.testing import FunctionModel, call
from concierge.testing.serving import ServerThread

Json = dict[str, Any]
DEMO = "demo"  # tenant B: the demo tenant, whose store holds the generated demo data
ACME = "acme"  # tenant A: its own customers, from a db.json placed in its store folder before the start


def planner(messages: Sequence[Message], tools: object) -> object:
    """A user message `{"tool": name, "args": {...}}` is that tool call; a tool result is echoed back."""
    last = messages[-1]
    if last.role == "tool":
        return f"RESULT {message_text(last)}"
    command = json.loads(message_text(last))
    return call(command["tool"], **command["args"])


def _pending(db: Json) -> list[tuple[str, Json]]:
    """(order id, its customer) for each pending order of a tau2-format store, by order id."""
    found = [(oid, db["users"][o["user_id"]]) for oid, o in db["orders"].items() if o["status"] == "pending"]
    return sorted(found, key=lambda pair: pair[0])


def _order(reply: str) -> tuple[str, str, str] | None:
    """(order id, owner, status) of the order a tool returned in the reply; None if it returned none."""
    try:
        found = json.loads(reply.removeprefix("RESULT "))
    except ValueError:
        return None
    if not isinstance(found, dict) or "order_id" not in found:
        return None
    return found["order_id"], found["user_id"], found["status"]


@dataclass
class Served:
    server: ServerThread
    folder: Path
    jwt: dict[str, JwtConfig]
    service_key: str
    demo_db: Json
    acme_db: Json

    def client(self, token: str) -> httpx.Client:
        return httpx.Client(base_url=self.server.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)

    def customer(self, tenant: str, customer_id: str) -> str:
        return issue_jwt(self.jwt[tenant], subject=f"web-{customer_id}", customer_id=customer_id)

    def ask(self, client: httpx.Client, session_id: str, tool: str, **args: str) -> Json:
        text = json.dumps({"tool": tool, "args": args})
        response = client.post(f"/v1/sessions/{session_id}/messages", json={"text": text})
        assert response.status_code == 200, response.text
        return dict(response.json())


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    # Every relative default (the stores among them) lands in this test's folder.
    monkeypatch.chdir(tmp_path)
    acme_db = generate_store(users=6, orders=16, seed=11)
    write_store(acme_db, tmp_path / ".concierge" / "stores" / ACME)
    settings = Settings(
        sessions={"url": f"sqlite+aiosqlite:///{tmp_path}/serve.db"},
        serve={"demo_tenant": DEMO},
        events={"bus": "off"},
        memory={"enabled": False},
        guardrails={"enabled": False},
        # Caps make the executor measure each write by reading the store: that read must be the tenant's too.
        caps={"default": {"max_refund_per_order_usd": 1_000_000,
                          "allowed_payment_methods": ["gift_card", "credit_card", "paypal"]}},
    )
    model = FunctionModel(planner)

    with ServerThread(lambda: build_app(settings, model=model)) as server:
        async def setup() -> tuple[dict[str, JwtConfig], str]:
            tenants = TenantDirectory(settings.sessions.url)
            try:
                acme = await tenants.create_tenant(ACME, rate=(100.0, 200), user_rate=(100.0, 200))
                demo = await tenants.get_tenant(DEMO)
                assert demo is not None
                key = await tenants.issue_key(ACME, "service", "shop backend")
                return {ACME: acme.jwt_config, DEMO: demo.jwt_config}, key
            finally:
                await tenants.close()

        jwt, key = server.call(setup())
        demo_db = generate_store(users=DEMO_USERS, orders=DEMO_ORDERS, seed=0)
        yield Served(server, tmp_path, jwt, key, demo_db, acme_db)


def test_a_tenants_agent_cannot_read_another_tenants_customers_or_orders(served: Served) -> None:
    order_id, owner = _pending(served.demo_db)[0]
    assert order_id not in served.acme_db["orders"] and owner["user_id"] not in served.acme_db["users"]
    # acme signs its own tokens: it names the demo tenant's customer as the one its chat acts for.
    with served.client(served.customer(ACME, owner["user_id"])) as acme:
        assert acme.post("/v1/sessions", json={"session_id": "probe-1"}).status_code == 201
        for tool, args in (("get_order_details", {"order_id": order_id}),
                           ("get_user_details", {"user_id": owner["user_id"]})):
            reply = served.ask(acme, "probe-1", tool, **args)["reply"]
            assert "not found" in reply.lower(), reply
            assert owner["email"] not in reply, reply
    # An anonymous chat of acme's backend cannot find (and so bind) the demo tenant's customer either.
    with served.client(served.service_key) as backend:
        assert backend.post("/v1/sessions", json={"session_id": "probe-2", "user_id": "visitor"}).status_code == 201
        reply = served.ask(backend, "probe-2", "find_user_id_by_email", email=owner["email"])["reply"]
        assert "not found" in reply.lower() and owner["user_id"] not in reply, reply
    # The demo tenant's own customer still reads her order: the data is there, in her tenant's store.
    with served.client(served.customer(DEMO, owner["user_id"])) as demo:
        assert demo.post("/v1/sessions", json={"session_id": "own-1"}).status_code == 201
        reply = served.ask(demo, "own-1", "get_order_details", order_id=order_id)["reply"]
        assert _order(reply) == (order_id, owner["user_id"], "pending"), reply


def test_a_tenant_reads_and_changes_only_its_own_store(served: Served) -> None:
    order_id, owner = _pending(served.acme_db)[0]
    assert order_id not in served.demo_db["orders"]
    with served.client(served.customer(ACME, owner["user_id"])) as acme:
        assert acme.post("/v1/sessions", json={"session_id": "mine-1"}).status_code == 201
        reply = served.ask(acme, "mine-1", "get_order_details", order_id=order_id)["reply"]
        assert _order(reply) == (order_id, owner["user_id"], "pending"), reply

        from concierge.domains.retail.tenant_stores import TenantStores

        stores = TenantStores(served.folder / ".concierge" / "stores")
        demo_engine = create_store_engine(stores.url(DEMO))
        acme_engine = create_store_engine(stores.url(ACME))
        try:
            demo_before = export_db(demo_engine)
            asked = served.ask(acme, "mine-1", "cancel_pending_order", order_id=order_id, reason="no longer needed")
            assert asked["stopped_by"] == "awaiting_confirmation", asked
            [action] = asked["pending_actions"]
            done = acme.post(f"/v1/sessions/mine-1/actions/{action['id']}/confirm")
            assert done.status_code == 200, done.text
            assert _order(done.json()["reply"]) == (order_id, owner["user_id"], "cancelled"), done.text
            assert export_db(acme_engine)["orders"][order_id]["status"] == "cancelled"
            assert export_db(demo_engine) == demo_before  # the other tenant's store did not change
        finally:
            demo_engine.dispose()
            acme_engine.dispose()


def test_the_router_refuses_a_request_without_a_tenant_or_for_an_unknown_one(tmp_path: Path) -> None:
    from concierge.domains.retail.tenant_stores import TENANT_HEADER, TenantStores

    demo_db = generate_store(users=DEMO_USERS, orders=DEMO_ORDERS, seed=0)
    order_id, owner = _pending(demo_db)[0]

    async def known(tenant: str) -> bool:
        return tenant in (DEMO, ACME)

    async def probe() -> list[httpx.Response]:
        stores = TenantStores(tmp_path / "stores", demo_tenant=DEMO, known=known)
        client = stores.client()
        acting = {"X-Acting-User": owner["user_id"]}
        try:
            return [
                await client.get(f"/orders/{order_id.replace('#', '%23')}", headers=acting),
                await client.get(f"/orders/{order_id.replace('#', '%23')}", headers={**acting, TENANT_HEADER: ACME}),
                await client.get(f"/orders/{order_id.replace('#', '%23')}", headers={**acting, TENANT_HEADER: "ghost"}),
                await client.get(f"/orders/{order_id.replace('#', '%23')}", headers={**acting, TENANT_HEADER: "../x"}),
                await client.get(f"/orders/{order_id.replace('#', '%23')}", headers={**acting, TENANT_HEADER: DEMO}),
            ]
        finally:
            await client.aclose()
            stores.close()

    none, other, unknown, traversal, own = asyncio.run(probe())
    assert none.status_code == 400 and none.json()["error"]["code"] == "tenant_required"
    assert other.status_code == 404 and other.json()["error"]["rule"] == "order_not_found"  # acme's empty store
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "unknown_tenant"
    assert traversal.status_code == 404 and traversal.json()["error"]["code"] == "unknown_tenant"
    assert own.status_code == 200 and own.json()["user_id"] == owner["user_id"]
    # Refused tenants got nothing on disk; the known ones got their own store each.
    assert sorted(p.name for p in (tmp_path / "stores").iterdir()) == [ACME, DEMO]
