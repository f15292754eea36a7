"""A runtime process for crash tests: one turn against the payment service, then exit.

A test starts it, kills it with SIGKILL while a tool call is in flight, and starts it again
on the same database: the second run must reconcile the ledger before its turn and tell the
user what happened. Prints one JSON object: reply, stopped_by, notices and the session's ledger.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from typing import Any

from ..core.principal import Principal
from ..runtime.agent import Agent
from ..runtime.result import TurnResult
from ..runtime.runtime import Runtime
from ..runtime.sessions.sql import SqlSessionStore
from ..tools.ledger.sql import SqlLedger
from ..tools.pipeline import TransactionalExecutor
from ..tools.retry import RetryPolicy
from .models import ScriptedModel, Step, call
from .payment_tools import payment_tools

PRINCIPAL = Principal("customer-1", scopes=frozenset({"payments:write"}))
# Without jitter, so a test knows when a retry lands: the third attempt comes 1.25 s after the
# first, after a service that held the key "in progress" for a second has let it go.
CRASH_TEST_RETRY = RetryPolicy(max_attempts=4, base_delay_s=0.25, max_delay_s=1.0, rand=lambda: 1.0)


def build_runtime(db_url: str, service_url: str, script: Sequence[Step], *, ledger: object | None = None,
                  timeout_s: float = 0.5) -> Runtime:
    """A runtime whose sessions and ledger share one database, with the payment tools."""
    agent = Agent(instructions="You take payments.", model=ScriptedModel(list(script)),
                  tools=payment_tools(service_url, timeout_s=timeout_s, retry=CRASH_TEST_RETRY))
    executor = TransactionalExecutor(ledger if ledger is not None else SqlLedger(db_url))  # type: ignore[arg-type]
    return Runtime(agent, store=SqlSessionStore(db_url), executor=executor)


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    script: list[Step] = ["Anything else I can do?"]
    if args.call:
        tool_name, account, amount = args.call.split(":")
        script = [call(tool_name, account=account, amount_cents=int(amount)), "Done."]
    runtime = build_runtime(args.db, args.service, script)
    return await turn_report(runtime, await runtime.turn(args.session, args.message, principal=PRINCIPAL))


async def turn_report(runtime: Runtime, result: TurnResult) -> dict[str, Any]:
    """What a crash-test worker prints: the turn's reply and the session's ledger as the DB has it."""
    ledger = runtime.executor.ledger  # type: ignore[attr-defined]
    return {"reply": result.reply, "stopped_by": result.stopped_by, "notices": list(result.notices),
            "ledger": [e.to_dict() for e in await ledger.entries(result.session_id)]}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", required=True, help="SQLAlchemy URL shared by sessions and ledger")
    parser.add_argument("--service", required=True, help="payment service base URL")
    parser.add_argument("--session", required=True)
    parser.add_argument("--message", required=True)
    parser.add_argument("--call", help="tool:account:amount_cents the model calls; omitted: it only answers")
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(_main(args)), default=str), flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
