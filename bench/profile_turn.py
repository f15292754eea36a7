#!/usr/bin/env python3
"""Where a run's CPU goes: cProfile of the runtime on the bench-peers workload, top functions by own time.

    .venv/bin/python bench/profile_turn.py                       # in-memory and SQLite sessions, 1,000 runs each
    .venv/bin/python bench/profile_turn.py --runs 2000 --top 10 --concurrent 2000

Each configuration runs in a fresh process: scenario A (sequential runs, the model answering at
once) through `runtime_overhead.make_concierge`, under cProfile after 100 warm-up runs; with
`--concurrent N` also N runs at once (asyncio.gather, model without delay), which is where a
group commit batches. Prints, per configuration, the runs' mean wall time without the profiler
(measured first), then the top functions by own time under the profiler (Markdown).
To profile another checkout of the package, put its `src` first on PYTHONPATH.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import pstats
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from benchkit import command_line, log

CONFIGS = ("memory", "sqlite")


def worker(config: str, runs: int, top: int, concurrent: int) -> dict[str, Any]:
    import runtime_overhead as ro  # the same adapter the yardstick uses

    import concierge

    peers = ro.load_peers(ro.peers_dir_from(None))
    tmp = tempfile.mkdtemp(prefix="concierge-profile-")
    store = None
    if config == "sqlite":
        from concierge.runtime.sessions.sql import SqlSessionStore

        store = SqlSessionStore(f"sqlite+aiosqlite:///{tmp}/profile.db")
    run, runtime = ro.make_concierge(peers, store)
    orders = [peers.order_id(i) for i in range(max(runs, concurrent))]

    async def sequential(n: int) -> float:
        started = time.perf_counter()
        for oid in orders[:n]:
            await run(oid)
        return (time.perf_counter() - started) / n * 1e6

    async def together(n: int) -> float:
        started = time.perf_counter()
        await asyncio.gather(*(run(oid) for oid in orders[:n]))
        return (time.perf_counter() - started) / n * 1e6

    def profiled(coro: Any) -> str:
        profile = cProfile.Profile()
        profile.enable()
        asyncio.get_event_loop().run_until_complete(coro)
        profile.disable()
        out = io.StringIO()
        stats = pstats.Stats(profile, stream=out)
        rows = []
        total = stats.total_tt  # type: ignore[attr-defined]
        for (file, line, name), (_cc, calls, tottime, cumtime, _) in sorted(
                stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:top]:  # type: ignore[attr-defined]
            where = _short(file, line, name)
            rows.append(f"| {where} | {calls:,} | {tottime:.3f} | {100 * tottime / total:.1f}% | {cumtime:.3f} |")
        header = "| function | calls | own s | share | cumulative s |\n|---|---:|---:|---:|---:|"
        return f"profiled total {total:.2f} s\n\n{header}\n" + "\n".join(rows)

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    result: dict[str, Any] = {"config": config, "concierge": str(Path(concierge.__file__).parent)}
    try:
        loop.run_until_complete(sequential(100))  # warm-up
        result["mean_us"] = round(loop.run_until_complete(sequential(runs)), 1)
        result["sequential"] = profiled(sequential(runs))
        if concurrent:
            result["together_us"] = round(loop.run_until_complete(together(concurrent)), 1)
            result["concurrent"] = profiled(together(concurrent))
        loop.run_until_complete(runtime.store.close())
    finally:
        loop.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return result


def _short(file: str, line: int, name: str) -> str:
    if file == "~":
        return f"`{name}`"
    file = re.sub(r"^.*/(site-packages|src|python3\.\d+)/", "", file)
    return f"`{file}:{line}({name})`"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--top", type=int, default=10)
    ap.add_argument("--concurrent", type=int, default=0, help="also profile N runs at once")
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--worker", choices=CONFIGS, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.runs, args.top, args.concurrent)))
        return
    print(f"# Where a run's CPU goes\n\nCommand: `{command_line()}`\n")
    for config in args.configs.split(","):
        log(f"profiling {config} ...")
        proc = subprocess.run([sys.executable, __file__, "--worker", config, "--runs", str(args.runs),
                               "--top", str(args.top), "--concurrent", str(args.concurrent)],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            print(f"## {config}: failed\n\n```\n{proc.stderr[-2000:]}\n```\n")
            continue
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"## {config} sessions (package: `{res['concierge']}`)\n")
        print(f"Sequential, {args.runs:,} runs: mean {res['mean_us']:,.0f} µs per run without the profiler.\n")
        print(res["sequential"] + "\n")
        if args.concurrent:
            print(f"{args.concurrent:,} runs at once: {res['together_us']:,.0f} µs of wall time per run "
                  "without the profiler.\n")
            print(res["concurrent"] + "\n")


if __name__ == "__main__":
    main()
