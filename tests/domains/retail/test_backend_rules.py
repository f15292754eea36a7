"""The store's HTTP API enforces every retail rule itself: a refused request names its rule, carries
tau2's wording and changes nothing; customers only reach their own records; a repeated
Idempotency-Key has one effect. Checked in process (ASGI) and over real HTTP."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import Engine

from concierge.core.messages import ToolCall
from concierge.core.principal import Principal
from concierge.domains.retail import canonical_hash, create_schema, create_store_engine, export_db, import_db
from concierge.domains.retail.backend import create_app
from concierge.domains.retail.tools import retail_tools
from concierge.testing.services import ServiceProcess
from concierge.tools.ledger.memory import InMemoryLedger
from concierge.tools.outcome import error_message
from concierge.tools.pipeline import TransactionalExecutor
from concierge.tools.tool import CUSTOMER_KEY, ToolContext

Json = dict[str, Any]
ANN, BO = "ann_1", "bo_2"


def _address(n: int) -> dict[str, str]:
    return {"address1": f"{n} Main Street", "address2": "", "city": "Austin", "country": "USA", "state": "TX",
            "zip": f"7870{n}"}


def _line(product: str, name: str, item_id: str, price: float, options: Json) -> Json:
    return {"name": name, "product_id": product, "item_id": item_id, "price": price, "options": options}


LAMP_201 = _line("100", "Lamp", "201", 49.99, {"color": "red"})
LAMP_202 = _line("100", "Lamp", "202", 59.99, {"color": "blue"})
MUG_301 = _line("300", "Mug", "301", 10.0, {"size": "large"})


def _order(order_id: str, user: str, status: str, items: list[Json],
           payments: list[tuple[str, float, str]]) -> Json:
    return {"order_id": order_id, "user_id": user, "address": _address(1), "items": items, "status": status,
            "fulfillments": [{"tracking_id": ["1234"], "item_ids": [i["item_id"] for i in items]}]
            if status == "delivered" else [],
            "payment_history": [{"transaction_type": kind, "amount": amount, "payment_method_id": method}
                                for kind, amount, method in payments]}


def store_db() -> Json:
    """Two customers, and an order in every state the rules care about."""
    return {
        "products": {
            "100": {"name": "Lamp", "product_id": "100", "variants": {
                "201": {"item_id": "201", "options": {"color": "red"}, "available": True, "price": 49.99},
                "202": {"item_id": "202", "options": {"color": "blue"}, "available": True, "price": 59.99},
                "203": {"item_id": "203", "options": {"color": "green"}, "available": False,
                        "price": 39.99}}},
            "300": {"name": "Mug", "product_id": "300", "variants": {
                "301": {"item_id": "301", "options": {"size": "large"}, "available": True, "price": 10.0}}},
        },
        "users": {
            ANN: {"user_id": ANN, "name": {"first_name": "Ann", "last_name": "Lee"}, "address": _address(1),
                  "email": "ann@example.com", "payment_methods": {
                      "credit_card_1": {"source": "credit_card", "id": "credit_card_1", "brand": "visa",
                                        "last_four": "4242"},
                      "credit_card_7": {"source": "credit_card", "id": "credit_card_7", "brand": "amex",
                                        "last_four": "1000"},
                      "gift_card_1": {"source": "gift_card", "id": "gift_card_1", "balance": 5.0},
                      "gift_card_9": {"source": "gift_card", "id": "gift_card_9", "balance": 500.0}},
                  "orders": ["#W1", "#W2", "#W4", "#W5"]},
            BO: {"user_id": BO, "name": {"first_name": "Bo", "last_name": "Kim"}, "address": _address(2),
                 "email": "bo@example.com", "payment_methods": {
                     "paypal_2": {"source": "paypal", "id": "paypal_2"},
                     "gift_card_2": {"source": "gift_card", "id": "gift_card_2", "balance": 100.0}},
                 "orders": ["#W3"]},
        },
        "orders": {
            "#W1": _order("#W1", ANN, "pending", [LAMP_201, MUG_301], [("payment", 59.99, "credit_card_1")]),
            "#W2": _order("#W2", ANN, "delivered", [LAMP_201], [("payment", 49.99, "credit_card_1")]),
            "#W3": _order("#W3", BO, "pending", [LAMP_202], [("payment", 59.99, "paypal_2")]),
            "#W4": _order("#W4", ANN, "processed", [LAMP_201], [("payment", 49.99, "credit_card_1")]),
            "#W5": _order("#W5", ANN, "pending (item modified)", [LAMP_202],
                          [("payment", 49.99, "credit_card_1"), ("payment", 10.0, "credit_card_1")]),
        },
    }


@pytest.fixture
def engine() -> Engine:
    engine = create_store_engine("sqlite://")
    create_schema(engine)
    import_db(engine, store_db())
    return engine


@pytest.fixture
async def client(engine: Engine) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(engine))
    async with httpx.AsyncClient(transport=transport, base_url="http://retail") as client:
        yield client


def _o(order_id: str) -> str:
    return "/orders/" + quote(order_id, safe="")


def _swap(items: list[str], new: list[str], method: str) -> Json:
    return {"item_ids": items, "new_item_ids": new, "payment_method_id": method}


ADDRESS = _address(9)
# (method, path, body, status, rule, message), all acting as Ann.
VIOLATIONS: list[tuple[str, str, Json | None, int, str, str]] = [
    ("POST", _o("#W2") + "/cancel", {"reason": "no longer needed"}, 422, "order_not_pending",
     "Non-pending order cannot be cancelled"),
    ("POST", _o("#W1") + "/cancel", {"reason": "changed my mind"}, 422, "invalid_cancel_reason", "Invalid reason"),
    ("POST", _o("#W9") + "/cancel", {"reason": "no longer needed"}, 404, "order_not_found", "Order not found"),
    ("PUT", _o("#W4") + "/address", ADDRESS, 422, "order_not_pending", "Non-pending order cannot be modified"),
    ("PUT", _o("#W1") + "/payment", {"payment_method_id": "credit_card_1"}, 422, "same_payment_method",
     "The new payment method should be different from the current one"),
    ("PUT", _o("#W1") + "/payment", {"payment_method_id": "gift_card_1"}, 422, "insufficient_gift_card_balance",
     "Insufficient gift card balance to pay for the order"),
    ("PUT", _o("#W1") + "/payment", {"payment_method_id": "gift_card_0"}, 404, "payment_method_not_found",
     "Payment method not found"),
    ("PUT", _o("#W5") + "/payment", {"payment_method_id": "gift_card_9"}, 422, "single_payment_required",
     "There should be exactly one payment for a pending order"),
    ("POST", _o("#W5") + "/items", _swap(["202"], ["201"], "gift_card_9"), 422, "order_not_pending",
     "Non-pending order cannot be modified"),
    ("POST", _o("#W1") + "/items", _swap(["999"], ["202"], "gift_card_9"), 422, "items_not_in_order",
     "999 not found"),
    ("POST", _o("#W1") + "/items", _swap(["201", "201"], ["202", "202"], "gift_card_9"), 422,
     "items_not_in_order", "201 not found"),
    ("POST", _o("#W1") + "/items", _swap(["201"], ["202", "202"], "gift_card_9"), 422, "item_count_mismatch",
     "The number of items to be exchanged should match"),
    ("POST", _o("#W1") + "/items", _swap(["201"], ["201"], "gift_card_9"), 422, "same_item",
     "The new item id should be different from the old item id"),
    ("POST", _o("#W1") + "/items", _swap(["201"], ["203"], "gift_card_9"), 422, "new_item_unavailable",
     "New item 203 not found or available"),
    ("POST", _o("#W1") + "/items", _swap(["201"], ["301"], "gift_card_9"), 404, "variant_not_found",
     "Variant not found"),
    ("POST", _o("#W1") + "/items", _swap(["201"], ["202"], "gift_card_1"), 422,
     "insufficient_gift_card_balance", "Insufficient gift card balance to pay for the new item"),
    ("POST", _o("#W1") + "/return", {"item_ids": ["201"], "payment_method_id": "credit_card_1"}, 422,
     "order_not_delivered", "Non-delivered order cannot be returned"),
    ("POST", _o("#W2") + "/return", {"item_ids": ["201"], "payment_method_id": "credit_card_7"}, 422,
     "refund_to_original_method", "Payment method should be the original payment method"),
    ("POST", _o("#W2") + "/return", {"item_ids": ["202"], "payment_method_id": "credit_card_1"}, 422,
     "items_not_in_order", "Some item not found"),
    ("POST", _o("#W1") + "/exchange", _swap(["201"], ["202"], "credit_card_1"), 422, "order_not_delivered",
     "Non-delivered order cannot be exchanged"),
    ("POST", _o("#W2") + "/exchange", _swap(["201", "201"], ["202", "202"], "credit_card_1"), 422,
     "items_not_in_order", "Number of 201 not found."),
    ("POST", _o("#W2") + "/exchange", _swap(["201"], ["202", "202"], "credit_card_1"), 422,
     "item_count_mismatch", "The number of items to be exchanged should match."),
    ("POST", _o("#W2") + "/exchange", _swap(["201"], ["203"], "credit_card_1"), 422, "new_item_unavailable",
     "New item 203 not found or available"),
    ("POST", _o("#W2") + "/exchange", _swap(["201"], ["202"], "gift_card_1"), 422,
     "insufficient_gift_card_balance", "Insufficient gift card balance to pay for the price difference"),
    ("PUT", "/users/nobody/address", ADDRESS, 404, "user_not_found", "User not found"),
    ("GET", "/users/nobody", None, 404, "user_not_found", "User not found"),
    ("GET", _o("#W9"), None, 404, "order_not_found", "Order not found"),
    ("GET", "/products/999", None, 404, "product_not_found", "Product not found"),
    ("GET", "/items/999", None, 404, "item_not_found", "Item not found"),
    ("GET", "/users/by-email?email=nobody@example.com", None, 404, "user_not_found", "User not found"),
    ("GET", "/users/by-name-zip?first_name=Ann&last_name=Lee&zip=00000", None, 404, "user_not_found",
     "User not found"),
    ("POST", _o("#W1") + "/cancel", {"why": "no reason field"}, 422, "invalid_request", "body.reason: Field required"),
]

# Ann acting on Bo's order, profile or payment method.
CROSS_USER: list[tuple[str, str, Json | None]] = [
    ("GET", _o("#W3"), None),
    ("GET", f"/users/{BO}", None),
    ("POST", _o("#W3") + "/cancel", {"reason": "no longer needed"}),
    ("PUT", _o("#W3") + "/address", ADDRESS),
    ("PUT", _o("#W3") + "/payment", {"payment_method_id": "gift_card_2"}),
    ("POST", _o("#W3") + "/items", _swap(["202"], ["201"], "paypal_2")),
    ("PUT", f"/users/{BO}/address", ADDRESS),
    ("PUT", _o("#W1") + "/payment", {"payment_method_id": "gift_card_2"}),
    ("POST", _o("#W1") + "/items", _swap(["201"], ["202"], "gift_card_2")),
    ("POST", _o("#W2") + "/return", {"item_ids": ["201"], "payment_method_id": "gift_card_2"}),
    ("POST", _o("#W2") + "/exchange", _swap(["201"], ["202"], "gift_card_2")),
]


def _state(engine: Engine) -> str:
    return canonical_hash(export_db(engine))


@pytest.mark.parametrize(("method", "path", "body", "status", "rule", "message"), VIOLATIONS,
                         ids=[f"{v[4]}:{v[0]} {v[1]}" for v in VIOLATIONS])
async def test_a_broken_rule_is_named_and_changes_nothing(
        engine: Engine, client: httpx.AsyncClient, method: str, path: str, body: Json | None, status: int,
        rule: str, message: str) -> None:
    before = _state(engine)
    response = await client.request(method, path, json=body, headers={"X-Acting-User": ANN})
    assert response.status_code == status
    error = response.json()["error"]
    assert error["rule"] == rule
    assert error["message"].startswith(message) if rule == "invalid_request" else error["message"] == message
    assert _state(engine) == before


@pytest.mark.parametrize(("method", "path", "body"), CROSS_USER, ids=[f"{c[0]} {c[1]}" for c in CROSS_USER])
async def test_another_customers_records_are_out_of_reach(
        engine: Engine, client: httpx.AsyncClient, method: str, path: str, body: Json | None) -> None:
    before = _state(engine)
    response = await client.request(method, path, json=body, headers={"X-Acting-User": ANN})
    assert response.status_code == 403
    assert response.json()["error"]["rule"] == "not_your_account"
    assert _state(engine) == before


async def test_customer_data_needs_an_acting_user(engine: Engine, client: httpx.AsyncClient) -> None:
    before = _state(engine)
    requests: list[tuple[str, str, Json | None]] = [
        ("GET", _o("#W1"), None), ("POST", _o("#W1") + "/cancel", {"reason": "no longer needed"})]
    for method, path, body in requests:
        response = await client.request(method, path, json=body)
        assert response.status_code == 401
        assert response.json()["error"]["rule"] == "acting_user_required"
    assert _state(engine) == before
    assert (await client.get("/products/100")).status_code == 200  # the catalogue is public


async def test_a_repeated_idempotency_key_has_one_effect(engine: Engine, client: httpx.AsyncClient) -> None:
    headers = {"X-Acting-User": ANN, "Idempotency-Key": "key-1"}
    body = _swap(["201"], ["202"], "gift_card_9")
    first = await client.post(_o("#W1") + "/items", json=body, headers=headers)
    after_first = _state(engine)
    second = await client.post(_o("#W1") + "/items", json=body, headers=headers)
    assert first.status_code == second.status_code == 200
    assert second.json() == first.json() and second.headers["Idempotent-Replayed"] == "true"
    assert _state(engine) == after_first
    db = export_db(engine)
    assert db["users"][ANN]["payment_methods"]["gift_card_9"]["balance"] == 490.0
    assert [p["amount"] for p in db["orders"]["#W1"]["payment_history"]] == [59.99, 10.0]
    other_body = {"item_ids": ["201"], "payment_method_id": "credit_card_1"}
    reused = await client.post(_o("#W2") + "/return", json=other_body, headers=headers)
    assert reused.status_code == 422 and reused.json()["error"]["rule"] == "idempotency_key_reused"
    assert _state(engine) == after_first


async def test_writes_apply_tau2s_arithmetic_in_cents(engine: Engine, client: httpx.AsyncClient) -> None:
    headers = {"X-Acting-User": ANN}
    body = _swap(["201", "301"], ["202", "301"], "gift_card_9")
    swapped = await client.post(_o("#W1") + "/items", json=body, headers=headers)
    assert swapped.status_code == 422  # 301 -> 301 is not a change
    body = {"payment_method_id": "gift_card_9"}
    response = await client.put(_o("#W1") + "/payment", json=body, headers=headers)
    assert response.status_code == 200
    history = [(p["transaction_type"], p["amount"], p["payment_method_id"])
               for p in response.json()["payment_history"]]
    assert history == [("payment", 59.99, "credit_card_1"), ("payment", 59.99, "gift_card_9"),
                       ("refund", 59.99, "credit_card_1")]
    cancelled = (await client.post(_o("#W1") + "/cancel", json={"reason": "ordered by mistake"},
                                   headers=headers)).json()
    assert (cancelled["status"], cancelled["cancel_reason"]) == ("cancelled", "ordered by mistake")
    body = _swap(["201"], ["202"], "gift_card_9")
    exchanged = await client.post(_o("#W2") + "/exchange", json=body, headers=headers)
    assert exchanged.json()["exchange_price_difference"] == 10.0
    user = (await client.get(f"/users/{ANN}", headers=headers)).json()
    # 500, less 59.99 for the new payment, plus 59.99 refunded on cancel; an exchange request charges nothing.
    assert user["payment_methods"]["gift_card_9"]["balance"] == 500.0
    assert user["payment_methods"]["credit_card_1"] == {"source": "credit_card", "id": "credit_card_1",
                                                        "brand": "visa", "last_four": "4242"}


async def test_tools_identify_the_customer_and_act_as_them(client: httpx.AsyncClient, engine: Engine) -> None:
    tools = {tool.name: tool for tool in retail_tools(client, confirm=False)}
    executor = TransactionalExecutor(InMemoryLedger())
    state: dict[str, Any] = {}
    context = ToolContext(session_id="s1", principal=Principal("agent", scopes=frozenset({"retail:write"})),
                          state=state)

    async def call(name: str, **arguments: Any) -> Any:
        return await executor.execute(tools[name], ToolCall(name, name, arguments), context)

    refused = await call("get_order_details", order_id="#W1")
    assert refused.error is not None and "Identify the customer first" in error_message(refused.error)
    found = await call("find_user_id_by_name_zip", first_name="ANN", last_name="lee", zip="78701")
    assert found.value == ANN
    assert state[CUSTOMER_KEY] == ANN
    switched = await call("find_user_id_by_email", email="bo@example.com")  # one conversation, one customer
    assert "already verified as customer" in error_message(switched.error or "") and state[CUSTOMER_KEY] == ANN
    other = await call("cancel_pending_order", order_id="#W3", reason="no longer needed")
    assert other.error is not None and error_message(other.error) == "This order belongs to another customer"
    done = await call("cancel_pending_order", order_id="#W1", reason="no longer needed")
    assert done.value["status"] == "cancelled"
    again = await call("cancel_pending_order", order_id="#W1", reason="no longer needed")
    assert again.replayed and again.value == done.value  # the ledger answers; the store is not asked twice
    failed = await call("cancel_pending_order", order_id="#W2", reason="no longer needed")
    assert "Error: " + error_message(failed.error or "") == "Error: Non-pending order cannot be cancelled"
    assert json.loads((await call("list_all_product_types")).value) == {"Lamp": "100", "Mug": "300"}
    assert (await call("calculate", expression="(49.99 + 10) * 2")).value == "119.98"
    bad = await call("calculate", expression="2 ** x")
    assert error_message(bad.error or "") == "Invalid characters in expression"
    assert (await call("transfer_to_human_agents", summary="wants a person")).value == "Transfer successful"


def test_the_store_over_real_http(tmp_path: Path) -> None:
    folder = tmp_path / "tau2"
    folder.mkdir()
    (folder / "db.json").write_text(json.dumps(store_db()))
    url = f"sqlite:///{tmp_path / 'store.db'}"
    service = ServiceProcess("concierge.domains.retail.backend", ["--db", url, "--import-tau2", str(folder)])
    with service, httpx.Client(base_url=service.url, timeout=10.0) as http:
        assert http.get("/users/by-email", params={"email": "ANN@example.com"}).json() == {"user_id": ANN}
        headers = {"X-Acting-User": ANN, "Idempotency-Key": "real-1"}
        first = http.post(_o("#W1") + "/cancel", json={"reason": "no longer needed"}, headers=headers)
        second = http.post(_o("#W1") + "/cancel", json={"reason": "no longer needed"}, headers=headers)
        assert first.status_code == second.status_code == 200 and first.json() == second.json()
        theirs = http.get(_o("#W3"), headers={"X-Acting-User": ANN})
        assert theirs.status_code == 403 and theirs.json()["error"]["rule"] == "not_your_account"
        broken = http.post(_o("#W2") + "/cancel", json={"reason": "no longer needed"},
                           headers={"X-Acting-User": ANN})
        assert broken.json() == {"error": {"rule": "order_not_pending",
                                           "message": "Non-pending order cannot be cancelled"}}
    engine = create_store_engine(url)
    try:
        order = export_db(engine)["orders"]["#W1"]
    finally:
        engine.dispose()
    assert order["status"] == "cancelled"
    assert [p["transaction_type"] for p in order["payment_history"]] == ["payment", "refund"]  # refunded once
