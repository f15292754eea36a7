"""`Specialist`: an agent a supervisor may delegate to, and the least it is given when it is.

A specialist is defined by what it may do (`scopes`) and what it may know (`context_fields`),
both fixed in code, never by a model: at a handoff the caller's principal is narrowed to the
scopes both sides allow and the context is cut to the declared keys, so a prompt injected into
the supervisor cannot widen what the specialist does or learns.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from ...core.errors import ConfigError, ValidationError
from ...core.ids import CHILD_SESSION_SEPARATOR
from ...core.principal import Principal
from ..agent import Agent
from ..runtime import SESSION_ID_RE

# Lowercase identifier: it becomes part of a tool name (`handoff_to_<name>`) and of a session id.
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
_FIELD_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
HANDOFF_PREFIX = "handoff_to_"
MAX_SESSION_ID = 128
CHILD_SEPARATOR = CHILD_SESSION_SEPARATOR  # `<parent>.:<name>`: a namespace clients cannot create


@dataclass(frozen=True, slots=True)
class Specialist:
    """An agent with its own model, instructions and tools, plus its least-privilege grant.

    `description` says what it handles (the supervisor's model reads it as the handoff tool's
    description); `scopes` is the most it may ever do; `context_fields` the only context keys it
    receives; `max_attempts` how often a failed child turn is tried before the handoff fails.
    """

    name: str
    description: str
    agent: Agent
    scopes: frozenset[str] = frozenset()
    context_fields: tuple[str, ...] = ()
    max_attempts: int = 2

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME_RE.match(self.name):
            raise ConfigError(f"invalid specialist name {self.name!r}",
                              hint="use a lowercase identifier such as 'refund' or 'order_status' (max 48)")
        if not isinstance(self.description, str) or not self.description.strip():
            raise ConfigError(f"specialist {self.name!r} has no description",
                              hint="say what requests it handles: the supervisor chooses by it")
        if not isinstance(self.agent, Agent):
            raise ConfigError(f"specialist {self.name!r} needs an Agent, got {type(self.agent).__name__}",
                              hint="pass Agent(instructions, model, tools=...)")
        object.__setattr__(self, "scopes", _scopes(self.name, self.scopes))
        object.__setattr__(self, "context_fields", _fields(self.name, self.context_fields))
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise ConfigError(f"specialist {self.name!r} has max_attempts={self.max_attempts!r}",
                              hint="use an integer >= 1 (1 means no retry)")
        registry = self.agent.registry
        for t in registry:  # an undo that names no tool of this agent could never run
            if t.compensate is not None and t.compensate.tool not in registry:
                raise ConfigError(f"tool {t.name!r} of specialist {self.name!r} is undone by "
                                  f"{t.compensate.tool!r}, which the specialist does not have",
                                  hint="give the specialist's agent its compensation tools too")

    @property
    def tool_name(self) -> str:
        return HANDOFF_PREFIX + self.name

    def narrow(self, parent: Principal) -> Principal:
        """The caller, allowed only what both the caller and this specialist allow.

        A scope is kept when it is the specialist's and the caller allows it, or the caller's and
        the specialist allows it; wildcards survive only where the other side covers them whole.
        """
        grant = Principal("specialist", scopes=self.scopes)
        scopes = {s for s in self.scopes if parent.allows(s)} | {s for s in parent.scopes if grant.allows(s)}
        return replace(parent, scopes=frozenset(scopes))

    def minimal_context(self, context: Mapping[str, str]) -> tuple[dict[str, str], tuple[str, ...]]:
        """(the declared keys with their values, the names of every other key: dropped, values unseen)."""
        kept = {k: str(v) for k, v in context.items() if k in self.context_fields}
        dropped = tuple(sorted(str(k) for k in context if k not in self.context_fields))
        return kept, dropped

    def session_id(self, parent_session_id: str) -> str:
        """The child's own session (`<parent>.:<name>`), stable per parent session so a later handoff
        continues it, and in a namespace client-chosen session ids cannot reach."""
        child = f"{parent_session_id}{CHILD_SEPARATOR}{self.name}"
        if len(child) > MAX_SESSION_ID or not SESSION_ID_RE.match(child):
            digest = hashlib.sha256(parent_session_id.encode()).hexdigest()[:40]
            child = f"{digest}{CHILD_SEPARATOR}{self.name}"
        return child


def unique(specialists: Sequence[Specialist]) -> tuple[Specialist, ...]:
    """The specialists, checked: at least one, all `Specialist`, no name twice."""
    items = tuple(specialists)
    if not items:
        raise ConfigError("a supervisor needs at least one specialist", hint="pass Specialist(...) objects")
    seen: set[str] = set()
    for item in items:
        if not isinstance(item, Specialist):
            raise ConfigError(f"expected a Specialist, got {type(item).__name__}", hint="wrap the agent in Specialist")
        if item.name in seen:
            raise ConfigError(f"two specialists are named {item.name!r}", hint="give each specialist its own name")
        seen.add(item.name)
    return items


def _scopes(name: str, scopes: Iterable[str]) -> frozenset[str]:
    if isinstance(scopes, str):
        raise ConfigError(f"scopes of specialist {name!r} is a string", hint="pass a set: frozenset({'refund:write'})")
    try:
        return Principal("specialist", scopes=frozenset(scopes)).scopes  # the platform's own scope syntax
    except (TypeError, ValidationError) as exc:
        raise ConfigError(f"specialist {name!r} has an invalid scope: {exc}",
                          hint="scopes look like 'refund:write' (lowercase, ':'-separated)") from None


def _fields(name: str, fields: Iterable[str]) -> tuple[str, ...]:
    if isinstance(fields, str):
        raise ConfigError(f"context_fields of specialist {name!r} is a string", hint="pass a tuple: ('order_id',)")
    items = tuple(fields)
    for item in items:
        if not isinstance(item, str) or not _FIELD_RE.match(item):
            raise ConfigError(f"specialist {name!r} has an invalid context field {item!r}",
                              hint="use identifier-like keys such as 'order_id'")
    if len(set(items)) != len(items):
        raise ConfigError(f"specialist {name!r} lists a context field twice", hint="list each key once")
    return items
