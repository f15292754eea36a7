"""The retail store as an evaluation domain: a fresh in-memory copy of the store per trial.

The store is imported once into an in-memory SQLite template; each environment is a copy made
with SQLite's backup API (milliseconds, where a re-import of tau2's 1,000 orders takes far
longer), served by the real backend app in-process. Replays (the gold trajectory, a task's
set-up actions) go through the same tools and executor as the agent's calls.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, select

from ...core.errors import ValidationError
from ...core.messages import ToolCall
from ...core.principal import Principal
from ...llm.base import ChatModel
from ...runtime.agent import Agent
from ...tools.ledger import InMemoryLedger
from ...tools.outcome import ToolOutcome
from ...tools.pipeline import TransactionalExecutor
from ...tools.tool import Tool, ToolContext
from .agent import make_retail_agent, store_policy
from .backend.app import create_app
from .store import (
    canonical_hash,
    create_schema,
    create_store_engine,
    export_db,
    import_db,
    load_tau2_db,
    read_policy,
)
from .store.schema import orders, payment_methods, users
from .tools import WRITE_SCOPES, retail_tools

Json = dict[str, Any]
_ids = itertools.count(1)


def _copy_of(template: Engine) -> Engine:
    """A new in-memory database holding the template's contents."""
    engine = create_store_engine("sqlite://")
    source = template.raw_connection()
    target = engine.raw_connection()
    try:
        source.driver_connection.backup(target.driver_connection)  # type: ignore[union-attr]
    finally:
        source.close()
        target.close()
    return engine


def _merge(base: Json, patch: Json) -> Json:
    """tau2's initial `agent_data`: nested objects merge key by key, anything else replaces."""
    out = copy.deepcopy(base)
    for key, value in patch.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _order_status_is(engine: Engine, order_id: str, status: str) -> bool:
    with engine.connect() as conn:
        return conn.execute(select(orders.c.status).where(orders.c.order_id == order_id)).scalar() == status


def _gift_card_balance_is(engine: Engine, payment_method_id: str, balance: float) -> bool:
    query = select(payment_methods.c.balance_cents).where(payment_methods.c.id == payment_method_id)
    with engine.connect() as conn:
        cents = conn.execute(query).scalar()
    return cents is not None and cents == round(balance * 100)


def _default_zip_is(engine: Engine, user_id: str, zip: str) -> bool:
    with engine.connect() as conn:
        return conn.execute(select(users.c.zip).where(users.c.user_id == user_id)).scalar() == zip


ASSERTIONS: dict[str, Callable[..., bool]] = {
    "order_status_is": _order_status_is,
    "gift_card_balance_is": _gift_card_balance_is,
    "default_zip_is": _default_zip_is,
}


class RetailEnvironment:
    """One trial's store: its own database, its own backend app, tools bound to it."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(engine)),
                                        base_url="http://retail")

    def tools(self) -> list[Tool]:
        return retail_tools(self.client)

    async def replay(self, actions: Sequence[Any]) -> list[ToolOutcome]:
        """Run actions as the store's operator: no confirmation, signed in as each order's owner.

        tau2's tools do not authenticate and some gold trajectories act on an order without a
        lookup first (the task hands the agent the ids); the store does authenticate, so the
        replay signs in as the owner of the first order or user an action names.
        """
        tools = {t.name: t for t in retail_tools(self.client, confirm=False)}
        executor = TransactionalExecutor(InMemoryLedger())
        context = ToolContext(f"replay-{next(_ids)}", Principal("evaluation-replay", scopes=frozenset({"*"})), {})
        outcomes = []
        for index, action in enumerate(actions):
            if action.name not in tools:
                raise ValidationError(f"action {action.action_id}: the retail domain has no tool {action.name!r}")
            if context.customer_id is None and (owner := self._owner(action.arguments)):
                context.bind_customer(owner)
            call = ToolCall(f"replay-{index}", action.name, dict(action.arguments))
            outcomes.append(await executor.execute(tools[action.name], call, context))
        return outcomes

    def _owner(self, arguments: Json) -> str | None:
        order_id = arguments.get("order_id")
        if isinstance(order_id, str):
            with self.engine.connect() as conn:
                owner = conn.execute(select(orders.c.user_id).where(orders.c.order_id == order_id)).scalar()
            if owner:
                return str(owner)
        user_id = arguments.get("user_id")
        return user_id if isinstance(user_id, str) and user_id else None

    def state_hash(self) -> str:
        return canonical_hash(export_db(self.engine), cents=True)

    def check(self, func_name: str, arguments: dict[str, Any]) -> bool:
        function = ASSERTIONS.get(func_name)
        if function is None:
            raise ValidationError(f"unknown retail assertion {func_name!r}",
                                  hint="known: " + ", ".join(sorted(ASSERTIONS)))
        try:
            return bool(function(self.engine, **arguments))
        except TypeError as exc:
            raise ValidationError(f"bad arguments for assertion {func_name}: {exc}") from exc

    def customer_of(self, actions: Sequence[Any]) -> str | None:
        for action in actions:
            if action.name.startswith("find_user_id"):
                return None  # the trajectory identifies the customer itself
            if owner := self._owner(action.arguments):
                return owner
        return None

    def mistaken(self, action: Any) -> Any | None:
        """The same action on another order of the same customer (the flawed agent's mistake)."""
        order_id = action.arguments.get("order_id")
        owner = self._owner(action.arguments) if isinstance(order_id, str) else None
        if owner is None:
            return None
        query = select(orders.c.order_id).where(orders.c.user_id == owner, orders.c.order_id != order_id) \
            .order_by(orders.c.order_id).limit(1)
        with self.engine.connect() as conn:
            other = conn.execute(query).scalar()
        if other is None:
            return None
        return action.model_copy(update={"arguments": {**action.arguments, "order_id": other}})

    async def aclose(self) -> None:
        await self.client.aclose()
        self.engine.dispose()


class RetailDomain:
    """The retail store for evaluation, from a tau2-format folder or a database dict."""

    name = "retail"
    customer_scopes = frozenset(WRITE_SCOPES)
    # Order ids: how the router counts the orders "my order" could mean.
    entity_pattern = r"#W\d{7}"

    def __init__(self, db: Json, policy: str | None = None) -> None:
        self.db = db
        self.policy = policy if policy is not None else store_policy()
        self._template = create_store_engine("sqlite://")
        create_schema(self._template)
        import_db(self._template, db)
        self._writes = frozenset(t.name for t in retail_tools(httpx.AsyncClient()) if t.writes)

    @classmethod
    def from_folder(cls, folder: Path) -> RetailDomain:
        """A tau2-format domain folder: `db.json` and `policy.md` (the tasks file sits beside them)."""
        return cls(load_tau2_db(folder / "db.json"), read_policy(folder))

    def environment(self, task: Any) -> RetailEnvironment:
        state = task.initial_state
        if state is not None and state.agent_data:
            engine = create_store_engine("sqlite://")
            create_schema(engine)
            import_db(engine, _merge(self.db, state.agent_data))
            return RetailEnvironment(engine)
        return RetailEnvironment(_copy_of(self._template))

    def agent(self, model: ChatModel, environment: Any) -> Agent:
        return make_retail_agent(model, environment.client, policy=self.policy)

    def writes(self) -> frozenset[str]:
        return self._writes

    def tools(self) -> list[Tool]:
        """The agent's tools, for what needs only their names and effects (router features)."""
        return retail_tools(httpx.AsyncClient())
