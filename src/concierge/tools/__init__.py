"""Typed tools, the registry, and the executor seam that transactional policies wrap."""

from .executor import DirectExecutor, ToolExecutor, ToolOutcome
from .registry import ToolRegistry
from .tool import Tool, ToolContext, make_tool, tool

__all__ = ["DirectExecutor", "Tool", "ToolContext", "ToolExecutor", "ToolOutcome", "ToolRegistry", "make_tool", "tool"]
