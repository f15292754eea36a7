from __future__ import annotations

import pytest

from concierge.core import (
    AssistantMessage,
    ConciergeError,
    ManualClock,
    SequentialIds,
    SystemMessage,
    ToolCall,
    ToolResultMessage,
    Usage,
    UserMessage,
    ValidationError,
    message_from_dict,
    message_to_dict,
)


@pytest.mark.parametrize("message", [
    SystemMessage("be kind"),
    UserMessage("hi"),
    AssistantMessage("ok"),
    AssistantMessage(None, (ToolCall("c1", "get_order", {"order_id": "W1", "n": [1, 2]}),)),
    ToolResultMessage("c1", "get_order", '{"a":1}', is_error=True),
])
def test_messages_round_trip_through_dicts(message):
    assert message_from_dict(message_to_dict(message)) == message


def test_malformed_records_raise_validation_errors():
    with pytest.raises(ValidationError, match="unknown message role"):
        message_from_dict({"role": "robot", "content": "x"})
    with pytest.raises(ValidationError, match="malformed"):
        message_from_dict({"role": "tool", "content": "x"})


def test_canonical_call_ignores_argument_order():
    a = ToolCall("1", "f", {"x": 1, "y": 2})
    b = ToolCall("2", "f", {"y": 2, "x": 1})
    assert a.canonical() == b.canonical() != ToolCall("3", "f", {"x": 2, "y": 1}).canonical()


def test_usage_adds_up():
    total = Usage(10, 5, 0.01) + Usage(1, 2, 0.02)
    assert (total.input_tokens, total.output_tokens, total.total_tokens) == (11, 7, 18)
    assert total.cost_usd == pytest.approx(0.03)


def test_clock_and_ids_are_deterministic():
    clock = ManualClock()
    start = clock.now()
    clock.advance(2.5)
    assert (clock.now() - start).total_seconds() == 2.5 and clock.monotonic() == 2.5
    with pytest.raises(ValueError):
        clock.advance(-1)
    ids = SequentialIds()
    assert [ids.new("s"), ids.new("c")] == ["s_1", "c_2"]


def test_errors_say_what_to_do():
    assert str(ConciergeError("bad thing", hint="do this")) == "bad thing (do this)"
