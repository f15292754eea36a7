"""One retail store per tenant, and an HTTP transport that sends each request to its tenant's store.

A server with several tenants must never let one tenant's agent read another's customers and
orders, so each tenant's business data lives in a database of its own:

- a folder (the default, `.concierge/stores`): tenant `acme`'s store is the SQLite file
  `acme/store.db` under it;
- a store URL with `{tenant}` in it (`postgresql://db/retail_{tenant}`, `sqlite:///data/{tenant}.db`):
  each tenant's database (on PostgreSQL it must exist; the tables are created if missing).

A store is built on its tenant's first request: the demo tenant's from the generated demo data
(the data `concierge demo` uses), another tenant's from a tau2-format `db.json` placed in its
folder beforehand (`concierge domain generate retail --out .concierge/stores/acme`), else empty:
the server never invents customers for a business. Building runs in a worker thread, never on
the event loop.

The retail tools and caps measures name the session's tenant (from authentication, never from
the model) in `X-Tenant`; `TenantRouter` hands each request to that tenant's store app in
process, and refuses a request that names no tenant, or a tenant the server does not know,
without creating anything.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
from sqlalchemy import Engine, inspect, select
from sqlalchemy.exc import SQLAlchemyError

from ...core.errors import ConfigError, ValidationError
from .backend.app import create_app
from .demo import fill_demo_store, open_store_file
from .store import TABLES, create_schema, create_store_engine, import_db, load_tau2_db
from .tools import TENANT_HEADER

__all__ = ["STORE_FILE", "TENANT_HEADER", "TenantRouter", "TenantStores", "UnknownTenantError"]

STORE_FILE = "store.db"
SEED_FILE = "db.json"
# Tenant names as the tenant directory accepts them: also safe as a folder name and in a URL.
_TENANT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")

Known = Callable[[str], Awaitable[bool]]


class UnknownTenantError(ValidationError):
    """A store was asked for a tenant the server does not have."""


class TenantStores:
    """Each tenant's store (engine and in-process API), opened on first use and kept until `close()`.

    `location` is a folder or a store URL template with `{tenant}`; `demo_tenant` gets the demo
    data; `known(tenant)`, if given, says whether a tenant exists (asked before a store is built).
    """

    def __init__(self, location: str | Path, *, demo_tenant: str | None = None, demo_seed: int = 0,
                 known: Known | None = None) -> None:
        text = str(location)
        if not text.strip():
            raise ConfigError("the tenants' store location is empty",
                              hint="set [serve] stores to a folder or a store URL with {tenant} in it")
        self.template = text if "{tenant}" in text else None
        if self.template is None and "://" in text:
            raise ConfigError(f"the store URL {text!r} has no {{tenant}} in it: every tenant would share one store",
                              hint="put {tenant} in the database name, e.g. postgresql://db/retail_{tenant}")
        self.folder = None if self.template is not None else Path(text)
        self.demo_tenant = demo_tenant or None
        self.demo_seed = demo_seed
        self.known = known
        self._engines: dict[str, Engine] = {}
        self._transports: dict[str, httpx.ASGITransport] = {}
        self._opening: dict[str, asyncio.Lock] = {}
        self._guard = threading.Lock()

    @staticmethod
    def check_name(tenant: object) -> str:
        if not isinstance(tenant, str) or not _TENANT_RE.match(tenant):
            raise UnknownTenantError(f"no store for tenant {tenant!r}: not a tenant name",
                                     hint="tenant names are lowercase letters, digits, '-' or '_'")
        return tenant

    def url(self, tenant: str) -> str:
        """The SQLAlchemy URL of `tenant`'s store."""
        tenant = self.check_name(tenant)
        if self.template is not None:
            return self.template.replace("{tenant}", tenant)
        assert self.folder is not None
        return f"sqlite:///{self.folder / tenant / STORE_FILE}"

    def open(self, tenant: str) -> Engine:
        """`tenant`'s store, built on first use (blocking: call it from a thread inside a server)."""
        tenant = self.check_name(tenant)
        with self._guard:
            found = self._engines.get(tenant)
        if found is not None:
            return found
        engine = self._build(tenant)
        with self._guard:
            kept = self._engines.setdefault(tenant, engine)
        if kept is not engine:
            engine.dispose()
        return kept

    def _fill(self, tenant: str) -> Callable[[Engine], None]:
        if tenant == self.demo_tenant:
            return lambda engine: fill_demo_store(engine, self.demo_seed)
        seed = None if self.folder is None else self.folder / tenant / SEED_FILE
        if seed is not None and seed.is_file():
            db = seed

            def from_seed(engine: Engine) -> None:
                create_schema(engine)
                import_db(engine, load_tau2_db(db))

            return from_seed
        return create_schema

    def _build(self, tenant: str) -> Engine:
        fill = self._fill(tenant)
        if self.folder is not None:
            return open_store_file(self.folder / tenant / STORE_FILE, fill)
        engine = create_store_engine(self.url(tenant))
        try:
            if _is_empty(engine):
                try:
                    fill(engine)
                except (ValidationError, SQLAlchemyError):
                    if _is_empty(engine):  # not another worker having filled it at the same moment
                        raise
        except BaseException:
            engine.dispose()
            raise
        return engine

    async def transport(self, tenant: str) -> httpx.ASGITransport:
        """The in-process transport to `tenant`'s store API; the store is opened off the event loop."""
        tenant = self.check_name(tenant)
        found = self._transports.get(tenant)
        if found is not None:
            return found
        lock = self._opening.setdefault(tenant, asyncio.Lock())
        async with lock:
            found = self._transports.get(tenant)
            if found is not None:
                return found
            if self.known is not None and not await self.known(tenant):
                raise UnknownTenantError(f"no store for tenant {tenant!r}: there is no such tenant")
            app = await asyncio.to_thread(lambda: create_app(self.open(tenant)))
            found = self._transports[tenant] = httpx.ASGITransport(app=app)
        return found

    async def prepare(self, tenant: str) -> None:
        """Open `tenant`'s store now (at start-up), so its first customer does not wait for it to be built."""
        await self.transport(tenant)

    def router(self) -> TenantRouter:
        return TenantRouter(self)

    def client(self) -> httpx.AsyncClient:
        """A client of every tenant's store API: each request goes to the store its `X-Tenant` names."""
        return httpx.AsyncClient(transport=self.router(), base_url="http://retail")

    def close(self) -> None:
        """Dispose of every store's engine; the stores open again on their next use."""
        with self._guard:
            engines, self._engines = list(self._engines.values()), {}
            self._transports.clear()
            self._opening.clear()
        for engine in engines:
            engine.dispose()


class TenantRouter(httpx.AsyncBaseTransport):
    """Sends each request to the store app of the tenant its `X-Tenant` header names.

    A request naming no tenant, or a tenant the server does not know, is answered here with a
    4xx and the error body `{"error": {"code", "message", "hint"}}`; it reaches no store.
    """

    def __init__(self, stores: TenantStores) -> None:
        self.stores = stores

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        tenant = request.headers.get(TENANT_HEADER)
        if not tenant:
            return _refusal(400, "tenant_required", f"the request names no tenant ({TENANT_HEADER} header)",
                            "every call to the business store is made for one tenant's session")
        try:
            transport = await self.stores.transport(tenant)
        except UnknownTenantError as exc:
            return _refusal(404, "unknown_tenant", exc.message, exc.hint)
        return await transport.handle_async_request(request)


def _refusal(status: int, code: str, message: str, hint: str | None) -> httpx.Response:
    error = {"code": code, "message": message, **({"hint": hint} if hint else {})}
    return httpx.Response(status, content=json.dumps({"error": error}).encode(),
                          headers={"Content-Type": "application/json"})


def _is_empty(engine: Engine) -> bool:
    """No table of the store exists yet, or none holds a row."""
    present = set(inspect(engine).get_table_names())
    with engine.connect() as conn:
        return all(table.name not in present or conn.execute(select(table).limit(1)).first() is None
                   for table in TABLES)
