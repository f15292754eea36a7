"""Fixtures for the serving tests: one throwaway Redis server per run, an empty database per test."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio

from concierge.testing.redis import RedisServer

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
    client = redis.asyncio.from_url(redis_server.url)
    await client.flushdb()
    try:
        yield client
    finally:
        await client.aclose()
