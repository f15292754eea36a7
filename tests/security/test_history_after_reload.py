"""Row 11: the chat history after a reload differed from what the customer saw live.

Observed on the landed code: after a reload, failed tool chips came back as "done", the reply's
"Not done: …" sentence was gone, the Confirm and Decline buttons showed as typed "yes" / "no", and
the timestamps vanished, because GET /v1/sessions/{id} returned the model's messages only. Here a
conversation runs over the WebSocket as the chat page runs it (a failed lookup, a write refused
with a "Not done" line, a confirmation asked and confirmed with the button), and the session read
back afterwards must say exactly what the live stream said.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from websockets.sync.client import ClientConnection, connect

from .conftest import RetailSite


def _turn(ws: ClientConnection, frame: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Send one frame; the live events of its turn and its turn_finished."""
    ws.send(json.dumps(frame))
    events: list[dict[str, Any]] = []
    while (event := json.loads(ws.recv()))["type"] != "turn_finished":
        assert event["type"] != "error", event
        events.append(event)
    return events, event


def test_a_reloaded_conversation_shows_what_was_shown_live(retail_site: RetailSite) -> None:
    order = retail_site.pending_orders()[4]
    with retail_site.customer("shopper-e") as client:
        assert client.post("/v1/sessions", json={"session_id": "reload-e"}).status_code == 201
        url = f"{retail_site.server.ws_url}/v1/sessions/reload-e/stream"
        live: list[tuple[list[dict[str, Any]], dict[str, Any]]] = []
        with connect(url, subprotocols=["concierge.bearer", retail_site.customer_token("shopper-e")]) as ws:
            assert json.loads(ws.recv())["type"] == "ready"
            for text in ("What is the status of order #W0000000?",  # a lookup that fails
                         f"Please cancel order {order.order_id}, I ordered it by mistake.",  # refused first
                         f"My email is {order.email}.",
                         "Please cancel it now."):  # a confirmation card
                live.append(_turn(ws, {"type": "message", "text": text}))
            [action] = live[-1][1]["pending_actions"]
            live.append(_turn(ws, {"type": "confirm", "action_id": action["id"]}))
        reloaded = client.get("/v1/sessions/reload-e").json()

    assert retail_site.order_status(order.order_id) == "cancelled"
    turns = reloaded["transcript"]
    assert len(turns) == len(live) == 5
    for (events, finished), stored in zip(live, turns, strict=True):
        assert stored == finished["turn"]  # the record a reload draws is the one the live turn ended with
        chips = [(e["name"], e["status"]) for e in events if e["type"] == "tool_finished"]
        assert [(s["name"], s["status"]) for s in stored["steps"]] == chips  # failed stays failed
        assert stored["reply"] == finished["reply"]
        assert datetime.fromisoformat(stored["started_at"]) <= datetime.fromisoformat(stored["finished_at"])
    failed_lookup, refused_write, _, asked, confirmed = turns
    assert [s["status"] for s in failed_lookup["steps"]] == ["failed"]
    assert [s["status"] for s in refused_write["steps"]] == ["refused"]
    assert "Not done: cancel_pending_order" in refused_write["reply"]
    assert asked["pending_actions"][0]["id"] == action["id"] and asked["steps"][-1]["status"] == "pending"
    # the button is a confirmation marker, not a typed "yes"
    assert confirmed["message"] is None and confirmed["decision"]["answer"] == "confirm"
    assert confirmed["decision"]["action_id"] == action["id"]
    assert [s["status"] for s in confirmed["steps"]] == ["succeeded"]
    assert {a["id"]: a["status"] for a in reloaded["actions"]} == {action["id"]: "executed"}
    assert not [m for m in reloaded["messages"] if m["role"] == "user" and m["content"].strip().lower() == "yes"]
