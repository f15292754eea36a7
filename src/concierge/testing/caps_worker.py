"""One worker process for multi-worker cap tests: refunds through the executor `concierge serve` builds.

Run as `python -m concierge.testing.caps_worker CONFIG_JSON`. The executor comes from
`factory.build_executor` (the sessions' database as configured, the `[caps]` as configured), so two
of these processes share exactly what two server workers share: the database, nothing in memory.
The refund tool's effect is a row in a SQLite table (`effects_db`) every worker writes to, so the
test can add up what was really paid out.

Protocol on stdio: the worker prints `ready` once built, waits for a line on stdin (`go`), runs
every refund in `refunds` at once (`asyncio.gather`), then prints one JSON line: a list of
`{"order_id", "amount_usd", "status", "error"}`. `refund_all(config)` does the same in-process.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import sys
from collections.abc import Awaitable, Callable
from contextlib import closing
from typing import Any

from ..core.messages import ToolCall
from ..core.principal import Principal
from ..factory import build_executor
from ..guardrails.caps import from_arguments
from ..settings import Settings
from ..tools.tool import Tool, ToolContext, tool


def refund_tool(effects_db: str) -> Tool:
    """A refund whose effect is a row in `effects_db` (shared by every worker)."""
    with closing(sqlite3.connect(effects_db, timeout=30)) as db, db:
        db.execute("CREATE TABLE IF NOT EXISTS refunds (order_id TEXT, customer TEXT, cents INTEGER, pid INTEGER)")

    def pay(order_id: str, customer: str, cents: int) -> None:
        with closing(sqlite3.connect(effects_db, timeout=30)) as db, db:
            db.execute("INSERT INTO refunds VALUES (?, ?, ?, ?)", (order_id, customer, cents, os.getpid()))

    @tool(effect="write", idempotent=True, confirm=False)
    async def refund(order_id: str, amount_usd: float, context: ToolContext) -> dict[str, Any]:
        """Refund part of an order to the customer."""
        await asyncio.to_thread(pay, order_id, str(context.customer_id), round(amount_usd * 100))
        return {"order_id": order_id, "refunded_usd": amount_usd}

    return refund


async def refund_all(config: dict[str, Any], *, ready: Callable[[], Awaitable[None]] | None = None
                     ) -> list[dict[str, Any]]:
    """Build the executor from `config`, await `ready()` (the start signal), then run every refund at once."""
    settings = Settings(sessions={"url": config["sessions_url"]}, caps=config["caps"],
                        guardrails={"enabled": False}, memory={"enabled": False}, events={"bus": "off"})
    refund = refund_tool(config["effects_db"])
    executor = build_executor(settings, {"refund": from_arguments(refund_usd="amount_usd", order_id="order_id")})
    principal = Principal(config["customer"], tenant=config["tenant"], customer_id=config["customer"])
    if ready is not None:
        await executor.ledger.entries("warm-up")  # connections and tables ready before the signal
        await ready()

    async def one(item: dict[str, Any]) -> dict[str, Any]:
        call = ToolCall(f"c-{item['order_id']}", "refund", {"order_id": item["order_id"],
                                                             "amount_usd": item["amount_usd"]})
        outcome = await executor.execute(refund, call, ToolContext(f"s-{item['order_id']}", principal))
        return {**item, "status": outcome.status, "error": outcome.error}

    try:
        return list(await asyncio.gather(*(one(item) for item in config["refunds"])))
    finally:
        caps = getattr(executor.outer, "inner", None)  # the scope check wraps the caps check
        for store in (executor.ledger, getattr(caps, "usage", None)):
            close = getattr(store, "close", None)
            if close is not None:
                await close()


async def _stdio_signal() -> None:
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    results = asyncio.run(refund_all(json.loads(args[0]), ready=_stdio_signal))
    print(json.dumps(results), flush=True)


if __name__ == "__main__":
    main()
