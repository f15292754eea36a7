"""`build_stores(settings)`: every erasable store the settings name, in erasure order."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..settings import Settings
from .base import ErasableStore
from .stores import (
    AuditIndexStore,
    EventLogStore,
    LakeStore,
    LedgerStore,
    MemoryStore,
    RedisKeysStore,
    RuntimeSessionsStore,
    ServingRecordsStore,
    UnavailableStore,
    UserSessions,
)

# Names of a function in `concierge.memory` that opens the memory facade from Settings.


@dataclass
class StoreSet:
    """The stores, in the order to erase them, and what to close afterwards (`await stores.aclose()`)."""

    stores: list[ErasableStore]
    closers: list[Callable[[], Awaitable[Any]]] = field(default_factory=list)
    memory: Any = None  # the memory facade, when there is one (for `forget --fact` and `show`)

    def __iter__(self) -> Iterator[ErasableStore]:
        return iter(self.stores)

    def __len__(self) -> int:
        return len(self.stores)

    async def aclose(self) -> None:
        for close in reversed(self.closers):
            await close()


def memory_facade(settings: Settings) -> Any:
    """The deployment's memory (`[memory]`), or None when it is off or nothing was ever remembered."""
    if not settings.memory.enabled or not Path(settings.memory.db).exists():
        return None
    from ..factory import build_memory

    return build_memory(settings)


def build_stores(settings: Settings, *, memory: Any = None, vacuum: bool = True) -> StoreSet:
    """The erasable stores of a deployment: memory, Redis keys, the event bus, the audit index, the
    lake, the ledger, the runtime's sessions and the serving directory (last: it says which sessions
    are the user's). `memory`: a facade to use instead of opening one. `vacuum`: compact SQLite files
    after erasing, so deleted bytes leave the disk."""
    stores: list[ErasableStore] = []
    closers: list[Callable[[], Awaitable[Any]]] = []
    sessions = UserSessions()
    sql_stores: list[ErasableStore] = []

    if settings.sessions.url != "memory":
        from ..runtime.sessions.sql import SqlSessionStore
        from ..serving.records import SessionDirectory
        from ..tools.ledger.sql import SqlLedger

        runtime = SqlSessionStore(settings.sessions.url)
        directory = SessionDirectory.from_engine(runtime.engine)
        ledger = SqlLedger.from_engine(runtime.engine)
        sessions.directory, sessions.runtime = directory, runtime
        closers.append(runtime.close)
        sql_stores = [LedgerStore(ledger, sessions, vacuum=vacuum),
                      RuntimeSessionsStore(runtime, sessions, vacuum=vacuum),
                      ServingRecordsStore(directory, vacuum=vacuum)]

    if memory is None:
        try:
            memory = memory_facade(settings)
        except Exception as exc:  # noqa: BLE001 - reported through the receipt
            stores.append(UnavailableStore("memory", str(exc)))
    if memory is not None:
        stores.append(MemoryStore(memory))
        close = getattr(memory, "close", None) or getattr(memory, "aclose", None)
        if close is not None and inspect.iscoroutinefunction(close):
            closers.append(close)

    if settings.serve.redis_url:
        import redis.asyncio

        client = redis.asyncio.from_url(settings.serve.redis_url)
        stores.append(RedisKeysStore(client, sessions))
        closers.append(client.aclose)

    bus = settings.events.bus
    if bus != "off":
        from ..events.bus import open_log

        try:
            log = open_log(bus, partitions=settings.events.partitions)
        except Exception as exc:  # noqa: BLE001
            stores.append(UnavailableStore("events", f"cannot open the event bus {bus!r}: {exc}"))
        else:
            stores.append(EventLogStore(log, sessions, compact=vacuum and bus.startswith("embedded:")))
            closers.append(log.close)

    from ..guardrails.audit import AuditIndex

    index = AuditIndex(settings.events.audit_url)
    stores.append(AuditIndexStore(index, sessions, vacuum=vacuum))
    closers.append(index.close)

    def open_lake() -> Any:
        from ..lakehouse.catalog import open_catalog

        return open_catalog(settings.lake.folder, catalog_url=settings.lake.catalog_url,
                            warehouse=settings.lake.warehouse)

    try:
        importlib.import_module("pyiceberg")
    except ModuleNotFoundError:
        stores.append(UnavailableStore("lake", "pyiceberg is not installed (the `lake` extra): cannot erase the lake"))
    else:
        stores.append(LakeStore(open_lake))

    stores.extend(sql_stores)
    return StoreSet(stores, closers, memory)
