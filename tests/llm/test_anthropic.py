"""AnthropicModel against a mock transport that plays the Messages API."""

from __future__ import annotations

import json
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
from concierge.llm.anthropic import RESPONSE_TOOL, AnthropicModel
from concierge.llm.base import ChatModel, ModelSettings, StreamDone, TextDelta, ToolSpec
from concierge.llm.pricing import PriceTable

ORDER_TOOL = ToolSpec(
    "get_order",
    "Look up an order by its id.",
    {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]},
)
REFUND_TOOL = ToolSpec(
    "refund", "Refund an order.", {"type": "object", "properties": {"order_id": {"type": "string"}}}
)
ANSWER_SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}


class Recorder:
    """A MockTransport handler that plays canned responses in order and keeps the requests."""

    def __init__(self, *responses: httpx.Response) -> None:
        self.responses = list(responses)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.responses.pop(0) if len(self.responses) > 1 else self.responses[0]

    def body(self, index: int = -1) -> dict[str, Any]:
        return json.loads(self.requests[index].content)


class Sleeps(list[float]):
    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


def make_model(recorder: Recorder, sleeps: Sleeps | None = None, **kwargs: Any) -> AnthropicModel:
    client = httpx.AsyncClient(transport=httpx.MockTransport(recorder))
    sleep = sleeps if sleeps is not None else Sleeps()
    return AnthropicModel("claude-test", "sk-ant-test", client=client, sleep=sleep, **kwargs)


def message(
    *content: dict[str, Any], stop: str = "end_turn", usage: dict[str, int] | None = None
) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-test-2025",
            "content": list(content),
            "stop_reason": stop,
            "usage": usage or {"input_tokens": 20, "output_tokens": 7},
        },
    )


def sse(*events: dict[str, Any]) -> httpx.Response:
    text = "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events)
    return httpx.Response(200, content=text.encode(), headers={"content-type": "text/event-stream"})


def overloaded() -> httpx.Response:
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    return httpx.Response(529, json=error)


@pytest.mark.real_model
async def test_request_separates_system_and_groups_tool_results() -> None:
    recorder = Recorder(message({"type": "text", "text": "ok"}))
    model = make_model(recorder)
    history = [
        SystemMessage("You are a support agent."),
        SystemMessage("Be brief."),
        UserMessage("Refund W1 and tell me about W2."),
        AssistantMessage(
            "Looking.",
            (
                ToolCall("tu_1", "get_order", {"order_id": "W2"}),
                ToolCall("tu_2", "refund", {"order_id": "W1"}),
            ),
        ),
        ToolResultMessage("tu_1", "get_order", '{"status": "shipped"}'),
        ToolResultMessage("tu_2", "refund", "refunds need approval", is_error=True),
        UserMessage("Thanks."),
    ]
    await model.complete(
        history,
        tools=[ORDER_TOOL, REFUND_TOOL],
        tool_choice="get_order",
        settings=ModelSettings(temperature=0.1),
    )
    request = recorder.requests[0]
    assert str(request.url) == "https://api.anthropic.com/v1/messages"
    assert request.headers["x-api-key"] == "sk-ant-test"
    assert request.headers["anthropic-version"] == "2023-06-01"
    body = recorder.body()
    assert body["model"] == "claude-test" and body["max_tokens"] == 1024 and body["temperature"] == 0.1
    assert body["system"] == "You are a support agent.\n\nBe brief."
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Refund W1 and tell me about W2."}]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Looking."},
                {"type": "tool_use", "id": "tu_1", "name": "get_order", "input": {"order_id": "W2"}},
                {"type": "tool_use", "id": "tu_2", "name": "refund", "input": {"order_id": "W1"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "tu_1", "content": '{"status": "shipped"}'},
                {
                    "type": "tool_result",
                    "tool_use_id": "tu_2",
                    "content": "refunds need approval",
                    "is_error": True,
                },
                {"type": "text", "text": "Thanks."},
            ],
        },
    ]
    assert body["tools"][0] == {
        "name": "get_order", "description": ORDER_TOOL.description, "input_schema": ORDER_TOOL.parameters
    }
    assert body["tool_choice"] == {"type": "tool", "name": "get_order"}
    assert "stream" not in body


@pytest.mark.real_model
@pytest.mark.parametrize(
    ("choice", "wire"),
    [("auto", {"type": "auto"}), ("required", {"type": "any"}), ("none", {"type": "none"})],
)
async def test_tool_choice_mapping(choice: str, wire: dict[str, str]) -> None:
    recorder = Recorder(message({"type": "text", "text": "ok"}))
    await make_model(recorder).complete([UserMessage("hi")], tools=[ORDER_TOOL], tool_choice=choice)
    assert recorder.body()["tool_choice"] == wire


@pytest.mark.real_model
async def test_settings_override_max_tokens_and_unknown_tools_are_rejected() -> None:
    recorder = Recorder(message({"type": "text", "text": "ok"}))
    model = make_model(recorder, max_tokens=256)
    await model.complete([UserMessage("hi")])
    assert recorder.body()["max_tokens"] == 256
    assert "tools" not in recorder.body() and "system" not in recorder.body()
    await model.complete([UserMessage("hi")], settings=ModelSettings(max_tokens=32))
    assert recorder.body()["max_tokens"] == 32
    with pytest.raises(ValidationError, match="not among the tools"):
        await model.complete([UserMessage("hi")], tools=[ORDER_TOOL], tool_choice="cancel")


@pytest.mark.real_model
async def test_parses_text_tool_use_usage_and_cost() -> None:
    recorder = Recorder(
        message(
            {"type": "text", "text": "Let me check."},
            {"type": "tool_use", "id": "tu_9", "name": "get_order", "input": {"order_id": "W9"}},
            stop="tool_use",
            usage={"input_tokens": 2000, "output_tokens": 100, "cache_read_input_tokens": 1000},
        )
    )
    model = make_model(recorder, prices=PriceTable({"claude-test": (3.0, 15.0)}))
    response = await model.complete([UserMessage("Where is W9?")], tools=[ORDER_TOOL])
    assert response.message.content == "Let me check."
    assert response.message.tool_calls == (ToolCall("tu_9", "get_order", {"order_id": "W9"}),)
    assert (response.usage.input_tokens, response.usage.output_tokens) == (3000, 100)
    assert response.usage.cost_usd == pytest.approx((3000 * 3.0 + 100 * 15.0) / 1e6)
    assert response.finish_reason == "tool_use"
    assert response.model == "claude-test-2025"


@pytest.mark.real_model
async def test_response_format_is_served_by_a_forced_tool() -> None:
    recorder = Recorder(
        message({"type": "tool_use", "id": "tu_1", "name": RESPONSE_TOOL, "input": {"answer": "42"}})
    )
    response = await make_model(recorder).complete([UserMessage("Answer?")], response_format=ANSWER_SCHEMA)
    body = recorder.body()
    assert body["tools"] == [
        {"name": RESPONSE_TOOL, "description": body["tools"][0]["description"], "input_schema": ANSWER_SCHEMA}
    ]
    assert body["tool_choice"] == {"type": "tool", "name": RESPONSE_TOOL}
    assert json.loads(response.message.content or "") == {"answer": "42"}
    assert response.message.tool_calls == ()

    # With real tools too, the model must either call one of them or answer in structure.
    await make_model(recorder).complete([UserMessage("?")], tools=[ORDER_TOOL], response_format=ANSWER_SCHEMA)
    assert recorder.body()["tool_choice"] == {"type": "any"}
    assert [t["name"] for t in recorder.body()["tools"]] == ["get_order", RESPONSE_TOOL]


@pytest.mark.real_model
async def test_retries_overloaded_529_then_succeeds() -> None:
    recorder = Recorder(overloaded(), overloaded(), message({"type": "text", "text": "finally"}))
    sleeps = Sleeps()
    response = await make_model(recorder, sleeps).complete([UserMessage("hi")])
    assert response.message.content == "finally"
    assert len(recorder.requests) == 3 and len(sleeps) == 2


@pytest.mark.real_model
async def test_persistent_overload_and_bad_key_raise_http_errors() -> None:
    recorder = Recorder(overloaded())
    with pytest.raises(ModelHTTPError) as info:
        await make_model(recorder, max_retries=2).complete([UserMessage("hi")])
    assert info.value.status_code == 529 and len(recorder.requests) == 3
    assert "overloaded_error" in info.value.body

    unauthorized = Recorder(
        httpx.Response(
            401, json={"type": "error", "error": {"type": "authentication_error", "message": "bad key"}}
        )
    )
    with pytest.raises(ModelHTTPError, match="HTTP 401") as info:
        await make_model(unauthorized).complete([UserMessage("hi")])
    assert len(unauthorized.requests) == 1 and info.value.hint and "API key" in info.value.hint


def stream_events(*blocks: list[dict[str, Any]], stop: str = "end_turn") -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = [
        {
            "type": "message_start",
            "message": {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-test-2025",
                        "content": [], "usage": {"input_tokens": 25, "output_tokens": 1}},
        }
    ]
    for block in blocks:
        events.extend(block)
    events.append({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                   "usage": {"output_tokens": 42}})
    events.append({"type": "message_stop"})
    return events


def text_block(index: int, *pieces: str) -> list[dict[str, Any]]:
    return [
        {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}},
        {"type": "ping"},
        *(
            {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": piece}}
            for piece in pieces
        ),
        {"type": "content_block_stop", "index": index},
    ]


def tool_block(index: int, call_id: str, name: str, *fragments: str) -> list[dict[str, Any]]:
    return [
        {"type": "content_block_start", "index": index,
         "content_block": {"type": "tool_use", "id": call_id, "name": name, "input": {}}},
        *(
            {"type": "content_block_delta", "index": index,
             "delta": {"type": "input_json_delta", "partial_json": fragment}}
            for fragment in fragments
        ),
        {"type": "content_block_stop", "index": index},
    ]


@pytest.mark.real_model
async def test_stream_yields_text_and_accumulates_tool_input_json() -> None:
    recorder = Recorder(
        sse(
            *stream_events(
                text_block(0, "Checking ", "both."),
                tool_block(1, "tu_1", "get_order", '{"order', '_id": ', '"W1"}'),
                tool_block(2, "tu_2", "refund", ""),
                stop="tool_use",
            )
        )
    )
    model = make_model(recorder)
    events = [e async for e in model.stream([UserMessage("hi")], tools=[ORDER_TOOL, REFUND_TOOL])]
    assert recorder.body()["stream"] is True
    assert events[:-1] == [TextDelta("Checking "), TextDelta("both.")]
    done = events[-1]
    assert isinstance(done, StreamDone)
    assert done.response.message.content == "Checking both."
    assert done.response.message.tool_calls == (
        ToolCall("tu_1", "get_order", {"order_id": "W1"}),
        ToolCall("tu_2", "refund", {}),
    )
    assert (done.response.usage.input_tokens, done.response.usage.output_tokens) == (25, 42)
    assert done.response.finish_reason == "tool_use"
    assert done.response.model == "claude-test-2025"


@pytest.mark.real_model
async def test_stream_of_structured_answer_streams_its_json_as_text() -> None:
    recorder = Recorder(sse(*stream_events(tool_block(0, "tu_1", RESPONSE_TOOL, '{"answer"', ': "42"}'))))
    events = [e async for e in make_model(recorder).stream([UserMessage("?")], response_format=ANSWER_SCHEMA)]
    deltas = [e.text for e in events if isinstance(e, TextDelta)]
    done = events[-1]
    assert isinstance(done, StreamDone)
    assert done.response.message.content == "".join(deltas) == '{"answer": "42"}'
    assert done.response.message.tool_calls == ()


@pytest.mark.real_model
async def test_stream_errors_mid_stream_and_malformed_input_json() -> None:
    failing = Recorder(sse(stream_events()[0], {"type": "error", "error": {"type": "overloaded_error"}}))
    with pytest.raises(ModelError, match="mid-stream"):
        [e async for e in make_model(failing).stream([UserMessage("hi")])]

    broken = Recorder(sse(*stream_events(tool_block(0, "tu_1", "get_order", '{"order_id": '))))
    with pytest.raises(ModelError, match="malformed JSON arguments for tool 'get_order'"):
        [e async for e in make_model(broken).stream([UserMessage("hi")], tools=[ORDER_TOOL])]


@pytest.mark.real_model
async def test_stream_retries_overload_before_the_first_event() -> None:
    recorder = Recorder(overloaded(), sse(*stream_events(text_block(0, "hi"))))
    events = [e async for e in make_model(recorder).stream([UserMessage("hi")])]
    assert events[0] == TextDelta("hi") and len(recorder.requests) == 2


async def test_real_calls_are_blocked_without_the_marker() -> None:
    recorder = Recorder(message({"type": "text", "text": "never"}))
    model = make_model(recorder)
    with pytest.raises(ModelUnavailableError, match="anthropic"):
        await model.complete([UserMessage("hi")])
    with pytest.raises(ModelUnavailableError):
        [e async for e in model.stream([UserMessage("hi")])]
    assert recorder.requests == []


def test_constructor_validates_configuration() -> None:
    with pytest.raises(ConfigError, match="model name"):
        AnthropicModel("", "key")
    with pytest.raises(ConfigError, match="api_key") as info:
        AnthropicModel("claude-test", "")
    assert info.value.hint
    with pytest.raises(ConfigError, match="max_tokens"):
        AnthropicModel("claude-test", "key", max_tokens=0)
    model = AnthropicModel("claude-test", "key", base_url="https://proxy.example/")
    assert model.name == "claude-test" and model.base_url == "https://proxy.example"
    assert isinstance(model, ChatModel)
