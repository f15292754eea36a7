"""`kill -9` of the server while 200 turns are in flight loses no answered turn and leaves no half turn.

One `concierge serve` worker (echo model, 400 ms per call) gets one message in each of 200
sessions, sent 5 ms apart; once 20 replies have come back the process is SIGKILLed, with the
rest still running or not yet sent. A new worker on the same database then shows, for every
session: a turn whose reply a client received is there whole (the message, the reply, the turn
record); any other session holds either nothing or whole turns (never a message without its
reply). Runs on the SQLite default and on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from concierge.domains.retail.demo import open_demo_store
from concierge.runtime.sessions import SqlSessionStore
from concierge.security.tenants import TenantDirectory

from .test_workers import START_TIMEOUT_S, _free_port, _text

SESSIONS = 200
KILL_AFTER_REPLIES = 20
MODEL_MS = 400
SPACING_S = 0.005


class Server:
    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        self.folder, self.env = folder, env
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self, name: str) -> None:
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        command = [sys.executable, "-c", "from concierge.cli import main; main()", "serve",
                   "--test-model", f"echo:{MODEL_MS}", "--port", str(port), "--no-demo"]
        with open(self.folder / f"{name}.log", "wb") as out:
            self.process = subprocess.Popen(command, cwd=self.folder, env=self.env, stdout=out,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self.process.poll() is not None:
                pytest.fail(f"server exited with {self.process.returncode}:\n{self.log(name)}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"server not healthy after {START_TIMEOUT_S:.0f} s:\n{self.log(name)}")
            time.sleep(0.1)

    def log(self, name: str) -> str:
        path = self.folder / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/serve.db"
    return request.getfixturevalue("postgres_db").async_url


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[tuple[Server, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONCIERGE_")}
    env.update(CONCIERGE_SESSIONS__URL=database_url, PYTHONUNBUFFERED="1")
    open_demo_store(tmp_path / ".concierge" / "stores").dispose()

    async def setup() -> str:
        tenants = TenantDirectory(database_url)
        try:
            await tenants.create_tenant("acme", rate=(10_000.0, 10_000), user_rate=(10_000.0, 10_000))
            return await tenants.issue_key("acme", "service", "kill9-test")
        finally:
            await tenants.close()

    key = asyncio.run(setup())
    found = Server(tmp_path, env)
    try:
        yield found, key
    finally:
        found.stop()


async def _load(client: httpx.AsyncClient, path: str) -> dict[str, Any]:
    response = await client.get(path)
    assert response.status_code == 200, response.text
    return response.json()


def test_answered_turns_survive_kill_9_whole(server: tuple[Server, str], database_url: str) -> None:
    worker, key = server
    worker.start("first")
    headers = {"Authorization": f"Bearer {key}"}
    ids = [f"k{i:03d}" for i in range(SESSIONS)]

    async def load_then_kill() -> tuple[dict[str, str], int, int]:
        replies: dict[str, str] = {}
        cut_off = [0]
        limits = httpx.Limits(max_connections=SESSIONS + 10)
        async with httpx.AsyncClient(base_url=worker.url, headers=headers, timeout=60, limits=limits) as client:
            gate = asyncio.Semaphore(20)

            async def create(sid: str) -> None:
                async with gate:
                    made = await client.post("/v1/sessions", json={"session_id": sid, "user_id": f"u-{sid}"})
                    assert made.status_code == 201, made.text

            await asyncio.gather(*(create(sid) for sid in ids))
            killed = asyncio.Event()

            async def send(i: int, sid: str) -> None:
                await asyncio.sleep(i * SPACING_S)
                if killed.is_set():
                    return
                try:
                    answer = await client.post(f"/v1/sessions/{sid}/messages", json={"text": f"m-{sid}"})
                except httpx.HTTPError:
                    cut_off[0] += 1  # in flight when the server died
                    return
                if answer.status_code == 200:
                    replies[sid] = answer.json()["reply"]
                    if len(replies) >= KILL_AFTER_REPLIES and not killed.is_set():
                        assert worker.process is not None
                        os.kill(worker.process.pid, signal.SIGKILL)
                        killed.set()

            await asyncio.gather(*(send(i, sid) for i, sid in enumerate(ids)))
        assert worker.process is not None
        return replies, worker.process.wait(10), cut_off[0]

    replies, code, cut_off = asyncio.run(load_then_kill())
    assert code == -signal.SIGKILL, f"the server was not killed (exit {code}): the load ended first"
    assert len(replies) >= KILL_AFTER_REPLIES
    assert cut_off > 0, "no turn was in flight when the server died"
    assert all(reply == f"You said: m-{sid}" for sid, reply in replies.items())

    worker.start("restarted")

    async def inspect() -> tuple[int, int]:
        whole_unanswered = 0
        async with httpx.AsyncClient(base_url=worker.url, headers=headers, timeout=60) as client:
            for sid in ids:
                session = await _load(client, f"/v1/sessions/{sid}")
                said = [(m["role"], _text(m)) for m in session["messages"] if m["role"] in ("user", "assistant")]
                turns = (await _load(client, f"/v1/sessions/{sid}/turns"))["turns"]
                if sid in replies:
                    assert said == [("user", f"m-{sid}"), ("assistant", replies[sid])], (sid, said)
                    assert [(t["message"], t["reply"]) for t in turns] == [(f"m-{sid}", replies[sid])], sid
                else:  # not answered: nothing, or the whole turn (it committed as the server died)
                    assert said in ([], [("user", f"m-{sid}"), ("assistant", f"You said: m-{sid}")]), (sid, said)
                    whole_unanswered += bool(said)
        return whole_unanswered, len(ids) - len(replies)

    whole_unanswered, unanswered = asyncio.run(inspect())

    async def half_turns() -> list[str]:
        store = SqlSessionStore(database_url)
        try:
            broken = []
            for sid in ids:
                session = await store.load(f"acme:{sid}")
                if session is None:  # its turn never started
                    assert sid not in replies
                    continue
                roles = [m.role for m in session.history]
                if roles != ["user", "assistant"] * session.turns:
                    broken.append(f"{sid}: {roles} for {session.turns} turns")
            return broken
        finally:
            await store.close()

    assert asyncio.run(half_turns()) == []
    print(f"\nkill -9 after {len(replies)} replies, {cut_off} requests in flight: {unanswered} turns unanswered "
          f"({whole_unanswered} of them committed whole), 0 half turns, every answered turn present")
