"""Typed tools and the transactional executor that runs them with exactly-once effects."""

from .breaker import Breakers, CircuitBreaker
from .confirmation import ActionNotPending, ConfirmationGate, Decision, PendingAction, classify_reply
from .executor import DirectExecutor, EscalationRequired, ToolExecutor
from .http import call_api
from .idempotency import Ledgered, idempotency_key
from .ledger import AuditRecord, InMemoryLedger, Ledger, LedgerEntry, SqlLedger
from .outcome import ToolOutcome
from .pipeline import TransactionalExecutor
from .preconditions import PreconditionCheck, Requires
from .registry import ToolRegistry
from .retry import RetryPolicy
from .retrying import Retrying
from .saga import Saga, SagaResult, SagaStep, raise_unless_completed
from .scopes import ScopeCheck
from .tool import Compensation, Tool, ToolContext, make_tool, tool

__all__ = [
    "ActionNotPending", "AuditRecord", "Breakers", "CircuitBreaker", "Compensation", "ConfirmationGate", "Decision",
    "DirectExecutor",
    "EscalationRequired", "InMemoryLedger", "Ledger", "LedgerEntry", "Ledgered", "PendingAction",
    "PreconditionCheck", "Requires", "RetryPolicy", "Retrying", "Saga", "SagaResult", "SagaStep", "ScopeCheck",
    "SqlLedger", "Tool", "ToolContext", "ToolExecutor", "ToolOutcome", "ToolRegistry", "TransactionalExecutor",
    "call_api", "classify_reply", "idempotency_key", "make_tool", "raise_unless_completed", "tool",
]
