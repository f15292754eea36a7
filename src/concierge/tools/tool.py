"""`@tool`: a typed Python function becomes a tool with a JSON schema and validated arguments.

The schema comes from the type hints (pydantic), so the model is told exactly what the
function accepts and the arguments it sends are validated before the function runs.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, get_type_hints, overload

import pydantic

from ..core.errors import ToolArgumentsError, ToolDefinitionError
from ..llm.base import ToolSpec

_NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_-]{0,63}$")


@dataclass(frozen=True, slots=True)
class ToolContext:
    """Handed to a tool that declares a parameter of this type: who is asking, in which session."""

    session_id: str
    principal: str
    state: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Tool:
    """A callable the model may invoke. Build one with `@tool`, not by hand."""

    name: str
    description: str
    function: Callable[..., Any]
    args_model: type[pydantic.BaseModel]
    parameters: dict[str, Any]
    is_async: bool
    context_param: str | None = None
    # Fields of a dict result that survive truncation of a large result.
    essential_fields: tuple[str, ...] = ()
    # A write action changes the world (cancel, refund): its results are pinned in context.
    writes: bool = False

    @property
    def spec(self) -> ToolSpec:
        return ToolSpec(self.name, self.description, self.parameters)

    def validate(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """Arguments as the function will receive them; raises ToolArgumentsError if they do not fit."""
        try:
            model = self.args_model.model_validate(arguments)
        except pydantic.ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '(arguments)'}: {e['msg']}" for e in exc.errors()
            )
            raise ToolArgumentsError(
                f"invalid arguments for tool '{self.name}': {problems}",
                hint="call it again with arguments matching its schema",
            ) from None
        return dict(model)

    async def invoke(self, arguments: dict[str, Any], context: ToolContext | None = None) -> Any:
        kwargs = self.validate(arguments)
        if self.context_param is not None:
            kwargs[self.context_param] = context
        if self.is_async:
            return await self.function(**kwargs)
        return self.function(**kwargs)


def _description(fn: Callable[..., Any]) -> str:
    doc = inspect.getdoc(fn) or ""
    return doc.split("\n\n", 1)[0].replace("\n", " ").strip()


def make_tool(
    fn: Callable[..., Any],
    *,
    name: str | None = None,
    description: str | None = None,
    essential_fields: Sequence[str] = (),
    writes: bool = False,
) -> Tool:
    tool_name = name or fn.__name__
    if not _NAME_RE.match(tool_name):
        raise ToolDefinitionError(
            f"tool name {tool_name!r} is not allowed", hint="use letters, digits, '_' or '-', at most 64 characters"
        )
    try:
        hints = get_type_hints(fn, include_extras=True)
    except Exception as exc:  # unresolved forward references and the like
        raise ToolDefinitionError(f"cannot read the type hints of {tool_name!r}: {exc}") from exc
    fields: dict[str, Any] = {}
    context_param = None
    for param in inspect.signature(fn).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise ToolDefinitionError(
                f"tool {tool_name!r} takes *args/**kwargs", hint="declare every argument with a name and a type"
            )
        annotation = hints.get(param.name, inspect.Parameter.empty)
        if annotation is ToolContext:
            context_param = param.name
            continue
        if annotation is inspect.Parameter.empty:
            raise ToolDefinitionError(
                f"argument {param.name!r} of tool {tool_name!r} has no type hint",
                hint="annotate every argument so the model gets a schema",
            )
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[param.name] = (annotation, default)
    args_model = pydantic.create_model(f"{tool_name}_args", **fields)  # type: ignore[call-overload]
    schema = args_model.model_json_schema()
    schema.pop("title", None)
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)
    return Tool(
        name=tool_name,
        description=description or _description(fn) or tool_name,
        function=fn,
        args_model=args_model,
        parameters=schema,
        is_async=inspect.iscoroutinefunction(fn),
        context_param=context_param,
        essential_fields=tuple(essential_fields),
        writes=writes,
    )


@overload
def tool(fn: Callable[..., Any], /) -> Tool: ...
@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    essential_fields: Sequence[str] = (),
    writes: bool = False,
) -> Callable[[Callable[..., Any]], Tool]: ...
def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    essential_fields: Sequence[str] = (),
    writes: bool = False,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Decorate a typed (sync or async) function to make it a `Tool`.

    `writes=True` marks a side-effecting action whose results must never be forgotten;
    `essential_fields` name the result fields kept when a large result is truncated.
    """

    def wrap(f: Callable[..., Any]) -> Tool:
        return make_tool(f, name=name, description=description, essential_fields=essential_fields, writes=writes)

    return wrap(fn) if fn is not None else wrap
