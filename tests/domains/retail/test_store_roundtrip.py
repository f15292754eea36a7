"""The retail store imports tau2's database and exports it unchanged, so hashes compare with tau2's."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from concierge.core.errors import ConfigError, ValidationError
from concierge.domains.retail import (
    canonical_hash,
    create_schema,
    create_store_engine,
    export_db,
    from_cents,
    import_db,
    import_tau2_folder,
    load_tau2_db,
    read_policy,
    to_cents,
)
from concierge.domains.retail.store import schema

TAU2_DIR = Path(
    os.environ.get("TAU2_DATA_DIR", Path(__file__).resolve().parents[3] / ".." / "shared" / "tau2")
).resolve()
needs_tau2 = pytest.mark.skipif(
    not (TAU2_DIR / "retail" / "db.json").is_file(),
    reason=f"tau2 reference data not found at {TAU2_DIR} (set TAU2_DATA_DIR)",
)


def _address(n: int) -> dict[str, str]:
    return {"address1": f"{n} Main Street", "address2": f"Suite {n}", "city": "Austin", "country": "USA",
            "state": "TX", "zip": f"7870{n}"}


def _item(item_id: str, price: float, color: str) -> dict[str, Any]:
    return {"name": "Lamp", "product_id": "100", "item_id": item_id, "price": price, "options": {"color": color}}


def small_db() -> dict[str, Any]:
    """Every shape the importer must keep: each payment method kind, optional order fields, list order."""
    return {
        "products": {"100": {"name": "Lamp", "product_id": "100", "variants": {
            "201": {"item_id": "201", "options": {"color": "red", "bulb": "LED"}, "available": True, "price": 49.99},
            "200": {"item_id": "200", "options": {"color": "blue", "bulb": "LED"}, "available": False,
                    "price": 37.49},
        }}},
        "users": {
            "ann_1": {"user_id": "ann_1", "name": {"first_name": "Ann", "last_name": "Lee"}, "address": _address(1),
                      "email": "ann@example.com", "payment_methods": {
                          "credit_card_1": {"source": "credit_card", "id": "credit_card_1", "brand": "visa",
                                            "last_four": "4242"},
                          "gift_card_1": {"source": "gift_card", "id": "gift_card_1", "balance": 0.1},
                      }, "orders": ["#W2", "#W1"]},
            "bo_2": {"user_id": "bo_2", "name": {"first_name": "Bo", "last_name": "Kim"}, "address": _address(2),
                     "email": "bo@example.com", "payment_methods": {
                         "paypal_2": {"source": "paypal", "id": "paypal_2", "nickname": "work"},
                     }, "orders": []},
        },
        "orders": {
            "#W1": {"order_id": "#W1", "user_id": "ann_1", "address": _address(1),
                    "items": [_item("201", 49.99, "red"), _item("201", 49.99, "red")], "status": "pending",
                    "fulfillments": [], "payment_history": [
                        {"transaction_type": "payment", "amount": 99.98, "payment_method_id": "credit_card_1"}]},
            "#W2": {"order_id": "#W2", "user_id": "ann_1", "address": _address(3),
                    "items": [_item("201", 49.99, "red")], "status": "exchange requested",
                    "fulfillments": [{"tracking_id": ["123456789012"], "item_ids": ["201"]}],
                    "payment_history": [
                        {"transaction_type": "payment", "amount": 49.99, "payment_method_id": "gift_card_1"},
                        {"transaction_type": "refund", "amount": 12.5, "payment_method_id": "gift_card_1"}],
                    "cancel_reason": "no longer needed", "exchange_items": ["201"], "exchange_new_items": ["200"],
                    "exchange_payment_method_id": "gift_card_1", "exchange_price_difference": -12.5,
                    "return_items": ["201"], "return_payment_method_id": "credit_card_1"},
        },
    }


@pytest.fixture
def engine() -> Engine:
    engine = create_store_engine("sqlite://")
    create_schema(engine)
    return engine


def _count(engine: Engine, table: Any) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def test_small_db_round_trips_exactly(engine: Engine) -> None:
    db = small_db()
    counts = import_db(engine, copy.deepcopy(db))
    assert (counts.products, counts.variants, counts.users, counts.payment_methods, counts.orders,
            counts.order_items, counts.fulfillments, counts.payment_history) == (1, 2, 2, 3, 2, 3, 1, 3)
    exported = export_db(engine)
    assert exported == db
    assert json.dumps(exported) == json.dumps(db)  # list and key order too, not only equality
    assert canonical_hash(exported) == canonical_hash(db)
    assert "cancel_reason" not in exported["orders"]["#W1"]
    with engine.connect() as conn:
        cents = conn.execute(select(schema.orders.c.exchange_price_difference_cents)
                             .where(schema.orders.c.order_id == "#W2")).scalar_one()
    assert cents == -1250


def test_null_optional_order_fields_mean_not_set(engine: Engine) -> None:
    db = small_db()
    full_dump = copy.deepcopy(db)
    full_dump["orders"]["#W1"].update(dict.fromkeys(("cancel_reason", "exchange_items", "return_items")))
    import_db(engine, full_dump)
    assert export_db(engine) == db


def test_importing_twice_is_refused(engine: Engine) -> None:
    import_db(engine, small_db())
    with pytest.raises(ValidationError, match="already holds data"):
        import_db(engine, small_db())
    assert _count(engine, schema.orders) == 2 and _count(engine, schema.order_items) == 3


@pytest.mark.parametrize(("change", "message"), [
    (lambda db: db["orders"]["#W1"].update(gift_wrap=True), r"orders\['#W1'\] has keys .*gift_wrap"),
    (lambda db: db["users"]["bo_2"]["orders"].append("#W1"), "already listed"),
    (lambda db: db["users"]["ann_1"]["orders"].append("#W9"), "unknown order '#W9'"),
    (lambda db: db["products"]["100"]["variants"]["200"].update(item_id="999"), "keyed '200'"),
    (lambda db: db["orders"]["#W1"]["items"][0].pop("price"), r"items\[0\] lacks price"),
    (lambda db: db.pop("orders"), "lacks orders"),
])
def test_data_the_store_cannot_keep_is_refused_by_name(engine: Engine, change: Any, message: str) -> None:
    db = small_db()
    change(db)
    with pytest.raises(ValidationError, match=message):
        import_db(engine, db)
    assert _count(engine, schema.products) == 0


def test_money_is_cents_half_up() -> None:
    assert to_cents(0.285) == 29 and to_cents(-12.5) == -1250 and to_cents(0.04999999999999716) == 5
    assert from_cents(to_cents(49.99)) == 49.99 and from_cents(to_cents(1000.0)) == 1000.0


def test_missing_files_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no tau2 database"):
        load_tau2_db(tmp_path / "db.json")
    (tmp_path / "db.json").write_text('{"tasks": []}')
    with pytest.raises(ValidationError, match="lacks products"):
        load_tau2_db(tmp_path / "db.json")
    with pytest.raises(ConfigError, match="no policy.md"):
        read_policy(tmp_path)
    with pytest.raises(ConfigError, match="unsupported store URL"):
        create_store_engine("mysql://user:secret@host/db")


@needs_tau2
def test_tau2_db_round_trips_to_the_reference_hash(tmp_path: Path) -> None:
    folder = TAU2_DIR / "retail"
    original = json.loads((folder / "db.json").read_text())
    meta = json.loads((folder / "reference_meta.json").read_text())
    engine = import_tau2_folder(folder, f"sqlite:///{tmp_path / 'store.db'}")
    try:
        counts = {table.name: _count(engine, table)
                  for table in (schema.products, schema.variants, schema.users, schema.orders)}
        assert counts == {"products": 50, "variants": 591, "users": 500, "orders": 1000}
        exported = export_db(engine)
    finally:
        engine.dispose()
    assert exported == original
    assert canonical_hash(exported) == meta["original_db_sha256"]
    assert canonical_hash(exported, cents=True) == canonical_hash(original, cents=True)
    assert read_policy(folder).strip()
