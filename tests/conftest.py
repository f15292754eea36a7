"""Suite-wide fixtures: a throwaway PostgreSQL server, started on first use, one database per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from concierge.testing.postgres import PostgresServer, find_bindir

NO_POSTGRES = ("PostgreSQL server binaries not found (pg_config --bindir, /usr/lib/postgresql/*/bin); "
               "./dev test installs PostgreSQL via apt, or run: apt-get install postgresql")


@dataclass(frozen=True)
class PostgresDb:
    name: str
    sync_url: str  # postgresql+psycopg://, for the retail store's sync engine
    async_url: str  # postgresql+asyncpg://, for the session store and the ledger


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    if find_bindir() is None:
        print(f"\nskipping PostgreSQL tests: {NO_POSTGRES}")
        pytest.skip(NO_POSTGRES)
    with PostgresServer() as server:
        yield server


@pytest.fixture
def postgres_db(postgres_server: PostgresServer) -> PostgresDb:
    name = f"t_{uuid.uuid4().hex[:16]}"
    postgres_server.create_database(name)
    return PostgresDb(name, postgres_server.sync_url(name), postgres_server.async_url(name))
