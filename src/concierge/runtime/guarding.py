"""The runtime's side of the turn guardrails: screen the message, build the facts a reply is judged
against, and swap in the checked reply (with its verdict on the bus)."""

from __future__ import annotations

import dataclasses
from typing import Any

from ..core.events import EventType
from ..core.messages import ToolResultMessage, UserMessage
from ..guardrails.output import OutputFacts
from ..guardrails.turn import TurnGuardrails
from ..llm.base import ModelResponse
from .result import TurnState

REPEATED = "repeated: not executed again"  # the loop's marker of a call it did not run again


async def screen_input(guardrails: TurnGuardrails | None, state: TurnState, text: str) -> bool:
    """Input guardrails on the customer's message; True when it must not reach the model. A long
    message is screened on a worker thread, so other sessions are served meanwhile."""
    verdict = await guardrails.screen_async(text) if guardrails is not None else None
    if verdict is None:
        return False
    if verdict.triggered and state.emit is not None:
        await state.emit(EventType.GUARDRAIL_TRIGGERED, **verdict.event_payload())
    return verdict.action == "block"


async def output_facts(guardrails: TurnGuardrails, executor: Any, instructions: str, state: TurnState) -> OutputFacts:
    """What this session's replies are judged against: the ledger (else this turn's calls), the
    lookups' results, and what the customer wrote (their own emails and phones may be repeated)."""
    ledger = getattr(executor, "ledger", None)
    entries = list(await ledger.entries(state.session_id)) if ledger is not None else [
        {"tool": s.name, "arguments": s.arguments or {}, "status": "failed" if s.error else "succeeded",
         "result": s.result_summary} for s in state.steps if s.kind == "tool" and s.error != REPEATED]
    conversation = (*state.history, *state.messages)
    lookups = [(m.name, m.content) for m in conversation if isinstance(m, ToolResultMessage) and not m.is_error]
    principal = state.principal
    return guardrails.facts(
        ledger_entries=entries, lookups=lookups,
        customer_texts=[m.content for m in conversation if isinstance(m, UserMessage)],
        customer_id=principal.customer_id or principal.user_id, instructions=instructions, tenant=principal.tenant)


async def with_checked_reply(response: ModelResponse, text: str, finding: dict[str, Any] | None,
                             state: TurnState) -> ModelResponse:
    """The response with the reply the customer may see, and the verdict on the bus when it changed."""
    if finding is None:
        return response
    if state.emit is not None:
        await state.emit(EventType.GUARDRAIL_TRIGGERED, **finding)
    return dataclasses.replace(response, message=dataclasses.replace(response.message, content=text))
