"""The embedded SmolLM2 model: grammar-constrained tool calls always parse and validate.

These run the real 135M model on CPU. They assert validity (a known tool, arguments that fit
its schema), never answer quality: a model this small often picks a plausible-but-wrong tool.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import sys
import time
from typing import Literal

import pydantic
import pytest

from concierge.core.errors import ModelUnavailableError, ToolArgumentsError
from concierge.core.messages import AssistantMessage, SystemMessage, ToolCall, ToolResultMessage, UserMessage
from concierge.llm import guard
from concierge.llm.base import ChatModel, ModelSettings, StreamDone, TextDelta
from concierge.llm.embedded import EmbeddedModel, default_model_path, tool_call_schema
from concierge.tools.tool import Tool, tool

pytest.importorskip("llama_cpp", reason="needs the [local] extra")
pytestmark = [pytest.mark.real_model, pytest.mark.embedded]


@tool
def get_order_status(order_id: str) -> dict:
    """Look up the shipping status and delivery date of an order."""
    return {}


@tool(writes=True)
def cancel_order(
    order_id: str, reason: Literal["changed_mind", "too_slow", "found_cheaper", "other"] = "other"
) -> dict:
    """Cancel an order that has not shipped yet."""
    return {}


@tool
def get_return_policy(category: Literal["electronics", "clothing", "furniture", "other"]) -> str:
    """Explain the return policy for a product category."""
    return ""


@tool(writes=True)
def refund_payment(order_id: str, amount_cents: int, note: str | None = None) -> dict:
    """Refund part or all of an order's payment, in cents."""
    return {}


TOOLS: dict[str, Tool] = {
    t.name: t for t in (get_order_status, cancel_order, get_return_policy, refund_payment)
}
SPECS = [t.spec for t in TOOLS.values()]
SYSTEM = SystemMessage("You are a customer-service assistant for an online shop. Use the tools to help.")

PROMPTS = [
    "Where is my order #W1234?",
    "Cancel order W55 please",
    "What's the return policy for electronics?",
    "I was charged twice for order W777, please refund $19.99.",
    "Has order W9001 shipped yet?",
    "I changed my mind, cancel W31337.",
    "Can I return a sweater I bought last week?",
    "Please refund 500 cents on order W42, the box was damaged.",
    "When will W2024 arrive?",
    "Stop my order W808, it is taking too long.",
    "How do returns work for a sofa?",
    "Track order W3141 for me.",
    "I found it cheaper elsewhere, cancel order W64.",
    "My headphones broke, can I send them back?",
    "Refund the full $45 for order W11.",
    "status of W5",
    "I need to cancel W123456 right now.",
    "What is your policy on returning jeans?",
    "Order W73 never arrived, where is it?",
    "Give me my money back for W99, 1200 cents.",
]


@pytest.fixture(scope="module")
def model() -> EmbeddedModel:
    m = EmbeddedModel()
    m.token_counter().count("warm up")  # load once, outside any timed test
    return m


def _valid(call: ToolCall) -> bool:
    if call.name not in TOOLS:
        return False
    try:
        TOOLS[call.name].validate(call.arguments)
    except ToolArgumentsError:
        return False
    return True


def test_is_a_chat_model(model: EmbeddedModel) -> None:
    assert isinstance(model, ChatModel)
    assert model.name == "smollm2-135m-instruct"


async def test_required_tool_calls_always_parse_and_validate(model: EmbeddedModel) -> None:
    valid = 0
    start = time.perf_counter()
    for prompt in PROMPTS:
        response = await model.complete([SYSTEM, UserMessage(prompt)], tools=SPECS, tool_choice="required")
        (call,) = response.message.tool_calls
        ok = _valid(call)
        valid += ok
        print(f"{'ok ' if ok else 'BAD'} {prompt!r} -> {call.name}({json.dumps(call.arguments)})")
        assert response.finish_reason == "tool_calls"
        assert response.message.content is None
        assert call.id.startswith("call_")
        assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0
        assert response.usage.cost_usd == 0.0
    print(f"{valid}/{len(PROMPTS)} valid in {time.perf_counter() - start:.1f}s")
    assert valid == len(PROMPTS)


async def test_named_tool_choice_forces_that_tool(model: EmbeddedModel) -> None:
    response = await model.complete(
        [SYSTEM, UserMessage("Do you take back a broken laptop?")],
        tools=SPECS,
        tool_choice="get_return_policy",
    )
    (call,) = response.message.tool_calls
    assert call.name == "get_return_policy"
    assert _valid(call)


async def test_auto_mode_gives_text_or_a_valid_call(model: EmbeddedModel) -> None:
    for prompt in ("Where is my order W1234?", "Thanks, that's all for today. Bye!"):
        response = await model.complete(
            [SYSTEM, UserMessage(prompt)],
            tools=SPECS,
            tool_choice="auto",
            settings=ModelSettings(max_tokens=48),
        )
        message = response.message
        print(f"{prompt!r} -> {message.tool_calls or message.content!r}")
        if message.tool_calls:
            assert all(_valid(c) for c in message.tool_calls)
        else:
            assert message.content and message.content.strip()


async def test_tool_results_round_trip_into_text(model: EmbeddedModel) -> None:
    call = ToolCall("call_a", "get_order_status", {"order_id": "W1234"})
    history = [
        SYSTEM,
        UserMessage("Where is my order W1234?"),
        AssistantMessage(tool_calls=(call,)),
        ToolResultMessage("call_a", "get_order_status", '{"status": "shipped", "eta": "2026-03-02"}'),
    ]
    settings = ModelSettings(max_tokens=48)
    response = await model.complete(history, tools=SPECS, tool_choice="none", settings=settings)
    print(repr(response.message.content))
    assert response.message.content and not response.message.tool_calls


class Triage(pydantic.BaseModel):
    sentiment: Literal["positive", "negative", "neutral"]
    urgent: bool
    summary: str = pydantic.Field(max_length=80)


async def test_response_format_constrains_text_to_the_schema(model: EmbeddedModel) -> None:
    schema = Triage.model_json_schema()
    response = await model.complete(
        [UserMessage("Classify this message: 'My package is lost and I am furious, I need it tomorrow!'")],
        response_format=schema,
        settings=ModelSettings(max_tokens=96),
    )
    print(response.message.content)
    triage = Triage.model_validate_json(response.message.content or "")  # raises if the JSON does not fit
    assert triage.sentiment in ("positive", "negative", "neutral") and len(triage.summary) <= 80


async def test_stream_deltas_concatenate_to_the_final_text(model: EmbeddedModel) -> None:
    messages = [UserMessage("Say hello to a customer named Ana in one sentence.")]
    settings = ModelSettings(max_tokens=40)
    deltas: list[str] = []
    done = None
    async for event in model.stream(messages, settings=settings):
        if isinstance(event, TextDelta):
            assert done is None
            deltas.append(event.text)
        else:
            assert isinstance(event, StreamDone)
            done = event.response
    assert done is not None and len(deltas) > 1
    assert "".join(deltas) == done.message.content
    same = await model.complete(messages, settings=settings)  # greedy: streaming changes nothing
    assert same.message.content == done.message.content
    assert same.usage == done.usage


async def test_an_abandoned_stream_leaves_the_model_usable(model: EmbeddedModel) -> None:
    stream = model.stream([UserMessage("Tell me a long story about a dragon.")])
    async for event in stream:
        assert isinstance(event, TextDelta)
        break
    await stream.aclose()  # type: ignore[attr-defined]
    response = await model.complete([UserMessage("Say hi")], settings=ModelSettings(max_tokens=8))
    assert response.message.content


async def test_stream_of_a_tool_call_ends_with_the_call(model: EmbeddedModel) -> None:
    stream = model.stream([SYSTEM, UserMessage("Cancel W55")], tools=SPECS, tool_choice="required")
    events = [e async for e in stream]
    assert len(events) == 1 and isinstance(events[0], StreamDone)
    assert all(_valid(c) for c in events[0].response.message.tool_calls)


def test_token_counter_uses_the_model_tokenizer(model: EmbeddedModel) -> None:
    counter = model.token_counter()
    assert counter.count("") == 0
    assert 0 < counter.count("Where is my order #W1234?") < 20


def test_tool_call_schema_is_one_schema_per_tool() -> None:
    schema = tool_call_schema(refund_payment.spec)
    assert schema["properties"]["tool"] == {"const": "refund_payment"}
    assert schema["properties"]["arguments"]["required"] == ["order_id", "amount_cents"]
    assert schema["required"] == ["tool", "arguments"]


async def test_concurrent_calls_are_serialised(model: EmbeddedModel) -> None:
    asks = [UserMessage("Can I return a lamp?"), UserMessage("Can I return a shirt?")]
    responses = await asyncio.gather(
        *(model.complete([SYSTEM, a], tools=SPECS, tool_choice="get_return_policy") for a in asks)
    )
    assert all(_valid(r.message.tool_calls[0]) for r in responses)


async def test_every_call_asks_the_guard_first(model: EmbeddedModel) -> None:
    guard.block_real_models(True)
    try:
        with pytest.raises(ModelUnavailableError):
            await model.complete([UserMessage("hi")])
        with pytest.raises(ModelUnavailableError):
            [e async for e in model.stream([UserMessage("hi")])]
    finally:
        guard.block_real_models(False)


def test_weights_ship_in_the_wheel() -> None:
    assert default_model_path().is_file()


async def test_missing_model_file_is_unavailable_with_a_hint(tmp_path) -> None:
    missing = EmbeddedModel(tmp_path / "nope.gguf")
    with pytest.raises(ModelUnavailableError) as info:
        await missing.complete([UserMessage("hi")])
    assert "concierge[local]" in str(info.value)


async def test_missing_llama_cpp_is_unavailable_with_a_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # makes `import llama_cpp` fail
    with pytest.raises(ModelUnavailableError) as info:
        await EmbeddedModel().complete([UserMessage("hi")])
    assert "concierge[local]" in str(info.value)


def test_missing_weights_package_is_unavailable_with_a_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_installed(name: str) -> importlib.metadata.Distribution:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", not_installed)
    with pytest.raises(ModelUnavailableError) as info:
        default_model_path()
    assert "concierge[local]" in str(info.value)
