"""`@tool`: a typed Python function becomes a tool with a JSON schema and validated arguments.

The schema comes from the type hints and the docstring's `Args:` section (pydantic), so the
model is told exactly what the function accepts and the arguments it sends are validated
before the function runs. The transactional metadata (effect, scopes, retries, lookup,
compensation, preconditions) is read by the executor wrappers, never by the loop.
"""

from __future__ import annotations

import copy
import inspect
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_type_hints, overload

import pydantic

from ..core.errors import ToolArgumentsError, ToolDefinitionError, ToolError
from ..core.principal import Principal, as_principal
from ..llm.base import ToolSpec
from .retry import RetryPolicy

_NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_-]{0,63}$")
_ARGS_HEADER_RE = re.compile(r"^\s*(Args|Arguments|Parameters):\s*$")
_ARG_LINE_RE = re.compile(r"^\s+(\w+)\s*(\([^)]*\))?\s*:\s*(.+)$")

Effect = Literal["read", "write", "irreversible"]
# Session-state key of the customer an identity check bound the session to (see `ToolContext.bind_customer`).
CUSTOMER_KEY = "principal.customer_id"
EFFECTS: tuple[str, ...] = ("read", "write", "irreversible")


@dataclass(frozen=True, slots=True)
class ToolContext:
    """Handed to a tool that declares a parameter of this type: who is asking, in which session.

    `idempotency_key` is set by the ledger for every effectful call; an HTTP tool sends it as
    the `Idempotency-Key` header so the downstream API can de-duplicate too.
    """

    session_id: str
    principal: Principal
    state: dict[str, Any] = field(default_factory=dict)
    idempotency_key: str | None = None
    # The recorded user confirmation this call executes under, if any.
    confirmation_id: str | None = None
    attempt: int = 1
    # The executor running this call, so a composite tool (a saga) can run its steps through it.
    executor: Any = field(default=None, compare=False, repr=False)
    # `await context.emit(EventType.X, **payload)` puts an event of this turn on the bus (None: no bus).
    emit: Any = field(default=None, compare=False, repr=False)
    # The customer's own message this turn (from the runtime, never from the model): what a
    # delegated turn forwards when it is the customer's answer to a confirmation question.
    user_message: str = field(default="", compare=False, repr=False)

    def __post_init__(self) -> None:
        principal = self.principal if isinstance(self.principal, Principal) else as_principal(self.principal)
        if principal.customer_id is None:  # a logged-in customer stays who they logged in as
            principal = principal.acting_for(self.state.get(CUSTOMER_KEY))
        object.__setattr__(self, "principal", principal)

    @property
    def customer_id(self) -> str | None:
        """The customer this session acts for: from authentication, or bound by an identity check."""
        return self.principal.customer_id

    def bind_customer(self, customer_id: str) -> None:
        """Record that the customer proved to be `customer_id`; later calls in the session act as them.

        Kept in the session state (so it survives restarts and is in the ledger for recovery). A
        session already bound to someone else is refused: one conversation, one customer.
        """
        if not isinstance(customer_id, str) or not customer_id.strip():
            raise ToolError("the identity check returned no customer id")
        bound = self.principal.customer_id
        if bound is not None and bound != customer_id:
            raise ToolError(
                f"this conversation is already verified as customer {bound}; "
                "a different customer must start a new conversation"
            )
        self.state[CUSTOMER_KEY] = customer_id
        object.__setattr__(self, "principal", self.principal.acting_for(customer_id))


@dataclass(frozen=True, slots=True)
class Compensation:
    """How to undo a tool's effect: which tool, and its arguments from the original call and result."""

    tool: str
    arguments: Callable[[dict[str, Any], Any], dict[str, Any]]


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
    effect: Effect = "read"
    scopes: frozenset[str] = frozenset()
    timeout_s: float | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    # Repeating the call with the same idempotency key has no extra effect (the downstream API
    # honours the key, or the operation is naturally idempotent): retries are then safe.
    idempotent: bool = False
    # `lookup(arguments, context)` answers "did my effect happen?" after an unknown outcome:
    # the effect's result, or None if it did not happen. `context.idempotency_key` is set.
    lookup: Callable[[dict[str, Any], ToolContext], Any] | None = None
    compensate: Compensation | None = None
    requires: tuple[Any, ...] = ()
    # Whether the user must confirm before the call runs; None means "yes for write/irreversible".
    confirm: bool | None = None
    # Calls to the same downstream share one circuit breaker; defaults to the tool's name.
    downstream: str | None = None
    # Session-state entries the tool acts on (e.g. the authenticated customer id): kept with its
    # ledger entry, so crash recovery can re-run the call as the same customer.
    state_keys: tuple[str, ...] = ()

    @property
    def writes(self) -> bool:
        """A write changes the world (cancel, refund): its results are pinned in context."""
        return self.effect != "read"

    @property
    def needs_confirmation(self) -> bool:
        return self.writes if self.confirm is None else self.confirm

    @property
    def safe_to_retry(self) -> bool:
        return self.effect == "read" or self.idempotent

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
        # dict(iter(model)) is dict(model) without dict() first asking the model for keys(), which
        # pydantic answers through __getattr__ and an exception (most of a validation's cost).
        return dict(iter(model))

    def normalize(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """Validated arguments as plain JSON values: the form keys and the ledger are computed from."""
        try:
            model = self.args_model.model_validate(arguments)
        except pydantic.ValidationError:
            self.validate(arguments)  # raises the readable error
            raise
        return model.model_dump(mode="json")

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


def _argument_docs(fn: Callable[..., Any]) -> dict[str, str]:
    """Descriptions from a Google-style `Args:` section, so the schema explains each argument."""
    docs: dict[str, str] = {}
    in_args = False
    current: str | None = None
    for line in (inspect.getdoc(fn) or "").splitlines():
        if _ARGS_HEADER_RE.match(line):
            in_args, current = True, None
            continue
        if not in_args:
            continue
        if line and not line[0].isspace():
            break  # the next section
        match = _ARG_LINE_RE.match(line)
        if match and len(line) - len(line.lstrip()) <= 4:
            current = match.group(1)
            docs[current] = match.group(3).strip()
        elif current and line.strip():
            docs[current] += " " + line.strip()
    return docs


# Per-code-object cache of argument models: a factory that builds the same closures per backend
# (one set of tools per evaluation trial) would otherwise rebuild identical pydantic models.
_SIGNATURES: dict[tuple[Any, ...], tuple[type[pydantic.BaseModel], dict[str, Any], str | None]] = {}
_SIGNATURES_MAX = 4096


def _signature_key(fn: Callable[..., Any], tool_name: str) -> tuple[Any, ...] | None:
    if not inspect.isfunction(fn):
        return None
    annotations = tuple((k, repr(v)) for k, v in fn.__annotations__.items())
    return (tool_name, fn.__code__, annotations, repr(fn.__defaults__), repr(fn.__kwdefaults__))


def _signature_of(fn: Callable[..., Any], tool_name: str) -> tuple[type[pydantic.BaseModel], dict[str, Any], str | None]:
    """The arguments model, its JSON schema and the context parameter's name, from type hints + docstring."""
    key = _signature_key(fn, tool_name)
    if key is not None and (known := _SIGNATURES.get(key)) is not None:
        return known[0], copy.deepcopy(known[1]), known[2]  # a caller may edit its schema copy
    try:
        target = fn if inspect.isroutine(fn) else type(fn).__call__  # a callable object's __call__
        hints = get_type_hints(target, include_extras=True)
    except Exception as exc:  # unresolved forward references and the like
        raise ToolDefinitionError(f"cannot read the type hints of {tool_name!r}: {exc}") from exc
    fields: dict[str, Any] = {}
    arg_docs = _argument_docs(fn)
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
        doc = arg_docs.get(param.name)
        fields[param.name] = (annotation, default if doc is None else pydantic.Field(default, description=doc))
    args_model = pydantic.create_model(f"{tool_name}_args", **fields)  # type: ignore[call-overload]
    schema = args_model.model_json_schema()
    schema.pop("title", None)
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)
    found = (args_model, schema, context_param)
    if key is not None:
        if len(_SIGNATURES) >= _SIGNATURES_MAX:
            _SIGNATURES.clear()
        _SIGNATURES[key] = found
    return found


def make_tool(
    fn: Callable[..., Any],
    *,
    name: str | None = None,
    description: str | None = None,
    essential_fields: Sequence[str] = (),
    writes: bool = False,
    effect: Effect | None = None,
    scopes: Sequence[str] = (),
    timeout_s: float | None = None,
    retry: RetryPolicy | None = None,
    idempotent: bool = False,
    lookup: Callable[[dict[str, Any], ToolContext], Any] | None = None,
    compensate: Compensation | None = None,
    requires: Sequence[Any] = (),
    confirm: bool | None = None,
    downstream: str | None = None,
    state_keys: Sequence[str] = (),
) -> Tool:
    tool_name = name or getattr(fn, "__name__", None)
    if tool_name is None:
        raise ToolDefinitionError(f"{fn!r} has no __name__", hint="pass name= to name the tool")
    effect = effect or ("write" if writes else "read")
    if effect not in EFFECTS:
        raise ToolDefinitionError(f"tool {tool_name!r} has effect {effect!r}", hint=f"use one of {EFFECTS}")
    if timeout_s is not None and not timeout_s > 0:
        raise ToolDefinitionError(f"tool {tool_name!r} has timeout_s={timeout_s!r}", hint="use a positive number")
    if compensate is not None and not isinstance(compensate, Compensation):
        raise ToolDefinitionError(
            f"compensate of {tool_name!r} must be a Compensation", hint="Compensation('undo_tool', lambda args, result: {...})"
        )
    if effect == "read" and (compensate is not None or lookup is not None):
        raise ToolDefinitionError(f"read tool {tool_name!r} declares lookup/compensate", hint="declare effect='write'")
    if not _NAME_RE.match(tool_name):
        raise ToolDefinitionError(
            f"tool name {tool_name!r} is not allowed", hint="use letters, digits, '_' or '-', at most 64 characters"
        )
    args_model, schema, context_param = _signature_of(fn, tool_name)
    return Tool(
        name=tool_name,
        description=description or _description(fn) or tool_name,
        function=fn,
        args_model=args_model,
        parameters=schema,
        is_async=inspect.iscoroutinefunction(fn),
        context_param=context_param,
        essential_fields=tuple(essential_fields),
        effect=effect,
        scopes=frozenset(scopes),
        timeout_s=timeout_s,
        retry=retry or RetryPolicy(),
        idempotent=idempotent,
        lookup=lookup,
        compensate=compensate,
        requires=tuple(requires),
        confirm=confirm,
        downstream=downstream,
        state_keys=tuple(state_keys),
    )


@overload
def tool(fn: Callable[..., Any], /) -> Tool: ...
@overload
def tool(**options: Any) -> Callable[[Callable[..., Any]], Tool]: ...
def tool(fn: Callable[..., Any] | None = None, /, **options: Any) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Decorate a typed (sync or async) function to make it a `Tool`; options as in `make_tool`.

    `effect` is "read", "write" or "irreversible" (`writes=True` is short for "write");
    `scopes` must all be granted to the principal; `idempotent=True` means a repeat with the same
    idempotency key has no extra effect, so retries are safe; `lookup` finds out whether an effect
    happened; `compensate` undoes it; `requires` lists preconditions; `essential_fields` name
    the result fields kept when a large result is truncated.
    """

    def wrap(f: Callable[..., Any]) -> Tool:
        return make_tool(f, **options)

    return wrap(fn) if fn is not None else wrap
