"""A Stripe-like payment service for tests: a real HTTP peer with its own SQLite file.

Tests run it as a separate process (`PaymentService` in `services.py`) so that the runtime
under test talks to it over real sockets and can be killed independently of it. It offers
the shapes a transactional executor must handle: an idempotent write (`POST /charges`,
`POST /refunds`, honouring `Idempotency-Key` the way Stripe does), a non-idempotent write
that can be looked up by reference (`POST /legacy/charges`, `GET /charges?reference=`) and a
read (`GET /accounts/{account}/balance`).

Faults are queued through `POST /_admin/faults` and consumed by the next matching request.
A fault either strikes before the effect (nothing is applied) or after it (the effect and its
idempotency record are committed, then the answer is delayed, lost or turned into a 500).
While a faulted request is held open it is listed by `GET /_admin/inflight`, so a test can
kill its client at exactly the moment it wants. `GET /_admin/effects` is the ground truth.

Run it with `python -m concierge.testing.payment_service --db PATH --port N`.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import sqlite3
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.types import Receive, Scope, Send

SCHEMA = """
CREATE TABLE IF NOT EXISTS payments (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('charge', 'refund')),
    account TEXT NOT NULL,
    charge_id TEXT NULL,
    amount_cents INTEGER NOT NULL,
    reference TEXT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS payments_reference ON payments (reference);
CREATE INDEX IF NOT EXISTS payments_charge ON payments (charge_id);
CREATE INDEX IF NOT EXISTS payments_account ON payments (account);
CREATE TABLE IF NOT EXISTS idempotency (
    key TEXT PRIMARY KEY,
    endpoint TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    status_code INTEGER NULL,
    body TEXT NULL,
    created_at REAL NOT NULL
);
"""

FaultKind = Literal["timeout_before", "timeout_after", "reset_after", "error_500_before", "error_500_after"]
BEFORE_EFFECT: frozenset[str] = frozenset({"timeout_before", "error_500_before"})
# A timeout has to outlast the client's deadline; the other faults need no hold unless asked.
DEFAULT_DELAY_S: dict[str, float] = {"timeout_before": 1.0, "timeout_after": 1.0, "reset_after": 0.0,
                                     "error_500_before": 0.0, "error_500_after": 0.0}
_INCOMPLETE = "ASGI callable returned without completing response."

Cents = Annotated[int, Field(strict=True, gt=0)]


class ChargeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    account: Annotated[str, Field(min_length=1)]
    amount_cents: Cents
    reference: str | None = None


class RefundIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    charge_id: Annotated[str, Field(min_length=1)]
    amount_cents: Cents


class FaultIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: FaultKind
    path: str | None = None
    method: str | None = None
    delay_s: Annotated[float, Field(ge=0)] | None = None


class FaultsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    faults: list[FaultIn]


@dataclass(frozen=True, slots=True)
class Outcome:
    """A response as the service decided it, before any fault changes how it is delivered."""

    status: int
    body: dict[str, Any]
    replayed: bool = False

    def response(self) -> JSONResponse:
        headers = {"Idempotent-Replayed": "true"} if self.replayed else None
        return JSONResponse(self.body, status_code=self.status, headers=headers)


def _new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:16]}"


def _charge_view(row: sqlite3.Row) -> dict[str, Any]:
    return {"id": row["id"], "kind": "charge", "account": row["account"], "amount_cents": row["amount_cents"],
            "reference": row["reference"], "status": "succeeded"}


def _refund_view(row: sqlite3.Row) -> dict[str, Any]:
    return {"id": row["id"], "kind": "refund", "charge_id": row["charge_id"], "amount_cents": row["amount_cents"],
            "status": "succeeded"}


class Store:
    """The service's SQLite file: one connection, serialised by a lock, writes in BEGIN IMMEDIATE."""

    def __init__(self, path: str | Path) -> None:
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=10.0)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    # --- idempotency keys -------------------------------------------------------------------

    def claim(self, key: str, endpoint: str, request_hash: str) -> Outcome | None:
        """Record `key` as in progress; None when claimed, else the answer an earlier use dictates."""
        with self._write() as conn:
            row = conn.execute("SELECT * FROM idempotency WHERE key = ?", (key,)).fetchone()
            if row is None:
                conn.execute("INSERT INTO idempotency (key, endpoint, request_hash, created_at) VALUES (?, ?, ?, ?)",
                             (key, endpoint, request_hash, time.time()))
                return None
        if row["endpoint"] != endpoint or row["request_hash"] != request_hash:
            return Outcome(422, {"error": "idempotency_key_reused"})
        if row["status_code"] is None:
            return Outcome(409, {"error": "request_in_progress"})
        return Outcome(row["status_code"], json.loads(row["body"]), replayed=True)

    def release(self, key: str) -> None:
        """Forget an in-progress key whose request applied nothing, so a retry may run."""
        with self._write() as conn:
            conn.execute("DELETE FROM idempotency WHERE key = ? AND status_code IS NULL", (key,))

    @staticmethod
    def _settle(conn: sqlite3.Connection, key: str | None, outcome: Outcome) -> Outcome:
        if key is not None:
            conn.execute("UPDATE idempotency SET status_code = ?, body = ? WHERE key = ?",
                         (outcome.status, json.dumps(outcome.body), key))
        return outcome

    # --- effects ----------------------------------------------------------------------------

    def charge(self, body: ChargeIn, key: str | None) -> Outcome:
        """Create a charge; with a key, its answer is stored in the same transaction."""
        with self._write() as conn:
            charge_id = _new_id("ch")
            conn.execute("INSERT INTO payments (id, kind, account, amount_cents, reference, created_at) "
                         "VALUES (?, 'charge', ?, ?, ?, ?)",
                         (charge_id, body.account, body.amount_cents, body.reference, time.time()))
            row = conn.execute("SELECT * FROM payments WHERE id = ?", (charge_id,)).fetchone()
            return self._settle(conn, key, Outcome(201, _charge_view(row)))

    def refund(self, body: RefundIn, key: str | None) -> Outcome:
        """Refund part of a charge; the check and the insert share one write transaction."""
        with self._write() as conn:
            charge = conn.execute("SELECT * FROM payments WHERE id = ? AND kind = 'charge'",
                                  (body.charge_id,)).fetchone()
            if charge is None:
                return self._settle(conn, key, Outcome(404, {"error": "no_such_charge"}))
            (refunded,) = conn.execute("SELECT COALESCE(SUM(amount_cents), 0) FROM payments "
                                       "WHERE kind = 'refund' AND charge_id = ?", (body.charge_id,)).fetchone()
            if refunded + body.amount_cents > charge["amount_cents"]:
                return self._settle(conn, key, Outcome(400, {"error": "refund_exceeds_charge"}))
            refund_id = _new_id("re")
            conn.execute("INSERT INTO payments (id, kind, account, charge_id, amount_cents, created_at) "
                         "VALUES (?, 'refund', ?, ?, ?, ?)",
                         (refund_id, charge["account"], body.charge_id, body.amount_cents, time.time()))
            row = conn.execute("SELECT * FROM payments WHERE id = ?", (refund_id,)).fetchone()
            return self._settle(conn, key, Outcome(201, _refund_view(row)))

    # --- reads ------------------------------------------------------------------------------

    def get_charge(self, charge_id: str) -> Outcome:
        rows = self._read("SELECT * FROM payments WHERE id = ? AND kind = 'charge'", (charge_id,))
        return Outcome(200, _charge_view(rows[0])) if rows else Outcome(404, {"error": "no_such_charge"})

    def _list(self, kind: str, column: str, value: str | None) -> Outcome:
        sql, params = "SELECT * FROM payments WHERE kind = ?", [kind]
        if value is not None:
            sql, params = sql + f" AND {column} = ?", [kind, value]
        view = _charge_view if kind == "charge" else _refund_view
        return Outcome(200, {"data": [view(r) for r in self._read(sql + " ORDER BY created_at, rowid", params)]})

    def charges(self, reference: str | None) -> Outcome:
        return self._list("charge", "reference", reference)

    def refunds(self, charge_id: str | None) -> Outcome:
        return self._list("refund", "charge_id", charge_id)

    def balance(self, account: str) -> Outcome:
        (balance,) = self._read("SELECT COALESCE(SUM(CASE kind WHEN 'charge' THEN amount_cents "
                                "ELSE -amount_cents END), 0) FROM payments WHERE account = ?", (account,))[0]
        return Outcome(200, {"account": account, "balance_cents": balance})

    def effects(self, reference: str | None) -> list[dict[str, Any]]:
        sql, params = "SELECT * FROM payments", []
        if reference is not None:
            sql, params = sql + " WHERE reference = ?", [reference]
        return [dict(r) for r in self._read(sql + " ORDER BY created_at, rowid", params)]

    def reset(self) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM payments")
            conn.execute("DELETE FROM idempotency")


@dataclass
class Faults:
    """The queued faults and the faulted requests currently held open (event-loop thread only)."""

    queue: deque[FaultIn] = field(default_factory=deque)
    inflight: dict[int, dict[str, str]] = field(default_factory=dict)
    _next: int = 0

    def take(self, method: str, path: str) -> FaultIn | None:
        """The first queued fault for this request, removed.

        A fault names an exact path (any method, so reads can be faulted too) or none (any
        POST); an explicit `method` narrows either.
        """
        for fault in self.queue:
            if fault.path is not None and fault.path != path:
                continue
            wanted = fault.method.upper() if fault.method else (None if fault.path else "POST")
            if wanted is None or wanted == method:
                self.queue.remove(fault)
                return fault
        return None

    async def hold(self, fault: FaultIn, path: str, stage: str) -> None:
        """Keep the request open for the fault's delay, visible in /_admin/inflight meanwhile."""
        self._next += 1
        token = self._next
        self.inflight[token] = {"path": path, "kind": fault.kind, "stage": stage}
        try:
            delay = fault.delay_s if fault.delay_s is not None else DEFAULT_DELAY_S[fault.kind]
            if delay > 0:
                await asyncio.sleep(delay)
        finally:
            del self.inflight[token]


class BrokenResponse(Response):
    """Headers and part of the body, then the connection is dropped: a reset after the effect."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(json.dumps(outcome.body).encode(), status_code=outcome.status,
                         media_type="application/json")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": self.body[: len(self.body) // 2], "more_body": True})
        # Returning before the last body message makes the server close the connection.


def _request_hash(body: BaseModel) -> str:
    return hashlib.sha256(json.dumps(body.model_dump(), sort_keys=True).encode()).hexdigest()


def create_app(db_path: str | Path) -> FastAPI:
    """The payment service over the SQLite file at `db_path` (created if missing)."""
    store = Store(db_path)
    faults = Faults()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        store.close()

    app = FastAPI(title="concierge test payment service", lifespan=lifespan)
    app.state.store = store
    app.state.faults = faults

    async def serve(request: Request, work: Callable[[], Outcome], key: str | None = None,
                    body: BaseModel | None = None) -> Response:
        """Run one request through the idempotency key, the effect and any fault queued for it."""
        path = request.url.path
        fault = faults.take(request.method, path)
        outcome: Outcome | None = None
        claimed: str | None = None  # the key this request holds "in progress", to free if nothing is applied
        if key is not None and body is not None:
            outcome = await asyncio.to_thread(store.claim, key, path, _request_hash(body))
            claimed = key if outcome is None else None
        if fault is not None and fault.kind in BEFORE_EFFECT:
            try:
                await faults.hold(fault, path, "before_effect")
            finally:
                if claimed is not None:
                    await asyncio.to_thread(store.release, claimed)
            if fault.kind == "timeout_before":
                return JSONResponse({"error": "timeout"}, status_code=504)
            return JSONResponse({"error": "internal"}, status_code=500)
        if outcome is None:
            try:
                outcome = await asyncio.to_thread(work)
            except BaseException:
                if claimed is not None:
                    await asyncio.to_thread(store.release, claimed)
                raise
        if fault is None:
            return outcome.response()
        await faults.hold(fault, path, "after_effect")
        if fault.kind == "reset_after":
            return BrokenResponse(outcome)
        if fault.kind == "error_500_after":
            return JSONResponse({"error": "internal"}, status_code=500)
        return outcome.response()

    @app.get("/health")
    async def health() -> dict[str, bool]:
        return {"ok": True}

    @app.post("/charges")
    async def create_charge(body: ChargeIn, request: Request,
                            idempotency_key: Annotated[str | None, Header()] = None) -> Response:
        return await serve(request, lambda: store.charge(body, idempotency_key), idempotency_key, body)

    @app.post("/legacy/charges")
    async def create_legacy_charge(body: ChargeIn, request: Request) -> Response:
        return await serve(request, lambda: store.charge(body, None))

    @app.get("/charges/{charge_id}")
    async def get_charge(charge_id: str, request: Request) -> Response:
        return await serve(request, lambda: store.get_charge(charge_id))

    @app.get("/charges")
    async def list_charges(request: Request, reference: str | None = None) -> Response:
        return await serve(request, lambda: store.charges(reference))

    @app.post("/refunds")
    async def create_refund(body: RefundIn, request: Request,
                            idempotency_key: Annotated[str | None, Header()] = None) -> Response:
        return await serve(request, lambda: store.refund(body, idempotency_key), idempotency_key, body)

    @app.get("/refunds")
    async def list_refunds(request: Request, charge_id: str | None = None) -> Response:
        return await serve(request, lambda: store.refunds(charge_id))

    @app.get("/accounts/{account}/balance")
    async def balance(account: str, request: Request) -> Response:
        return await serve(request, lambda: store.balance(account))

    @app.post("/_admin/faults")
    async def add_faults(body: FaultsIn) -> dict[str, int]:
        faults.queue.extend(body.faults)
        return {"queued": len(faults.queue)}

    @app.get("/_admin/inflight")
    async def inflight() -> dict[str, list[dict[str, str]]]:
        return {"data": list(faults.inflight.values())}

    @app.get("/_admin/effects")
    async def effects(reference: str | None = None) -> dict[str, Any]:
        rows = await asyncio.to_thread(store.effects, reference)
        return {"payments": rows, "count": len(rows)}

    @app.post("/_admin/reset")
    async def reset() -> dict[str, bool]:
        faults.queue.clear()
        await asyncio.to_thread(store.reset)
        return {"ok": True}

    return app


class _DropIncompleteNotice(logging.Filter):
    """A reset fault ends its response early on purpose; the server's complaint about it is noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != _INCOMPLETE


def main(argv: Sequence[str] | None = None) -> None:
    """Serve the payment service until terminated."""
    import uvicorn

    parser = argparse.ArgumentParser(description="Stripe-like payment service for tests.")
    parser.add_argument("--db", required=True, help="path of the service's SQLite file")
    parser.add_argument("--port", required=True, type=int)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    config = uvicorn.Config(create_app(args.db), host=args.host, port=args.port, log_level="warning",
                            timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)  # logging is configured by Config, so the filter goes on afterwards
    logging.getLogger("uvicorn.error").addFilter(_DropIncompleteNotice())
    server.run()


if __name__ == "__main__":
    main()
