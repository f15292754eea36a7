"""The retail store's HTTP API: tau2's retail operations over the SQL store, one transaction per write.

The acting customer arrives in the `X-Acting-User` header (set by the caller's authentication,
never by the model); anything touching a customer's profile, order or payment method is refused
with 403 `not_your_account` when it belongs to someone else. Business-rule refusals are 4xx
`{"error": {"rule", "message"}}` and change nothing. Writes honour `Idempotency-Key`.

Writes are serialised within the process; on PostgreSQL the order and payment-method rows a
write checks are also locked (`FOR UPDATE`) until it commits. A SQLite file is meant to be
served by one process.

Run it with `python -m concierge.domains.retail.backend --db URL --port N [--import-tau2 FOLDER]`.
"""

from __future__ import annotations

import argparse
import gc
import threading
from collections.abc import Callable, Sequence
from typing import Annotated, Any

from fastapi import FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import Connection, Engine

from ..store import create_schema, create_store_engine, import_tau2_folder
from . import operations, views
from .errors import RuleViolation, acting_user_required, broken
from .idempotency import create_idempotency_table, remember, request_hash, stored_response

ActingUser = Annotated[str | None, Header(alias="X-Acting-User")]
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key")]


class Address(BaseModel):
    """A shipping or default address, every line required (address2 may be empty)."""

    address1: str
    address2: str
    city: str
    state: str
    country: str
    zip: str


class CancelBody(BaseModel):
    reason: str


class PaymentBody(BaseModel):
    payment_method_id: str


class ReturnBody(BaseModel):
    item_ids: list[str]
    payment_method_id: str


class SwapBody(BaseModel):
    item_ids: list[str]
    new_item_ids: list[str]
    payment_method_id: str


def _require(acting_user: str | None) -> str:
    if not acting_user:
        raise acting_user_required()
    return acting_user


class _Store:
    """Transactions over the engine; writes are serialised so a check and its effect cannot interleave."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.write_lock = threading.Lock()

    def read(self, fn: Callable[[Connection], Any]) -> Any:
        with self.engine.connect() as conn:
            return fn(conn)

    def write(self, request: Request, acting_user: str | None, key: str | None, body: Any,
              fn: Callable[[Connection, str], Any]) -> Any:
        user = _require(acting_user)
        digest = request_hash(request.method, request.url.path, user, body)
        with self.write_lock, self.engine.begin() as conn:
            if key:
                found = stored_response(conn, key, digest)
                if found is not None:
                    replayed = {"Idempotent-Replayed": "true"}
                    return JSONResponse(found[1], status_code=found[0], headers=replayed)
            result = fn(conn, user)
            if key:
                remember(conn, key, digest, 200, result)
        return result


def create_app(engine: Engine) -> FastAPI:
    """The store's API over an engine whose schema exists (the key table is added if missing)."""
    create_idempotency_table(engine)
    store = _Store(engine)
    app = FastAPI(title="Retail store", docs_url=None, redoc_url=None)

    @app.exception_handler(RuleViolation)
    async def _rule(request: Request, exc: RuleViolation) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        return JSONResponse(broken("invalid_request", problems).body(), status_code=422)

    @app.get("/health")
    def health() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/users/by-email")
    def user_by_email(email: str) -> dict[str, str]:
        return {"user_id": store.read(lambda conn: views.find_user_by_email(conn, email))}

    @app.get("/users/by-name-zip")
    def user_by_name_zip(first_name: str, last_name: str, zip: str) -> dict[str, str]:
        found = store.read(lambda conn: views.find_user_by_name_zip(conn, first_name, last_name, zip))
        return {"user_id": found}

    @app.get("/users/{user_id}")
    def user_details(user_id: str, acting_user: ActingUser = None) -> Any:
        user = _require(acting_user)
        return store.read(lambda conn: views.user_view(conn, user_id, user))

    @app.put("/users/{user_id}/address")
    def user_address(user_id: str, body: Address, request: Request, acting_user: ActingUser = None,
                     key: IdempotencyKey = None) -> Any:
        return store.write(request, acting_user, key, body.model_dump(),
                           lambda conn, user: operations.modify_user_address(
                               conn, user, user_id, body.model_dump()))

    @app.get("/orders/{order_id}")
    def order_details(order_id: str, acting_user: ActingUser = None) -> Any:
        user = _require(acting_user)
        return store.read(lambda conn: views.order_view(conn, order_id, user))

    @app.post("/orders/{order_id}/cancel")
    def cancel(order_id: str, body: CancelBody, request: Request, acting_user: ActingUser = None,
               key: IdempotencyKey = None) -> Any:
        return store.write(request, acting_user, key, body.model_dump(),
                           lambda conn, user: operations.cancel_pending_order(
                               conn, user, order_id, body.reason))

    @app.put("/orders/{order_id}/address")
    def order_address(order_id: str, body: Address, request: Request, acting_user: ActingUser = None,
                      key: IdempotencyKey = None) -> Any:
        return store.write(request, acting_user, key, body.model_dump(),
                           lambda conn, user: operations.modify_pending_order_address(
                               conn, user, order_id, body.model_dump()))

    @app.put("/orders/{order_id}/payment")
    def order_payment(order_id: str, body: PaymentBody, request: Request, acting_user: ActingUser = None,
                      key: IdempotencyKey = None) -> Any:
        return store.write(request, acting_user, key, body.model_dump(),
                           lambda conn, user: operations.modify_pending_order_payment(
                               conn, user, order_id, body.payment_method_id))

    @app.post("/orders/{order_id}/items")
    def order_items(order_id: str, body: SwapBody, request: Request, acting_user: ActingUser = None,
                    key: IdempotencyKey = None) -> Any:
        return store.write(request, acting_user, key, body.model_dump(),
                           lambda conn, user: operations.modify_pending_order_items(
                               conn, user, order_id, body.item_ids, body.new_item_ids,
                               body.payment_method_id))

    @app.post("/orders/{order_id}/return")
    def order_return(order_id: str, body: ReturnBody, request: Request, acting_user: ActingUser = None,
                     key: IdempotencyKey = None) -> Any:
        return store.write(request, acting_user, key, body.model_dump(),
                           lambda conn, user: operations.return_delivered_order_items(
                               conn, user, order_id, body.item_ids, body.payment_method_id))

    @app.post("/orders/{order_id}/exchange")
    def order_exchange(order_id: str, body: SwapBody, request: Request, acting_user: ActingUser = None,
                       key: IdempotencyKey = None) -> Any:
        return store.write(request, acting_user, key, body.model_dump(),
                           lambda conn, user: operations.exchange_delivered_order_items(
                               conn, user, order_id, body.item_ids, body.new_item_ids,
                               body.payment_method_id))

    @app.get("/products")
    def products() -> dict[str, str]:
        return store.read(views.product_types)  # type: ignore[no-any-return]

    @app.get("/products/{product_id}")
    def product_details(product_id: str) -> Any:
        return store.read(lambda conn: views.product_view(conn, product_id))

    @app.get("/items/{item_id}")
    def item_details(item_id: str) -> Any:
        return store.read(lambda conn: views.item_view(conn, item_id))

    return app


def main(argv: Sequence[str] | None = None) -> None:
    """Serve the store until terminated, optionally importing a tau2-format folder first."""
    import uvicorn

    parser = argparse.ArgumentParser(description="The retail store's HTTP API.")
    parser.add_argument("--db", required=True, help="store URL, e.g. sqlite:///store.db")
    parser.add_argument("--port", required=True, type=int)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--import-tau2", metavar="FOLDER",
                        help="import this tau2 domain folder's db.json first")
    args = parser.parse_args(argv)
    if args.import_tau2:
        engine = import_tau2_folder(args.import_tau2, args.db)
    else:
        engine = create_store_engine(args.db)
        create_schema(engine)
    app = create_app(engine)
    # Everything built so far lives as long as the server: move it out of the collector's sight,
    # or a full collection (25-30 ms here) now and then stalls one request.
    gc.collect()
    gc.freeze()
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning", timeout_graceful_shutdown=1)
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
