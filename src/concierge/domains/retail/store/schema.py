"""The retail store's tables, and how to open the database that holds them.

The tables are normalised (one row per product, variant, user, payment method, order, order line,
fulfilment and payment) so the store can answer questions and apply changes with plain SQL, and
they use only generic column types so the same schema runs on SQLite and PostgreSQL. Money is
integer cents. `position` columns keep list order (and the order of tau2's keyed objects), which
an exact export needs.

The engine is synchronous: the store's HTTP service runs its handlers in a thread pool.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Engine,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    event,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import StaticPool

from concierge.core.errors import ConfigError
from concierge.core.sqldb import redact_url

SUPPORTED_STORE_URLS = "sqlite:///path/to/store.db, sqlite:// (in memory) or postgresql://user:password@host/db"

metadata = MetaData()


def _address_columns() -> list[Column[Any]]:
    """tau2's address shape; every key is required there, so every column is NOT NULL."""
    return [
        Column(name, String, nullable=False) for name in ("address1", "address2", "city", "country", "state", "zip")
    ]


products = Table(
    "products",
    metadata,
    Column("product_id", String, primary_key=True),
    Column("name", String, nullable=False),
    Column("position", Integer, nullable=False),
)

variants = Table(
    "variants",
    metadata,
    Column("item_id", String, primary_key=True),
    Column("product_id", String, ForeignKey("products.product_id"), nullable=False, index=True),
    Column("options", JSON, nullable=False),
    Column("available", Boolean, nullable=False),
    Column("price_cents", BigInteger, nullable=False),
    Column("position", Integer, nullable=False),
)

users = Table(
    "users",
    metadata,
    Column("user_id", String, primary_key=True),
    Column("first_name", String, nullable=False),
    Column("last_name", String, nullable=False),
    Column("email", String, nullable=False, index=True),
    *_address_columns(),
    Column("position", Integer, nullable=False),
)

payment_methods = Table(
    "payment_methods",
    metadata,
    Column("id", String, primary_key=True),
    Column("user_id", String, ForeignKey("users.user_id"), nullable=False, index=True),
    Column("source", String, nullable=False),
    # Credit cards carry brand and last_four, gift cards a balance, PayPal neither.
    Column("brand", String, nullable=True),
    Column("last_four", String, nullable=True),
    Column("balance_cents", BigInteger, nullable=True),
    # Any other key a payment method carries, kept verbatim so the export is exact.
    Column("extra", JSON(none_as_null=True), nullable=True),
    Column("position", Integer, nullable=False),
)

orders = Table(
    "orders",
    metadata,
    Column("order_id", String, primary_key=True),
    Column("user_id", String, ForeignKey("users.user_id"), nullable=False, index=True),
    *_address_columns(),
    Column("status", String, nullable=False),
    # tau2's optional Order fields: NULL means the key is absent from the exported order.
    Column("cancel_reason", String, nullable=True),
    Column("exchange_items", JSON(none_as_null=True), nullable=True),
    Column("exchange_new_items", JSON(none_as_null=True), nullable=True),
    Column("exchange_payment_method_id", String, nullable=True),
    Column("exchange_price_difference_cents", BigInteger, nullable=True),
    Column("return_items", JSON(none_as_null=True), nullable=True),
    Column("return_payment_method_id", String, nullable=True),
    Column("position", Integer, nullable=False),
    # Index in the owning user's `orders` list; NULL when the user does not list the order.
    Column("user_position", Integer, nullable=True),
)

order_items = Table(
    "order_items",
    metadata,
    # One row per line: the same item_id may appear twice in one order, so the key is the position.
    Column("order_id", String, ForeignKey("orders.order_id"), primary_key=True),
    Column("position", Integer, primary_key=True),
    Column("item_id", String, nullable=False, index=True),
    Column("product_id", String, nullable=False),
    Column("name", String, nullable=False),
    Column("price_cents", BigInteger, nullable=False),
    Column("options", JSON, nullable=False),
)

fulfillments = Table(
    "fulfillments",
    metadata,
    Column("order_id", String, ForeignKey("orders.order_id"), primary_key=True),
    Column("position", Integer, primary_key=True),
    # tau2 names this list `tracking_id` (singular).
    Column("tracking_ids", JSON, nullable=False),
    Column("item_ids", JSON, nullable=False),
)

payment_history = Table(
    "payment_history",
    metadata,
    Column("order_id", String, ForeignKey("orders.order_id"), primary_key=True),
    Column("position", Integer, primary_key=True),
    Column("transaction_type", String, nullable=False),
    Column("amount_cents", BigInteger, nullable=False),
    Column("payment_method_id", String, nullable=False),
)

# Parents before children: the order to insert in (and the reverse to delete in).
TABLES: tuple[Table, ...] = (
    products, variants, users, payment_methods, orders, order_items, fulfillments, payment_history,
)


def _sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    """WAL lets readers run beside the writer; NORMAL is durable enough for a WAL store; FKs are off by default."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
    finally:
        cursor.close()


def create_store_engine(url: str, *, echo: bool = False) -> Engine:
    """A synchronous engine for a SQLite file, in-memory SQLite (`sqlite://`) or PostgreSQL URL."""
    bad = ConfigError(f"unsupported store URL {redact_url(url)!r}", hint=f"use {SUPPORTED_STORE_URLS}")
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise bad from exc
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise bad
    if parsed.drivername == "postgresql":
        # A plain scheme means the sync driver the `postgres` extra installs (SQLAlchemy would pick psycopg2).
        parsed = parsed.set(drivername="postgresql+psycopg")
    kwargs: dict[str, Any] = {"echo": echo}
    if backend == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            # One shared connection, or every checkout would see a new, empty database.
            kwargs.update(poolclass=StaticPool, connect_args={"check_same_thread": False})
        else:
            kwargs.update(connect_args={"check_same_thread": False})
            if not parsed.database.startswith("file:"):
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    try:
        engine = create_engine(parsed, **kwargs)
    except ModuleNotFoundError as exc:
        raise ConfigError(
            f"the database driver for {redact_url(url)!r} is not installed ({exc.name})",
            hint="install concierge[postgres] (psycopg) for PostgreSQL",
        ) from exc
    except ArgumentError as exc:
        raise ConfigError(f"bad store URL {redact_url(url)!r}: {exc}", hint=f"use {SUPPORTED_STORE_URLS}") from exc
    if backend == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def create_schema(engine: Engine) -> None:
    """Create the store's tables where they do not exist yet."""
    metadata.create_all(engine)
