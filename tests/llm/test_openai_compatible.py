"""OpenAICompatibleModel: wire format against a mock transport, then a real llama.cpp server."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from concierge.core.errors import (
    ConfigError,
    ModelError,
    ModelHTTPError,
    ModelUnavailableError,
    ValidationError,
)
from concierge.core.messages import AssistantMessage, SystemMessage, ToolCall, ToolResultMessage, UserMessage
from concierge.llm._http import RetryPolicy
from concierge.llm.base import ChatModel, ModelSettings, StreamDone, TextDelta, ToolSpec
from concierge.llm.openai_compatible import OpenAICompatibleModel
from concierge.llm.pricing import PriceTable

ORDER_TOOL = ToolSpec(
    "get_order",
    "Look up an order by its id.",
    {
        "type": "object",
        "properties": {
            "order_id": {"type": "string", "maxLength": 8},
            "include_items": {"type": "boolean"},
        },
        "required": ["order_id", "include_items"],
    },
)
REFUND_TOOL = ToolSpec(
    "refund", "Refund an order.", {"type": "object", "properties": {"order_id": {"type": "string"}}}
)


class Recorder:
    """A MockTransport handler that plays canned responses and keeps the requests."""

    def __init__(self, *responses: httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]):
        self.responses = list(responses)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        item = self.responses.pop(0) if len(self.responses) > 1 else self.responses[0]
        if isinstance(item, Exception):
            raise item
        return item(request) if callable(item) else item

    def body(self, index: int = -1) -> dict[str, Any]:
        return json.loads(self.requests[index].content)


class Sleeps(list[float]):
    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


def make_model(recorder: Recorder, sleeps: Sleeps | None = None, **kwargs: Any) -> OpenAICompatibleModel:
    client = httpx.AsyncClient(transport=httpx.MockTransport(recorder))
    sleep = sleeps if sleeps is not None else Sleeps()
    return OpenAICompatibleModel(
        "gpt-test", "https://llm.example/v1/", api_key="sk-test", client=client, sleep=sleep, **kwargs
    )


def completion(
    message: dict[str, Any], usage: dict[str, int] | None = None, finish: str = "stop"
) -> httpx.Response:
    body = {
        "id": "chatcmpl-1",
        "model": "gpt-test-2025",
        "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}],
        "usage": usage or {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }
    return httpx.Response(200, json=body)


def sse(*chunks: dict[str, Any] | str) -> httpx.Response:
    text = "".join(f"data: {c if isinstance(c, str) else json.dumps(c)}\n\n" for c in chunks)
    return httpx.Response(200, content=text.encode(), headers={"content-type": "text/event-stream"})


# --------------------------------------------------------------------------- mock transport


@pytest.mark.real_model
async def test_request_body_has_messages_tools_choice_and_settings() -> None:
    recorder = Recorder(completion({"content": "done"}))
    model = make_model(recorder)
    history = [
        SystemMessage("Be brief."),
        UserMessage("Where is W1?"),
        AssistantMessage(
            "Checking.", (ToolCall("call_1", "get_order", {"order_id": "W1", "include_items": True}),)
        ),
        ToolResultMessage("call_1", "get_order", '{"status": "shipped"}'),
        ToolResultMessage("call_2", "refund", "not allowed", is_error=True),
    ]
    await model.complete(
        history,
        tools=[ORDER_TOOL, REFUND_TOOL],
        tool_choice="get_order",
        response_format={"type": "object", "properties": {"answer": {"type": "string"}}},
        settings=ModelSettings(temperature=0.2, max_tokens=64, seed=7),
    )
    request = recorder.requests[0]
    assert request.method == "POST"
    assert str(request.url) == "https://llm.example/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer sk-test"
    body = recorder.body()
    assert body["model"] == "gpt-test"
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Where is W1?"},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {
                        "name": "get_order",
                        "arguments": '{"order_id": "W1", "include_items": true}',
                    },
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"status": "shipped"}'},
        {"role": "tool", "tool_call_id": "call_2", "content": "Error: not allowed"},
    ]
    assert body["tools"][0] == {
        "type": "function",
        "function": {
            "name": "get_order",
            "description": ORDER_TOOL.description,
            "parameters": ORDER_TOOL.parameters,
        },
    }
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_order"}}
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {
            "name": "response",
            "schema": {"type": "object", "properties": {"answer": {"type": "string"}}},
        },
    }
    assert (body["temperature"], body["max_tokens"], body["seed"]) == (0.2, 64, 7)
    assert "stream" not in body


@pytest.mark.real_model
@pytest.mark.parametrize("choice", ["auto", "required", "none"])
async def test_keyword_tool_choices_pass_through(choice: str) -> None:
    recorder = Recorder(completion({"content": "ok"}))
    await make_model(recorder).complete([UserMessage("hi")], tools=[ORDER_TOOL], tool_choice=choice)
    assert recorder.body()["tool_choice"] == choice


@pytest.mark.real_model
async def test_no_tools_means_no_tool_fields_and_unknown_choice_is_rejected() -> None:
    recorder = Recorder(completion({"content": "ok"}))
    model = make_model(recorder)
    await model.complete([UserMessage("hi")])
    assert "tools" not in recorder.body() and "tool_choice" not in recorder.body()
    with pytest.raises(ValidationError, match="not among the tools"):
        await model.complete([UserMessage("hi")], tools=[ORDER_TOOL], tool_choice="cancel_order")
    assert len(recorder.requests) == 1


@pytest.mark.real_model
async def test_parses_tool_calls_usage_and_cost() -> None:
    recorder = Recorder(
        completion(
            {
                "content": None,
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "get_order", "arguments": '{"order_id": "W1"}'},
                    },
                    {"id": "c2", "type": "function", "function": {"name": "refund", "arguments": ""}},
                ],
            },
            usage={"prompt_tokens": 1000, "completion_tokens": 500},
            finish="tool_calls",
        )
    )
    model = make_model(recorder, prices=PriceTable({"gpt-test": (2.0, 8.0)}))
    response = await model.complete([UserMessage("hi")], tools=[ORDER_TOOL, REFUND_TOOL])
    assert response.message.tool_calls == (
        ToolCall("c1", "get_order", {"order_id": "W1"}),
        ToolCall("c2", "refund", {}),
    )
    assert response.message.content is None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (1000, 500)
    assert response.usage.cost_usd == pytest.approx((1000 * 2.0 + 500 * 8.0) / 1e6)
    assert response.finish_reason == "tool_calls"
    assert response.model == "gpt-test-2025"


@pytest.mark.real_model
async def test_malformed_tool_arguments_raise_model_error() -> None:
    truncated = '{"order_id": "W1"'
    bad = {"id": "c1", "type": "function", "function": {"name": "get_order", "arguments": truncated}}
    model = make_model(Recorder(completion({"content": None, "tool_calls": [bad]})))
    with pytest.raises(ModelError, match="malformed JSON arguments for tool 'get_order'"):
        await model.complete([UserMessage("hi")], tools=[ORDER_TOOL])


@pytest.mark.real_model
async def test_retries_429_then_succeeds_honouring_retry_after() -> None:
    recorder = Recorder(
        httpx.Response(429, json={"error": "slow down"}, headers={"retry-after": "2"}),
        completion({"content": "hello"}),
    )
    sleeps = Sleeps()
    response = await make_model(recorder, sleeps).complete([UserMessage("hi")])
    assert response.message.content == "hello"
    assert len(recorder.requests) == 2
    assert sleeps == [2.0]


@pytest.mark.real_model
async def test_server_errors_exhaust_retries_with_backoff() -> None:
    recorder = Recorder(httpx.Response(500, text="upstream exploded"))
    sleeps = Sleeps()
    with pytest.raises(ModelHTTPError) as info:
        await make_model(recorder, sleeps, max_retries=3).complete([UserMessage("hi")])
    assert len(recorder.requests) == 4
    assert info.value.status_code == 500
    assert "upstream exploded" in info.value.body
    assert info.value.hint and "try again later" in info.value.hint
    assert len(sleeps) == 3
    for attempt, slept in enumerate(sleeps):  # equal jitter: between half and all of the ceiling
        ceiling = min(8.0, 0.5 * 2**attempt)
        assert ceiling / 2 <= slept <= ceiling


@pytest.mark.real_model
async def test_unauthorized_fails_at_once_with_a_hint() -> None:
    recorder = Recorder(httpx.Response(401, json={"error": {"message": "invalid api key"}}))
    sleeps = Sleeps()
    with pytest.raises(ModelHTTPError, match="HTTP 401") as info:
        await make_model(recorder, sleeps).complete([UserMessage("hi")])
    assert len(recorder.requests) == 1 and sleeps == []
    assert info.value.hint and "API key" in info.value.hint
    assert "invalid api key" in str(info.value)


@pytest.mark.real_model
async def test_transport_errors_are_retried_then_reported() -> None:
    recorder = Recorder(httpx.ConnectError("refused"), completion({"content": "back"}))
    assert (await make_model(recorder).complete([UserMessage("hi")])).message.content == "back"
    assert len(recorder.requests) == 2

    failing = Recorder(httpx.ReadTimeout("slow"))
    with pytest.raises(ModelHTTPError, match="ReadTimeout") as info:
        await make_model(failing, max_retries=1).complete([UserMessage("hi")])
    assert info.value.status_code is None
    assert len(failing.requests) == 2


@pytest.mark.real_model
async def test_stream_yields_text_deltas_and_assembles_tool_calls() -> None:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"model": "gpt-test", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    recorder = Recorder(
        sse(
            chunk({"role": "assistant", "content": ""}),
            chunk({"content": "Let me "}),
            chunk({"content": "check."}),
            chunk({"tool_calls": [{"index": 0, "id": "c1", "type": "function",
                                   "function": {"name": "get_order", "arguments": '{"order'}}]}),
            chunk({"tool_calls": [{"index": 1, "id": "c2", "type": "function",
                                   "function": {"name": "refund", "arguments": ""}}]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": '_id": "W1"}'}}]}),
            chunk({"tool_calls": [{"index": 1, "function": {"arguments": '{"order_id": "W2"}'}}]}),
            chunk({}, finish="tool_calls"),
            {"model": "gpt-test", "choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 9}},
            "[DONE]",
        )
    )
    model = make_model(recorder)
    events = [e async for e in model.stream([UserMessage("hi")], tools=[ORDER_TOOL, REFUND_TOOL])]
    body = recorder.body()
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert events[:-1] == [TextDelta("Let me "), TextDelta("check.")]
    assert isinstance(events[-1], StreamDone)
    response = events[-1].response
    assert response.message.content == "Let me check."
    assert response.message.tool_calls == (
        ToolCall("c1", "get_order", {"order_id": "W1"}),
        ToolCall("c2", "refund", {"order_id": "W2"}),
    )
    assert (response.usage.input_tokens, response.usage.output_tokens) == (12, 9)
    assert response.finish_reason == "tool_calls"


@pytest.mark.real_model
async def test_stream_without_usage_estimates_it_and_bad_stream_arguments_fail() -> None:
    text_only = Recorder(sse({"choices": [{"index": 0, "delta": {"content": "Hi there"}}]}, "[DONE]"))
    events = [e async for e in make_model(text_only).stream([UserMessage("hello")])]
    done = events[-1]
    assert isinstance(done, StreamDone)
    assert done.response.usage.input_tokens > 0 and done.response.usage.output_tokens > 0

    broken = Recorder(sse({"choices": [{"index": 0, "delta": {"tool_calls": [
        {"index": 0, "id": "c1", "function": {"name": "get_order", "arguments": "{oops"}}]}}]}, "[DONE]"))
    with pytest.raises(ModelError, match="malformed JSON"):
        [e async for e in make_model(broken).stream([UserMessage("hi")], tools=[ORDER_TOOL])]


@pytest.mark.real_model
async def test_stream_retries_before_the_first_byte() -> None:
    recorder = Recorder(
        httpx.Response(503, text="busy"), sse({"choices": [{"delta": {"content": "ok"}}]}, "[DONE]")
    )
    events = [e async for e in make_model(recorder).stream([UserMessage("hi")])]
    assert events[0] == TextDelta("ok") and len(recorder.requests) == 2


class BrokenStream(httpx.AsyncByteStream):
    """A body that delivers one event, then loses the connection."""

    async def __aiter__(self):  # type: ignore[override]
        yield b'data: {"choices": [{"delta": {"content": "par"}}]}\n\n'
        raise httpx.ReadError("connection reset")


@pytest.mark.real_model
async def test_stream_that_breaks_off_raises_a_model_error() -> None:
    recorder = Recorder(httpx.Response(200, stream=BrokenStream(), headers={"content-type": "text/event-stream"}))
    events = []
    with pytest.raises(ModelHTTPError, match="broke off") as info:
        async for event in make_model(recorder).stream([UserMessage("hi")]):
            events.append(event)
    assert events == [TextDelta("par")]
    assert info.value.status_code is None and len(recorder.requests) == 1


async def test_real_calls_are_blocked_without_the_marker() -> None:
    recorder = Recorder(completion({"content": "never"}))
    model = make_model(recorder)
    with pytest.raises(ModelUnavailableError, match="openai-compatible"):
        await model.complete([UserMessage("hi")])
    with pytest.raises(ModelUnavailableError):
        [e async for e in model.stream([UserMessage("hi")])]
    assert recorder.requests == []


def test_constructor_rejects_bad_configuration() -> None:
    with pytest.raises(ConfigError, match="model name"):
        OpenAICompatibleModel("", "http://localhost:8000/v1")
    with pytest.raises(ConfigError, match="base_url") as info:
        OpenAICompatibleModel("m", "")
    assert info.value.hint
    with pytest.raises(ConfigError, match="http"):
        OpenAICompatibleModel("m", "localhost:8000/v1")
    with pytest.raises(ConfigError, match="max_retries"):
        OpenAICompatibleModel("m", "http://localhost:8000/v1", max_retries=-1)
    model = OpenAICompatibleModel("m", "http://localhost:8000/v1")
    assert model.name == "m" and isinstance(model, ChatModel)


def test_retry_delays_are_capped() -> None:
    policy = RetryPolicy(rand=lambda: 1.0)
    assert [policy.delay(n) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert RetryPolicy(rand=lambda: 0.0).delay(3) == 2.0
    assert policy.delay(0, retry_after=3.5) == 3.5
    assert policy.delay(0, retry_after=3600) == policy.max_retry_after_s


# --------------------------------------------------------------------------- real llama.cpp server


def assert_matches_schema(arguments: dict[str, Any], schema: dict[str, Any]) -> None:
    """Validate with jsonschema when it is installed, else check the parts this schema uses."""
    try:
        import jsonschema
    except ImportError:
        jsonschema = None
    if jsonschema is not None:
        jsonschema.validate(arguments, schema)
        return
    types: dict[str, Any] = {
        "string": str, "boolean": bool, "integer": int, "number": (int, float), "object": dict, "array": list
    }
    for key in schema.get("required", ()):
        assert key in arguments, f"required argument {key!r} missing from {arguments}"
    for key, value in arguments.items():
        prop = schema["properties"].get(key)
        assert prop is not None, f"unexpected argument {key!r}"
        assert isinstance(value, types[prop["type"]]), f"{key}={value!r} is not a {prop['type']}"
        if "maxLength" in prop:
            assert len(value) <= prop["maxLength"]


def real_model(base_url: str) -> OpenAICompatibleModel:
    # llama-cpp-python's server defaults repeat_penalty to 1.1, with which the grammar that
    # constrains a forced tool call's arguments is not enforced; 1.0 keeps the arguments valid.
    return OpenAICompatibleModel("smollm2", base_url, timeout_s=120, extra_body={"repeat_penalty": 1.0})


FAST = ModelSettings(temperature=0.0, max_tokens=48, seed=1)


@pytest.mark.real_model
async def test_real_server_plain_completion(llama_server: str) -> None:
    async with real_model(llama_server) as model:
        response = await model.complete(
            [SystemMessage("You are a helpful assistant."), UserMessage("Say hello in one short sentence.")],
            settings=FAST,
        )
    assert response.message.content and response.message.content.strip()
    assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0
    assert response.finish_reason in ("stop", "length")


@pytest.mark.real_model
async def test_real_server_forced_tool_call_matches_schema(llama_server: str) -> None:
    async with real_model(llama_server) as model:
        response = await model.complete(
            [UserMessage("Where is my order W123? Include the items.")],
            tools=[ORDER_TOOL],
            tool_choice="get_order",
            settings=FAST,
        )
        assert len(response.message.tool_calls) == 1
        call = response.message.tool_calls[0]
        assert call.name == "get_order" and call.id
        assert_matches_schema(call.arguments, ORDER_TOOL.parameters)

        # The server accepts the conversation back in our wire format: tool call, then its result.
        follow_up = await model.complete(
            [
                UserMessage("Where is my order W123?"),
                response.message,
                ToolResultMessage(call.id, call.name, '{"status": "shipped"}'),
            ],
            tools=[ORDER_TOOL],
            tool_choice="none",
            settings=ModelSettings(temperature=0.0, max_tokens=16),
        )
    assert follow_up.message.tool_calls == ()
    assert follow_up.usage.input_tokens > response.usage.input_tokens


@pytest.mark.real_model
async def test_real_server_streaming(llama_server: str) -> None:
    async with real_model(llama_server) as model:
        events = [e async for e in model.stream([UserMessage("Name three colours.")], settings=FAST)]
        deltas = [e.text for e in events if isinstance(e, TextDelta)]
        assert deltas, "expected at least one text delta"
        assert isinstance(events[-1], StreamDone) and sum(isinstance(e, StreamDone) for e in events) == 1
        assert events[-1].response.message.content == "".join(deltas)
        assert events[-1].response.usage.output_tokens > 0

        tool_events = [
            e async for e in model.stream(
                [UserMessage("Where is order W7?")],
                tools=[ORDER_TOOL],
                tool_choice="get_order",
                settings=FAST,
            )
        ]
    done = tool_events[-1]
    assert isinstance(done, StreamDone) and len(done.response.message.tool_calls) == 1
    assert_matches_schema(done.response.message.tool_calls[0].arguments, ORDER_TOOL.parameters)
