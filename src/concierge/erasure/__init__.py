"""Erasure of one end user (GDPR art. 17) from every store, with a receipt: see docs/erasure.md."""

from .base import (
    TOMBSTONE,
    ErasableStore,
    ErasureFailed,
    ErasureReceipt,
    IdentifierSource,
    Matcher,
    StoreResult,
    collect_identifiers,
    count_user,
    erase_user,
    normalize_identifiers,
)
from .setup import StoreSet, build_stores, memory_facade
from .stores import (
    AuditIndexStore,
    EventLogStore,
    LakeStore,
    LedgerStore,
    MemoryFacade,
    MemoryStore,
    RedisKeysStore,
    RetailIdentifiers,
    RuntimeSessionsStore,
    ServingRecordsStore,
    UnavailableStore,
    UserSessions,
)

__all__ = [
    "TOMBSTONE", "AuditIndexStore", "ErasableStore", "ErasureFailed", "ErasureReceipt", "EventLogStore",
    "IdentifierSource", "LakeStore", "LedgerStore", "Matcher", "MemoryFacade", "MemoryStore", "RedisKeysStore",
    "RetailIdentifiers", "RuntimeSessionsStore", "ServingRecordsStore", "StoreResult", "StoreSet",
    "UnavailableStore", "UserSessions", "build_stores", "collect_identifiers", "count_user", "erase_user",
    "memory_facade", "normalize_identifiers",
]
