"""The retail store generator: same seed, same bytes; every record consistent; the CLI command."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from concierge.cli import app
from concierge.core.errors import ValidationError
from concierge.domains.retail.generator import STATUS_WEIGHTS, generate_store, write_store

Store = dict[str, Any]

NEVER_SHIPPED = {"pending", "pending (item modified)", "cancelled"}
SHIPPED = {"processed", "delivered", "return requested", "exchange requested"}


def cents(amount: float) -> int:
    """Money as whole cents, failing on anything finer than a cent."""
    value = round(amount * 100)
    assert abs(amount * 100 - value) < 1e-6 and amount == round(amount, 2), amount
    return value


def check_store(db: Store) -> None:
    """Every invariant a generated store promises (see the generator's module docstring)."""
    assert list(db) == ["products", "users", "orders"]
    variants: dict[str, tuple[str, Store, Store]] = {}
    for product_id, product in db["products"].items():
        assert re.fullmatch(r"\d{10}", product_id) and product["product_id"] == product_id
        assert list(product) == ["name", "product_id", "variants"]
        assert sum(v["available"] for v in product["variants"].values()) >= 2
        for item_id, variant in product["variants"].items():
            assert re.fullmatch(r"\d{10}", item_id) and variant["item_id"] == item_id
            assert list(variant) == ["item_id", "options", "available", "price"]
            assert item_id not in variants and item_id not in db["products"]
            cents(variant["price"])
            variants[item_id] = (product_id, product, variant)

    emails: set[str] = set()
    listed: Counter[str] = Counter()
    method_ids: set[str] = set()
    for user_id, user in db["users"].items():
        assert re.fullmatch(r"[a-z]+_[a-z]+_\d{4,}", user_id) and user["user_id"] == user_id
        assert list(user) == ["user_id", "name", "address", "email", "payment_methods", "orders"]
        assert list(user["address"]) == ["address1", "address2", "city", "country", "state", "zip"]
        assert user["email"] not in emails and re.fullmatch(r"[a-z]+\.[a-z]+\d{4,}@example\.(com|org|net)",
                                                               user["email"])
        emails.add(user["email"])
        assert user["payment_methods"]
        for method_id, method in user["payment_methods"].items():
            assert method["id"] == method_id and method_id not in method_ids
            method_ids.add(method_id)
            assert re.fullmatch(rf"{method['source']}_\d{{7}}", method_id)
            if method["source"] == "credit_card":
                assert set(method) == {"source", "id", "brand", "last_four"}
                assert re.fullmatch(r"\d{4}", method["last_four"])
            elif method["source"] == "gift_card":
                assert set(method) == {"source", "id", "balance"} and cents(method["balance"]) >= 0
            else:
                assert method["source"] == "paypal" and set(method) == {"source", "id"}
        listed.update(user["orders"])

    assert listed == Counter(list(db["orders"]))  # every order listed once, by its owner
    statuses = {name for name, _ in STATUS_WEIGHTS}
    for order_id, order in db["orders"].items():
        assert re.fullmatch(r"#W\d{7}", order_id) and order["order_id"] == order_id
        user = db["users"][order["user_id"]]
        assert order_id in user["orders"]
        assert order["status"] in statuses
        item_ids = [item["item_id"] for item in order["items"]]
        assert item_ids and len(set(item_ids)) == len(item_ids)
        for item in order["items"]:
            product_id, product, variant = variants[item["item_id"]]
            assert item["product_id"] == product_id and item["name"] == product["name"]
            assert item["price"] == variant["price"] and item["options"] == variant["options"]
        total = sum(cents(item["price"]) for item in order["items"])
        history = order["payment_history"]
        assert all(entry["payment_method_id"] in user["payment_methods"] for entry in history)
        assert history[0]["transaction_type"] == "payment"
        paid = sum(cents(e["amount"]) for e in history if e["transaction_type"] == "payment")
        refunded = sum(cents(e["amount"]) for e in history if e["transaction_type"] == "refund")
        if order["status"] == "cancelled":
            assert paid == refunded == total and order["cancel_reason"] in {"no longer needed", "ordered by mistake"}
        else:
            assert paid - refunded == total
        if order["status"] in NEVER_SHIPPED:
            assert order["fulfillments"] == []
        else:
            shipped = [i for f in order["fulfillments"] for i in f["item_ids"]]
            assert sorted(shipped) == sorted(item_ids)
            assert all(re.fullmatch(r"\d{12}", t) for f in order["fulfillments"] for t in f["tracking_id"])
        if order["status"] == "return requested":
            assert set(order["return_items"]) <= set(item_ids)
            assert order["return_payment_method_id"] in user["payment_methods"]
        if order["status"] == "exchange requested":
            old, new = order["exchange_items"], order["exchange_new_items"]
            assert set(old) <= set(item_ids) and len(old) == len(new)
            assert all(variants[i][2]["available"] for i in new)
            assert sorted(variants[i][0] for i in old) == sorted(variants[i][0] for i in new)
            difference = sum(cents(variants[i][2]["price"]) for i in new) - sum(cents(variants[i][2]["price"])
                                                                                 for i in old)
            assert cents(order["exchange_price_difference"]) == difference
            assert order["exchange_payment_method_id"] in user["payment_methods"]


@pytest.fixture(scope="module")
def small() -> Store:
    return generate_store(users=50, orders=120, seed=7)


def test_same_seed_gives_the_same_bytes_and_another_seed_does_not(tmp_path: Path) -> None:
    first = write_store(generate_store(users=40, orders=90, seed=11), tmp_path / "a").read_bytes()
    again = write_store(generate_store(users=40, orders=90, seed=11), tmp_path / "b").read_bytes()
    other = write_store(generate_store(users=40, orders=90, seed=12), tmp_path / "c").read_bytes()
    assert first == again and first != other
    expected = json.dumps(generate_store(users=40, orders=90, seed=11), indent=2, sort_keys=False) + "\n"
    assert first == expected.encode()


def test_a_small_store_is_consistent(small: Store) -> None:
    check_store(small)
    assert len(small["users"]) == 50 and len(small["orders"]) == 120
    assert json.loads(json.dumps(small)) == small
    variants = [v for p in small["products"].values() for v in p["variants"].values()]
    assert any(not v["available"] for v in variants)


def test_the_policy_travels_with_the_data(tmp_path: Path) -> None:
    path = write_store(generate_store(users=3, orders=0, seed=1), tmp_path / "store")
    assert path == tmp_path / "store" / "db.json"
    policy = Path(__file__).parents[2] / "src/concierge/domains/retail/policy.md"
    if policy.is_file():
        assert (tmp_path / "store" / "policy.md").read_bytes() == policy.read_bytes()
    assert sorted(p.name for p in (tmp_path / "store").iterdir()) in (["db.json"], ["db.json", "policy.md"])


def test_products_and_progress() -> None:
    seen: list[int] = []
    db = generate_store(users=30, orders=2500, seed=3, products=5, progress=seen.append)
    assert len(db["products"]) == 5
    assert seen == sorted(seen) and seen[-1] == 2530 and len(seen) >= 2
    check_store(db)


@pytest.mark.parametrize(("arguments", "fragment"), [
    ({"users": 0, "orders": 1, "seed": 1}, "users must be between 1"),
    ({"users": 1, "orders": -1, "seed": 1}, "orders must be between 0"),
    ({"users": 1, "orders": 1, "seed": "x"}, "seed must be a whole number"),
    ({"users": 1, "orders": 1, "seed": -4}, "seed must be a whole number of 0 or more"),
    ({"users": True, "orders": 1, "seed": 1}, "users must be a whole number"),
    ({"users": 1, "orders": 1, "seed": 1, "products": 0}, "products must be between 1"),
])
def test_bad_arguments_are_refused_with_a_hint(arguments: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment) as caught:
        generate_store(**arguments)
    assert caught.value.hint


def test_cli_writes_a_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["domain", "generate", "retail", "--users", "20", "--orders", "30",
                                      "--seed", "4"])
    assert result.exit_code == 0, result.output
    path = tmp_path / "stores" / "retail-4" / "db.json"
    assert "stores/retail-4/db.json" in result.output and "20 users" in result.output
    assert "30 orders" in result.output
    expected = write_store(generate_store(users=20, orders=30, seed=4), tmp_path / "direct")
    assert path.read_bytes() == expected.read_bytes()


@pytest.mark.parametrize(("arguments", "fragment"), [
    (["domain", "generate", "airline"], "unknown domain 'airline'"),
    (["domain", "generate", "retail", "--users", "0"], "users must be between 1"),
])
def test_cli_refuses_bad_input_with_exit_code_2(tmp_path: Path, arguments: list[str], fragment: str) -> None:
    result = CliRunner().invoke(app, [*arguments, "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert fragment in " ".join(result.output.split())
    assert not (tmp_path / "out").exists()


def test_a_larger_store_is_deterministic_and_mixed(tmp_path: Path) -> None:
    digests = []
    for name in ("a", "b"):
        db = generate_store(users=5000, orders=10000, seed=2024)
        digests.append(hashlib.sha256(write_store(db, tmp_path / name).read_bytes()).hexdigest())
    assert digests[0] == digests[1]
    assert len(db["users"]) == 5000 and len(db["orders"]) == 10000
    shares = Counter(order["status"] for order in db["orders"].values())
    total_weight = sum(weight for _, weight in STATUS_WEIGHTS)
    for status, weight in STATUS_WEIGHTS:
        assert abs(shares[status] / 10000 - weight / total_weight) < 0.02, (status, shares)
    check_store(db)


def test_the_bytes_do_not_depend_on_string_hashing(tmp_path: Path) -> None:
    script = ("import hashlib, pathlib, sys\n"
              "from concierge.domains.retail.generator import generate_store, write_store\n"
              "path = write_store(generate_store(users=200, orders=400, seed=9), pathlib.Path(sys.argv[1]))\n"
              "print(hashlib.sha256(path.read_bytes()).hexdigest())\n")
    digests = {
        subprocess.run([sys.executable, "-c", script, str(tmp_path / hash_seed)], check=True, capture_output=True,
                       text=True, env={**os.environ, "PYTHONHASHSEED": hash_seed}).stdout.strip()
        for hash_seed in ("1", "2")
    }
    in_process = write_store(generate_store(users=200, orders=400, seed=9), tmp_path / "here").read_bytes()
    assert digests == {hashlib.sha256(in_process).hexdigest()}
