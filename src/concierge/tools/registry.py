"""The set of tools one agent may use, looked up by name."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ..core.errors import ToolDefinitionError, ToolNotFoundError
from ..llm.base import ToolSpec
from .tool import Tool, make_tool


class ToolRegistry:
    def __init__(self, tools: Iterable[Tool | Callable[..., Any]] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        self._specs: tuple[ToolSpec, ...] | None = None
        for t in tools:
            self.add(t)

    def add(self, item: Tool | Callable[..., Any]) -> Tool:
        t = item if isinstance(item, Tool) else make_tool(item)
        if t.name in self._tools:
            raise ToolDefinitionError(f"two tools are named {t.name!r}", hint="give one of them another name")
        self._tools[t.name] = t
        self._specs = None
        return t

    def get(self, name: str) -> Tool:
        try:
            return self._tools[name]
        except KeyError:
            raise ToolNotFoundError(
                f"there is no tool named {name!r}", hint=f"available tools: {', '.join(self._tools) or 'none'}"
            ) from None

    def specs(self) -> tuple[ToolSpec, ...]:
        if self._specs is None:
            self._specs = tuple(t.spec for t in self._tools.values())
        return self._specs

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __iter__(self) -> Iterator[Tool]:
        return iter(self._tools.values())

    def __len__(self) -> int:
        return len(self._tools)
