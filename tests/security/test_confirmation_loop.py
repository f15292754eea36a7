"""Row 10: the confirmation loop tried in the chat page.

Observed on the landed code: a card asked to confirm a cancel that the store then refused
("Identify the customer first"); after Confirm and after Decline the identical card came back, 6
times in 7 turns; and the Decline button's "no" went through the injection screen as typed text
(flagged, override score 0.61). Replayed here against the real server and store with a scripted
double of that small model (`looping_planner`: it proposes the same cancel on every message).
"""

from __future__ import annotations

import json

import httpx
from websockets.sync.client import connect

from .conftest import RetailSite


def _say(client: httpx.Client, session_id: str, text: str) -> dict:
    response = client.post(f"/v1/sessions/{session_id}/messages", json={"text": text})
    assert response.status_code == 200, response.text
    return response.json()


def _press(client: httpx.Client, session_id: str, action_id: str, button: str) -> dict:
    response = client.post(f"/v1/sessions/{session_id}/actions/{action_id}/{button}")
    assert response.status_code == 200, response.text
    return response.json()


def _open(client: httpx.Client, session_id: str) -> None:
    response = client.post("/v1/sessions", json={"session_id": session_id})
    assert response.status_code == 201, response.text


def _cards(turn: dict) -> list[str]:
    return [a["id"] for a in turn["pending_actions"]]


def test_a_cancel_for_no_identified_customer_is_refused_before_any_card(retail_site: RetailSite) -> None:
    order = retail_site.pending_orders()[0]
    with retail_site.customer("shopper-a") as client:
        _open(client, "loop-a")
        turn = _say(client, "loop-a", f"Please cancel order {order.order_id}, I ordered it by mistake.")
    assert turn["stopped_by"] is None and _cards(turn) == [], turn  # no question about it
    assert "Not done: cancel_pending_order" in turn["reply"] and "Identify the customer first" in turn["reply"]
    [cancel] = [s for s in turn["steps"] if s["name"] == "cancel_pending_order"]
    assert cancel["status"] == "refused"
    assert retail_site.order_status(order.order_id) == "pending"


def test_a_declined_cancel_is_not_proposed_again_until_the_customer_asks_again(retail_site: RetailSite) -> None:
    order = retail_site.pending_orders()[1]
    cards: list[str] = []
    with retail_site.customer("shopper-b") as client:
        _open(client, "loop-b")
        _say(client, "loop-b", f"Hi, my email is {order.email}.")
        asked = _say(client, "loop-b", f"Please cancel order {order.order_id}, I ordered it by mistake.")
        assert asked["stopped_by"] == "awaiting_confirmation", asked  # the store would accept it: ask
        cards += _cards(asked)
        declined = _press(client, "loop-b", cards[0], "decline")
        # the model proposed the same cancel again at once: refused, and no card
        assert declined["stopped_by"] is None and _cards(declined) == [], declined
        assert "declined by the customer" in declined["reply"]
        again = _say(client, "loop-b", "Why is that?")  # not a new request for it
        assert again["stopped_by"] is None and _cards(again) == [], again
        assert retail_site.order_status(order.order_id) == "pending"
        # the customer asks for it again: a new card, and their Confirm runs it
        asked_again = _say(client, "loop-b", "Actually, please cancel it after all.")
        assert asked_again["stopped_by"] == "awaiting_confirmation", asked_again
        cards += _cards(asked_again)
        assert len(cards) == 2 and cards[0] != cards[1]
        done = _press(client, "loop-b", cards[1], "confirm")
    assert done["stopped_by"] is None and _cards(done) == []
    assert retail_site.order_status(order.order_id) == "cancelled"
    statuses = {a["id"]: a["status"] for a in done["actions"]}
    assert statuses == {cards[0]: "declined", cards[1]: "executed"}


def test_a_cancel_the_store_refused_after_confirm_is_not_proposed_again(retail_site: RetailSite) -> None:
    order = retail_site.pending_orders()[2]
    with retail_site.customer("shopper-c") as client:
        _open(client, "loop-c")
        _say(client, "loop-c", f"Hi, my email is {order.email}.")
        asked = _say(client, "loop-c", f"Please cancel order {order.order_id}, reason: changed my mind")
        [action_id] = _cards(asked)
        refused = _press(client, "loop-c", action_id, "confirm")  # the store refuses the reason
        assert "Not done: cancel_pending_order" in refused["reply"] and "Invalid reason" in refused["reply"]
        assert _cards(refused) == []
        later = _say(client, "loop-c", "Why not?")
    assert later["stopped_by"] is None and _cards(later) == [], later  # no identical card again
    assert "already refused" in later["reply"]
    assert retail_site.order_status(order.order_id) == "pending"


def test_the_decline_button_is_a_decision_not_screened_text(retail_site: RetailSite) -> None:
    order = retail_site.pending_orders()[3]
    with retail_site.customer("shopper-d") as client:
        _open(client, "loop-d")
        _say(client, "loop-d", f"Hi, my email is {order.email}.")
        asked = _say(client, "loop-d", f"Please cancel order {order.order_id}, I ordered it by mistake.")
        [action_id] = _cards(asked)
        url = f"{retail_site.server.ws_url}/v1/sessions/loop-d/stream"
        with connect(url, subprotocols=["concierge.bearer", retail_site.customer_token("shopper-d")]) as ws:
            assert json.loads(ws.recv())["type"] == "ready"
            ws.send(json.dumps({"type": "decline", "action_id": action_id}))
            events = []
            while (event := json.loads(ws.recv()))["type"] != "turn_finished":
                events.append(event)
        history = client.get("/v1/sessions/loop-d").json()
    # the injection screen did not look at it (as text, "no" scores 0.61 for "override": flagged)
    with retail_site.operator() as operator:
        trail = operator.get("/v1/sessions/loop-d/audit").json()
    last = trail["turns"][-1]
    assert [g for g in last["guardrails"] if g.get("guardrail") == "input"] == [], last["guardrails"]
    assert "[Decline pressed]" in last["user_input"]
    # kept as a confirmation marker, never as a typed "no"
    typed = [m["content"] for m in history["messages"] if m["role"] == "user"]
    assert not any(t.strip().lower() in ("yes", "no") for t in typed), typed
    decision = history["transcript"][-1]["decision"]
    assert decision["action_id"] == action_id and decision["answer"] == "decline"
    assert history["transcript"][-1]["message"] is None
    # and the same cancel was not put to the customer again
    assert [e for e in events if e["type"] == "confirmation_requested"] == []
    assert event["stopped_by"] is None and event["pending_actions"] == []
