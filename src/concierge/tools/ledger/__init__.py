"""The durable record of every effectful tool call: what was attempted and how it ended."""

from .base import AuditRecord, Ledger, LedgerEntry
from .memory import InMemoryLedger
from .sql import SqlLedger

__all__ = ["AuditRecord", "InMemoryLedger", "Ledger", "LedgerEntry", "SqlLedger"]
