"""Suite-wide fixtures: throwaway PostgreSQL and Redis servers, started on first use, a clean database per test."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest
import redis.asyncio

from concierge.testing.postgres import PostgresServer, find_bindir
from concierge.testing.redis import RedisServer

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


NO_REDIS = "redis-server not installed: ./dev test installs it"


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        print(f"\nskipping Redis tests: {NO_REDIS}")
        pytest.skip(NO_REDIS)
    with RedisServer() as server:
        yield server


@pytest.fixture
async def redis_client(redis_server: RedisServer) -> AsyncIterator[redis.asyncio.Redis]:
    """A client on an emptied database: every test starts from nothing."""
    client = redis.asyncio.from_url(redis_server.url)
    await client.flushdb()
    try:
        yield client
    finally:
        await client.aclose()
