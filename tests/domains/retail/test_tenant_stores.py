"""One retail store per tenant: where each lives, what it starts with, and that stores never mix."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from concierge.core.errors import ConfigError
from concierge.domains.retail import export_db
from concierge.domains.retail.demo import DEMO_ORDERS, DEMO_USERS
from concierge.domains.retail.generator import generate_store, write_store
from concierge.domains.retail.tenant_stores import TENANT_HEADER, TenantStores, UnknownTenantError


def test_each_tenant_gets_its_own_store_demo_data_seed_file_or_empty(tmp_path: Path) -> None:
    seeded = generate_store(users=3, orders=5, seed=4)
    write_store(seeded, tmp_path / "acme")  # the business's data, placed before the first start
    stores = TenantStores(tmp_path, demo_tenant="demo")
    try:
        demo, acme, empty = stores.open("demo"), stores.open("acme"), stores.open("globex")
        assert stores.open("demo") is demo  # opened once, then kept
        assert len(export_db(demo)["users"]) == DEMO_USERS and len(export_db(demo)["orders"]) == DEMO_ORDERS
        assert export_db(acme)["orders"].keys() == seeded["orders"].keys()
        assert export_db(empty)["users"] == {} and export_db(empty)["orders"] == {}
        assert (tmp_path / "globex" / "store.db").is_file()
    finally:
        stores.close()
    with pytest.raises(UnknownTenantError):
        stores.open("../demo")


def test_a_store_url_must_name_the_tenant(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no \\{tenant\\}"):
        TenantStores(f"sqlite:///{tmp_path}/shared.db")
    stores = TenantStores(f"sqlite:///{tmp_path}/retail-{{tenant}}.db")
    try:
        assert stores.url("acme") == f"sqlite:///{tmp_path}/retail-acme.db"
        assert export_db(stores.open("acme"))["users"] == {}
    finally:
        stores.close()
    assert (tmp_path / "retail-acme.db").is_file()


def test_concurrent_first_requests_build_the_store_once_off_the_loop(tmp_path: Path) -> None:
    async def scenario() -> list[int]:
        stores = TenantStores(tmp_path, demo_tenant="demo")
        client = stores.client()
        try:
            ticks = 0

            async def ticker() -> None:  # the loop stays free while the demo data is generated
                nonlocal ticks
                while True:
                    ticks += 1
                    await asyncio.sleep(0.001)

            task = asyncio.create_task(ticker())
            answers = await asyncio.gather(*(client.get("/products", headers={TENANT_HEADER: "demo"})
                                             for _ in range(5)))
            task.cancel()
            assert len(stores._engines) == 1 and ticks > 5
            return [a.status_code for a in answers]
        finally:
            await client.aclose()
            stores.close()

    assert asyncio.run(scenario()) == [200] * 5
    assert [p.name for p in tmp_path.rglob("*.partial")] == []


def test_postgresql_stores_by_url_template(postgres_server) -> None:
    prefix = f"r{uuid.uuid4().hex[:12]}_"
    for tenant in ("demo", "acme"):  # on PostgreSQL each tenant's database is made by its operator
        postgres_server.create_database(prefix + tenant)
    stores = TenantStores(postgres_server.sync_url(prefix + "{tenant}"), demo_tenant="demo")
    try:
        demo, acme = stores.open("demo"), stores.open("acme")
        assert demo.dialect.name == "postgresql" and acme.url.database == prefix + "acme"
        assert len(export_db(demo)["users"]) == DEMO_USERS and export_db(acme)["users"] == {}
    finally:
        stores.close()
