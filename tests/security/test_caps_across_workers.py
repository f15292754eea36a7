"""Row 8: the per-customer daily refund cap holds across server workers and restarts.

Observed defect: the caps counted refunds in `InMemoryUsage`, a dict per process, so two workers
each let a customer refund up to the daily cap (N workers: N x the cap), and a restart started the
day from zero. Here two real worker processes, each with its own executor built by
`factory.build_executor` (as `concierge serve` builds it) and sharing only the sessions' database,
run 50 concurrent refunds for one customer worth 3x the daily cap; the refunds actually paid out
(rows in a table both workers write to) must stay within the cap, the rest refused with the cap's
message, and a restarted worker must still see the day's total.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from concierge.testing.caps_worker import refund_all
from concierge.tools.ledger import SqlLedger

CAP_USD = 100.0
AMOUNT_USD = 6.0  # 50 x $6 = $300 = 3x the cap; at most 16 fit ($96)
CUSTOMER, TENANT = "cust-8", "acme"
DAILY_MESSAGE = "per customer per day"


def config(sessions_url: str, effects_db: Path, refunds: list[dict[str, Any]]) -> dict[str, Any]:
    return {"sessions_url": sessions_url, "effects_db": str(effects_db), "tenant": TENANT, "customer": CUSTOMER,
            "caps": {"default": {"max_refund_per_customer_per_day_usd": CAP_USD}}, "refunds": refunds}


def start_worker(sessions_url: str, effects_db: Path, refunds: list[dict[str, Any]]) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    argv = [sys.executable, "-m", "concierge.testing.caps_worker", json.dumps(config(sessions_url, effects_db, refunds))]
    return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)


class Workers:
    """Worker processes started together, let go at once when all are built (imports are the slow part)."""

    def __init__(self, sessions_url: str, effects_db: Path, shares: list[list[dict[str, Any]]]) -> None:
        self.procs = [start_worker(sessions_url, effects_db, share) for share in shares]
        for proc in self.procs:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line.strip() == "ready", f"worker failed to start: {line!r} {proc.communicate()[1]}"

    def go(self) -> list[dict[str, Any]]:
        """Let every worker run at the same moment; their outcomes once all have finished."""
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results: list[dict[str, Any]] = []
        for proc in self.procs:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            results.extend(json.loads(out.strip().splitlines()[-1]))
        return results

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def paid_cents(effects_db: Path) -> tuple[int, int]:
    """(total cents paid, number of refunds)."""
    with sqlite3.connect(effects_db) as db:
        rows = db.execute("SELECT cents FROM refunds WHERE customer = ?", (CUSTOMER,)).fetchall()
    return sum(c for (c,) in rows), len(rows)


async def create_ledger_tables(sessions_url: str) -> None:
    """The tool ledger's tables exist before the workers start (as after a first run of the server)."""
    ledger = SqlLedger(sessions_url)
    await ledger.entries("none")
    await ledger.close()


def check_two_workers_hold_the_daily_cap(sessions_url: str, effects_db: Path) -> None:
    asyncio.run(create_ledger_tables(sessions_url))
    refunds = [{"order_id": f"W{i:03d}", "amount_usd": AMOUNT_USD} for i in range(50)]
    workers = Workers(sessions_url, effects_db, [refunds[0::2], refunds[1::2]])
    try:
        results = workers.go()
    finally:
        workers.close()
    assert len(results) == 50
    total, count = paid_cents(effects_db)
    succeeded = [r for r in results if r["status"] == "succeeded"]
    refused = [r for r in results if r["status"] == "refused"]
    assert total <= CAP_USD * 100, f"paid ${total / 100:.2f} against a ${CAP_USD:.2f} daily cap"
    assert count == len(succeeded) and len(succeeded) + len(refused) == 50
    assert len(succeeded) == int(CAP_USD // AMOUNT_USD)  # the cap is used up, not under-used
    for result in refused:
        error = json.loads(result["error"])
        assert error["error"] == "policy_cap" and error["cap"] == "max_refund_per_customer_per_day_usd"
        assert DAILY_MESSAGE in error["message"] and "$100.00" in error["message"]

    # A restarted worker: an executor built afresh (here, in the test's own process, whose memory
    # never saw those refunds) still counts today's total: $5 more would be over the cap.
    restarted = config(sessions_url, effects_db, [{"order_id": "W999", "amount_usd": 5.0}])
    [again] = asyncio.run(refund_all(restarted))
    assert again["status"] == "refused" and DAILY_MESSAGE in json.loads(again["error"])["message"]
    assert paid_cents(effects_db)[0] == total


def test_two_worker_processes_on_one_sqlite_database_never_pay_out_more_than_the_daily_cap(tmp_path: Path):
    sessions_url = f"sqlite+aiosqlite:///{tmp_path / 'sessions.db'}"
    check_two_workers_hold_the_daily_cap(sessions_url, tmp_path / "effects.db")


def test_two_worker_processes_on_one_postgres_database_never_pay_out_more_than_the_daily_cap(tmp_path: Path,
                                                                                           postgres_db: Any):
    check_two_workers_hold_the_daily_cap(postgres_db.async_url, tmp_path / "effects.db")
