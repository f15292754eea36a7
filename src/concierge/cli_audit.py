"""`concierge audit CONVERSATION_ID`: every decision of one conversation, turn by turn, from the audit index.

The index (`concierge.guardrails.audit.AuditIndex`) is first caught up with the configured bus
(`[events] bus`), exactly once, then queried; the query's own time is printed under the trace.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.tree import Tree

from .core.errors import ConciergeError, ConfigError, ValidationError
from .guardrails.audit import (
    DEFAULT_URL,
    AuditIndex,
    AuditTrail,
    CatchUp,
    Decisions,
    TurnDecisions,
    UnknownConversationError,
    check_id,
)

console = Console(highlight=False)
err_console = Console(highlight=False, stderr=True)
TEXT = 160  # characters of free text shown per line in the tree


def _fail(exc: ConciergeError) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
    return typer.Exit(2 if isinstance(exc, ConfigError | ValidationError | UnknownConversationError) else 1)


def audit_command(
    conversation_id: Annotated[str, typer.Argument(help="The conversation (session) id.")],
    tenant: Annotated[str | None, typer.Option(
        "--tenant", "-t", help="The conversation's tenant (default: the only tenant that has this id).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the decisions as JSON instead of a tree.")] = False,
    catch_up: Annotated[bool, typer.Option(
        "--catch-up/--no-catch-up", help="First index what the event bus (setting events.bus) holds that the index lacks.")] = True,
    index: Annotated[str | None, typer.Option(
        "--index", help=f"The audit index: an SQLAlchemy URL or a SQLite file (default: {DEFAULT_URL}).")] = None,
    events: Annotated[bool, typer.Option("--events", help="With --json: also every raw event of each turn.")] = False,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Path of a concierge.toml.")] = None,
) -> None:
    """The decision trace of one conversation: inputs, retrievals, reasoning, guardrails, tools, replies."""
    from .settings import load_settings

    try:
        check_id("conversation id", conversation_id)
        if tenant is not None:
            check_id("tenant", tenant)
        settings = load_settings(config)
        decisions, took, caught = asyncio.run(_audit(settings.events.bus, settings.events.partitions,
                                                     index or settings.events.audit_url,
                                                     conversation_id, tenant, catch_up))
    except ConciergeError as exc:
        raise _fail(exc) from None
    status = err_console if as_json else console
    if caught is not None:
        status.print(f"[dim]index: {caught.added:,} new events of {caught.read:,} read from {settings.events.bus}"
                     + (f", {caught.skipped:,} records not events" if caught.skipped else "") + "[/]")
    if as_json:
        typer.echo(json.dumps({**decisions.to_dict(events=events), "query_ms": round(took * 1000, 3)}, indent=2))
    else:
        console.print(render(decisions))
    status.print(f"[dim]{len(decisions.turns)} turns, {len(decisions.events):,} events, "
                 f"{len(decisions.conversations)} conversation(s); query took {took * 1000:.1f} ms[/]")


async def _audit(bus: str, partitions: int, url: str | None, conversation_id: str, tenant: str | None,
                 catch_up: bool) -> tuple[Decisions, float, CatchUp | None]:
    audit_index = AuditIndex(url or DEFAULT_URL)
    try:
        caught = await _catch_up(audit_index, bus, partitions) if catch_up else None
        if tenant is None:
            tenant = await _only_tenant(audit_index, conversation_id)
        trail = AuditTrail(audit_index)
        started = time.perf_counter()
        decisions = await trail(tenant, conversation_id)
        took = time.perf_counter() - started
    finally:
        await audit_index.close()
    return decisions, took, caught


async def _catch_up(audit_index: AuditIndex, bus: str, partitions: int) -> CatchUp | None:
    from .events.bus import open_log

    if bus == "off":
        err_console.print("[dim]events are off ([events] bus = \"off\"): querying the index as it is[/]")
        return None
    if bus.startswith("embedded:") and not Path(bus.removeprefix("embedded:")).is_file():
        err_console.print(f"[dim]no event log at {escape(bus.removeprefix('embedded:'))} yet: "
                          "querying the index as it is[/]")
        return None
    log = open_log(bus, partitions=partitions)
    try:
        return await audit_index.catch_up(log)
    finally:
        await log.close()


async def _only_tenant(audit_index: AuditIndex, conversation_id: str) -> str:
    tenants = await audit_index.tenants_of(conversation_id)
    if not tenants:
        raise UnknownConversationError(
            f"no conversation {conversation_id!r} in the audit index",
            hint="check the id (a session id, e.g. from GET /v1/sessions); events reach the index from the bus "
                 "([events] bus) on each `concierge audit` unless --no-catch-up")
    if len(tenants) > 1:
        raise ValidationError(f"conversation {conversation_id!r} exists in {len(tenants)} tenants: "
                              + ", ".join(tenants), hint="pass --tenant")
    return tenants[0]


# -- the tree ----------------------------------------------------------------------------------------


def _short(value: Any, limit: int = TEXT) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    text = " ".join(text.split())
    return escape(text if len(text) <= limit else text[:limit - 1] + "…")


def _get(value: Any, key: str) -> Any:
    return value.get(key) if isinstance(value, dict) else None


def render(decisions: Decisions) -> Tree:
    first = decisions.turns[0]
    tree = Tree(f"[bold]conversation {escape(decisions.conversation_id)}[/] · tenant {escape(decisions.tenant)} · "
                f"{len(decisions.turns)} turns · from {first.started_at:%Y-%m-%d %H:%M:%S} UTC")
    for turn in decisions.turns:
        _render_turn(tree, turn)
    if decisions.unmatched_ledger:
        node = tree.add("[yellow]ledger entries no event names[/]")
        for entry in decisions.unmatched_ledger:
            node.add(f"{_short(entry.get('tool'))}({_short(entry.get('arguments'), 80)}) {entry.get('status')}")
    return tree


def _render_turn(parent: Tree, turn: TurnDecisions) -> None:
    seconds = (turn.ended_at - turn.started_at).total_seconds()
    who = "" if "." not in turn.conversation_id else f"[magenta]{escape(turn.conversation_id)}[/] "
    node = parent.add(f"[bold]{who}turn {turn.turn}[/] [dim]{turn.started_at:%H:%M:%S} · {seconds:.2f} s · "
                      f"{len(turn.events)} events[/]")
    if turn.user_input is not None:
        node.add(f"[cyan]user ›[/] {_short(turn.user_input)}")
    for r in turn.retrievals:
        cites = ", ".join(r.citations[:5]) + (" …" if len(r.citations) > 5 else "")
        verdict = "grounded" if r.grounded else "not grounded" if r.grounded is not None else "no result"
        node.add(f"[blue]retrieval[/] {_short(r.query or '?')} → {verdict}"
                 + (f" {r.confidence}" if r.confidence is not None else "") + (f" · cites {_short(cites)}" if cites else ""))
    for step in turn.reasoning:
        action = _get(step, "action")
        act = f" → {_short(_get(action, 'tool'))}({_short(_get(action, 'arguments'), 60)})" if action else ""
        node.add(f"[dim]reasoning[/] {_short(_get(step, 'strategy'))}/{_short(_get(step, 'kind'))} "
                 f"({_get(step, 'confidence')}): {_short(_get(step, 'text') or step, 120)}{act}")
    for verdict in turn.guardrails:
        rest = {k: v for k, v in verdict.items() if k != "guardrail"}
        node.add(f"[yellow]guardrail[/] {_short(verdict.get('guardrail', '?'))}: {_short(rest, 140)}")
    for call in turn.tool_calls:
        colour = {"succeeded": "green", "pending": "cyan", "refused": "red"}.get(call.status or "", "yellow")
        ledger = f" [dim](ledger: {call.ledger_status})[/]" if call.ledger_status else ""
        error = f" ✗ {_short(call.error, 100)}" if call.error else ""
        node.add(f"[{colour}]tool[/] {_short(call.tool)}({_short(call.arguments, 80)}) → "
                 f"[{colour}]{call.status or 'never finished'}[/]{error}{ledger}")
    for denial in turn.denials:
        node.add(f"[red]denied[/] {_short(denial.get('tool'))}: {_short(denial.get('reason'), 120)}")
    for action in turn.confirmations:
        node.add(f"[cyan]asks to confirm[/] {_short(_get(action, 'description') or action, 120)}")
    for handoff in turn.handoffs:
        node.add(f"[magenta]handoff[/] {_short(handoff.get('from'))} → {_short(handoff.get('to'))}: "
                 f"{_short(handoff.get('status'))} (attempts: {handoff.get('attempts')})")
    for child in turn.children:
        _render_turn(node, child)
    for escalation in turn.escalations:
        node.add(f"[bold red]escalated[/] {_short(escalation.get('reason') or escalation, 120)}")
    for error in turn.errors:
        node.add(f"[bold red]error[/] {_short(error)}")
    for other in turn.other:
        node.add(f"[dim]{_short(other, 120)}[/]")
    if turn.reply is not None:
        stop = f" [dim](stopped by {escape(turn.stopped_by)})[/]" if turn.stopped_by else ""
        node.add(f"[magenta]agent ›[/] {_short(turn.reply)}{stop}")
