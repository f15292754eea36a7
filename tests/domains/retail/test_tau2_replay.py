"""Faithfulness to tau2: every train task's gold actions, replayed through the tools, the HTTP API
and the store, give tau2's outputs and tau2's final database (money compared to the cent).

Where tau2 has a known bug (`modify_pending_order_items` gives every swapped line the last new
variant's price and options: train 20, 21, 37), the store is held to the correct per-line values
and to tau2's recorded `db_diff` everywhere else.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from concierge.core.messages import ToolCall
from concierge.core.principal import Principal
from concierge.domains.retail import canonical_hash, create_schema, create_store_engine, export_db, import_db
from concierge.domains.retail.backend import create_app
from concierge.domains.retail.tools import retail_tools
from concierge.tools.ledger.memory import InMemoryLedger
from concierge.tools.outcome import error_message
from concierge.tools.pipeline import TransactionalExecutor
from concierge.tools.tool import ToolContext

TAU2_DIR = Path(
    os.environ.get("TAU2_DATA_DIR", Path(__file__).resolve().parents[3] / ".." / "shared" / "tau2")
).resolve()
RETAIL_DIR = TAU2_DIR / "retail"
REFERENCE = RETAIL_DIR / "reference_train.jsonl"

if not (RETAIL_DIR / "db.json").is_file() or not REFERENCE.is_file():
    pytest.skip(f"tau2 reference data not found at {TAU2_DIR} (set TAU2_DATA_DIR)", allow_module_level=True)

Json = dict[str, Any]
REFERENCES: dict[str, Json] = {
    line["task_id"]: line for line in map(json.loads, REFERENCE.read_text().splitlines()) if line
}
RESULTS: dict[str, str] = {}
BUG_NOTE = "matched, correct where tau2 has its known bug"


@pytest.fixture(scope="module")
def original_db() -> Json:
    """tau2's database, read once for the module (the importer does not modify it)."""
    db: Json = json.loads((RETAIL_DIR / "db.json").read_text())
    return db


@pytest.fixture(scope="module", autouse=True)
def summary(request: pytest.FixtureRequest) -> Iterator[None]:
    """After the module, one line: how many tasks matched tau2, and which did not."""
    yield
    matched = sorted((t for t, r in RESULTS.items() if r.startswith("matched")), key=int)
    noted = sorted((t for t, r in RESULTS.items() if r == BUG_NOTE), key=int)
    failed = sorted((t for t, r in RESULTS.items() if not r.startswith("matched")), key=int)
    line = f"tau2 retail replay: {len(matched)}/{len(REFERENCES)} train tasks matched"
    if noted:
        line += f" ({', '.join(noted)} with correct per-line prices where tau2 has its known bug)"
    if failed:
        line += "; not matched: " + ", ".join(failed)
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line("")
            reporter.write_line(line)


# --- comparison helpers ----------------------------------------------------------------------------


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 2)
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_rounded(item) for item in value]
    return value


def _as_json(value: Any) -> Any:
    """A JSON text read as its value (tau2's outputs are text); anything else unchanged."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _diff(before: Any, after: Any, path: str = "") -> list[str]:
    """Paths whose values differ, for a readable failure message."""
    if isinstance(before, dict) and isinstance(after, dict):
        out: list[str] = []
        for key in sorted(set(before) | set(after)):
            sub = f"{path}.{key}" if path else str(key)
            if key not in before or key not in after:
                out.append(f"{sub}: {before.get(key)!r} -> {after.get(key)!r}")
            else:
                out.extend(_diff(before[key], after[key], sub))
        return out
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        pairs = enumerate(zip(before, after, strict=True))
        return [line for i, (a, b) in pairs for line in _diff(a, b, f"{path}.{i}")]
    return [] if before == after else [f"{path}: {before!r} -> {after!r}"]


def _apply_diff(db: Json, entries: list[Json]) -> Json:
    """tau2's final database rebuilt from the original and the reference `db_diff`."""
    result = copy.deepcopy(db)
    for entry in entries:
        *parents, last = entry["path"].split(".")
        node: Any = result
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            index = int(last)
            if entry["kind"] == "removed":
                del node[index]
            elif index == len(node):
                node.append(entry["after"])
            else:
                node[index] = entry["after"]
        elif entry["kind"] == "removed":
            del node[last]
        else:
            node[last] = entry["after"]
    return result


def _catalogue(db: Json) -> dict[str, Json]:
    return {item_id: variant for product in db["products"].values()
            for item_id, variant in product["variants"].items()}


def _correct_lines(order: Json, positions: set[int], catalogue: dict[str, Json]) -> Json:
    """The order with each swapped line priced and described by its own new variant."""
    fixed = copy.deepcopy(order)
    for position in positions:
        variant = catalogue[fixed["items"][position]["item_id"]]
        fixed["items"][position]["price"] = variant["price"]
        fixed["items"][position]["options"] = variant["options"]
    return fixed


def _swapped_lines(reference: Json) -> dict[str, set[int]]:
    """Per order, the line positions whose item id tau2 changed."""
    swapped: dict[str, set[int]] = {}
    for entry in reference["db_diff"]:
        parts = entry["path"].split(".")
        if len(parts) == 5 and parts[0] == "orders" and parts[2] == "items" and parts[4] == "item_id":
            swapped.setdefault(parts[1], set()).add(int(parts[3]))
    return swapped


# --- the replay --------------------------------------------------------------------------------------


def _owner(db: Json, arguments: Json) -> str | None:
    if "order_id" in arguments and arguments["order_id"] in db["orders"]:
        return str(db["orders"][arguments["order_id"]]["user_id"])
    if "user_id" in arguments:
        return str(arguments["user_id"])
    return None


def _fresh_store(db: Json) -> Engine:
    engine = create_store_engine("sqlite://")
    create_schema(engine)
    import_db(engine, db)
    return engine


@pytest.mark.parametrize("task_id", list(REFERENCES))
async def test_train_task_replays_like_tau2(task_id: str, original_db: Json) -> None:
    RESULTS[task_id] = "failed"
    reference = REFERENCES[task_id]
    buggy = bool(reference.get("known_upstream_bug"))
    catalogue = _catalogue(original_db)
    swapped = _swapped_lines(reference) if buggy else {}
    engine = _fresh_store(original_db)
    executor = TransactionalExecutor(InMemoryLedger())
    state: dict[str, Any] = {}
    context = ToolContext(session_id=f"tau2-replay-{task_id}",
                          principal=Principal("tau2-replay", scopes=frozenset({"*"})), state=state)
    transport = httpx.ASGITransport(app=create_app(engine))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://retail") as client:
            tools = {tool.name: tool for tool in retail_tools(client, confirm=False)}
            for index, action in enumerate(reference["actions"]):
                where = f"task {task_id} action {index} {action['name']}"
                # tau2's tools do not authenticate, and some gold trajectories act on an order or a
                # user without looking the customer up first (the task hands the agent the ids).
                # The store does authenticate, so the replay signs in as that order's or user's owner.
                if context.customer_id is None and (owner := _owner(original_db, action["arguments"])):
                    context.bind_customer(owner)
                call = ToolCall(str(index), action["name"], action["arguments"])
                outcome = await executor.execute(tools[action["name"]], call, context)
                if action["error"]:
                    assert outcome.error is not None, f"{where}: expected an error, got {outcome.value!r}"
                    assert "Error: " + error_message(outcome.error) == action["output"], where
                    continue
                assert outcome.error is None, f"{where}: {outcome.error}"
                expected = _as_json(action["output"])
                if isinstance(expected, dict) and expected.get("order_id") in swapped:
                    expected = _correct_lines(expected, swapped[expected["order_id"]], catalogue)
                ours = _rounded(_as_json(outcome.value))
                problems = _diff(_rounded(expected), ours)[:10]
                assert ours == _rounded(expected), f"{where}: " + "; ".join(problems)
        final = export_db(engine)
    finally:
        engine.dispose()
    tau2_final = _apply_diff(original_db, reference["db_diff"])
    if not buggy:
        problems = _diff(_rounded(tau2_final), _rounded(final))[:10]
        assert canonical_hash(final, cents=True) == reference["final_db_sha256_cents"], (
            f"task {task_id}: final DB differs from tau2's: " + "; ".join(problems))
        RESULTS[task_id] = "matched"
        return
    assert canonical_hash(tau2_final) == reference["final_db_sha256"], "db_diff does not rebuild tau2's DB"
    expected_db = copy.deepcopy(tau2_final)
    for order_id, positions in swapped.items():
        expected_db["orders"][order_id] = _correct_lines(tau2_final["orders"][order_id], positions, catalogue)
    assert _rounded(final) == _rounded(expected_db), f"task {task_id}: " + "; ".join(
        _diff(_rounded(expected_db), _rounded(final))[:10])
    # The store does not reproduce the bug.
    assert canonical_hash(final, cents=True) != reference["final_db_sha256_cents"]
    RESULTS[task_id] = BUG_NOTE
