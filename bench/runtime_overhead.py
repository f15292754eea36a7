#!/usr/bin/env python3
"""Runtime overhead: concierge on the shared bench-peers workload, side by side with its peers.

    .venv/bin/python bench/runtime_overhead.py                 # everything (a few minutes)
    .venv/bin/python bench/runtime_overhead.py --quick         # A with 500 runs, B 1,000 only, peers A only
    .venv/bin/python bench/runtime_overhead.py --no-peers      # floor + concierge only
    .venv/bin/python bench/runtime_overhead.py --peers langgraph,pydantic-ai --json /tmp/raw.json

The workload, the scenarios and the verification are those of `peers.py` in the bench-peers
folder (default `../shared/bench-peers` next to the repository; `--peers-dir` or
`$BENCH_PEERS_DIR` to move it), imported by path and used unchanged:

* one run = 4 fake-model calls + 3 async tool calls (get_order -> check_policy -> cancel_order
  -> final text), verified after every batch by peers' `verify()`;
* A: 100 warm-up runs, then 2,000 sequential runs timed one by one;
* B: 20 warm-up runs without latency, then N runs at once (asyncio.gather), the model sleeping
  0.3 s per call; ideal wall time 4 x 0.3 = 1.2 s.

Columns, each cell a fresh process: `floor` (peers' hand-written loop, run by this interpreter),
`concierge` (tracing on through the default in-process OpenTelemetry SDK tracer, in-memory
sessions), `concierge-sqlite` (the same plus `SqlSessionStore` on a SQLite file, default settings:
`durability="process"`, a commit survives the process being killed), `concierge-sqlite-power`
(`durability="power"`: each group commit also waits for the disk), and the peer
frameworks, run by `peers.py` itself in the peers' own virtual environment (`$PEERVENV`,
default /tmp/peervenv, created from the folder's requirements.txt when missing).

Progress goes to stderr; the table and the goals go to stdout (Markdown when stdout is not a
terminal, so `> bench/results/runtime_overhead.md` gives a readable file).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import importlib.util
import itertools
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PEERS_DIR = REPO.parent / "shared" / "bench-peers"
PEER_FRAMEWORKS = ("openai-agents", "langgraph", "pydantic-ai")
OWN_COLUMNS = ("floor", "concierge", "concierge-sqlite", "concierge-sqlite-power")
SQLITE_COLUMNS = ("concierge-sqlite", "concierge-sqlite-power")
COLUMN_TITLES = {
    "floor": "floor",
    "concierge": "concierge (in-memory)",
    "concierge-sqlite": "concierge (SQLite, default)",
    "concierge-sqlite-power": "concierge (SQLite, durability=power)",
}
B_DELAY_S = 0.3
IDEAL_S = 4 * B_DELAY_S
PEER_B_SKIP = ("skipped for peers: at 5,000 concurrent runs they already take more than 70 s "
               "(bench-peers results.md), at 10,000 minutes")
WORKER_TIMEOUT_S = 900

# Goals (printed, not asserted).
GOAL_A_MEAN_US = 600.0
GOAL_A_VS_BEST_PEER = 10.0
GOAL_B1K_FACTOR = 1.25
GOAL_B10K_FACTOR = 2.0
GOAL_SQLITE_VS_MEMORY = 2.0  # A: default SQLite sessions ≤ 2× in-memory
GOAL_SQLITE_VS_BEST_PEER = 5.0  # ... and ≤ best peer ÷ 5
GOAL_B10K_SQLITE_FACTOR = 2.5


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def peers_dir_from(value: str | None) -> Path:
    return Path(value or os.environ.get("BENCH_PEERS_DIR") or DEFAULT_PEERS_DIR).resolve()


def load_peers(peers_dir: Path) -> ModuleType:
    """peers.py imported by path: the shared tools, script, counters, scenarios and verify()."""
    path = peers_dir / "peers.py"
    if not path.is_file():
        raise SystemExit(f"no peers.py in {peers_dir} (set --peers-dir or BENCH_PEERS_DIR)")
    spec = importlib.util.spec_from_file_location("bench_peers", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and the like look the module up by name
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------------------
# The concierge adapter (README "Adding another framework" rules)
# --------------------------------------------------------------------------------------


def make_concierge(peers: ModuleType, store: Any = None):
    """concierge: `Runtime.turn()` on one Runtime, the model is `concierge.testing.FunctionModel`."""
    from opentelemetry.sdk.trace import Tracer as SdkTracer

    from concierge import Agent, Runtime, tool
    from concierge.core import ToolCall, ToolResultMessage, UserMessage
    from concierge.testing import FunctionModel

    script, model_latency = peers.script, peers.model_latency

    async def scripted(messages, tools):
        await model_latency()  # counts the call; sleeps in scenario B
        n = 0
        user_text = None
        for m in messages:  # what the runtime handed the model
            if isinstance(m, ToolResultMessage):
                n += 1
            elif user_text is None and isinstance(m, UserMessage):
                user_text = m.content
        step = script(n, user_text)
        if isinstance(step, str):
            return step
        name, args = step
        return ToolCall(f"call_{n}", name, args)  # parsed arguments, as concierge's providers hand them over

    agent = Agent(
        instructions=peers.INSTRUCTIONS,
        model=FunctionModel(scripted, record=False),
        tools=[tool(fn) for fn in peers.TOOLS.values()],  # the shared async functions, unchanged
    )
    runtime = Runtime(agent, store=store)  # default tracer: the in-process OpenTelemetry SDK

    # Tracing must really be on: an SDK tracer whose spans record (not the API's no-op one).
    if not isinstance(runtime.tracer, SdkTracer):
        raise SystemExit(f"the runtime's tracer is {type(runtime.tracer).__name__}, not an SDK tracer")
    probe = runtime.tracer.start_span("bench.probe")
    if not (probe.is_recording() and probe.get_span_context().is_valid):
        raise SystemExit("the runtime's tracer does not record spans")
    probe.end()

    prompt_for, expected_output = peers.prompt_for, peers.expected_output
    session_ids = itertools.count()

    async def run(order_id: str) -> str:
        result = await runtime.turn(f"run-{next(session_ids)}", prompt_for(order_id))  # a fresh session
        if result.reply != expected_output(order_id) or result.stopped_by is not None:
            raise AssertionError((result.reply, result.stopped_by, order_id))
        if len(result.trace_id) != 32:  # the turn span was a real, recorded SDK span
            raise AssertionError(f"turn without a recorded span: {result.trace_id!r}")
        return result.reply

    return run, runtime


# --------------------------------------------------------------------------------------
# Worker: one column x one scenario in this (fresh) process; prints one JSON line
# --------------------------------------------------------------------------------------


def worker(args: argparse.Namespace) -> None:
    peers = load_peers(peers_dir_from(args.peers_dir))
    tmp = None
    runtime = None
    t0 = time.perf_counter()
    if args.worker == "floor":
        run = peers.ADAPTERS["floor"]()
        versions = {"python": platform.python_version()}
    else:
        store = None
        if args.worker in SQLITE_COLUMNS:
            from concierge.runtime.sessions.sql import SqlSessionStore

            tmp = tempfile.mkdtemp(prefix="concierge-bench-")
            durability = "power" if args.worker == "concierge-sqlite-power" else "process"
            store = SqlSessionStore(f"sqlite+aiosqlite:///{tmp}/bench.db", durability=durability)
        run, runtime = make_concierge(peers, store)
        versions = {"python": platform.python_version(), "concierge": _version("concierge"),
                    "opentelemetry-sdk": _version("opentelemetry-sdk")}
        if store is not None:
            versions["sqlalchemy"] = _version("sqlalchemy")
            versions["aiosqlite"] = _version("aiosqlite")
    setup_s = time.perf_counter() - t0

    async def main() -> dict[str, Any]:
        try:
            if args.scenario == "A":
                warmup = 100 if args.warmup is None else args.warmup
                res = await peers.scenario_a(run, args.n or 2000, warmup, True)
            else:
                warmup = 20 if args.warmup is None else args.warmup
                res = await peers.scenario_b(run, args.n or 1000, B_DELAY_S, warmup, True, args.limit_s)
        finally:
            if runtime is not None:
                await runtime.store.close()
        return res

    try:
        res = asyncio.run(main())
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps({"framework": args.worker, "scenario": args.scenario, "gc": "on", **res,
                      "setup_s": round(setup_s, 3), "versions": versions}), flush=True)


def _version(package: str) -> str | None:
    import importlib.metadata

    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


# --------------------------------------------------------------------------------------
# Orchestrator
# --------------------------------------------------------------------------------------


def run_json(cmd: list[str], label: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    log(f"+ {label}: {' '.join(shlex.quote(c) for c in cmd)}")
    started = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=WORKER_TIMEOUT_S, env=env, check=False)
    except subprocess.TimeoutExpired:
        log(f"  {label}: no result after {WORKER_TIMEOUT_S} s")
        return {"error": f"no result after {WORKER_TIMEOUT_S} s"}
    took = time.perf_counter() - started
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        log(f"  {label}: FAILED (exit {proc.returncode}) after {took:.1f} s\n{tail}")
        return {"error": f"exit {proc.returncode}: {tail.splitlines()[-1] if tail else 'no output'}"}
    res = json.loads(lines[-1])
    if res.get("scenario") == "A":
        log(f"  {label}: mean {res['mean_us']:,.0f} µs, p50 {res['p50_us']:,.0f} µs ({took:.1f} s)")
    else:
        log(f"  {label}: total {res['total_s']:.2f} s, overhead {res['overhead_s']:.2f} s ({took:.1f} s)")
    return res


def ensure_peer_venv(venv: Path, peers_dir: Path) -> Path:
    python = venv / "bin" / "python"
    if not python.exists():
        log(f"creating the peers' virtual environment {venv} from {peers_dir / 'requirements.txt'}")
        subprocess.run(["python3", "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "-r", str(peers_dir / "requirements.txt")],
                       check=True)
    return python


def clean_env() -> dict[str, str]:
    """Every column's environment: peers' optional telemetry off and no debug modes, as run_all.sh does."""
    env = dict(os.environ)
    for key in ("LANGSMITH_TRACING", "LANGCHAIN_TRACING_V2", "LANGSMITH_API_KEY", "LANGCHAIN_API_KEY",
                "OPENAI_API_KEY", "LOGFIRE_TOKEN", "PYTHONASYNCIODEBUG", "PYTHONDEVMODE"):
        env.pop(key, None)
    return env


def machine() -> str:
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = "?"
    try:
        with open("/proc/meminfo") as f:
            kib = int(next(line.split()[1] for line in f if line.startswith("MemTotal")))
        mem = f"{kib / 1024 / 1024:.0f} GiB"
    except (OSError, StopIteration, ValueError):
        pass
    return f"{cpu}, {mem} RAM, {platform.system()} {platform.release()}"


def orchestrate(args: argparse.Namespace) -> None:
    t_start = time.perf_counter()
    started = datetime.datetime.now(datetime.UTC)
    load_average = " ".join(f"{x:.2f}" for x in os.getloadavg())  # other work on the machine skews timings
    peers_dir = peers_dir_from(args.peers_dir)
    if not (peers_dir / "peers.py").is_file():
        raise SystemExit(f"no peers.py in {peers_dir} (set --peers-dir or BENCH_PEERS_DIR)")
    peer_names: list[str] = []
    if not args.no_peers:
        peer_names = [p.strip() for p in args.peers.split(",") if p.strip()]
        unknown = [p for p in peer_names if p not in PEER_FRAMEWORKS]
        if unknown:
            raise SystemExit(f"unknown peer(s) {unknown}; choose from {', '.join(PEER_FRAMEWORKS)}")

    n_a = 500 if args.quick else 2000
    b_sizes = [1000] if args.quick else [1000, 10000]
    own = [c for c in OWN_COLUMNS if not (c in SQLITE_COLUMNS and args.no_sqlite)]
    me = [sys.executable, str(Path(__file__).resolve()), "--peers-dir", str(peers_dir)]
    results: dict[str, dict[str, Any]] = {c: {} for c in [*own, *peer_names]}
    notes: list[str] = []
    env = clean_env()

    for column in own:
        results[column]["A"] = run_json(
            [*me, "--worker", column, "--scenario", "A", "--n", str(n_a), "--warmup", "100"], f"{column} A", env)
        for n in b_sizes:
            results[column][f"B{n}"] = run_json(
                [*me, "--worker", column, "--scenario", "B", "--n", str(n), "--limit-s", str(args.limit_s)],
                f"{column} B {n:,}", env)

    if peer_names:
        venv = Path(args.peer_venv or os.environ.get("PEERVENV") or "/tmp/peervenv")
        python = ensure_peer_venv(venv, peers_dir)
        for fw in peer_names:
            base = [str(python), str(peers_dir / "peers.py"), "--framework", fw]
            results[fw]["A"] = run_json([*base, "--scenario", "A", "--n", str(n_a), "--warmup", "100"], f"{fw} A",
                                        env)
            if not args.quick:
                results[fw]["B1000"] = run_json(
                    [*base, "--scenario", "B", "--n", "1000", "--delay", str(B_DELAY_S),
                     "--limit-s", str(args.limit_s)], f"{fw} B 1,000", env)
        if not args.quick:
            log(f"peers B 10,000 {PEER_B_SKIP}")
            notes.append(f"B 10,000 {PEER_B_SKIP}.")
        else:
            notes.append("--quick: peers ran scenario A only.")

    elapsed = time.perf_counter() - t_start
    for col, cells in results.items():
        for key, r in cells.items():
            if "error" in r:
                scenario = "A" if key == "A" else f"B {int(key[1:]):,}"
                notes.append(f"{COLUMN_TITLES.get(col, col)} {scenario} failed: {r['error']}")
    meta = {
        "started_utc": started.strftime("%Y-%m-%d %H:%M UTC"),
        "load_average": load_average,
        "machine": machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "command": command_line(),
        "peers_dir": str(peers_dir),
        "elapsed_s": round(elapsed, 1),
        "n_a": n_a,
        "b_sizes": b_sizes,
        "notes": notes,
    }
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
        log(f"wrote {args.json}")
    fmt = args.format or ("rich" if sys.stdout.isatty() else "markdown")
    report(results, meta, fmt)
    log(f"bench took {elapsed:.0f} s")


def command_line() -> str:
    exe = Path(sys.executable)
    cwd = Path.cwd()
    exe_s = os.path.relpath(exe, cwd) if exe.is_relative_to(cwd) else str(exe)
    return f"cd {cwd} && {exe_s} {' '.join(shlex.quote(a) for a in sys.argv)}"


# --------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------


def _get(results, col, key, field):
    r = results.get(col, {}).get(key)
    if not r or "error" in r or field not in r:
        return None
    return r[field]


def _b_cell(results, col, key, field, fmt):
    r = results.get(col, {}).get(key)
    if r is None:
        return None
    if "error" in r:
        return "failed"
    if r.get("timed_out"):
        if field == "total_s":
            return f"gave up at {r['total_s']:.0f} s, {r['finished_runs']:,}/{r['n']:,} done"
        return "—"
    if field == "ratio":
        return f"{r['total_s'] / IDEAL_S:.2f}×"
    return fmt.format(r[field])


def build_rows(results: dict, meta: dict) -> list[tuple[str, dict[str, str | None] | None]]:
    cols = list(results)
    floor_mean = _get(results, "floor", "A", "mean_us")
    rows: list[tuple[str, dict[str, str | None] | None]] = []

    def row(label, fn):
        rows.append((label, {c: fn(c) for c in cols}))

    def section(label):
        rows.append((label, None))

    def versions(c):
        r = results[c].get("A") or next(iter(results[c].values()), None)
        if not r or "versions" not in r:
            return None
        v = {k: x for k, x in r["versions"].items() if k != "python"}
        return ", ".join(f"{k} {x}" for k, x in v.items()) or "plain Python"

    def a(field, fmt="{:,.0f}"):
        def f(c):
            r = results[c].get("A")
            if r is not None and "error" in r:
                return "failed"
            return None if _get(results, c, "A", field) is None else fmt.format(_get(results, c, "A", field))
        return f

    row("versions", versions)
    row("import + build agent, s", a("setup_s", "{:.2f}"))
    section(f"A: sequential, model returns instantly ({meta['n_a']:,} runs after 100 warm-up)")
    row("p50 per run, µs", a("p50_us"))
    row("p99 per run, µs", a("p99_us"))
    row("mean per run, µs", a("mean_us"))
    row("runs/s", a("runs_per_s"))
    row("CPU during the timed runs, s", a("cpu_s", "{:.2f}"))
    row("mean ÷ floor mean", lambda c: None if not floor_mean or _get(results, c, "A", "mean_us") is None
        else f"{_get(results, c, 'A', 'mean_us') / floor_mean:,.1f}×")
    row("peak RSS, MiB", a("peak_rss_mib", "{:.0f}"))
    for n in meta["b_sizes"]:
        key = f"B{n}"
        section(f"B: {n:,} concurrent runs, model sleeps 0.3 s per call (ideal {IDEAL_S:.1f} s)")
        row("total wall, s", lambda c, k=key: _b_cell(results, c, k, "total_s", "{:.2f}"))
        row("overhead = total − 1.2 s, s", lambda c, k=key: _b_cell(results, c, k, "overhead_s", "{:.2f}"))
        row("total ÷ ideal", lambda c, k=key: _b_cell(results, c, k, "ratio", ""))
        row("CPU during batch, s", lambda c, k=key: _b_cell(results, c, k, "cpu_s", "{:.2f}"))
        row("RSS before batch, MiB", lambda c, k=key: _b_cell(results, c, k, "rss_before_mib", "{:.0f}"))
        row("peak RSS, MiB", lambda c, k=key: _b_cell(results, c, k, "peak_rss_mib", "{:.0f}"))
    if any(c in results for c in SQLITE_COLUMNS):
        section("SQLite store added cost (concierge SQLite − concierge in-memory)")

        def added(key, field, fmt):
            def f(c):
                if c not in SQLITE_COLUMNS:
                    return None
                x, y = _get(results, c, key, field), _get(results, "concierge", key, field)
                return None if x is None or y is None else fmt.format(x - y)
            return f

        row("A: mean per run, µs", added("A", "mean_us", "{:+,.0f}"))
        for n in meta["b_sizes"]:
            row(f"B {n:,}: total wall, s", added(f"B{n}", "total_s", "{:+.2f}"))
    return rows


def goals(results: dict, meta: dict) -> list[tuple[str, bool | None, str]]:
    out: list[tuple[str, bool | None, str]] = []
    mean = _get(results, "concierge", "A", "mean_us")
    out.append((f"A mean ≤ {GOAL_A_MEAN_US / 1000:.1f} ms with tracing on",
                None if mean is None else mean <= GOAL_A_MEAN_US,
                "no result" if mean is None else f"{mean:,.0f} µs"))
    peer_means = {c: _get(results, c, "A", "mean_us") for c in results if c in PEER_FRAMEWORKS}
    peer_means = {c: m for c, m in peer_means.items() if m is not None}
    if peer_means and mean is not None:
        best = min(peer_means, key=peer_means.get)
        limit = peer_means[best] / GOAL_A_VS_BEST_PEER
        out.append((f"A mean ≤ best peer ÷ {GOAL_A_VS_BEST_PEER:.0f}", mean <= limit,
                    (f"{mean:,.0f} µs vs {best} {peer_means[best]:,.0f} µs ÷ {GOAL_A_VS_BEST_PEER:g} = {limit:,.0f} µs "
                     f"({peer_means[best] / mean:,.1f}× faster)")))
    else:
        out.append((f"A mean ≤ best peer ÷ {GOAL_A_VS_BEST_PEER:.0f}", None, "no peer results"))
    for n, factor in ((1000, GOAL_B1K_FACTOR), (10000, GOAL_B10K_FACTOR)):
        label = f"B {n:,} ≤ {factor:g} × {IDEAL_S:.1f} s = {factor * IDEAL_S:.2f} s"
        r = results.get("concierge", {}).get(f"B{n}")
        if n not in meta["b_sizes"]:
            out.append((label, None, "not run (--quick)"))
        elif not r or "error" in r or r.get("timed_out"):
            out.append((label, False if r else None, "failed or timed out" if r else "no result"))
        else:
            out.append((label, r["total_s"] <= factor * IDEAL_S, f"{r['total_s']:.2f} s"))
    sqlite_mean = _get(results, "concierge-sqlite", "A", "mean_us")
    label = f"A, default SQLite sessions: mean ≤ {GOAL_SQLITE_VS_MEMORY:g}× in-memory"
    if sqlite_mean is None or mean is None:
        out.append((label, None, "no result"))
    else:
        out.append((label, sqlite_mean <= GOAL_SQLITE_VS_MEMORY * mean,
                    f"{sqlite_mean:,.0f} µs vs {mean:,.0f} µs ({sqlite_mean / mean:.2f}×)"))
    label = f"A, default SQLite sessions: mean ≤ best peer ÷ {GOAL_SQLITE_VS_BEST_PEER:g}"
    if sqlite_mean is None or not peer_means:
        out.append((label, None, "no result" if sqlite_mean is None else "no peer results"))
    else:
        best = min(peer_means, key=peer_means.get)
        limit = peer_means[best] / GOAL_SQLITE_VS_BEST_PEER
        detail = (f"{sqlite_mean:,.0f} µs vs {best} {peer_means[best]:,.0f} µs ÷ {GOAL_SQLITE_VS_BEST_PEER:g} = "
                  f"{limit:,.0f} µs ({peer_means[best] / sqlite_mean:,.1f}× faster)")
        out.append((label, sqlite_mean <= limit, detail))
    label = f"B 10,000, default SQLite sessions ≤ {GOAL_B10K_SQLITE_FACTOR:g} × {IDEAL_S:.1f} s"
    r = results.get("concierge-sqlite", {}).get("B10000")
    if 10000 not in meta["b_sizes"] or not r or "error" in r:
        out.append((label, None if not r else False, "not run" if not r else "failed"))
    else:
        out.append((label, r["total_s"] <= GOAL_B10K_SQLITE_FACTOR * IDEAL_S and not r.get("timed_out"),
                    f"{r['total_s']:.2f} s"))
    return out


def report(results: dict, meta: dict, fmt: str) -> None:
    rows = build_rows(results, meta)
    cols = list(results)
    titles = [COLUMN_TITLES.get(c, c) for c in cols]
    goal_lines = goals(results, meta)
    verdict = {True: "PASS", False: "MISS", None: "n/a"}
    platform_line = (f"Platform: {meta['cpus']} CPUs ({meta['machine']}); Python {meta['python']}; "
                     f"load average at start {meta['load_average']}")

    if fmt == "rich":
        from rich.console import Console
        from rich.table import Table

        console = Console()
        console.print(f"Runtime overhead, measured {meta['started_utc']}")
        console.print(platform_line)
        console.print(f"Command: {meta['command']}")
        table = Table(show_lines=False)
        table.add_column("")
        for t in titles:
            table.add_column(t, justify="right")
        for label, cells in rows:
            if cells is None:
                table.add_section()
                table.add_row(f"[bold]{label}[/bold]", *[""] * len(cols))
            else:
                table.add_row(label, *[cells[c] or "—" for c in cols])
        console.print(table)
        for note in meta["notes"]:
            console.print(note)
        console.print("Goals:")
        for label, ok, detail in goal_lines:
            colour = {True: "green", False: "red", None: "yellow"}[ok]
            console.print(f"  [{colour}]{verdict[ok]}[/{colour}]  {label}: {detail}")
        console.print(f"Full benchmark took {meta['elapsed_s']:.0f} s.")
        return

    out = [
        "# Runtime overhead: concierge and its peers on the bench-peers workload",
        "",
        f"Measured {meta['started_utc']}, each cell a fresh process, all in one invocation.",
        "",
        platform_line,
        "",
        "Command:",
        "",
        "```",
        meta["command"],
        "```",
        "",
        ("One run = 4 fake-model calls + 3 async tool calls (get_order → check_policy → cancel_order → "
         "final text), verified after every batch by `peers.py`'s `verify()` (each tool executed once per run, "
         "4 model calls per run, exact final text). Workload, scenarios and peer adapters: "
         f"`{meta['peers_dir']}/peers.py`. concierge runs with tracing on (the in-process OpenTelemetry SDK "
         "tracer: a span per turn, model call and tool call); `floor` is peers' hand-written loop."),
        "",
        "| | " + " | ".join(titles) + " |",
        "|---|" + "---:|" * len(cols),
    ]
    for label, cells in rows:
        if cells is None:
            out.append(f"| **{label}** |" + " |" * len(cols))
        else:
            out.append(f"| {label} | " + " | ".join(cells[c] or "—" for c in cols) + " |")
    out.append("")
    for note in meta["notes"]:
        out.append(note)
        out.append("")
    out.append("Goals (concierge, tracing on):")
    out.append("")
    for label, ok, detail in goal_lines:
        out.append(f"- **{verdict[ok]}** {label}: {detail}")
    out.append("")
    out.append(f"Full benchmark took {meta['elapsed_s']:.0f} s.")
    print("\n".join(out), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="A with 500 runs, B 1,000 only, peers A only")
    ap.add_argument("--no-peers", action="store_true", help="floor and concierge only")
    ap.add_argument("--peers", default=",".join(PEER_FRAMEWORKS),
                    help=f"comma-separated peer frameworks (default: {','.join(PEER_FRAMEWORKS)})")
    ap.add_argument("--no-sqlite", action="store_true", help="skip the SQLite-store columns")
    ap.add_argument("--json", metavar="PATH", help="write the raw results (and run metadata) as JSON")
    ap.add_argument("--peers-dir", default=None,
                    help=f"bench-peers folder (default: $BENCH_PEERS_DIR or {DEFAULT_PEERS_DIR})")
    ap.add_argument("--peer-venv", default=None, help="peers' virtual environment (default: $PEERVENV or /tmp/peervenv)")
    ap.add_argument("--limit-s", type=float, default=120.0, help="B: give up after this many seconds")
    ap.add_argument("--format", choices=["rich", "markdown"], default=None,
                    help="table format (default: rich on a terminal, Markdown otherwise)")
    # Internal: one column x one scenario in a fresh process.
    ap.add_argument("--worker", choices=OWN_COLUMNS, help=argparse.SUPPRESS)
    ap.add_argument("--scenario", choices=["A", "B"], help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--warmup", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
    else:
        orchestrate(args)


if __name__ == "__main__":
    main()
