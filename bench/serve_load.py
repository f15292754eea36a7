#!/usr/bin/env python3
"""Serving under load: N concurrent WebSocket sessions against `concierge serve`, and rate-limit isolation.

    .venv/bin/python bench/serve_load.py                       # 2,000 sessions, model 300 ms
    .venv/bin/python bench/serve_load.py --sessions 200        # quick check
    .venv/bin/python bench/serve_load.py --sessions 10000      # 10,000 sessions on one worker
    .venv/bin/python bench/serve_load.py --workers 2 --redis   # also 2 workers + Redis, vs 1 worker
    .venv/bin/python bench/serve_load.py --db-dir /dev/shm     # SQLite file in tmpfs
    .venv/bin/python bench/serve_load.py --profile-server /tmp/serve  # cProfile: /tmp/serve.1.prof creation, .2.prof turns
    .venv/bin/python bench/serve_load.py --write-results       # also writes bench/results/serve_load.md

Everything is on loopback. The server runs as its own process (`concierge serve --test-model
echo:MS --no-demo`, one worker), so the client's event loop and the server's do not share a
thread; on a small machine they still share the CPUs, which the report says.

Session store: SQLite (`--sqlite`, the default and the only store this bench drives): tenants,
sessions, turn records and the runtime's conversations all live in one SQLite file
(`CONCIERGE_SESSIONS__URL=sqlite+aiosqlite:///...`), the server's default kind of database.

Session creation: POST /v1/sessions over `CREATE_CONNECTIONS` keep-alive HTTP/1.1 connections
with a minimal client written here (httpx would cost the client more CPU than the server spends),
so the printed rate (sessions/s, and server CPU per creation) is the server's.

Memory per idle WebSocket: the server's resident memory (all its processes) once every session is
connected and waiting at the barrier, minus what it was before the first connection, divided by
the sessions connected.

CPU per turn: the server's CPU time (user + system, all its processes) from the barrier to the
last answer, divided by the turns answered: authentication is at connect, so this is the session
lookup, rate limit, lock, runtime, records and the frames of a turn together.

With `--workers 2 --redis` (Redis started here on a free port, or `--redis URL`), the same load
phase runs again against `concierge serve --workers 2 --redis URL`, and the report compares its
answered throughput (turns answered / barrier → last answer) with the 1-worker run of the same
invocation. `--turns K` makes each session send K messages in sequence after the barrier.

Load phase (run twice, same client code): against a bare FastAPI/uvicorn app in its own process
whose WebSocket handler only sleeps `--model-ms` and replies (the floor), then against concierge.
For each of N sessions: POST /v1/sessions (bounded concurrency), open the WebSocket, wait for
`ready`; once all are connected (a barrier), every session sends one message and times send →
`turn_finished`. Added latency = end-to-end − the model step's own `latency_ms` (the floor
reports its measured sleep the same way). Errors: any error event, non-201 create, exception,
closed socket, or missing reply before `--timeout` (which bounds each load phase).

Rate-limit phase: tenants "noisy" and "quiet" with the same limits (5/s, burst 10, same per
user). For 5 s noisy POSTs 200 messages (40/s, up to 20 in flight, over 10 sessions) while quiet
POSTs 2/s to one session; counts of 200 and 429 (and whether each 429 had Retry-After) per tenant.

Tenants and service keys are written with `TenantDirectory` into the SQLite file before the
server starts. The load tenant has a high tenant limit and the default per-user limit (2/s,
burst 10): each session belongs to its own user, and a service key's turns draw on the bucket of
the session's user.

Progress goes to stderr; the report (Markdown) to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import websockets
from benchkit import command_line, cpu_model, filesystem, log, percentile, versions

REPO = Path(__file__).resolve().parents[1]
RESULTS_MD = REPO / "bench" / "results" / "serve_load.md"
CONCIERGE = Path(sys.executable).with_name("concierge")
CREATE_CONNECTIONS = 32
CONNECT_CONCURRENCY = 100
RATE = (5.0, 10)  # noisy and quiet: per second, burst (tenant and per user)
LOAD_RATE = (100_000.0, 100_000)

# The floor: the same routes as concierge, nothing behind them but the sleep.
FLOOR_APP = r'''
import asyncio, sys, time
import uvicorn
from fastapi import FastAPI, WebSocket, WebSocketDisconnect

app = FastAPI()
delay = int(sys.argv[2]) / 1000

@app.get("/healthz")
async def healthz():
    return {"status": "ok"}

@app.post("/v1/sessions", status_code=201)
async def create(body: dict):
    return {"session_id": body["session_id"], "user_id": body.get("user_id")}

@app.websocket("/v1/sessions/{session_id}/stream")
async def stream(websocket: WebSocket, session_id: str, token: str = ""):
    await websocket.accept()
    await websocket.send_json({"type": "ready", "session_id": session_id})
    try:
        while True:
            raw = await websocket.receive_text()
            clock = time.perf_counter()
            await asyncio.sleep(delay)
            ms = (time.perf_counter() - clock) * 1000
            await websocket.send_json({"type": "turn_finished", "session_id": session_id, "reply": raw,
                                       "steps": [{"kind": "model", "latency_ms": ms}]})
    except WebSocketDisconnect:
        return

uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", ws_per_message_deflate=False)
'''


# `concierge serve` with cProfile switched on and off by signals, so start-up is not in the profile:
# SIGUSR1 starts a profile of the main thread (the event loop), SIGUSR2 writes it to ARGV[1].N.prof.
PROFILED_SERVER = r'''
import cProfile, signal, sys
from concierge.cli import main
base, profiles = sys.argv[1], []
def begin(*_):
    profiles.append(cProfile.Profile())
    profiles[-1].enable()
def end(*_):
    profiles[-1].disable()
    profiles[-1].dump_stats(f"{base}.{len(profiles)}.prof")
signal.signal(signal.SIGUSR1, begin)
signal.signal(signal.SIGUSR2, end)
sys.argv = ["concierge"] + sys.argv[2:]
sys.exit(main())
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raise_nofile(needed: int) -> tuple[int, int, str]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    note = "" if soft >= needed else f"open-file limit {soft} < ~{needed} needed: expect connection errors"
    return soft, hard, note


# --------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------

@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: uvicorn drains, then exits
            try:
                self.proc.wait(40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def start(name: str, argv: list[str], *, cwd: Path, env: dict[str, str], port: int) -> Server:
    log_path = cwd / f"{name}.log"
    with open(log_path, "wb") as out:  # a file, not a pipe: a full pipe would stall the server
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    server = Server(name, proc, port, log_path)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}:\n{server.log_tail()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{server.url}/healthz", timeout=1).status_code == 200:
                return server
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"{name} did not answer /healthz within 60 s:\n{server.log_tail()}")


async def make_tenants(url: str) -> dict[str, str]:
    """The tenants and their service keys, written to the database before the server starts."""
    from concierge.security.tenants import TenantDirectory

    directory = TenantDirectory(url)
    keys = {}
    try:
        for name, rate, user_rate in (("load", LOAD_RATE, (2.0, 10)), ("noisy", RATE, RATE), ("quiet", RATE, RATE)):
            await directory.create_tenant(name, rate=rate, user_rate=user_rate)
            keys[name] = await directory.issue_key(name, "service", f"bench-{name}")
    finally:
        await directory.close()
    return keys


# --------------------------------------------------------------------------------------
# Load phase
# --------------------------------------------------------------------------------------

@dataclass
class LoadResult:
    target: str
    sessions: int
    turns_per_session: int = 1
    created: int = 0
    connected: int = 0
    finished: int = 0
    e2e_ms: list[float] = field(default_factory=list)
    model_ms: list[float] = field(default_factory=list)
    added_ms: list[float] = field(default_factory=list)
    nominal_ms: float = 0.0
    errors: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)
    wall_s: float = 0.0
    create_s: float = 0.0
    connect_s: float = 0.0
    send_spread_ms: float = 0.0
    cpu_server_s: float | None = None
    cpu_create_s: float | None = None
    cpu_turns_s: float | None = None
    rss_before_mb: float | None = None
    rss_idle_mb: float | None = None

    def error(self, kind: str, detail: str) -> None:
        self.errors[kind] += 1
        self.examples.setdefault(kind, detail[:300])

    def summary(self) -> dict[str, Any]:
        def p(xs: list[float], q: float) -> float | None:
            return percentile(sorted(xs), q) if xs else None  # type: ignore[arg-type]

        turns_s = self.wall_s - self.connect_s if self.connect_s else None
        idle_kb = None
        if self.rss_before_mb is not None and self.rss_idle_mb is not None and self.connected:
            idle_kb = (self.rss_idle_mb - self.rss_before_mb) * 1024 / self.connected
        return {
            "target": self.target, "sessions": self.sessions, "turns_per_session": self.turns_per_session,
            "created": self.created, "connected": self.connected,
            "finished": self.finished, "errors": sum(self.errors.values()), "error_kinds": dict(self.errors),
            "error_examples": self.examples, "e2e_p50_ms": p(self.e2e_ms, 50), "e2e_p99_ms": p(self.e2e_ms, 99),
            "e2e_max_ms": max(self.e2e_ms) if self.e2e_ms else None,
            "model_p50_ms": p(self.model_ms, 50), "added_p50_ms": p(self.added_ms, 50),
            "added_p99_ms": p(self.added_ms, 99), "added_max_ms": max(self.added_ms) if self.added_ms else None,
            "over_nominal_p50_ms": p([x - self.nominal_ms for x in self.e2e_ms], 50),
            "over_nominal_p99_ms": p([x - self.nominal_ms for x in self.e2e_ms], 99),
            "create_s": self.create_s,
            "create_per_s": self.created / self.create_s if self.create_s and self.created else None,
            "cpu_per_create_ms": (self.cpu_create_s * 1000 / self.created
                                  if self.cpu_create_s is not None and self.created else None),
            "connect_s": self.connect_s, "send_spread_ms": self.send_spread_ms, "wall_s": self.wall_s,
            "server_cpu_s": self.cpu_server_s, "server_cpu_turns_s": self.cpu_turns_s,
            "cpu_per_turn_ms": (self.cpu_turns_s * 1000 / self.finished
                                if self.cpu_turns_s is not None and self.finished else None),
            "turns_s": turns_s,
            "throughput_per_s": self.finished / turns_s if turns_s else None,
            "rss_before_mb": self.rss_before_mb, "rss_idle_mb": self.rss_idle_mb, "idle_ws_kb": idle_kb,
        }


def tree_pids(pid: int) -> list[int]:
    """The process and its descendants (uvicorn's workers are children of the supervisor)."""
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        for task in Path(f"/proc/{p}/task").glob("*/children") if Path(f"/proc/{p}/task").exists() else []:
            with contextlib.suppress(OSError, ValueError):
                todo.extend(int(c) for c in task.read_text().split())
    return pids


def proc_cpu_s(pid: int) -> float | None:
    """User + system CPU of the process and its descendants, s."""
    total, seen = 0.0, False
    for p in tree_pids(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            seen = True
        except (OSError, IndexError, ValueError):
            continue
    return total if seen else None


def proc_rss_mb(pid: int) -> float | None:
    """Resident memory of the process and its descendants, MiB."""
    total, seen = 0.0, False
    for p in tree_pids(pid):
        with contextlib.suppress(OSError, ValueError, IndexError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
                    seen = True
    return total if seen else None


async def create_sessions(url: str, key: str, ids: list[str], result: LoadResult) -> list[str]:
    """POST /v1/sessions for every id over `CREATE_CONNECTIONS` keep-alive connections; the ids created.

    A plain HTTP/1.1 client (status line, headers, Content-Length or chunked body): cheap enough on
    the client side that the rate it reaches is the server's.
    """
    host, _, port = url.removeprefix("http://").partition(":")
    todo = iter(enumerate(ids))
    ok: list[str] = []

    async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
        status_line = await reader.readuntil(b"\r\n")
        status = int(status_line.split()[1])
        length, chunked, close = None, False, False
        while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
            name, _, value = line.decode("latin-1").partition(":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding" and "chunked" in value:
                chunked = True
            elif name == "connection" and value == "close":
                close = True
        if chunked:
            body = b""
            while (size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)) > 0:
                body += (await reader.readexactly(size + 2))[:-2]
            await reader.readuntil(b"\r\n")
        else:
            body = await reader.readexactly(length or 0)
        return status, body, close

    async def connection() -> None:
        writer: asyncio.StreamWriter | None = None
        try:
            for i, sid in todo:
                payload = json.dumps({"session_id": sid, "user_id": f"u{i}"}).encode()
                request = (f"POST /v1/sessions HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {key}\r\n"
                           f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n").encode()
                try:
                    if writer is None:
                        reader, writer = await asyncio.open_connection(host, int(port))
                    writer.write(request + payload)
                    status, body, close = await read_response(reader)
                except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as exc:
                    result.error("create_exception", f"{type(exc).__name__}: {exc}")
                    if writer is not None:
                        writer.close()
                    writer = None
                    continue
                if status == 201:
                    ok.append(sid)
                    result.created += 1
                else:
                    result.error(f"create_{status}", body.decode(errors="replace"))
                if close:
                    writer.close()
                    writer = None
        finally:
            if writer is not None:
                writer.close()

    await asyncio.gather(*(connection() for _ in range(min(CREATE_CONNECTIONS, len(ids)))))
    return ok


async def load_phase(server: Server, key: str, n: int, timeout_s: float, tag: str, model_ms: int,
                     turns: int = 1, profiled: bool = False) -> LoadResult:
    result = LoadResult(server.name, n, turns, nominal_ms=model_ms)
    ws_base = server.url.replace("http://", "ws://")
    ids = [f"{tag}-{i}" for i in range(n)]
    started = time.perf_counter()
    cpu0 = proc_cpu_s(server.proc.pid)
    all_ready, go = asyncio.Event(), asyncio.Event()
    settled = 0  # sessions connected or failed before the barrier
    sent_at: list[float] = []
    done = 0

    def settle() -> None:
        nonlocal settled
        settled += 1
        if settled == n:
            all_ready.set()

    connect_gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def session(sid: str) -> None:
        nonlocal done
        ws = None
        try:
            async with connect_gate:
                # permessage-deflate offered, as browsers do; what the server accepts is its choice.
                ws = await websockets.connect(f"{ws_base}/v1/sessions/{sid}/stream?token={key}",
                                              open_timeout=60, ping_interval=None, max_queue=None,
                                              close_timeout=5)
                first = json.loads(await asyncio.wait_for(ws.recv(), 60))
            if first.get("type") != "ready":
                result.error("not_ready", json.dumps(first))
                settle()
                return
            result.connected += 1
        except Exception as exc:  # noqa: BLE001 - every failure is counted
            result.error(f"connect_{type(exc).__name__}", str(exc))
            settle()
            if ws is not None:
                await ws.close()
            return
        settle()
        try:
            await go.wait()
            for k in range(turns):
                t0 = time.perf_counter()
                await ws.send(json.dumps({"type": "message", "text": f"hello {k} from {sid}"}))
                if k == 0:
                    sent_at.append(t0)
                if not await one_turn(ws, t0):
                    break
        except Exception as exc:  # noqa: BLE001
            result.error(f"turn_{type(exc).__name__}", str(exc))
        finally:
            done += 1
            await go_home.wait()  # stay connected until every session has its answer (or the deadline)
            with contextlib.suppress(Exception):
                await ws.close()

    async def one_turn(ws: Any, t0: float) -> bool:
        while True:
            event = json.loads(await ws.recv())
            kind = event.get("type")
            if kind == "turn_finished":
                e2e = (time.perf_counter() - t0) * 1000
                model = sum(s.get("latency_ms", 0.0) for s in event.get("steps", []) if s.get("kind") == "model")
                if event.get("stopped_by"):
                    result.error(f"stopped_{event['stopped_by']}", json.dumps(event)[:300])
                    return False
                result.e2e_ms.append(e2e)
                result.model_ms.append(model)
                result.added_ms.append(e2e - model)
                result.finished += 1
                return True
            if kind == "error":
                result.error(f"error_event_{event.get('status')}", json.dumps(event))
                return False

    go_home = asyncio.Event()

    async def progress() -> None:
        while True:
            await asyncio.sleep(2)
            log(f"  [{server.name}] {time.perf_counter() - started:5.1f}s  created {result.created}/{n}  "
                f"connected {result.connected}  answered {result.finished}  errors {sum(result.errors.values())}")

    cpu_barrier: float | None = None
    reporter = asyncio.create_task(progress())
    tasks: list[asyncio.Task[None]] = []
    def profile(sig: signal.Signals) -> None:
        if profiled:
            os.kill(server.proc.pid, sig)
            time.sleep(0.3 if sig == signal.SIGUSR2 else 0.05)  # written (or started) before going on

    try:
        async with asyncio.timeout(timeout_s):
            profile(signal.SIGUSR1)
            ok = await create_sessions(server.url, key, ids, result)
            profile(signal.SIGUSR2)  # 1: creation
            result.create_s = time.perf_counter() - started - (0.3 if profiled else 0)
            cpu_created = proc_cpu_s(server.proc.pid)
            if cpu0 is not None and cpu_created is not None:
                result.cpu_create_s = cpu_created - cpu0
            log(f"  [{server.name}] created {result.created}/{n} in {result.create_s:.2f}s "
                f"({result.created / max(result.create_s, 1e-9):,.0f}/s)")
            await asyncio.sleep(0.5)  # let the server settle before its memory is read
            result.rss_before_mb = proc_rss_mb(server.proc.pid)
            tasks = [asyncio.create_task(session(sid)) for sid in ok]
            if len(ok) < n:
                settled += n - len(ok)
                if settled == n:
                    all_ready.set()
            await all_ready.wait()
            result.rss_idle_mb = proc_rss_mb(server.proc.pid)
            result.connect_s = time.perf_counter() - started
            log(f"  [{server.name}] barrier: {result.connected}/{n} connected after {result.connect_s:.1f}s; go")
            profile(signal.SIGUSR1)
            cpu_barrier = proc_cpu_s(server.proc.pid)
            go.set()
            while done < len(tasks):
                await asyncio.sleep(0.05)
            profile(signal.SIGUSR2)  # 2: the turns
    except TimeoutError:
        missing = max(1, n * turns - result.finished - sum(result.errors.values()))
        result.error("phase_timeout", f"{missing} turns unanswered after --timeout {timeout_s:g} s")
        result.errors["phase_timeout"] = missing
    finally:
        result.wall_s = time.perf_counter() - started
        cpu1 = proc_cpu_s(server.proc.pid)
        go_home.set()
        reporter.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)
            for t in tasks:
                t.cancel()
        if cpu0 is not None and cpu1 is not None:
            result.cpu_server_s = cpu1 - cpu0
            if cpu_barrier is not None:
                result.cpu_turns_s = cpu1 - cpu_barrier
    if sent_at:
        result.send_spread_ms = (max(sent_at) - min(sent_at)) * 1000
    log(f"  [{server.name}] done in {result.wall_s:.1f}s: {result.finished} answered, "
        f"{sum(result.errors.values())} errors {dict(result.errors)}")
    return result


# --------------------------------------------------------------------------------------
# Rate-limit phase
# --------------------------------------------------------------------------------------

async def rate_phase(server: Server, keys: dict[str, str], seconds: float = 5.0, noisy_total: int = 200,
                     noisy_concurrency: int = 20, quiet_per_s: float = 2.0) -> dict[str, Any]:
    counts: dict[str, Counter[str]] = {"noisy": Counter(), "quiet": Counter()}
    missing_retry_after = Counter[str]()
    quiet_ms: list[float] = []

    def client(tenant: str, n: int) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {keys[tenant]}"},
                                 timeout=30, limits=httpx.Limits(max_connections=n))

    async with client("noisy", noisy_concurrency) as noisy, client("quiet", 4) as quiet:
        for c, tenant, sessions in ((noisy, "noisy", 10), (quiet, "quiet", 1)):
            for i in range(sessions):
                r = await c.post("/v1/sessions", json={"session_id": f"{tenant}-{i}", "user_id": f"{tenant}-u{i}"})
                r.raise_for_status()

        async def post(c: httpx.AsyncClient, tenant: str, sid: str) -> None:
            t0 = time.perf_counter()
            try:
                r = await c.post(f"/v1/sessions/{sid}/messages", json={"text": "hi"})
            except httpx.HTTPError as exc:
                counts[tenant][type(exc).__name__] += 1
                return
            counts[tenant][str(r.status_code)] += 1
            if r.status_code == 429 and not r.headers.get("retry-after"):
                missing_retry_after[tenant] += 1
            if tenant == "quiet" and r.status_code == 200:
                quiet_ms.append((time.perf_counter() - t0) * 1000)

        async def paced(c: httpx.AsyncClient, tenant: str, total: int, per_s: float, sessions: int,
                        concurrency: int) -> None:
            gate = asyncio.Semaphore(concurrency)
            t_start = time.perf_counter()

            async def one(i: int) -> None:
                async with gate:
                    await post(c, tenant, f"{tenant}-{i % sessions}")

            tasks = []
            for i in range(total):
                delay = t_start + i / per_s - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(one(i)))
            await asyncio.gather(*tasks)

        t0 = time.perf_counter()
        await asyncio.gather(
            paced(noisy, "noisy", noisy_total, noisy_total / seconds, 10, noisy_concurrency),
            paced(quiet, "quiet", int(quiet_per_s * seconds), quiet_per_s, 1, 4),
        )
        wall = time.perf_counter() - t0
    return {"seconds": wall, "noisy": dict(counts["noisy"]), "quiet": dict(counts["quiet"]),
            "missing_retry_after": dict(missing_retry_after),
            "quiet_p50_ms": percentile(sorted(quiet_ms), 50) if quiet_ms else None,  # type: ignore[arg-type]
            "quiet_max_ms": max(quiet_ms) if quiet_ms else None,
            "noisy_sent": noisy_total, "quiet_sent": int(quiet_per_s * seconds)}


# --------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------

def fmt(x: float | None, digits: int = 1) -> str:
    return "—" if x is None else f"{x:,.{digits}f}"


def report(meta: dict[str, Any], floor: dict[str, Any], conc: dict[str, Any], rate: dict[str, Any] | None,
           multi: dict[str, Any] | None = None) -> str:
    out: list[str] = ["# Serving under load: concurrent WebSocket sessions and rate-limit isolation", ""]
    out.append(f"Measured {meta['when']}, all phases in one invocation.")
    out.append("")
    out.append(f"Platform: {meta['platform']}; {meta['versions_line']}; load average at start {meta['loadavg']}")
    out.append("")
    out.append(f"Command:\n\n```\n{meta['command']}\n```\n")
    out.append(f"Server: `concierge serve --test-model echo:{meta['model_ms']} --no-demo`, 1 worker, its own "
               f"process. **Session store: SQLite** (the default; tenants, sessions, turn records and "
               f"conversations in one file) at `{meta['db_path']}` ({meta['db_fs']}). Floor: a bare "
               "FastAPI/uvicorn app in its own process, same routes, the WebSocket handler only sleeps "
               f"{meta['model_ms']} ms. Client: one asyncio process (websockets {meta['versions'].get('websockets')}, "
               "offering permessage-deflate as browsers do (the floor, like concierge, declines it); a minimal "
               "keep-alive HTTP/1.1 client for POST /v1/sessions over "
               f"{CREATE_CONNECTIONS} connections), connects {CONNECT_CONCURRENCY} WebSockets at a time, "
               f"then all send at a barrier ({meta['turns']} message(s) each, in sequence). Client and servers share "
               f"the machine's {os.cpu_count()} CPUs. Open-file limit {meta['nofile']}.")
    out.append("")
    out.append("Added = end-to-end (client send → `turn_finished`) − the model step's `latency_ms` as the server "
               "measured it. When a server's event loop is saturated, its timers fire late and that lateness "
               "lands in the measured model time (the floor's model p50 exceeds the nominal sleep), so the rows "
               "'end-to-end − nominal model' are the like-for-like comparison. The load "
               f"tenant's limit is {LOAD_RATE[0]:,.0f}/s, burst {LOAD_RATE[1]:,}; per user the default 2/s, burst "
               "10: every turn comes through one service key and draws on its session's user's bucket. "
               "CPU per turn = server CPU (user + system) from the barrier to the last answer ÷ turns answered; "
               "memory per idle WebSocket = server RSS with every session connected and waiting − RSS before "
               "the first connection, ÷ sessions connected.")
    out.append("")
    cols = [("floor (bare FastAPI)", floor), ("concierge, 1 worker", conc)]
    if multi is not None:
        cols.append((f"concierge, {meta['workers']} workers + Redis", multi))
    out.append("| | " + " | ".join(c[0] for c in cols) + " |")
    out.append("|---|" + "---:|" * len(cols))

    def row(label: str, key: str, digits: int = 1) -> None:
        out.append(f"| {label} | " + " | ".join(fmt(c[1].get(key), digits) for c in cols) + " |")

    row("sessions", "sessions", 0)
    row("created (201)", "created", 0)
    row("**sessions created per s**", "create_per_s", 0)
    row("server CPU per creation, ms", "cpu_per_create_ms", 2)
    row("connected (ready)", "connected", 0)
    row("**memory per idle WebSocket, KiB**", "idle_ws_kb", 1)
    out.append("| server RSS before connecting / all connected, MiB | " + " | ".join(
        f"{fmt(c[1].get('rss_before_mb'), 0)} / {fmt(c[1].get('rss_idle_mb'), 0)}" for c in cols) + " |")
    row("turns answered", "finished", 0)
    row("**errors**", "errors", 0)
    row("end-to-end p50, ms", "e2e_p50_ms")
    row("end-to-end p99, ms", "e2e_p99_ms")
    row("model p50, ms", "model_p50_ms")
    row("**added p50, ms**", "added_p50_ms")
    row("**added p99, ms**", "added_p99_ms")
    row("added max, ms", "added_max_ms")
    row(f"end-to-end − {meta['model_ms']} ms (nominal model), p50", "over_nominal_p50_ms")
    row(f"end-to-end − {meta['model_ms']} ms (nominal model), p99", "over_nominal_p99_ms")
    row("sends spread over, ms", "send_spread_ms")
    row("create all, s", "create_s", 2)
    row("create + connect all, s", "connect_s", 2)
    row("barrier → last answer, s", "turns_s", 2)
    row("**answered throughput, turns/s**", "throughput_per_s", 0)
    row("phase wall, s", "wall_s", 2)
    row("server CPU, whole phase, s", "server_cpu_s", 2)
    row("server CPU, barrier → last answer, s", "server_cpu_turns_s", 2)
    row("**server CPU per turn, ms**", "cpu_per_turn_ms", 2)
    for name, res in [("floor", floor), ("concierge", conc)] + ([("concierge workers", multi)] if multi else []):
        if res.get("error_kinds"):
            out.append("")
            out.append(f"{name} errors: " + ", ".join(f"{k} × {v}" for k, v in res["error_kinds"].items()))
            for k, v in res["error_examples"].items():
                out.append(f"- {k}: `{v}`")
    if multi is not None and conc.get("throughput_per_s") and multi.get("throughput_per_s"):
        out.append("")
        out.append(f"**{meta['workers']} workers + Redis vs 1 worker** (same load, same invocation; Redis "
                   f"{meta['redis']} holds the session locks and rate-limit buckets of the multi-worker run, "
                   "the 1-worker run keeps them in process): "
                   f"{multi['throughput_per_s'] / conc['throughput_per_s']:.2f}× the answered throughput "
                   f"({fmt(multi['throughput_per_s'], 0)} vs {fmt(conc['throughput_per_s'], 0)} turns/s).")
    if rate is not None:
        out.append("")
        out.append(f"**Rate limits** (noisy and quiet: {RATE[0]:g}/s burst {RATE[1]}, same per user; "
                   f"{rate['seconds']:.1f} s): noisy sends {rate['noisy_sent']} POST messages "
                   f"({rate['noisy_sent'] / 5:g}/s, ≤ 20 in flight, 10 sessions), quiet {rate['quiet_sent']} at 2/s.")
        out.append("")
        out.append("| tenant | sent | 200 | 429 | other | 429 without Retry-After |")
        out.append("|---|---:|---:|---:|---:|---:|")
        for t in ("noisy", "quiet"):
            c = rate[t]
            other = sum(v for k, v in c.items() if k not in ("200", "429"))
            out.append(f"| {t} | {rate[f'{t}_sent']} | {c.get('200', 0)} | {c.get('429', 0)} | {other} | "
                       f"{rate['missing_retry_after'].get(t, 0)} |")
        out.append("")
        out.append(f"quiet's answered requests: p50 {fmt(rate['quiet_p50_ms'])} ms, max {fmt(rate['quiet_max_ms'])} ms "
                   f"(model {meta['model_ms']} ms).")
    out.append("")
    for line in checks(conc, rate, multi):
        out.append(f"- {line}")
    if meta.get("notes"):
        out.append("")
        out.extend(f"Note: {n}" for n in meta["notes"])
    return "\n".join(out) + "\n"


def checks(conc: dict[str, Any], rate: dict[str, Any] | None, multi: dict[str, Any] | None) -> list[str]:
    lines = []
    for res, what in [(conc, "1 worker")] + ([(multi, "workers + Redis")] if multi else []):
        want = res["sessions"] * res["turns_per_session"]
        ok = res["errors"] == 0 and res["finished"] == want
        lines.append(f"{'PASS' if ok else 'MISS'}: {what}: errors == 0 ({res['errors']} errors, "
                     f"{res['finished']}/{want} turns answered)")
    if rate is not None:
        noisy_429 = rate["noisy"].get("429", 0)
        retry_ok = rate["missing_retry_after"].get("noisy", 0) == 0
        lines.append(f"{'PASS' if noisy_429 > 0 and retry_ok else 'MISS'}: noisy got 429s ({noisy_429}, "
                     f"all with Retry-After: {retry_ok})")
        quiet_429 = rate["quiet"].get("429", 0)
        quiet_ok = quiet_429 == 0 and rate["quiet"].get("200", 0) == rate["quiet_sent"]
        lines.append(f"{'PASS' if quiet_ok else 'MISS'}: quiet got none ({quiet_429} × 429, "
                     f"{rate['quiet'].get('200', 0)}/{rate['quiet_sent']} OK)")
    return lines


# --------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------

def start_redis(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A throwaway redis-server on a free port, without persistence."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise RuntimeError("--redis without a URL starts redis-server, which is not installed")
    port = free_port()
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            if sock.recv(16).startswith(b"+PONG"):
                return proc, f"redis://127.0.0.1:{port}/0"
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("redis-server did not answer within 20 s")


def concierge_argv(port: int, model_ms: int, profile: Path | None = None) -> list[str]:
    args = ["serve", "--test-model", f"echo:{model_ms}", "--port", str(port), "--no-demo"]
    if profile is not None:  # SIGUSR1 starts cProfile on the event loop's thread, SIGUSR2 writes it
        return [sys.executable, "-c", PROFILED_SERVER, str(profile)] + args
    return [str(CONCIERGE)] + args


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=2000, help="concurrent WebSocket sessions (default 2000)")
    parser.add_argument("--turns", type=int, default=1, help="messages each session sends in sequence (default 1)")
    parser.add_argument("--model-ms", type=int, default=300, help="the echo model's sleep per call (default 300)")
    parser.add_argument("--timeout", type=float, default=None,
                        help="bound on each load phase, s (default 120 + 20 ms per session-turn)")
    parser.add_argument("--sqlite", action="store_true", default=True,
                        help="sessions database: SQLite (the default and only store this bench drives)")
    parser.add_argument("--db-dir", type=Path, default=None,
                        help="folder for the SQLite file (default: the server's temp dir), e.g. /dev/shm")
    parser.add_argument("--skip-floor", action="store_true", help="do not measure the bare-FastAPI floor")
    parser.add_argument("--skip-rate", action="store_true", help="do not run the rate-limit phase")
    parser.add_argument("--workers", type=int, default=1,
                        help="also run the load against this many workers + Redis and compare (needs --redis)")
    parser.add_argument("--redis", nargs="?", const="start", default=None,
                        help="Redis for the multi-worker run: a redis:// URL, or no value to start redis-server here")
    parser.add_argument("--profile-server", type=Path, default=None,
                        help="cProfile the 1-worker server's event loop: PATH.1.prof creation, PATH.2.prof turns")
    parser.add_argument("--write-results", action="store_true", help=f"also write {RESULTS_MD.relative_to(REPO)}")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers as JSON here")
    args = parser.parse_args()
    if args.sessions < 1 or args.turns < 1:
        parser.error("--sessions and --turns must be >= 1")
    if args.workers > 1 and args.redis is None:
        parser.error("--workers N > 1 needs --redis (a URL, or no value to start redis-server here)")
    timeout = args.timeout if args.timeout is not None else 120 + 0.02 * args.sessions * args.turns

    # Each session: a client socket here, a server socket there (the servers inherit this limit).
    nofile, hard, note = raise_nofile(args.sessions + 200)
    notes = [note] if note else []
    if note:
        log(f"WARNING: {note}")
    workdir = Path(tempfile.mkdtemp(prefix="concierge-serve-load-"))
    db_dir = Path(tempfile.mkdtemp(prefix="concierge-serve-load-", dir=args.db_dir)) if args.db_dir else workdir
    db_path = db_dir / "sessions.db"
    url = f"sqlite+aiosqlite:///{db_path}"
    env = {**os.environ, "CONCIERGE_SESSIONS__URL": url, "PYTHONUNBUFFERED": "1"}
    log(f"server dir {workdir}; session store: SQLite {db_path} ({filesystem(db_path)}); "
        f"open files {nofile} (hard {hard})")
    meta: dict[str, Any] = {
        "when": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command_line(), "model_ms": args.model_ms, "db_path": str(db_path),
        "db_fs": filesystem(db_path), "nofile": nofile, "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "platform": f"{os.cpu_count()} CPUs ({cpu_model()}, {platform.system()} {platform.release()})",
        "versions": versions(("fastapi", "uvicorn", "websockets", "httpx", "sqlalchemy", "aiosqlite", "uvloop",
                              "httptools")),
        "turns": args.turns, "workers": args.workers, "redis": None,
    }
    meta["versions_line"] = ", ".join(f"{k} {v}" for k, v in meta["versions"].items() if v)
    servers: list[Server] = []
    redis_proc: subprocess.Popen[bytes] | None = None
    floor: dict[str, Any] = {}
    multi: dict[str, Any] | None = None
    rate: dict[str, Any] | None = None
    try:
        keys = asyncio.run(make_tenants(url))
        if not args.skip_floor:
            port = free_port()
            servers.append(start("floor", [sys.executable, "-c", FLOOR_APP, str(port), str(args.model_ms)],
                                 cwd=workdir, env=env, port=port))
            log(f"floor: {args.sessions} sessions")
            floor = asyncio.run(load_phase(servers[-1], "none", args.sessions, timeout, "floor",
                                           args.model_ms, args.turns)).summary()
            servers.pop().stop()
        port = free_port()
        servers.append(start("concierge", concierge_argv(port, args.model_ms, args.profile_server),
                             cwd=workdir, env=env, port=port))
        log(f"concierge: {args.sessions} sessions")
        conc = asyncio.run(load_phase(servers[-1], keys["load"], args.sessions, timeout, "load",
                                      args.model_ms, args.turns, profiled=args.profile_server is not None)).summary()
        if args.profile_server is not None:
            log(f"server profiles: {args.profile_server}.1.prof (creation), {args.profile_server}.2.prof (turns)")
        if servers[-1].proc.poll() is not None:
            raise RuntimeError(f"concierge exited during the load:\n{servers[-1].log_tail()}")
        if not args.skip_rate:
            log("rate limits: noisy vs quiet, 5 s")
            rate = asyncio.run(rate_phase(servers[-1], keys))
        server_log = servers[-1].log_path
        servers.pop().stop()
        lines = server_log.read_text(errors="replace").splitlines()
        problems = [i for i, line in enumerate(lines) if "Traceback" in line or "ERROR" in line or "Error" in line]
        if problems:
            kept = workdir.with_name(f"{workdir.name}-concierge.log")
            shutil.copyfile(server_log, kept)
            first = next((i for i in problems if "Traceback" not in lines[i]), problems[0])
            notes.append(f"concierge's log has {len(problems)} error lines (kept in {kept}); the first error: "
                         f"`{lines[first][:300]}`")
            log("concierge's log, first error:\n" + "\n".join(lines[problems[0]:problems[0] + 40]))
        if args.workers > 1:
            redis_url = args.redis
            if redis_url == "start":
                redis_proc, redis_url = start_redis(workdir)
            meta["redis"] = "started here (redis-server, no persistence)" if redis_proc else redis_url
            port = free_port()
            argv = concierge_argv(port, args.model_ms) + ["--workers", str(args.workers), "--redis", redis_url]
            servers.append(start("workers", argv, cwd=workdir, env=env, port=port))
            time.sleep(2)  # every worker has started (the first /healthz answer proves one)
            log(f"concierge, {args.workers} workers + Redis: {args.sessions} sessions")
            multi = asyncio.run(load_phase(servers[-1], keys["load"], args.sessions, timeout, "multi",
                                           args.model_ms, args.turns)).summary()
            servers.pop().stop()
    finally:
        for s in servers:
            s.stop()
        if redis_proc is not None:
            redis_proc.terminate()
            redis_proc.wait(10)
    meta["notes"] = notes
    text = report(meta, floor, conc, rate, multi)
    print(text)
    if args.write_results:
        RESULTS_MD.write_text(text)
        log(f"wrote {RESULTS_MD.relative_to(REPO)}")
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "floor": floor, "concierge": conc, "workers": multi,
                                         "rate": rate}, indent=2, default=str) + "\n")
    shutil.rmtree(workdir, ignore_errors=True)
    if db_dir != workdir:
        shutil.rmtree(db_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
