"""The agent runtime: `Agent`, `Runtime.turn()`, context budget, sessions, locks, limits."""

from .agent import DEFAULT_HANDOFF, Agent, Limits
from .context import ContextBuilder, ModelSummarizer, Summarizer
from .locks import SessionLocks
from .result import TurnResult, TurnState
from .runtime import Runtime
from .sessions import InMemorySessionStore, Session, SessionStore
from .tracing import TraceStep, default_tracer, make_tracer_provider

__all__ = [
    "DEFAULT_HANDOFF", "Agent", "ContextBuilder", "InMemorySessionStore", "Limits", "ModelSummarizer", "Runtime",
    "Session", "SessionLocks", "SessionStore", "Summarizer", "TraceStep", "TurnResult", "TurnState",
    "default_tracer", "make_tracer_provider",
]
