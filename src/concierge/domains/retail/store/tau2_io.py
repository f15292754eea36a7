"""Reading and writing the retail database in tau2-bench's JSON shape.

Users point the store at any tau2-format domain folder (`db.json`, `policy.md`); the importer
turns the JSON into table rows and the exporter turns the rows back into the same JSON, so the
store's state can be hashed and compared with tau2's the way tau2 itself compares databases.

The importer refuses what it could not export again unchanged (unknown keys, a dict key that
differs from the object's own id, an order listed under a user it does not belong to) with a
`ValidationError` naming the place, rather than dropping data on the floor.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, insert, select
from sqlalchemy.exc import IntegrityError

from concierge.core.errors import ConfigError, ValidationError

from .money import from_cents, to_cents
from .schema import (
    TABLES,
    create_schema,
    create_store_engine,
    fulfillments,
    order_items,
    orders,
    payment_history,
    payment_methods,
    products,
    users,
    variants,
)

ADDRESS_KEYS: tuple[str, ...] = ("address1", "address2", "city", "country", "state", "zip")
# tau2's optional Order fields, in its model's order; present in the JSON only once a tool set them.
ORDER_OPTIONAL_KEYS: tuple[str, ...] = (
    "cancel_reason", "exchange_items", "exchange_new_items", "exchange_payment_method_id",
    "exchange_price_difference", "return_items", "return_payment_method_id",
)
_ORDER_LIST_FIELDS = ("exchange_items", "exchange_new_items", "return_items")
_ORDER_STR_FIELDS = ("cancel_reason", "exchange_payment_method_id", "return_payment_method_id")
_TOP_KEYS = ("products", "users", "orders")

Json = dict[str, Any]


@dataclass(frozen=True, slots=True)
class ImportCounts:
    """How many rows an import wrote to each table."""

    products: int
    variants: int
    users: int
    payment_methods: int
    orders: int
    order_items: int
    fulfillments: int
    payment_history: int


# --- validation helpers: each names the offending place, e.g. users['x'].address.zip ---------------


def _fail(path: str, problem: str) -> ValidationError:
    return ValidationError(f"not a tau2 retail database: {path} {problem}",
                           hint="the store imports tau2-bench's retail db.json shape")


def _obj(value: Any, path: str) -> Json:
    if not isinstance(value, dict):
        raise _fail(path, f"should be an object, found {type(value).__name__}")
    return value


def _keys(obj: Json, path: str, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> None:
    missing = [key for key in required if key not in obj]
    if missing:
        raise _fail(path, f"lacks {', '.join(missing)}")
    unknown = sorted(set(obj) - set(required) - set(optional))
    if unknown:
        raise _fail(path, f"has keys the store does not keep: {', '.join(unknown)}")


def _str(obj: Json, key: str, path: str) -> str:
    value = obj[key]
    if not isinstance(value, str):
        raise _fail(f"{path}.{key}", f"should be a string, found {type(value).__name__}")
    return value


def _cents(obj: Json, key: str, path: str) -> int:
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(f"{path}.{key}", f"should be a number, found {type(value).__name__}")
    return to_cents(value)


def _str_list(obj: Json, key: str, path: str) -> list[str]:
    value = obj[key]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _fail(f"{path}.{key}", "should be a list of strings")
    return value


def _list(obj: Json, key: str, path: str) -> list[Json]:
    value = obj[key]
    if not isinstance(value, list):
        raise _fail(f"{path}.{key}", f"should be a list, found {type(value).__name__}")
    return [_obj(item, f"{path}.{key}[{i}]") for i, item in enumerate(value)]


def _keyed(container: Json, id_key: str, path: str) -> list[tuple[str, Json]]:
    """The objects of a tau2 id-keyed dict, checking that each key is the object's own id."""
    entries = []
    for key, value in _obj(container, path).items():
        item_path = f"{path}[{key!r}]"
        obj = _obj(value, item_path)
        if id_key in obj and obj[id_key] != key:
            raise _fail(item_path, f"is keyed {key!r} but its {id_key} is {obj[id_key]!r}")
        entries.append((key, obj))
    return entries


def _address(obj: Json, path: str) -> dict[str, str]:
    address = _obj(obj["address"], f"{path}.address")
    _keys(address, f"{path}.address", ADDRESS_KEYS)
    return {key: _str(address, key, f"{path}.address") for key in ADDRESS_KEYS}


# --- import -------------------------------------------------------------------------------------


def _check_top(db: Any) -> Json:
    db = _obj(db, "the document")
    _keys(db, "the document", _TOP_KEYS)
    return db


def _product_rows(db: Json, rows: dict[str, list[Json]]) -> None:
    for position, (product_id, product) in enumerate(_keyed(db["products"], "product_id", "products")):
        path = f"products[{product_id!r}]"
        _keys(product, path, ("name", "product_id", "variants"))
        rows["products"].append({"product_id": product_id, "name": _str(product, "name", path),
                                 "position": position})
        for v_position, (item_id, variant) in enumerate(_keyed(product["variants"], "item_id", f"{path}.variants")):
            v_path = f"{path}.variants[{item_id!r}]"
            _keys(variant, v_path, ("item_id", "options", "available", "price"))
            if not isinstance(variant["available"], bool):
                raise _fail(f"{v_path}.available", "should be true or false")
            rows["variants"].append({
                "item_id": item_id, "product_id": product_id, "options": _obj(variant["options"], f"{v_path}.options"),
                "available": variant["available"], "price_cents": _cents(variant, "price", v_path),
                "position": v_position,
            })


def _payment_method_row(user_id: str, method: Json, path: str, position: int) -> Json:
    _keys(method, path, ("source", "id"), tuple(method))
    row: Json = {"id": _str(method, "id", path), "user_id": user_id, "source": _str(method, "source", path),
                 "brand": None, "last_four": None, "balance_cents": None, "position": position}
    extra: Json = {}
    for key, value in method.items():
        if key in ("id", "source"):
            continue
        if key in ("brand", "last_four") and isinstance(value, str):
            row[key] = value
        elif key == "balance" and isinstance(value, int | float) and not isinstance(value, bool):
            row["balance_cents"] = to_cents(value)
        else:
            extra[key] = value  # any other key (or an odd value) is kept verbatim
    row["extra"] = extra or None
    return row


def _user_rows(db: Json, rows: dict[str, list[Json]]) -> dict[str, tuple[str, int]]:
    """User and payment-method rows; returns where each order sits in its user's `orders` list."""
    listed: dict[str, tuple[str, int]] = {}
    for position, (user_id, user) in enumerate(_keyed(db["users"], "user_id", "users")):
        path = f"users[{user_id!r}]"
        _keys(user, path, ("user_id", "name", "address", "email", "payment_methods", "orders"))
        name = _obj(user["name"], f"{path}.name")
        _keys(name, f"{path}.name", ("first_name", "last_name"))
        rows["users"].append({
            "user_id": user_id, "first_name": _str(name, "first_name", f"{path}.name"),
            "last_name": _str(name, "last_name", f"{path}.name"), "email": _str(user, "email", path),
            **_address(user, path), "position": position,
        })
        methods = _keyed(user["payment_methods"], "id", f"{path}.payment_methods")
        for m_position, (method_id, method) in enumerate(methods):
            m_path = f"{path}.payment_methods[{method_id!r}]"
            rows["payment_methods"].append(_payment_method_row(user_id, method, m_path, m_position))
        for o_position, order_id in enumerate(_str_list(user, "orders", path)):
            if order_id in listed:
                raise _fail(f"{path}.orders", f"lists {order_id!r}, already listed by {listed[order_id][0]!r}")
            listed[order_id] = (user_id, o_position)
    return listed


def _order_rows(db: Json, rows: dict[str, list[Json]], listed: dict[str, tuple[str, int]]) -> None:
    for position, (order_id, order) in enumerate(_keyed(db["orders"], "order_id", "orders")):
        path = f"orders[{order_id!r}]"
        _keys(order, path, ("order_id", "user_id", "address", "items", "status", "fulfillments",
                            "payment_history"), ORDER_OPTIONAL_KEYS)
        user_id = _str(order, "user_id", path)
        if user_id not in db["users"]:
            raise _fail(f"{path}.user_id", f"names an unknown user {user_id!r}")
        owner, user_position = listed.pop(order_id, (user_id, None))
        if owner != user_id:
            raise _fail(path, f"belongs to {user_id!r} but is listed in the orders of {owner!r}")
        row: Json = {"order_id": order_id, "user_id": user_id, **_address(order, path),
                     "status": _str(order, "status", path), "position": position, "user_position": user_position}
        # A null optional field means "not set", as in tau2's full model dump.
        present = {key for key in ORDER_OPTIONAL_KEYS if order.get(key) is not None}
        for key in _ORDER_STR_FIELDS:
            row[key] = _str(order, key, path) if key in present else None
        for key in _ORDER_LIST_FIELDS:
            row[key] = _str_list(order, key, path) if key in present else None
        row["exchange_price_difference_cents"] = (
            _cents(order, "exchange_price_difference", path) if "exchange_price_difference" in present else None
        )
        rows["orders"].append(row)
        for i, item in enumerate(_list(order, "items", path)):
            i_path = f"{path}.items[{i}]"
            _keys(item, i_path, ("name", "product_id", "item_id", "price", "options"))
            rows["order_items"].append({
                "order_id": order_id, "position": i, "item_id": _str(item, "item_id", i_path),
                "product_id": _str(item, "product_id", i_path), "name": _str(item, "name", i_path),
                "price_cents": _cents(item, "price", i_path), "options": _obj(item["options"], f"{i_path}.options"),
            })
        for i, fulfillment in enumerate(_list(order, "fulfillments", path)):
            f_path = f"{path}.fulfillments[{i}]"
            _keys(fulfillment, f_path, ("tracking_id", "item_ids"))
            rows["fulfillments"].append({
                "order_id": order_id, "position": i, "tracking_ids": _str_list(fulfillment, "tracking_id", f_path),
                "item_ids": _str_list(fulfillment, "item_ids", f_path),
            })
        for i, payment in enumerate(_list(order, "payment_history", path)):
            p_path = f"{path}.payment_history[{i}]"
            _keys(payment, p_path, ("transaction_type", "amount", "payment_method_id"))
            rows["payment_history"].append({
                "order_id": order_id, "position": i,
                "transaction_type": _str(payment, "transaction_type", p_path),
                "amount_cents": _cents(payment, "amount", p_path),
                "payment_method_id": _str(payment, "payment_method_id", p_path),
            })
    if listed:
        order_id, (user_id, _) = next(iter(listed.items()))
        raise _fail(f"users[{user_id!r}].orders", f"lists an unknown order {order_id!r}")


def import_db(engine: Engine, db: Json) -> ImportCounts:
    """Write a tau2 retail database into an empty store, in one transaction."""
    db = _check_top(db)
    rows: dict[str, list[Json]] = {table.name: [] for table in TABLES}
    _product_rows(db, rows)
    listed = _user_rows(db, rows)
    _order_rows(db, rows, listed)
    try:
        with engine.begin() as conn:
            for table in TABLES:
                if conn.execute(select(table).limit(1)).first() is not None:
                    raise ValidationError(
                        f"the store already holds data (table {table.name!r} is not empty)",
                        hint="import into a fresh database; the importer never merges or duplicates",
                    )
            for table in TABLES:
                if rows[table.name]:
                    conn.execute(insert(table), rows[table.name])
    except IntegrityError as exc:
        raise ValidationError(f"the data conflicts with the store: {exc.orig}",
                              hint="import into a fresh database; ids must be unique") from exc
    return ImportCounts(**{name: len(table_rows) for name, table_rows in rows.items()})


# --- export -------------------------------------------------------------------------------------


def _address_of(row: Any) -> dict[str, str]:
    return {key: row[key] for key in ADDRESS_KEYS}


def export_db(engine: Engine) -> Json:
    """The store's contents in tau2's JSON shape, with optional order fields only where set."""
    with engine.connect() as conn:
        def fetch(table: Any) -> list[Any]:
            return list(conn.execute(select(table).order_by(table.c.position)).mappings())

        product_rows, variant_rows = fetch(products), fetch(variants)
        user_rows, method_rows = fetch(users), fetch(payment_methods)
        order_rows, item_rows = fetch(orders), fetch(order_items)
        fulfillment_rows, payment_rows = fetch(fulfillments), fetch(payment_history)

    out_products: Json = {row["product_id"]: {"name": row["name"], "product_id": row["product_id"], "variants": {}}
                          for row in product_rows}
    for row in variant_rows:
        out_products[row["product_id"]]["variants"][row["item_id"]] = {
            "item_id": row["item_id"], "options": row["options"], "available": row["available"],
            "price": from_cents(row["price_cents"]),
        }

    out_users: Json = {
        row["user_id"]: {
            "user_id": row["user_id"], "name": {"first_name": row["first_name"], "last_name": row["last_name"]},
            "address": _address_of(row), "email": row["email"], "payment_methods": {}, "orders": [],
        }
        for row in user_rows
    }
    for row in method_rows:
        method: Json = {"source": row["source"], "id": row["id"]}
        method.update((key, row[key]) for key in ("brand", "last_four") if row[key] is not None)
        if row["balance_cents"] is not None:
            method["balance"] = from_cents(row["balance_cents"])
        method.update(row["extra"] or {})
        out_users[row["user_id"]]["payment_methods"][row["id"]] = method

    out_orders: Json = {}
    for row in order_rows:
        order: Json = {"order_id": row["order_id"], "user_id": row["user_id"], "address": _address_of(row),
                       "items": [], "status": row["status"], "fulfillments": [], "payment_history": []}
        optional = {key: row[key] for key in ORDER_OPTIONAL_KEYS if key != "exchange_price_difference"}
        difference = row["exchange_price_difference_cents"]
        optional["exchange_price_difference"] = None if difference is None else from_cents(difference)
        order.update((key, optional[key]) for key in ORDER_OPTIONAL_KEYS if optional[key] is not None)
        out_orders[row["order_id"]] = order
    for row in sorted((r for r in order_rows if r["user_position"] is not None), key=lambda r: r["user_position"]):
        out_users[row["user_id"]]["orders"].append(row["order_id"])
    for row in item_rows:
        out_orders[row["order_id"]]["items"].append({
            "name": row["name"], "product_id": row["product_id"], "item_id": row["item_id"],
            "price": from_cents(row["price_cents"]), "options": row["options"],
        })
    for row in fulfillment_rows:
        out_orders[row["order_id"]]["fulfillments"].append(
            {"tracking_id": row["tracking_ids"], "item_ids": row["item_ids"]})
    for row in payment_rows:
        out_orders[row["order_id"]]["payment_history"].append({
            "transaction_type": row["transaction_type"], "amount": from_cents(row["amount_cents"]),
            "payment_method_id": row["payment_method_id"],
        })
    return {"products": out_products, "users": out_users, "orders": out_orders}


# --- hashing and files --------------------------------------------------------------------------


def _round_floats(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 2)
    if isinstance(value, dict):
        return {key: _round_floats(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_round_floats(item) for item in value]
    return value


def canonical_hash(db: Json, *, cents: bool = False) -> str:
    """tau2's comparison hash; `cents=True` rounds every float to 2 decimals first, as a till keeps money."""
    data = _round_floats(db) if cents else db
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode("utf-8")).hexdigest()


def load_tau2_db(path: Path) -> Json:
    """Read a tau2 retail `db.json`, failing with a message that says what is wrong with it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no tau2 database at {path}", hint="point at the db.json of a tau2-format domain folder")
    try:
        with path.open(encoding="utf-8") as handle:
            db = json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValidationError(f"{path} is not valid JSON: {exc}", hint="expected tau2's retail db.json") from exc
    try:
        return _check_top(db)
    except ValidationError as exc:
        raise ValidationError(f"{path}: {exc.message}", hint=exc.hint) from exc


def read_policy(folder: Path) -> str:
    """The domain policy (`policy.md`) shipped beside a tau2-format database."""
    path = Path(folder) / "policy.md"
    if not path.is_file():
        raise ConfigError(f"no policy.md in {folder}", hint="a tau2-format domain folder holds db.json and policy.md")
    return path.read_text(encoding="utf-8")


def import_tau2_folder(folder: Path, url: str) -> Engine:
    """Open the store at `url`, create its tables and import the folder's `db.json` into it."""
    db = load_tau2_db(Path(folder) / "db.json")
    engine = create_store_engine(url)
    try:
        create_schema(engine)
        import_db(engine, db)
    except BaseException:
        engine.dispose()
        raise
    return engine
