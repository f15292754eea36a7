#!/usr/bin/env python3
"""A schemathesis stateful run against the API: at least N calls with an admin key, 0 5xx, none slower than 1 s.

    .venv/bin/python bench/api_fuzz.py                        # 10,000 calls against `concierge serve`
    .venv/bin/python bench/api_fuzz.py --cases 2000           # a quicker run
    .venv/bin/python bench/api_fuzz.py --server inprocess     # the app the CI test fuzzes, in this process
    .venv/bin/python bench/api_fuzz.py --write-results        # also writes bench/results/api_fuzz.md

The run is the CI test's (tests/security/test_stateful_api_fuzz.py, 1,000 calls), made longer:
schemathesis's state machine follows the OpenAPI links of the published spec, so a session that
`POST /v1/sessions` (or the list) returned is then talked to, read, confirmed and declined in,
audited and ended; one call in ten is deliberately invalid. Every call carries an admin key and
is timed on its own (`time.perf_counter` around the request).

`--server serve` (the default) runs the shipped server in its own process: `concierge serve
--test-model echo --no-demo`, one worker, default settings (guardrails, events, audit), the
tenant and its admin key written to the SQLite file first. `--server inprocess` serves the app
of the CI test (sessions and ledger in SQLite, an echoing model) on a thread of this process.

Progress goes to stderr; the report (Markdown) to stdout. The exit status is 1 when a call got
a 5xx or took longer than `--slow-s`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
from benchkit import command_line, cpu_model, log, versions

from concierge.testing.api_fuzz import SLOW_S, FuzzStats, live_api, stateful_fuzz

REPO = Path(__file__).resolve().parents[1]
RESULTS_MD = REPO / "bench" / "results" / "api_fuzz.md"
CONCIERGE = Path(sys.executable).with_name("concierge")
TENANT = "fuzz"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def make_tenant(url: str) -> str:
    """The tenant (rates no fuzzer reaches) and its admin key, written before the server starts."""
    from concierge.security.tenants import TenantDirectory

    directory = TenantDirectory(url)
    try:
        await directory.create_tenant(TENANT, rate=(100_000.0, 100_000), user_rate=(100_000.0, 100_000))
        return await directory.issue_key(TENANT, "admin", "bench api fuzz")
    finally:
        await directory.close()


@contextlib.contextmanager
def serve_process(workdir: Path) -> Iterator[tuple[str, str, Path]]:
    """`concierge serve` in its own process: (base URL, admin key, its log file)."""
    url = f"sqlite+aiosqlite:///{workdir}/sessions.db"
    key = asyncio.run(make_tenant(url))
    port = free_port()
    env = {**os.environ, "CONCIERGE_SESSIONS__URL": url, "PYTHONUNBUFFERED": "1"}
    log_path = workdir / "server.log"
    with open(log_path, "wb") as out:  # a file, not a pipe: a full pipe would stall the server
        proc = subprocess.Popen([str(CONCIERGE), "serve", "--test-model", "echo", "--no-demo", "--port", str(port)],
                                cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"concierge serve exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"concierge serve did not answer within 120 s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.2)
        yield base, key, log_path
    finally:
        if proc.poll() is None:
            proc.terminate()  # SIGTERM: uvicorn drains, then exits
            try:
                proc.wait(40)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def warm_up(base: str, key: str) -> None:
    """One turn before the clock starts: models and screens load on the first message, not in the run."""
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=base, headers=headers, timeout=120) as client:
        client.post("/v1/sessions", json={"session_id": "warm-up"}).raise_for_status()
        client.post("/v1/sessions/warm-up/messages", json={"text": "Hello, where is my order?"}).raise_for_status()


def report(stats: FuzzStats, meta: dict[str, str], notes: list[str]) -> str:
    ok = not stats.server_errors and not stats.slow
    measured = (f"Measured {meta['when']}; {meta['platform']}; {meta['versions']}; load average at start "
                f"{meta['loadavg']}.")
    goal = (f"Goal (at least {meta['cases']} calls; 0 answers ≥ 500; 0 answers slower than {stats.slow_s:g} s): "
            f"**{'PASS' if ok else 'FAIL'}**: {stats.summary()}.")
    out = ["# API fuzz: schemathesis stateful run with an admin key", "", measured, "", "Command:", "", "```",
           meta["command"], "```", "", f"Server: {meta['server']}.", "", goal, "", stats.table(), ""]
    if stats.server_errors:
        out += ["## 5xx answers (first 20)", "", *[f"- {line}" for line in stats.server_errors[:20]], ""]
    if stats.slow:
        out += [f"## Answers slower than {stats.slow_s:g} s (first 20)", "",
                *[f"- {line}" for line in stats.slow[:20]], ""]
    if stats.failures:
        out += ["## Check failures (first per operation and check)", ""]
        for name, text in list(stats.failures.items())[:20]:
            out += [f"### {name}", "", "```", text[:1500], "```", ""]
    if notes:
        out += ["## Notes", "", *[f"- {note}" for note in notes], ""]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=10_000, help="calls to make at least (default 10,000)")
    parser.add_argument("--server", choices=("serve", "inprocess"), default="serve",
                        help="`concierge serve` in its own process (default), or the CI test's app in this one")
    parser.add_argument("--steps", type=int, default=25, help="calls per scenario at most (default 25)")
    parser.add_argument("--slow-s", type=float, default=SLOW_S, help=f"a slow answer, s (default {SLOW_S:g})")
    parser.add_argument("--write-results", action="store_true", help=f"also write {RESULTS_MD.relative_to(REPO)}")
    args = parser.parse_args()
    if args.cases < 1 or args.steps < 2:
        parser.error("--cases must be >= 1 and --steps >= 2")
    meta = {
        "when": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command_line(), "cases": f"{args.cases:,}",
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "platform": f"{platform.system()} {platform.release()}, {os.cpu_count()} CPUs ({cpu_model()})",
        "versions": ", ".join(f"{k} {v}" for k, v in versions(
            ("schemathesis", "hypothesis", "fastapi", "uvicorn", "sqlalchemy")).items() if v),
    }
    notes: list[str] = []
    workdir = Path(tempfile.mkdtemp(prefix="concierge-api-fuzz-"))
    try:
        if args.server == "serve":
            meta["server"] = ("`concierge serve --test-model echo --no-demo`, 1 worker, its own process, default "
                              "settings, SQLite sessions database")
            with serve_process(workdir) as (base, key, log_path):
                warm_up(base, key)
                log(f"fuzzing {base} until {args.cases:,} calls")
                stats = stateful_fuzz(base, key, cases=args.cases, steps=args.steps, slow_s=args.slow_s)
            problems = [line for line in log_path.read_text(errors="replace").splitlines()
                        if "Traceback" in line or " ERROR" in line]
            if problems:
                notes.append(f"the server's log has {len(problems)} error lines, first: {problems[0][:300]}")
        else:
            meta["server"] = ("the CI test's app (`concierge.testing.api_fuzz.live_api`: sessions and ledger in "
                              "SQLite, an echoing model) on a thread of the fuzzing process")
            with live_api(workdir) as api:
                key = api.issue_key("admin", "bench api fuzz")
                warm_up(api.url, key)
                log(f"fuzzing {api.url} until {args.cases:,} calls")
                stats = stateful_fuzz(api.url, key, cases=args.cases, steps=args.steps, slow_s=args.slow_s)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    text = report(stats, meta, notes)
    print(text)
    if args.write_results:
        RESULTS_MD.write_text(text)
        log(f"wrote {RESULTS_MD.relative_to(REPO)}")
    sys.exit(1 if stats.server_errors or stats.slow else 0)


if __name__ == "__main__":
    main()
