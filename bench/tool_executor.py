#!/usr/bin/env python3
"""Tool executor overhead: the transactional pipeline per call, against a bare call and an fsync.

    .venv/bin/python bench/tool_executor.py                    # 2,000 calls per row (well under a minute)
    .venv/bin/python bench/tool_executor.py --quick            # 300 calls per row (a few seconds)
    .venv/bin/python bench/tool_executor.py --calls 5000 --json
    .venv/bin/python bench/tool_executor.py --write-results    # also writes bench/results/tool_executor.md

Every row times N calls one by one with `time.perf_counter_ns`, after a warm-up, all async rows
on one asyncio event loop:

* `bare function call`: `await fn(amount)` of a trivial async function returning a dict;
* `DirectExecutor`: argument validation + invoke;
* `TransactionalExecutor, read tool`: the full stack (scopes, preconditions, confirmation gate,
  ledger, circuit breaker, retries) for an `effect="read"` tool, which writes nothing;
* `TransactionalExecutor, write, ...`: an `effect="write", confirm=False` tool, every call with
  new arguments, so every call is a new idempotency key and a real `attempted` → `succeeded`
  pair of ledger writes; once on `InMemoryLedger`, once on `SqlLedger` (a SQLite file in WAL
  mode with `synchronous=FULL`: each commit is on disk when it returns);
* `replay of a recorded key`: a call whose key is already `succeeded` in the SQLite ledger,
  answered from the ledger without calling the function;
* floors, synchronous: one 100-byte append + `os.fsync`, and one single-row INSERT + commit with
  the stdlib `sqlite3` module in WAL mode with `synchronous=FULL`, both in the same folder as
  the SQLite ledger.

After each row the function's call count and the outcomes are checked (every write executed
exactly once, every replay answered from the ledger, every key `succeeded` in the SQLite file).

Progress goes to stderr; the table goes to stdout (Rich on a terminal, Markdown otherwise).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from benchkit import command_line, cpu_model, filesystem, fmt_us, log, summarise, versions

REPO = Path(__file__).resolve().parents[1]
RESULTS_MD = REPO / "bench" / "results" / "tool_executor.md"

BARE = "bare function call"
DIRECT = "DirectExecutor"
READ = "TransactionalExecutor, read tool"
WRITE_MEM = "TransactionalExecutor, write, in-memory ledger"
WRITE_SQL = "TransactionalExecutor, write, SQLite ledger (durable)"
REPLAY_SQL = "replay of a recorded key, SQLite ledger"
FLOOR_FSYNC = "floor: one fsync"
FLOOR_SQLITE = "floor: one SQLite durable commit"

FSYNC_PAYLOAD = b"x" * 100


# --------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------------------


async def time_async(call: Callable[[int], Awaitable[Any]], check: Callable[[Any, int], None],
                     amounts: list[int]) -> list[int]:
    """Times `await call(amount)` once per amount; `check` runs outside the timed span."""
    samples: list[int] = []
    clock = time.perf_counter_ns
    for amount in amounts:
        t0 = clock()
        out = await call(amount)
        t1 = clock()
        check(out, amount)
        samples.append(t1 - t0)
    return samples


async def measure_async(folder: Path, n: int, warmup: int) -> tuple[list[dict[str, Any]], str]:
    from concierge.core import Principal, ToolCall
    from concierge.tools import (
        DirectExecutor,
        InMemoryLedger,
        SqlLedger,
        ToolContext,
        ToolOutcome,
        TransactionalExecutor,
        tool,
    )

    calls = 0

    async def charge(amount: int) -> dict:
        """Charge an amount (does nothing but count)."""
        nonlocal calls
        calls += 1
        return {"charged": amount}

    read_tool = tool(effect="read", name="get_balance")(charge)
    write_tool = tool(effect="write", confirm=False, name="charge")(charge)
    context = ToolContext("bench", Principal("bench", scopes=frozenset({"*"})), {})
    amounts = iter(range(1, 10**9))  # one counter for every row: a write never reuses a key

    def batch(size: int) -> list[int]:
        return [next(amounts) for _ in range(size)]

    def plain(out: Any, amount: int) -> None:
        if out != {"charged": amount}:
            raise AssertionError(out)

    def executed(out: ToolOutcome, amount: int) -> None:
        if out.status != "succeeded" or out.replayed or out.value != {"charged": amount}:
            raise AssertionError(out)

    rows: list[dict[str, Any]] = []

    async def row(label: str, call: Callable[[int], Awaitable[Any]], check: Callable[[Any, int], None],
                  *, calls_each: int = 1, fixed: int | None = None, note: str = "") -> None:
        nonlocal calls
        started = time.perf_counter()
        before = calls
        await time_async(call, check, [fixed] * warmup if fixed is not None else batch(warmup))
        samples = await time_async(call, check, [fixed] * n if fixed is not None else batch(n))
        if calls - before != calls_each * (warmup + n):
            raise AssertionError(f"{label}: function ran {calls - before} times, "
                                 f"expected {calls_each * (warmup + n)}")
        rows.append(summarise(label, samples, note))
        log(f"  {label}: p50 {rows[-1]['p50_us']:,.1f} µs ({time.perf_counter() - started:.1f} s)")

    def tool_call(amount: int) -> ToolCall:
        return ToolCall("call_1", "charge", {"amount": amount})

    await row(BARE, charge, plain)

    direct = DirectExecutor()
    await row(DIRECT, lambda a: direct.execute(write_tool, tool_call(a), context), executed)

    reads = TransactionalExecutor(InMemoryLedger())
    await row(READ, lambda a: reads.execute(read_tool, tool_call(a), context), executed,
              note="no ledger writes")

    memory = TransactionalExecutor(InMemoryLedger())
    await row(WRITE_MEM, lambda a: memory.execute(write_tool, tool_call(a), context), executed,
              note="new key per call: attempted + succeeded")

    db = folder / "ledger.db"
    ledger = SqlLedger(f"sqlite:///{db}")
    try:
        durable = TransactionalExecutor(ledger)
        await durable.execute(write_tool, tool_call(0), context)  # creates the schema; key 0 is replayed below
        before_sql = calls
        await row(WRITE_SQL, lambda a: durable.execute(write_tool, tool_call(a), context), executed,
                  note="new key per call: 2 durable commits")
        written = calls - before_sql

        def replayed(out: ToolOutcome, amount: int) -> None:
            if out.status != "succeeded" or not out.replayed or out.value != {"charged": amount}:
                raise AssertionError(out)

        await row(REPLAY_SQL, lambda a: durable.execute(write_tool, tool_call(a), context), replayed,
                  calls_each=0, fixed=0, note="a refused insert and one read, no commit, function not called")
        unresolved = await durable.ledger.unresolved()
        if unresolved:
            raise AssertionError(f"{len(unresolved)} ledger entries left unresolved")
    finally:
        await ledger.close()
    with sqlite3.connect(db) as conn:
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        succeeded = conn.execute("SELECT count(*) FROM tool_ledger WHERE status = 'succeeded'").fetchone()[0]
    conn.close()
    if succeeded != written + 1:
        raise AssertionError(f"{succeeded} succeeded rows in the ledger file, expected {written + 1}")
    return rows, f"{succeeded:,} succeeded rows in the SQLite ledger ({mode} mode), none unresolved"


def time_sync(call: Callable[[], None], n: int, warmup: int) -> list[int]:
    clock = time.perf_counter_ns
    for _ in range(warmup):
        call()
    samples: list[int] = []
    for _ in range(n):
        t0 = clock()
        call()
        samples.append(clock() - t0)
    return samples


def measure_floors(folder: Path, n: int, warmup: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []

    fd = os.open(folder / "fsync.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        def append_fsync() -> None:
            os.write(fd, FSYNC_PAYLOAD)
            os.fsync(fd)

        started = time.perf_counter()
        rows.append(summarise(FLOOR_FSYNC, time_sync(append_fsync, n, warmup), "100-byte append + os.fsync"))
        log(f"  {FLOOR_FSYNC}: p50 {rows[-1]['p50_us']:,.1f} µs ({time.perf_counter() - started:.1f} s)")
    finally:
        os.close(fd)

    conn = sqlite3.connect(folder / "floor.db")
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, payload TEXT NOT NULL)")
        conn.commit()
        payload = "x" * 100

        def insert_commit() -> None:
            conn.execute("INSERT INTO t (payload) VALUES (?)", (payload,))
            conn.commit()

        started = time.perf_counter()
        rows.append(summarise(FLOOR_SQLITE, time_sync(insert_commit, n, warmup),
                              "stdlib sqlite3, WAL, synchronous=FULL"))
        log(f"  {FLOOR_SQLITE}: p50 {rows[-1]['p50_us']:,.1f} µs ({time.perf_counter() - started:.1f} s)")
        count = conn.execute("SELECT count(*) FROM t").fetchone()[0]
        if count != warmup + n:
            raise AssertionError(f"{count} rows in the floor table, expected {warmup + n}")
    finally:
        conn.close()
    return rows


# --------------------------------------------------------------------------------------
# Run metadata
# --------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------


def derived(rows: list[dict[str, Any]]) -> dict[str, Any]:
    by = {r["row"]: r for r in rows}
    bare = by[BARE]["p50_us"]
    for r in rows:
        r["added_vs_bare_p50_us"] = r["p50_us"] - bare
    sql, fsync, commit = by[WRITE_SQL]["p50_us"], by[FLOOR_FSYNC]["p50_us"], by[FLOOR_SQLITE]["p50_us"]
    return {
        "write_sqlite_p50_over_fsync_p50": sql / fsync,
        "write_sqlite_p50_over_sqlite_commit_p50": sql / commit,
        "write_sqlite_p50_minus_two_commits_us": sql - 2 * commit,
        "write_memory_added_vs_bare_p50_us": by[WRITE_MEM]["added_vs_bare_p50_us"],
    }


def ratio_lines(meta: dict[str, Any]) -> list[str]:
    d = meta["derived"]
    return [
        (f"Durable write p50 = {d['write_sqlite_p50_over_fsync_p50']:.1f}× the fsync floor p50 and "
         f"{d['write_sqlite_p50_over_sqlite_commit_p50']:.1f}× the SQLite-commit floor p50. A durable write "
         "ledger commits twice per call (the `attempted` row before the function runs, the outcome after), "
         "so about 2 durable commits is the expected floor; the rest "
         f"({d['write_sqlite_p50_minus_two_commits_us']:,.0f} µs at p50 beyond two stdlib commits) is the "
         "per-statement round trips through SQLAlchemy and aiosqlite's worker thread."),
    ]


def table_cells(r: dict[str, Any]) -> list[str]:
    return [r["row"], fmt_us(r["p50_us"]), fmt_us(r["p99_us"]), fmt_us(r["mean_us"]),
            f"{r['added_vs_bare_p50_us']:+,.1f}" if abs(r["added_vs_bare_p50_us"]) < 100
            else f"{r['added_vs_bare_p50_us']:+,.0f}", r["note"]]


HEADERS = ["", "p50 µs", "p99 µs", "mean µs", "added vs bare (p50) µs", ""]


def platform_line(meta: dict[str, Any]) -> str:
    v = meta["versions"]
    return (f"Platform: {meta['platform']}, {meta['cpus']} CPUs ({meta['cpu']}); Python {v['python']}, "
            f"SQLite {v['sqlite']}, SQLAlchemy {v['sqlalchemy']}, aiosqlite {v['aiosqlite']}; "
            f"files on {meta['filesystem']}; load average at start {meta['load_average']}")


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    out = [
        "# Tool executor overhead: the transactional pipeline per call",
        "",
        (f"Measured {meta['started_utc']}; {meta['n']:,} calls per row after {meta['warmup']:,} warm-up calls, "
         "each timed on its own with `time.perf_counter_ns`, all async rows on one event loop."),
        "",
        platform_line(meta),
        "",
        "Command:",
        "",
        "```",
        meta["command"],
        "```",
        "",
        "| " + " | ".join(HEADERS) + " |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        out.append("| " + " | ".join(table_cells(r)) + " |")
    out.append("")
    out.extend(ratio_lines(meta))
    out.append("")
    out.append(f"Checked: {meta['verified']}; every write ran the function exactly once, "
               "every replay returned the recorded result without calling it.")
    out.append("")
    return "\n".join(out)


def meaning(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    by = {r["row"]: r for r in rows}
    d = meta["derived"]
    sql, commit = by[WRITE_SQL]["p50_us"], by[FLOOR_SQLITE]["p50_us"]
    disk_share = min(1.0, 2 * commit / sql)
    return (
        "## What the numbers mean\n\n"
        f"Without a durable ledger the pipeline is cheap: validation alone (`DirectExecutor`) adds "
        f"{fmt_us(by[DIRECT]['added_vs_bare_p50_us'])} µs to a bare call at p50, the whole policy stack for a "
        f"read tool {fmt_us(by[READ]['added_vs_bare_p50_us'])} µs, and a write with its idempotency key and "
        f"`attempted`/`succeeded` entries in the in-memory ledger {fmt_us(d['write_memory_added_vs_bare_p50_us'])} "
        f"µs. With the SQLite ledger a write costs {fmt_us(sql)} µs at p50. Its floor is two durable commits "
        f"(the `attempted` row must be on disk before the function runs, the outcome before the result is "
        f"returned): 2 × {fmt_us(commit)} µs with the stdlib driver on this disk ({meta['filesystem']}), "
        f"{disk_share:.0%} of the measured cost. The rest is per-statement overhead above the disk: each "
        "statement's round trips through SQLAlchemy's async engine and aiosqlite's worker thread. A replay "
        "of a recorded key, which is a refused insert and one SELECT with no commit and never "
        f"reaches the function, shows that overhead on its own: {fmt_us(by[REPLAY_SQL]['p50_us'])} µs. Next to "
        "a real downstream API call (tens to hundreds of milliseconds) the durable write is still small, but "
        "the gap to the two-commit floor is where the ledger can get faster; on a disk with slower fsync the "
        "floor itself grows.\n"
    )


def report(rows: list[dict[str, Any]], meta: dict[str, Any], fmt: str) -> None:
    if fmt == "rich":
        from rich.console import Console
        from rich.table import Table

        console = Console()
        console.print(f"Tool executor overhead, measured {meta['started_utc']}, "
                      f"{meta['n']:,} calls per row after {meta['warmup']:,} warm-up")
        console.print(platform_line(meta))
        console.print(f"Command: {meta['command']}")
        table = Table()
        for i, h in enumerate(HEADERS):
            table.add_column(h, justify="left" if i in (0, len(HEADERS) - 1) else "right")
        for r in rows:
            if r["row"] == FLOOR_FSYNC:
                table.add_section()
            table.add_row(*table_cells(r))
        console.print(table)
        for line in ratio_lines(meta):
            console.print(line)
        console.print(f"Checked: {meta['verified']}.")
        console.print(f"Bench took {meta['elapsed_s']:.1f} s.")
        return
    print(markdown(rows, meta), flush=True)


# --------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="300 calls per row instead of 2,000")
    ap.add_argument("--calls", type=int, metavar="N", help="calls per row (overrides --quick)")
    ap.add_argument("--warmup", type=int, metavar="N", help="warm-up calls per row (default: N/10, at least 20)")
    ap.add_argument("--json", action="store_true", help="print the rows and the run metadata as JSON")
    ap.add_argument("--write-results", action="store_true", help=f"also write {RESULTS_MD.relative_to(REPO)}")
    ap.add_argument("--dir", metavar="PATH",
                    help="folder for the ledger and floor files (default: a fresh temporary folder)")
    ap.add_argument("--format", choices=["rich", "markdown"], default=None,
                    help="table format (default: rich on a terminal, Markdown otherwise)")
    args = ap.parse_args()

    n = args.calls or (300 if args.quick else 2000)
    if n < 1:
        ap.error("--calls must be at least 1")
    warmup = args.warmup if args.warmup is not None else max(20, n // 10)

    t_start = time.perf_counter()
    started = datetime.datetime.now(datetime.UTC)
    load_average = " ".join(f"{x:.2f}" for x in os.getloadavg())
    base = Path(args.dir).resolve() if args.dir else None
    if base is not None:
        base.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="concierge-tool-bench-", dir=base))
    try:
        log(f"{n:,} calls per row after {warmup:,} warm-up, files in {folder}")
        rows, verified = asyncio.run(measure_async(folder, n, warmup))
        rows += measure_floors(folder, n, warmup)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    elapsed = time.perf_counter() - t_start

    meta = {
        "started_utc": started.strftime("%Y-%m-%d %H:%M UTC"),
        "platform": f"{platform.system()} {platform.release()} {platform.machine()}",
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "load_average": load_average,
        "filesystem": filesystem(folder),
        "versions": versions(("concierge", "sqlalchemy", "aiosqlite")),
        "command": command_line(),
        "n": n,
        "warmup": warmup,
        "verified": verified,
        "elapsed_s": round(elapsed, 1),
    }
    meta["derived"] = derived(rows)

    if args.json:
        print(json.dumps({"meta": meta, "rows": rows}, indent=2), flush=True)
    else:
        report(rows, meta, args.format or ("rich" if sys.stdout.isatty() else "markdown"))
    if args.write_results:
        RESULTS_MD.parent.mkdir(parents=True, exist_ok=True)
        RESULTS_MD.write_text(markdown(rows, meta) + "\n" + meaning(rows, meta))
        log(f"wrote {RESULTS_MD.relative_to(REPO)}")
    log(f"bench took {elapsed:.1f} s")


if __name__ == "__main__":
    main()
