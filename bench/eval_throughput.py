#!/usr/bin/env python3
"""Eval harness throughput: golden conversations per second with a zero-latency scripted agent.

    .venv/bin/python bench/eval_throughput.py                       # 500 conversations (goal: < 60 s)
    .venv/bin/python bench/eval_throughput.py --conversations 100   # a quick look
    .venv/bin/python bench/eval_throughput.py --concurrency 8
    .venv/bin/python bench/eval_throughput.py --write-results       # also writes bench/results/eval_throughput.md

A generated retail store (60 users, 150 orders, seed 0) and up to 50 generated tasks, each run
for enough trials to reach N conversations (500 = 50 tasks × 10 trials). The agent is the oracle
(`OracleModel`: it replays the task's expected tool calls, no model latency) and the user is
`ScriptedUser` (the task's scripted turns), so the time measured is the harness itself: a fresh
copy of the store per trial, the runtime (context, confirmation gate, transactional executor,
in-memory ledger), scoring (the database hash against the gold replay, action and
communication checks) and the run folder (`trials.jsonl`, fsynced per trial, as `concierge eval`
writes it). The oracle must pass every trial: anything less means the bench measured something
broken, and it stops with an error.

The goal: 500 conversations in under 60 s on a 2-core machine.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchkit import command_line, cpu_model, log, versions

from concierge.domains.retail.eval_tasks import generate_tasks
from concierge.domains.retail.evaluation import RetailDomain
from concierge.domains.retail.generator import generate_store
from concierge.evals.reference import OracleModel
from concierge.evals.results import RunStore, summarize
from concierge.evals.runner import Contestant, EvalRunner
from concierge.evals.tasks import parse_tasks
from concierge.evals.users import ScriptedUser

REPO = Path(__file__).resolve().parents[1]
RESULTS_MD = REPO / "bench" / "results" / "eval_throughput.md"
GOAL_S = 60.0
GOAL_CONVERSATIONS = 500
MAX_TASKS = 50


async def measure(conversations: int, concurrency: int, folder: Path) -> dict[str, Any]:
    started = time.perf_counter()
    db = generate_store(users=60, orders=150, seed=0)
    trials = math.ceil(conversations / MAX_TASKS)
    n_tasks = math.ceil(conversations / trials)  # 500 = 50 tasks × 10 trials; 60 = 30 × 2
    tasks = parse_tasks(generate_tasks(db, n_tasks, seed=0))
    domain = RetailDomain(db)
    setup_s = time.perf_counter() - started
    store = RunStore(folder / "run")
    store.start({"agent": "oracle", "user": "scripted", "tasks": f"generated:{n_tasks}", "trials": trials},
                resume=False)
    runner = EvalRunner(domain, Contestant("oracle", lambda t, e: OracleModel(t, e, domain.writes())),
                        lambda t: ScriptedUser(t.user_turns), concurrency=concurrency, store=store)
    log(f"{len(tasks)} tasks × {trials} trials, concurrency {concurrency}, run folder {store.folder}")
    t0 = time.perf_counter()
    results = await runner.run(tasks, trials=trials)
    run_s = time.perf_counter() - t0
    summary = summarize(results)
    failed = [f"{r.task_id}#{r.trial} ({r.stop_reason}{': ' + r.error if r.error else ''})"
              for r in results if not r.success]
    if failed or len(results) != len(tasks) * trials:
        raise SystemExit(f"the oracle must pass every trial; {len(failed)} of {len(results)} failed: "
                         + ", ".join(failed[:10]) + " — the bench measured something broken")
    durations = sorted(r.duration_s for r in results)
    return {
        "tasks": len(tasks), "trials": trials, "conversations": len(results), "setup_s": round(setup_s, 3),
        "total_s": round(run_s, 3), "per_s": round(len(results) / run_s, 2),
        "pass_rate": summary["pass_rate"], "turns": sum(len(r.turn_latency_ms) for r in results),
        "tool_calls": sum(len(r.tool_calls) for r in results),
        "trial_p50_ms": round(durations[len(durations) // 2] * 1000, 1),
        "turn_latency_ms": summary["turn_latency_ms"],
    }


def verdict(row: dict[str, Any]) -> tuple[bool, float]:
    """Pass/fail against the goal, scaled to 500 conversations when a different count was run."""
    projected = row["total_s"] * GOAL_CONVERSATIONS / row["conversations"]
    return projected < GOAL_S, projected


def lines(row: dict[str, Any], meta: dict[str, Any]) -> list[str]:
    ok, projected = verdict(row)
    scaled = "" if row["conversations"] == GOAL_CONVERSATIONS else f" (projected to 500: {projected:.1f} s)"
    p = row["turn_latency_ms"]
    return [
        (f"Platform: {meta['platform']}, {meta['cpus']} CPUs ({meta['cpu']}); Python {meta['versions']['python']}; "
         f"load average at start {meta['load_average']}"),
        f"Command: {meta['command']}",
        (f"Conversations: {row['conversations']:,} ({row['tasks']} tasks × {row['trials']} trials), "
         f"concurrency {meta['concurrency']}, {row['turns']:,} turns, {row['tool_calls']:,} tool calls"),
        f"Total: {row['total_s']:.2f} s (+ {row['setup_s']:.2f} s store and task generation)",
        (f"Throughput: {row['per_s']:.1f} conversations/s; trial p50 {row['trial_p50_ms']:.1f} ms; "
         f"turn p50/p95/p99 {p['p50']:.2f}/{p['p95']:.2f}/{p['p99']:.2f} ms"),
        f"Pass rate: {row['pass_rate']:.0%} (oracle: must be 100%)",
        f"Goal: 500 conversations < {GOAL_S:.0f} s: {'PASS' if ok else 'FAIL'}{scaled}",
    ]


def markdown(row: dict[str, Any], meta: dict[str, Any]) -> str:
    out = ["# Eval harness throughput: golden conversations with the scripted oracle", "",
           f"Measured {meta['started_utc']}.", ""]
    for line in lines(row, meta):
        label, _, rest = line.partition(": ")
        out.append(f"- **{label}**: " + (f"`{rest}`" if label == "Command" else rest))
    out.append("")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--conversations", type=int, default=GOAL_CONVERSATIONS, metavar="N",
                    help=f"conversations to run (default {GOAL_CONVERSATIONS}; up to {MAX_TASKS} tasks × trials)")
    ap.add_argument("--concurrency", type=int, default=4, metavar="N", help="trials in flight at once (default 4)")
    ap.add_argument("--json", action="store_true", help="print the figures and the run metadata as JSON")
    ap.add_argument("--write-results", action="store_true", help=f"also write {RESULTS_MD.relative_to(REPO)}")
    args = ap.parse_args()
    if args.conversations < 1:
        ap.error("--conversations must be at least 1")
    if args.concurrency < 1:
        ap.error("--concurrency must be at least 1")

    started = datetime.datetime.now(datetime.UTC)
    load_average = " ".join(f"{x:.2f}" for x in os.getloadavg())
    folder = Path(tempfile.mkdtemp(prefix="concierge-eval-bench-"))
    try:
        row = asyncio.run(measure(args.conversations, args.concurrency, folder))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    meta = {
        "started_utc": started.strftime("%Y-%m-%d %H:%M UTC"),
        "platform": f"{platform.system()} {platform.release()} {platform.machine()}",
        "cpu": cpu_model(), "cpus": os.cpu_count(), "load_average": load_average,
        "versions": versions(("concierge", "sqlalchemy", "pydantic")), "command": command_line(),
        "concurrency": args.concurrency,
    }
    ok, projected = verdict(row)
    if args.json:
        print(json.dumps({"meta": meta, "row": row, "pass": ok, "projected_500_s": round(projected, 2)}, indent=2))
    else:
        print("\n".join(lines(row, meta)), flush=True)
    if args.write_results:
        RESULTS_MD.parent.mkdir(parents=True, exist_ok=True)
        RESULTS_MD.write_text(markdown(row, meta))
        log(f"wrote {RESULTS_MD.relative_to(REPO)}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
