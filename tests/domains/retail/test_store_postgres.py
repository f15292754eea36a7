"""The retail store on a real PostgreSQL (started by the suite): the same export, hash and HTTP rules as on SQLite."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import Engine

from concierge.domains.retail import (
    canonical_hash,
    create_schema,
    create_store_engine,
    export_db,
    import_db,
    import_tau2_folder,
)
from concierge.domains.retail.backend.app import create_app
from concierge.domains.retail.generator import generate_store

from .test_backend_rules import ANN, CROSS_USER, VIOLATIONS, _o, store_db
from .test_store_roundtrip import TAU2_DIR, needs_tau2


@pytest.fixture
def pg_engine(postgres_db) -> Iterator[Engine]:
    engine = create_store_engine(postgres_db.sync_url)
    assert engine.dialect.name == "postgresql"
    create_schema(engine)
    try:
        yield engine
    finally:
        engine.dispose()


def _state(engine: Engine) -> str:
    return canonical_hash(export_db(engine))


def test_generated_store_exports_the_same_on_postgres_and_sqlite(pg_engine: Engine) -> None:
    db = generate_store(users=30, orders=80, seed=3)
    import_db(pg_engine, db)
    sqlite = create_store_engine("sqlite://")
    try:
        create_schema(sqlite)
        import_db(sqlite, db)
        on_sqlite = export_db(sqlite)
    finally:
        sqlite.dispose()
    on_postgres = export_db(pg_engine)
    assert on_postgres == on_sqlite
    assert canonical_hash(on_postgres) == canonical_hash(on_sqlite) == canonical_hash(db)


async def test_backend_rules_keys_and_ownership_on_postgres(pg_engine: Engine) -> None:
    import_db(pg_engine, store_db())
    transport = httpx.ASGITransport(app=create_app(pg_engine))
    async with httpx.AsyncClient(transport=transport, base_url="http://retail") as client:
        before = _state(pg_engine)
        # Every broken rule is named, with tau2's wording, and changes nothing.
        for method, path, body, status, rule, message in VIOLATIONS:
            response = await client.request(method, path, json=body, headers={"X-Acting-User": ANN})
            assert response.status_code == status, (rule, response.text)
            error = response.json()["error"]
            assert error["rule"] == rule
            assert error["message"].startswith(message) if rule == "invalid_request" else error["message"] == message
        assert _state(pg_engine) == before
        # Another customer's records are out of reach.
        for method, path, body in CROSS_USER:
            response = await client.request(method, path, json=body, headers={"X-Acting-User": ANN})
            assert response.status_code == 403, (method, path, response.text)
            assert response.json()["error"]["rule"] == "not_your_account"
        assert _state(pg_engine) == before
        # A repeated Idempotency-Key cancels once and answers the same.
        headers = {"X-Acting-User": ANN, "Idempotency-Key": "pg-1"}
        first = await client.post(_o("#W1") + "/cancel", json={"reason": "no longer needed"}, headers=headers)
        after_first = _state(pg_engine)
        second = await client.post(_o("#W1") + "/cancel", json={"reason": "no longer needed"}, headers=headers)
        assert first.status_code == second.status_code == 200
        assert second.json() == first.json() and second.headers["Idempotent-Replayed"] == "true"
        assert after_first != before and _state(pg_engine) == after_first
        order = export_db(pg_engine)["orders"]["#W1"]
        assert (order["status"], order["cancel_reason"]) == ("cancelled", "no longer needed")
        assert [p["transaction_type"] for p in order["payment_history"]] == ["payment", "refund"]  # refunded once


@needs_tau2
def test_tau2_db_round_trips_to_the_reference_hash_on_postgres(postgres_db) -> None:
    folder = TAU2_DIR / "retail"
    meta = json.loads((folder / "reference_meta.json").read_text())
    engine = import_tau2_folder(folder, postgres_db.sync_url)
    try:
        exported = export_db(engine)
    finally:
        engine.dispose()
    assert canonical_hash(exported) == meta["original_db_sha256"]


def test_a_plain_postgresql_url_uses_the_installed_sync_driver(postgres_db) -> None:
    plain = postgres_db.sync_url.replace("postgresql+psycopg://", "postgresql://")
    engine = create_store_engine(plain)
    try:
        assert engine.url.drivername == "postgresql+psycopg"
        create_schema(engine)
        import_db(engine, store_db())
        assert export_db(engine)["orders"]["#W1"]["status"] == "pending"
    finally:
        engine.dispose()
