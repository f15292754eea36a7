"""The offline retail demo: a generated store on disk, its backend in-process, a scripted customer.

`concierge demo` and `concierge chat` use this. The store is generated once per seed into
`.concierge/stores/` (its own SQLite database, like a real store's system of record) and then
reused, so a chat continued later still sees the orders it changed. `concierge serve` keeps a
store per tenant instead (`tenant_stores`), and fills its demo tenant's with the same data.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy import Engine, select

from ...core.errors import ValidationError
from ...testing.models import ScriptedModel, call
from .backend.app import create_app
from .generator import generate_store
from .store import create_schema, create_store_engine, import_db
from .store.schema import orders, users

DEMO_USERS = 40
DEMO_ORDERS = 80


@dataclass(frozen=True, slots=True)
class DemoCustomer:
    """A real customer of the generated store with a pending order the demo can ask to cancel."""

    user_id: str
    email: str
    order_id: str

    def walkthrough_model(self) -> ScriptedModel:
        """A scripted planner for the same conversation: the calls a capable model would make.

        Shown after the real model's run (and labelled as a test double), so a reader sees the
        transaction path even where a 135M model does not find it: lookup, confirmation, one cancel.
        """
        return ScriptedModel([
            call("find_user_id_by_email", email=self.email),
            f"Thanks, I found your account ({self.user_id}). Which order would you like to cancel?",
            call("get_order_details", order_id=self.order_id),
            call("cancel_pending_order", order_id=self.order_id, reason="ordered by mistake"),
            f"Order {self.order_id} is cancelled and the refund goes back to the original payment method.",
        ], name="scripted-planner")

    def conversation(self) -> list[str]:
        """What the scripted customer says, turn by turn; the last turn confirms the change."""
        return [
            f"Hi, I'd like to cancel an order. My email is {self.email}.",
            f"It is order {self.order_id}. I ordered it by mistake, so I no longer need it.",
            "Yes, please go ahead.",
        ]


def fill_demo_store(engine: Engine, seed: int = 0) -> None:
    """Create the store's tables in `engine` and import the demo data generated from `seed`."""
    create_schema(engine)
    import_db(engine, generate_store(users=DEMO_USERS, orders=DEMO_ORDERS, seed=seed))


def walkthrough_store(seed: int = 0) -> Engine:
    """An in-memory copy of the demo store as first generated, so the walkthrough changes nothing on disk."""
    engine = create_store_engine("sqlite://")
    fill_demo_store(engine, seed)
    return engine


def open_store_file(path: Path, fill: Callable[[Engine], None]) -> Engine:
    """The SQLite store at `path`; on first use `fill` builds it (tables and any data) in a side file.

    A crash while filling never leaves a half store behind, and processes starting together
    (server workers) each build their own copy and the first rename wins: `fill` must build the
    same store every time.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        return create_store_engine(f"sqlite:///{path}")
    partial = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.partial")
    partial.unlink(missing_ok=True)
    engine = create_store_engine(f"sqlite:///{partial}")
    try:
        fill(engine)
    except BaseException:
        engine.dispose()
        partial.unlink(missing_ok=True)
        raise
    engine.dispose()
    if path.exists():
        partial.unlink()
    else:
        partial.replace(path)
    return create_store_engine(f"sqlite:///{path}")


def open_demo_store(folder: Path, *, seed: int = 0) -> Engine:
    """The demo store's database under `folder`, generated (deterministically per seed) on first use."""
    if not isinstance(seed, int) or seed < 0:
        raise ValidationError(f"seed must be a non-negative integer, got {seed!r}")
    return open_store_file(folder / f"retail-demo-{seed}.db", lambda engine: fill_demo_store(engine, seed))


def demo_customer(engine: Engine) -> DemoCustomer:
    """The first customer (by user id) who still has a pending order."""
    query = (
        select(users.c.user_id, users.c.email, orders.c.order_id)
        .join(orders, orders.c.user_id == users.c.user_id)
        .where(orders.c.status == "pending")
        .order_by(users.c.user_id, orders.c.order_id)
        .limit(1)
    )
    with engine.connect() as conn:
        row = conn.execute(query).first()
    if row is None:
        raise ValidationError("the demo store has no pending order left",
                              hint="delete .concierge/stores to start from a fresh store")
    return DemoCustomer(row.user_id, row.email, row.order_id)


def order_status(engine: Engine, order_id: str) -> str | None:
    with engine.connect() as conn:
        return conn.execute(select(orders.c.status).where(orders.c.order_id == order_id)).scalar_one_or_none()


def store_client(engine: Engine) -> httpx.AsyncClient:
    """A client of the store's HTTP API, served in-process (ASGI): same code path as over the network."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(engine)), base_url="http://retail")
