"""A retail runtime process for crash tests: one turn against the retail store, then exit.

The store runs as its own process (`python -m concierge.domains.retail.backend`); this worker
reaches it over HTTP. With `--die-after-effect` the worker kills itself with SIGKILL at the
worst moment: the store has applied and committed the write, but the ledger still says
`attempted`. A second run on the same database must reconcile before its turn (re-sending the
write with the same Idempotency-Key, which the store answers from its stored response) and tell
the user. Prints one JSON object: reply, stopped_by, notices and the session's ledger.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

import httpx

from ..core.messages import ToolCall
from ..core.principal import Principal
from ..domains.retail.agent import make_retail_agent
from ..runtime.runtime import Runtime
from ..runtime.sessions.sql import SqlSessionStore
from ..tools.ledger.base import LedgerEntry
from ..tools.ledger.sql import SqlLedger
from ..tools.pipeline import TransactionalExecutor
from .fault_worker import turn_report
from .models import ScriptedModel, Step


class DyingLedger(SqlLedger):
    """A SQL ledger whose process dies (SIGKILL) instead of recording a write as succeeded."""

    async def update(self, entry: LedgerEntry) -> None:
        if entry.status == "succeeded":
            os.kill(os.getpid(), signal.SIGKILL)
        await super().update(entry)


def build_runtime(db_url: str, client: httpx.AsyncClient, script: Sequence[Step], *,
                  die_after_effect: bool = False) -> Runtime:
    """A retail runtime whose sessions and ledger share one database."""
    agent = make_retail_agent(ScriptedModel(list(script)), client, confirm=False)
    ledger = DyingLedger(db_url) if die_after_effect else SqlLedger(db_url)
    return Runtime(agent, store=SqlSessionStore(db_url), executor=TransactionalExecutor(ledger))


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    script: list[Step] = ["Anything else I can do?"]
    if args.call:
        spec = json.loads(args.call)
        script = [ToolCall("call_1", spec["name"], spec.get("arguments", {})), "Done."]
    principal = Principal("customer", scopes=frozenset({"retail:write"}), customer_id=args.customer)
    async with httpx.AsyncClient(base_url=args.store, timeout=10.0) as client:
        runtime = build_runtime(args.db, client, script, die_after_effect=args.die_after_effect)
        return await turn_report(runtime, await runtime.turn(args.session, args.message, principal=principal))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", required=True, help="SQLAlchemy URL shared by sessions and ledger")
    parser.add_argument("--store", required=True, help="retail store base URL")
    parser.add_argument("--session", required=True)
    parser.add_argument("--message", required=True)
    parser.add_argument("--customer", required=True, help="the store user id the session acts for")
    parser.add_argument("--call", help='JSON {"name": ..., "arguments": {...}} the model calls; omitted: it only answers')
    parser.add_argument("--die-after-effect", action="store_true",
                        help="SIGKILL this process when a write is about to be recorded as succeeded")
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(_main(args)), default=str), flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
