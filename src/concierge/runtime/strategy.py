"""The one thing the runtime knows about reasoning strategies: this protocol.

A strategy gets the running turn (`RuntimeDriver`) and returns (reply, stopped_by). The default
is the runtime's own ReAct loop; `concierge.reasoning` has plan-then-execute, tree-of-thought and
the router, which satisfy this protocol without the runtime importing them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .driver import RuntimeDriver


class TurnStrategy(Protocol):
    name: str

    async def run(self, driver: RuntimeDriver) -> tuple[str, str | None]: ...


class ReActLoop:
    """The default: the observe → think → act loop, each action with the model's thought recorded; a
    write the model itself rates below `ask_below` is not run (it is told to ask the customer)."""

    name = "react"
    ask_below: float | None = 0.4

    async def run(self, driver: RuntimeDriver) -> tuple[str, str | None]:
        return await driver.react(ask_below=self.ask_below)
