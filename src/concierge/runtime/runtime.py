"""`Runtime.turn()`: observe → think → act until the model answers in text.

The runtime is the coordinator of a turn whose planner is the model. It owns the hard
limits (steps, wall clock, tokens, cost), loop detection, tool-result truncation, the context
budget and the session lock; what a tool call *means* transactionally belongs to the
`ToolExecutor` it is given.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import Any

from opentelemetry import trace

from ..core.clock import Clock, SystemClock
from ..core.errors import ModelError, ValidationError
from ..core.events import EventSink, EventType
from ..core.messages import AssistantMessage, ToolCall, ToolResultMessage, UserMessage
from ..core.principal import Principal, as_principal
from ..core.reasoning import Strategy
from ..guardrails.turn import BLOCKED_REPLY, UNTRUSTED_NOTE, TurnGuardrails
from ..llm.base import ModelResponse, TextDelta, ToolChoice
from ..llm.tokens import EstimatingCounter, TokenCounter
from ..memory import Extraction, ExtractionError, Memory
from ..tools.confirmation import Decision, PendingAction, pending_actions
from ..tools.executor import DirectExecutor, ToolExecutor
from ..tools.outcome import ToolOutcome, error_message
from ..tools.tool import ToolContext
from .agent import Agent
from .closing import close_open_calls, emit_outcome, emit_tool_end, with_facts
from .confirming import ask_confirmation, decision_payload, open_decision, take_answer
from .context import ContextBuilder, ModelSummarizer, Summarizer, TokenTally
from .driver import SUMMARY_CHARS, RuntimeDriver, model_thoughts, stated_confidence
from .emitting import TurnEmitter
from .events import TurnEvent, TurnObserver
from .guarding import REPEATED, output_facts, screen_input, with_checked_reply
from .locks import SessionLocks
from .loop_guard import BLOCKED, LoopGuard, repeated_success
from .remembering import memory_user, recalled_instructions
from .result import TurnResult, TurnState
from .sessions.base import Session, SessionStore, TurnCommit, open_session
from .sessions.memory import InMemorySessionStore
from .strategy import ReActLoop, TurnStrategy
from .tracing import RecordedScope, SpanScope, TraceStep, TurnSpans, default_tracer, span_id_hex
from .truncation import render, truncate_result

logger = logging.getLogger(__name__)

SESSION_ID_RE = re.compile(r"^[A-Za-z0-9_.:@-]{1,128}$")
MAX_USER_MESSAGE_CHARS = 32_000
PIN_TOKENS = 60
_PRINCIPALS_MAX = 4096  # bare user ids whose Principal is kept for reuse
UNSURE = ("Not executed: you rated your confidence {confidence:.2f}, too low to change anything on a guess. "
          "Ask the customer to confirm exactly what they want first.")


class Runtime:
    """Runs turns of one agent over sessions kept in a `SessionStore`."""

    def __init__(
        self,
        agent: Agent,
        *,
        store: SessionStore | None = None,
        executor: ToolExecutor | None = None,
        summarizer: Summarizer | None = None,
        token_counter: TokenCounter | None = None,
        clock: Clock | None = None,
        tracer: trace.Tracer | None = None,
        locks: SessionLocks | None = None,
        events: EventSink | None = None,
        strategy: TurnStrategy | None = None,
        guardrails: TurnGuardrails | None = None,
        memory: Memory | None = None,
        memory_tokens: int = 300,
    ) -> None:
        self.agent = agent
        self.store: SessionStore = store if store is not None else InMemorySessionStore()
        self.executor: ToolExecutor = executor if executor is not None else DirectExecutor()
        if token_counter is None:
            make_counter = getattr(agent.model, "token_counter", None)
            token_counter = make_counter() if callable(make_counter) else EstimatingCounter()
        self.counter = token_counter
        self.context = ContextBuilder(
            token_counter, summarizer or ModelSummarizer(agent.model), agent.limits.context_tokens
        )
        self.clock = clock or SystemClock()
        self.tracer = tracer or default_tracer()
        self._spans = TurnSpans(self.tracer)
        self.locks = locks or SessionLocks()
        self.events = events  # where each turn's AgentEvents go (an EventProducer); None: nowhere
        # How each turn is reasoned out (ReAct, plan-then-execute, tree-of-thought, or a router).
        self.strategy: TurnStrategy = strategy if strategy is not None else ReActLoop()
        # Input screening, untrusted tool results and checked replies (None: none of it).
        self.guardrails = guardrails
        # What earlier conversations left about this customer, recalled into each turn's context.
        self.memory = memory
        self.memory_tokens = memory_tokens
        self.instructions = agent.instructions
        if guardrails is not None and guardrails.mark_tool_results and guardrails.input is not None:
            self.instructions = f"{agent.instructions}\n\n{UNTRUSTED_NOTE}"
        self._specs = agent.registry.specs()
        self._principals: dict[str, Principal] = {}
        self._recovered = False

    async def recover(self) -> None:
        """Let the executor settle what a crash left unfinished (ledger reconciliation), once."""
        recover = getattr(self.executor, "recover", None)
        if recover is not None:
            await recover(self.agent.registry)
        self._recovered = True

    async def turn(self, session_id: str, user_message: str | Decision, principal: Principal | str = "anonymous",
                   *, observer: TurnObserver | None = None) -> TurnResult:
        """Handle one user message; messages for the same session run one at a time, in arrival order.

        `user_message` is the customer's text, or a `Decision`: a press of Confirm or Decline on one
        pending action, which settles exactly that action (`ActionNotPending` if it is not waiting),
        is not screened as free text, and stays in the history as a confirmation marker.
        `principal` comes from authentication: its scopes decide which tools may run. `observer`
        receives the turn's events as they happen (tokens, tool calls, confirmation requests).
        """
        _validate_turn_input(session_id, user_message, principal)
        decision = user_message if isinstance(user_message, Decision) else None
        principal = self._principal(principal)
        if not self._recovered:
            await self.recover()
        async with self.locks.hold(session_id):
            attributes = {"concierge.session_id": session_id, "concierge.agent": self.agent.name}
            with self._span("concierge.turn", attributes) as span:
                store = self.store
                session = await open_session(store, session_id, self.clock.now())
                decided = None
                if decision is not None:
                    decided, user_message = open_decision(session.state, decision)
                assert isinstance(user_message, str)
                state = TurnState(session_id, principal, [UserMessage(user_message)],
                                  window_start=session.window_start, summary=session.summary, observer=observer,
                                  history=session.history)
                started = time.perf_counter()
                if self.events is not None:
                    state.emit = TurnEmitter(self.events, principal.tenant, session_id, session.turns + 1,
                                             span_id_hex(span), principal.user_id, agent_version(self.agent))
                    await state.emit(EventType.MESSAGE_RECEIVED, text=user_message, **(
                        {"decision": decision_payload(decision, decided)} if decision and decided else {}))
                notices = getattr(self.executor, "notices", None)
                if notices is not None:
                    state.notices = await notices(session_id)
                    state.new_pins.extend(state.notices)
                stopped_by: str | None = None
                # A decision carries no free text: there is nothing to screen.
                blocked = decided is None and self.guardrails is not None and \
                    await screen_input(self.guardrails, state, user_message)
                if self.memory is not None and not blocked:
                    state.instructions = await recalled_instructions(self.memory, self.instructions, session, state,
                                                                    user_message, self.memory_tokens)
                try:
                    async with asyncio.timeout(self.agent.limits.timeout_s):
                        guard = LoopGuard()  # one per turn: a repeat of a confirmed call is a repeat too
                        if blocked:  # the model never sees it
                            reply, stopped_by = BLOCKED_REPLY, "guardrail"
                        else:
                            # If actions await this user's answer: run them on a clear yes, drop them otherwise.
                            answer, actions = take_answer(session.state, user_message, decided)
                            reply, stopped_by = await self._run_confirmed(session, state, actions, guard) \
                                if answer == "yes" else ("", None)
                        if stopped_by is None:
                            # After running confirmed actions the model reports; it is not forced to act.
                            ran_confirmed = any(s.kind == "tool" for s in state.steps)
                            first_choice: ToolChoice | None = "auto" if ran_confirmed else None
                            strategy = self.strategy
                            if type(strategy) is ReActLoop:  # the default: what its run() does, without a driver
                                reply, stopped_by = await self._loop(session, state, guard, first_choice,
                                                                     ask_below=strategy.ask_below)
                            else:
                                driver = RuntimeDriver(self, session, state, guard, user_message, first_choice)
                                reply, stopped_by = await strategy.run(driver)
                            if stopped_by is None and state.pending:
                                reply, stopped_by = await ask_confirmation(state)
                            elif stopped_by is None and not reply.strip():
                                reply, stopped_by = self._handoff(session, state), "empty_reply"
                except TimeoutError:
                    reply, stopped_by = self._handoff(session, state), "timeout"
                except ModelError as exc:  # the provider failed after its retries: hand off, keep the turn
                    logger.warning("model failed in session %s: %s", session_id, exc)
                    span.record_exception(exc)
                    reply, stopped_by = self._handoff(session, state), "model_error"
                if stopped_by is not None:
                    span.set_attribute("concierge.stopped_by", stopped_by)
                    close_open_calls(state, stopped_by)
                    state.messages.append(AssistantMessage(content=reply))
                reply = with_facts(reply, state)
                if state.emit is not None:
                    await emit_outcome(state.emit, state, reply, stopped_by, started)
                ledger = getattr(self.executor, "ledger", None)
                if state.escalation is not None and ledger is not None:  # the person gets the record
                    state.escalation["ledger"] = [e.to_dict() for e in await ledger.entries(session_id)]
                await store.commit_turn(session, TurnCommit(
                    state.messages, state.new_pins, state.window_start, state.summary, session.state,
                    self.clock.now(),
                ))
                return TurnResult(session_id, reply, tuple(state.steps), state.usage, stopped_by,
                                  span_id_hex(span), tuple(state.messages), tuple(state.pending),
                                  state.escalation, tuple(state.notices), tuple(state.reasoning),
                                  tuple(pending_actions(session.state, None)))

    def _principal(self, principal: Principal | str) -> Principal:
        """`as_principal`, a bare user id's Principal (immutable) built once and reused."""
        if isinstance(principal, Principal):
            return principal
        known = self._principals.get(principal)
        if known is None:
            if len(self._principals) >= _PRINCIPALS_MAX:
                self._principals.clear()
            known = self._principals[principal] = as_principal(principal)
        return known

    def _span(self, name: str, attributes: dict[str, Any] | None = None) -> SpanScope | RecordedScope:
        """A span scope from the runtime's tracer (which a caller may have replaced since)."""
        spans = self._spans
        if spans.tracer is not self.tracer:
            spans = self._spans = TurnSpans(self.tracer)
        return spans.open(name, attributes)

    async def _loop(self, session: Session, state: TurnState, guard: LoopGuard,
                    first_choice: ToolChoice | None = None, *, strategy: Strategy = "react",
                    ask_below: float | None = None) -> tuple[str, str | None]:
        """ReAct: the model thinks (its text beside a tool call is the thought), acts, observes."""
        agent = self.agent
        limits = agent.limits
        tool_choice = first_choice or agent.tool_choice
        context = self._context(session, state)
        tally = TokenTally()  # each message of the window is counted once per turn, not once per step
        for _ in range(limits.max_steps):
            window = await self.context.build(state.instructions or self.instructions, session, state.window_start,
                                              state.summary,
                                              (*session.pinned_facts, *state.new_pins), state.messages, tally)
            if window.summarized:
                state.window_start, state.summary = window.window_start, window.summary
                state.steps.append(TraceStep("summary", "context", None, window.summary or "", 0.0))
            response = await self._call_model(window.messages, tool_choice, state)
            message = response.message
            state.messages.append(message)
            confidence = stated_confidence(message.content)
            for thought in model_thoughts(state, strategy, message, confidence):  # what `record_step` does
                state.reasoning.append(thought)
                if state.emit is not None:
                    await state.emit(EventType.REASONING_STEP, **thought.to_dict())
            if not message.tool_calls:
                if message.content and message.content.strip():
                    return message.content, None
                return self._handoff(session, state), "empty_reply"
            if self._over_budget(state):
                return self._handoff(session, state), "budget"
            tool_choice = "auto"
            if ask_below is not None and confidence is not None and confidence < ask_below and \
                    _any_write(agent.registry._tools, message.tool_calls):
                # The model itself is unsure and would change something: it asks instead.
                for call in message.tool_calls:
                    note = UNSURE.format(confidence=confidence)
                    state.messages.append(ToolResultMessage(call.id, call.name, note, True))
                    state.steps.append(TraceStep("tool", call.name, call.arguments, note[:SUMMARY_CHARS], 0.0,
                                                 error=note))
                tool_choice = "none"
                continue
            if guard.all_repeated(message.tool_calls):
                # Only repeats of finished calls: drop them from the conversation (the trace keeps
                # them) so the model answers from the real results, not from a note about repeating.
                state.messages.pop()
                for call in message.tool_calls:
                    state.steps.append(TraceStep("tool", call.name, call.arguments, "", 0.0, error=REPEATED))
                tool_choice = "none"
                continue
            for call in message.tool_calls:
                ran, _ = await self._run_tool(call, context, guard, state)
                if not ran:
                    tool_choice = "none"  # it repeated a finished or twice-failed call: now it must answer
                if state.escalation is not None:
                    return self._escalate(state), "escalated"
            if state.pending:
                return await ask_confirmation(state)
        return self._handoff(session, state), "max_steps"

    async def end_conversation(self, session_id: str, principal: Principal | str = "anonymous") -> Extraction | None:
        """The conversation is over: extract what is worth remembering about the customer (with the
        agent's model) into memory. None without memory or when the model's extraction is unusable."""
        if self.memory is None:
            return None
        principal = as_principal(principal)
        session = await self.store.load(session_id)
        user = memory_user(principal, session.state) if session is not None else None
        if session is None or not session.history or user is None:
            return None
        try:
            return await self.memory.remember_conversation(self.agent.model, principal.tenant, user, session_id,
                                                           session.history)
        except ExtractionError as exc:
            logger.warning("nothing remembered from %s: %s", session_id, exc)
            return None

    def _context(self, session: Session, state: TurnState) -> ToolContext:
        first = state.messages[0] if state.messages else None
        return ToolContext(state.session_id, state.principal, session.state, emit=state.emit,
                           user_message=first.content if isinstance(first, UserMessage) else "")

    async def _run_confirmed(self, session: Session, state: TurnState, actions: list[PendingAction],
                             guard: LoopGuard) -> tuple[str, str | None]:
        """Run the actions the user just confirmed."""
        calls = [ToolCall(f"confirmed-{a.id}", a.tool, a.arguments) for a in actions]
        state.messages.append(AssistantMessage(content=None, tool_calls=tuple(calls)))
        context = self._context(session, state)
        for call in calls:
            await self._run_tool(call, context, guard, state)
            if state.escalation is not None:
                return self._escalate(state), "escalated"
        return "", None

    async def _call_model(self, messages, tool_choice, state: TurnState, *, tools=None, response_format=None):
        """One model call, in the turn's usage, trace, span and events. A structured-output call (a
        strategy's plan or branches) is never streamed to the customer."""
        agent = self.agent
        if state.emit is not None:
            await state.emit(EventType.LLM_CALL_START, model=agent.model.name)
        checked = self.guardrails is not None and self.guardrails.output is not None and response_format is None
        facts = await output_facts(self.guardrails, self.executor, self.agent.instructions, state) \
            if checked and self.guardrails is not None else None
        with self._span("llm.complete") as span:
            started = time.perf_counter()
            if state.observer is None or response_format is not None:
                response = await agent.model.complete(
                    messages, tools=self._specs if tools is None else tools, tool_choice=tool_choice,
                    response_format=response_format, settings=agent.model_settings
                )
                if facts is not None and response.message.content:
                    assert self.guardrails is not None and self.guardrails.output is not None
                    verdict = self.guardrails.output.check(response.message.content, facts)
                    response = await with_checked_reply(response, verdict.text, verdict.payload() if verdict.changed
                                                       else None, state)
            else:
                response = await self._stream_model(messages, tool_choice, state, facts)
            latency_ms = (time.perf_counter() - started) * 1000
            usage = response.usage
            span.set_attributes({  # one call: the SDK takes the span's lock once per call
                "gen_ai.request.model": agent.model.name,
                "gen_ai.usage.input_tokens": usage.input_tokens,
                "gen_ai.usage.output_tokens": usage.output_tokens,
            })
        state.usage = state.usage + usage
        message = response.message
        calls = message.tool_calls
        summary = message.content or (calls[0].name if len(calls) == 1 else ", ".join(c.name for c in calls))
        state.steps.append(TraceStep("model", agent.model.name, None, summary[:SUMMARY_CHARS], latency_ms,
                                     usage.input_tokens, usage.output_tokens, usage.cost_usd))
        if state.emit is not None:
            await state.emit(EventType.LLM_CALL_END, model=agent.model.name, latency_ms=round(latency_ms, 3),
                             input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
                             cost_usd=usage.cost_usd, tool_calls=[c.name for c in message.tool_calls])
        return response

    async def _stream_model(self, messages, tool_choice, state: TurnState, facts) -> ModelResponse:
        """The model's answer through `stream()`, each piece of text passed to the observer; with output
        guardrails, through a checker that holds back each sentence until it is judged."""
        observer = state.observer
        assert observer is not None
        checker = self.guardrails.stream(facts) if self.guardrails is not None and facts is not None else None
        response: ModelResponse | None = None
        async for event in self.agent.model.stream(messages, tools=self._specs, tool_choice=tool_choice,
                                                   settings=self.agent.model_settings):
            if isinstance(event, TextDelta):
                for piece in checker.feed(event.text) if checker is not None else (event.text,):
                    await observer(TurnEvent("token", {"text": piece}))
            else:
                response = event.response
        if response is None:
            raise ModelError(f"{self.agent.model.name} ended its stream without a response")
        if checker is not None:
            for piece in checker.close():
                await observer(TurnEvent("token", {"text": piece}))
            verdict = checker.verdict()
            if response.message.content:
                response = await with_checked_reply(response, checker.text, verdict.payload() if verdict.changed
                                                   else None, state)
        return response

    async def _run_tool(self, call: ToolCall, context: ToolContext, guard: LoopGuard,
                        state: TurnState) -> tuple[bool, ToolOutcome]:
        """Run one call and record its result; False when it was a repeat that was not executed (or
        a call the loop guard blocked), with the outcome (a repeat's is the earlier result)."""
        tool = self.agent.registry._tools.get(call.name)  # direct dict lookup: hot path
        earlier = guard.earlier_result(call)
        if earlier is not None:
            note = repeated_success(earlier)
            state.messages.append(ToolResultMessage(call.id, call.name, note))
            state.steps.append(TraceStep("tool", call.name, call.arguments, note[:SUMMARY_CHARS], 0.0,
                                         error=REPEATED))
            return False, ToolOutcome(value=note)
        if state.observer is not None:
            await state.observer(TurnEvent("tool_started", {"id": call.id, "name": call.name,
                                                            "arguments": call.arguments}))
        if state.emit is not None:
            await state.emit(EventType.TOOL_CALL_START, tool=call.name, arguments=call.arguments)
        with self._span("tool.execute", {"concierge.tool": call.name}) as span:
            started = time.perf_counter()
            if tool is None:
                names = ", ".join(t.name for t in self.agent.registry)
                outcome = ToolOutcome(error=f"There is no tool named {call.name!r}. Available tools: {names}.")
            elif guard.blocked(call):
                outcome = ToolOutcome(error=BLOCKED)
            else:
                outcome = await self.executor.execute(tool, call, context)
            latency_ms = (time.perf_counter() - started) * 1000
            if outcome.attributes:
                span.set_attributes(outcome.attributes)
            if outcome.error is not None:
                span.set_attribute("concierge.tool.status", outcome.status)
                span.set_attribute("concierge.tool.error", outcome.error[:SUMMARY_CHARS])
        status = "pending" if outcome.pending else outcome.status  # what the customer sees on the tool's chip
        if state.observer is not None:
            await state.observer(TurnEvent("tool_finished", {
                "id": call.id, "name": call.name, "status": status, "latency_ms": round(latency_ms, 3),
                "error": outcome.error}))
        if state.emit is not None:
            await emit_tool_end(state.emit, call, outcome, latency_ms)
        if outcome.pending is not None:
            state.pending.append(outcome.pending)
        elif outcome.error is not None and tool is not None and tool.writes and outcome.error is not BLOCKED:
            state.unfinished_writes.append((call, outcome))
        if outcome.escalate:
            state.escalation = {"tool": call.name, "arguments": call.arguments, "status": outcome.status,
                                "reason": error_message(outcome.error or ""), "key": outcome.key}
        if outcome.error is not None:
            content = outcome.error
            if outcome.error is not BLOCKED:
                note = guard.record_failure(call)
                if note:
                    content = f"{content}\n{note}"
            state.messages.append(ToolResultMessage(call.id, call.name, content, True))
            state.steps.append(TraceStep("tool", call.name, call.arguments, content[:SUMMARY_CHARS], latency_ms,
                                         error=outcome.error, status=status))
            return outcome.error is not BLOCKED, outcome
        assert tool is not None
        budget = self.agent.limits.max_tool_result_tokens
        content = truncate_result(outcome.value, tool.essential_fields, budget, self.counter)
        if self.guardrails is not None:
            content, verdict = await self.guardrails.screen_tool_result_async(content, call.name)
            if verdict is not None and verdict.triggered and state.emit is not None:
                await state.emit(EventType.GUARDRAIL_TRIGGERED, **verdict.event_payload())
        state.messages.append(ToolResultMessage(call.id, call.name, content))
        state.steps.append(TraceStep("tool", call.name, call.arguments, content[:SUMMARY_CHARS], latency_ms,
                                     status=status))
        guard.record_success(call, content, changed_state=tool.writes)
        if isinstance(outcome.value, dict) and isinstance(cited := outcome.value.get("cite"), list):
            state.citations.extend(str(c) for c in cited if str(c) not in state.citations)
        if tool.writes:
            state.new_pins.append(self._pin(call, tool.essential_fields, outcome.value))
        return True, outcome

    def _pin(self, call: ToolCall, essential: tuple[str, ...], value: object) -> str:
        if essential and isinstance(value, dict):
            value = {k: value[k] for k in essential if k in value}
        result = truncate_result(value, (), PIN_TOKENS, self.counter)
        return f"{call.name}({render(call.arguments)}) succeeded: {result}"

    def _over_budget(self, state: TurnState) -> bool:
        limits = self.agent.limits
        if limits.max_tokens is not None and state.usage.total_tokens > limits.max_tokens:
            return True
        return limits.max_cost_usd is not None and state.usage.cost_usd > limits.max_cost_usd

    def _escalate(self, state: TurnState) -> str:
        escalation = state.escalation or {}
        reply = f"I am handing this to a colleague. {escalation.get('reason', '')}".strip()
        if state.new_pins:
            reply += " Already done: " + "; ".join(state.new_pins)
        return reply

    def _handoff(self, session: Session, state: TurnState) -> str:
        """An honest hand-off: no promise, plus what really was done this turn."""
        reply = self.agent.handoff_message
        if state.new_pins:
            reply += " Already done: " + "; ".join(state.new_pins)
        return reply


# A function rather than a generator expression in `_loop`, which would keep the names it uses in
# cells for as long as the loop runs (through every model call), one more object each to collect.
def _any_write(tools: dict[str, Any], calls: tuple[ToolCall, ...]) -> bool:
    return any((tool := tools.get(c.name)) is not None and tool.writes for c in calls)


def agent_version(agent: Agent) -> str:
    return f"{agent.name}@{agent.version}" if agent.version else agent.name


def _validate_turn_input(session_id: object, user_message: object, principal: object) -> None:
    if not isinstance(session_id, str) or not SESSION_ID_RE.match(session_id):
        raise ValidationError(
            f"invalid session id {session_id!r}",
            hint="use 1-128 characters from letters, digits and . _ : @ -",
        )
    if isinstance(user_message, Decision):
        pass  # validated when it was built
    elif not isinstance(user_message, str) or not user_message.strip():
        raise ValidationError("the user message is empty", hint="send the customer's text")
    elif len(user_message) > MAX_USER_MESSAGE_CHARS:
        raise ValidationError(
            f"the user message has {len(user_message)} characters",
            hint=f"send at most {MAX_USER_MESSAGE_CHARS} characters per message",
        )
    if isinstance(principal, Principal):
        return
    if not isinstance(principal, str) or not principal.strip():
        raise ValidationError("the principal is empty", hint="say who is asking (a customer or operator id)")
