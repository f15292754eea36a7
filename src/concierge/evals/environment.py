"""What the evaluation needs from a business domain: fresh backends, an agent for them, replay and checks.

The evaluation layer knows no domain. A domain (retail first) implements `Domain`; the runner
asks it for a fresh `Environment` per trial (its own copy of the backend's database), for the
agent that talks to it, and for the expected actions replayed on another copy, whose final state
is the DB reward's ground truth.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ..llm.base import ChatModel
from ..runtime.agent import Agent
from ..tools.outcome import ToolOutcome
from ..tools.tool import Tool
from .tasks import Action, Task


class Environment(Protocol):
    """One trial's backend: a private copy of the domain's data behind its real API."""

    def tools(self) -> list[Tool]:
        """The agent's tools, bound to this copy."""
        ...

    async def replay(self, actions: Sequence[Action]) -> list[ToolOutcome]:
        """Run `actions` through the same tools as a trusted operator (gold replay, task set-up)."""
        ...

    def state_hash(self) -> str:
        """A canonical hash of the whole database, equal for equal states."""
        ...

    def check(self, func_name: str, arguments: dict[str, object]) -> bool:
        """Evaluate one of the domain's assertion functions on the current state."""
        ...

    def customer_of(self, actions: Sequence[Action]) -> str | None:
        """The customer the actions concern, for agents that start signed in (the oracle)."""
        ...

    def mistaken(self, action: Action) -> Action | None:
        """A plausible wrong version of a write (another order of the same customer), or None."""
        ...

    async def aclose(self) -> None: ...


class Domain(Protocol):
    """A business the evaluation can run tasks against."""

    name: str
    # What an end customer of this business may do (the scopes their principal carries).
    customer_scopes: frozenset[str]

    def environment(self, task: Task) -> Environment:
        """A fresh environment with the task's initial data applied."""
        ...

    def agent(self, model: ChatModel, environment: Environment) -> Agent:
        """The domain's agent (its policy and tools) driven by `model`, acting on `environment`."""
        ...

    def writes(self) -> frozenset[str]:
        """Names of the tools that change state (the ones a confirmation gate guards)."""
        ...
