"""Golden tasks for a generated store, in tau2's task format, with their own env assertions.

They let evaluation run without outside data: the same seed gives the same store and the same
tasks. Three kinds, drawn in turn from the store's customers: cancel a pending order (checked by
the database, the expected actions and an assertion on the order's status), ask an order's
status (checked by what the agent says), and move the default address (database + assertion).
Each task also carries `user_turns`, the lines of a scripted customer for deterministic runs.
"""

from __future__ import annotations

import random
from typing import Any

from ...core.errors import ValidationError

Json = dict[str, Any]
_NEW_ADDRESSES = (
    ("12 Harbor Lane", "Apt 3", "Portland", "OR", "97205"),
    ("890 Cedar Street", "Unit 12", "Austin", "TX", "78701"),
    ("45 Willow Court", "Suite 201", "Denver", "CO", "80202"),
)


def _cancel(n: int, user: Json, order_id: str) -> Json:
    reason = "no longer needed"
    return {
        "id": f"gen_cancel_{n}",
        "description": {"purpose": "Cancel a pending order after the customer confirms."},
        "user_scenario": {"persona": None, "instructions": {
            "domain": "retail",
            "reason_for_call": f"You want to cancel your pending order {order_id} because you no longer need it.",
            "known_info": f"Your email is {user['email']}.",
            "unknown_info": None,
            "task_instructions": "Confirm the cancellation when asked.",
        }},
        "evaluation_criteria": {
            "actions": [
                {"action_id": f"gen_cancel_{n}_0", "name": "find_user_id_by_email",
                 "arguments": {"email": user["email"]}},
                {"action_id": f"gen_cancel_{n}_1", "name": "get_order_details", "arguments": {"order_id": order_id}},
                {"action_id": f"gen_cancel_{n}_2", "name": "cancel_pending_order",
                 "arguments": {"order_id": order_id, "reason": reason}},
            ],
            "env_assertions": [{"env_type": "assistant", "func_name": "order_status_is",
                                "arguments": {"order_id": order_id, "status": "cancelled"},
                                "assert_value": True, "message": f"order {order_id} is cancelled"}],
            "communicate_info": [],
            "reward_basis": ["DB", "ACTION", "ENV_ASSERTION"],
        },
        "user_turns": [
            f"Hi, please cancel my order {order_id}; I no longer need it. My email is {user['email']}.",
            "Yes, please go ahead.",
        ],
    }


def _status(n: int, user: Json, order_id: str, status: str) -> Json:
    return {
        "id": f"gen_status_{n}",
        "description": {"purpose": "Tell the customer the status of an order."},
        "user_scenario": {"persona": None, "instructions": {
            "domain": "retail",
            "reason_for_call": f"You want to know the status of your order {order_id}.",
            "known_info": f"Your email is {user['email']}.",
            "unknown_info": None,
            "task_instructions": "Stop once you are told the status.",
        }},
        "evaluation_criteria": {
            "actions": [
                {"action_id": f"gen_status_{n}_0", "name": "find_user_id_by_email",
                 "arguments": {"email": user["email"]}},
                {"action_id": f"gen_status_{n}_1", "name": "get_order_details", "arguments": {"order_id": order_id}},
            ],
            "communicate_info": [status],
            "reward_basis": ["DB", "COMMUNICATE"],
        },
        "user_turns": [f"Hi, what is the status of my order {order_id}? My email is {user['email']}."],
    }


def _address(n: int, user: Json, rng: random.Random) -> Json:
    address1, address2, city, state, zip_code = rng.choice(_NEW_ADDRESSES)
    new = {"address1": address1, "address2": address2, "city": city, "state": state, "country": "USA",
           "zip": zip_code}
    return {
        "id": f"gen_address_{n}",
        "description": {"purpose": "Change the customer's default address after confirmation."},
        "user_scenario": {"persona": None, "instructions": {
            "domain": "retail",
            "reason_for_call": f"You moved and want your default address changed to {address1}, {address2}, "
                               f"{city}, {state} {zip_code}, USA.",
            "known_info": f"Your email is {user['email']}.",
            "unknown_info": None,
            "task_instructions": "Confirm the change when asked.",
        }},
        "evaluation_criteria": {
            "actions": [
                {"action_id": f"gen_address_{n}_0", "name": "find_user_id_by_email",
                 "arguments": {"email": user["email"]}},
                {"action_id": f"gen_address_{n}_1", "name": "modify_user_address",
                 "arguments": {"user_id": user["user_id"], **new}},
            ],
            "env_assertions": [{"env_type": "assistant", "func_name": "default_zip_is",
                                "arguments": {"user_id": user["user_id"], "zip": zip_code},
                                "assert_value": True, "message": f"default zip is {zip_code}"}],
            "communicate_info": [],
            "reward_basis": ["DB", "ENV_ASSERTION"],
        },
        "user_turns": [
            f"Hi, I moved. Please change my default address to {address1}, {address2}, {city}, {state} "
            f"{zip_code}, USA. My email is {user['email']}.",
            "Yes, please go ahead.",
        ],
    }


def generate_tasks(db: Json, count: int, *, seed: int = 0) -> list[Json]:
    """`count` tasks over `db` (a generated or tau2 store), cycling cancel → status → address."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValidationError(f"the number of tasks must be a positive integer, got {count!r}")
    rng = random.Random(seed)
    pending = [(oid, o) for oid, o in db["orders"].items() if o["status"] == "pending"]
    others = [(oid, o) for oid, o in db["orders"].items() if o["status"] != "pending"]
    users = list(db["users"].values())
    if not pending or not others or not users:
        raise ValidationError("the store needs pending and non-pending orders to draw tasks from",
                              hint="generate a store with more orders")
    rng.shuffle(pending)
    rng.shuffle(others)
    rng.shuffle(users)
    tasks: list[Json] = []
    for n in range(count):
        kind = n % 3
        if kind == 0:
            if not pending:
                raise ValidationError(f"only {n} tasks fit: no pending order left to cancel",
                                      hint="ask for fewer tasks or generate more orders")
            order_id, order = pending.pop()
            tasks.append(_cancel(n, db["users"][order["user_id"]], order_id))
        elif kind == 1:
            order_id, order = others[n % len(others)]
            tasks.append(_status(n, db["users"][order["user_id"]], order_id, order["status"]))
        else:
            tasks.append(_address(n, users[n % len(users)], rng))
    return tasks
