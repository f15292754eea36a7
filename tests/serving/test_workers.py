"""Two `concierge serve` processes sharing one database and one Redis, as behind a load balancer.

Acceptance: 20 concurrent messages to one session, alternating between the two workers, are
processed one at a time and in the order they arrived. And a worker told to stop (SIGTERM)
finishes the turn it is running before it exits.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from concierge.domains.retail.demo import open_demo_store
from concierge.security.tenants import TenantDirectory
from concierge.testing.redis import RedisServer

MODEL_MS = 80  # the echo model's latency in the two workers
MESSAGES = 20
# Message i is sent i * 50 ms after the first, so the arrival order is defined. (At 25 ms, on two
# cores, the pre-lock work of a request (auth, rate limits, the Redis ticket) sometimes took longer
# than the gap while ~10 waiters per worker poll Redis every 5 ms, so arrivals themselves swapped.)
SPACING_S = 0.05
START_TIMEOUT_S = 60.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Worker:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""


@dataclass
class Deployment:
    folder: Path
    redis_url: str
    env: dict[str, str]
    key: str
    workers: list[Worker]

    def start(self, name: str, *, model_ms: int = MODEL_MS) -> Worker:
        port = _free_port()
        log = self.folder / f"{name}.log"
        # The `concierge` script's entry point, run by this interpreter (works without the venv on PATH).
        command = [sys.executable, "-c", "from concierge.cli import main; main()", "serve",
                   "--test-model", f"echo:{model_ms}", "--redis", self.redis_url, "--port", str(port), "--no-demo"]
        with open(log, "wb") as out:
            process = subprocess.Popen(command, cwd=self.folder, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL)
        worker = Worker(name, port, process, log)
        self.workers.append(worker)
        return worker

    def wait_healthy(self, *workers: Worker) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        for worker in workers:
            while True:
                if worker.process.poll() is not None:
                    pytest.fail(f"worker {worker.name} exited with {worker.process.returncode}:\n{worker.output()}")
                try:
                    if httpx.get(f"{worker.url}/healthz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"worker {worker.name} not healthy after {START_TIMEOUT_S:.0f} s:\n{worker.output()}")
                time.sleep(0.1)

    def stop_all(self) -> None:
        for worker in self.workers:
            if worker.process.poll() is None:
                worker.process.terminate()
        for worker in self.workers:
            try:
                worker.process.wait(15)
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait(5)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@pytest.fixture
def deployment(redis_server: RedisServer, tmp_path: Path) -> Iterator[Deployment]:
    url = f"sqlite+aiosqlite:///{tmp_path}/serve.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONCIERGE_")}
    env.update(CONCIERGE_SESSIONS__URL=url, PYTHONUNBUFFERED="1")
    # Generated once here: two workers starting at once would both build the demo store.
    open_demo_store(tmp_path / ".concierge" / "stores").dispose()

    async def setup() -> str:
        tenants = TenantDirectory(url)
        try:
            await tenants.create_tenant("acme", rate=(1000.0, 1000), user_rate=(1000.0, 1000))
            return await tenants.issue_key("acme", "service", "workers-test")
        finally:
            await tenants.close()

    key = asyncio.run(setup())
    found = Deployment(tmp_path, redis_server.url, env, key, [])
    try:
        yield found
    finally:
        found.stop_all()


def _text(message: dict[str, Any]) -> str:
    content = message["content"]
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if isinstance(part, dict))


def test_two_workers_serialise_one_sessions_turns_in_arrival_order(deployment: Deployment) -> None:
    # One after the other: two workers starting at once on a fresh database race to create its tables
    # (SqlBacked._ensure_schema's create_all: "table tool_ledger already exists", startup fails).
    a = deployment.start("a")
    deployment.wait_healthy(a)
    b = deployment.start("b")
    deployment.wait_healthy(b)
    created = httpx.post(f"{a.url}/v1/sessions", json={"session_id": "shared-1", "user_id": "alice"},
                         headers=deployment.headers, timeout=30)
    assert created.status_code == 201, created.text
    # One turn on each worker first: a cold worker's first request (database engines, Redis scripts)
    # can take longer than the 25 ms between arrivals, which would reorder the arrivals themselves.
    for worker in (a, b):
        with httpx.Client(base_url=worker.url, headers=deployment.headers, timeout=30) as client:
            warm = f"warm-{worker.name}"
            assert client.post("/v1/sessions", json={"session_id": warm, "user_id": "alice"}).status_code == 201
            assert client.post(f"/v1/sessions/{warm}/messages", json={"text": "hi"}).status_code == 200
    texts = [f"m{i:02d}" for i in range(MESSAGES)]

    async def send_all() -> tuple[list[httpx.Response], float]:
        limits = httpx.Limits(max_connections=MESSAGES)
        async with httpx.AsyncClient(headers=deployment.headers, timeout=60, limits=limits) as client:

            async def send(i: int) -> httpx.Response:
                await asyncio.sleep(i * SPACING_S)
                worker = (a, b)[i % 2]
                return await client.post(f"{worker.url}/v1/sessions/shared-1/messages", json={"text": texts[i]})

            clock = time.perf_counter()
            responses = await asyncio.gather(*(send(i) for i in range(MESSAGES)))
            return list(responses), time.perf_counter() - clock

    responses, wall_s = asyncio.run(send_all())
    assert [r.status_code for r in responses] == [200] * MESSAGES, [r.text for r in responses if r.status_code != 200]
    assert [r.json()["reply"] for r in responses] == [f"You said: {t}" for t in texts]
    pids = {r.headers["X-Concierge-Worker"] for r in responses}
    assert pids == {str(a.process.pid), str(b.process.pid)}, pids

    history = httpx.get(f"{b.url}/v1/sessions/shared-1", headers=deployment.headers, timeout=30).json()
    conversation = [(m["role"], _text(m)) for m in history["messages"] if m["role"] in ("user", "assistant")]
    # One at a time: strictly user, assistant, user, ..., each reply answering the message just before it.
    assert [role for role, _ in conversation] == ["user", "assistant"] * MESSAGES, conversation
    pairs = list(zip(conversation[::2], conversation[1::2], strict=True))
    assert all(reply == f"You said: {asked}" for (_, asked), (_, reply) in pairs), conversation
    # In order: as they arrived, whichever worker took them.
    order = [asked for (_, asked), _ in pairs]
    assert order == texts, f"processed in the order {order}"
    # Serialised: every turn waited for the model in turn, so the whole took at least 20 model calls.
    assert wall_s >= MESSAGES * MODEL_MS / 1000, wall_s
    turns = httpx.get(f"{a.url}/v1/sessions/shared-1/turns", headers=deployment.headers, timeout=30).json()["turns"]
    assert sorted(t["message"] for t in turns) == texts
    print(f"\n{MESSAGES} messages over 2 workers (pids {sorted(pids)}) in {wall_s:.2f} s, "
          f">= {MESSAGES * MODEL_MS / 1000:.2f} s of model time: serialised, in arrival order")


def test_a_worker_stopped_mid_turn_finishes_the_turn_then_exits(deployment: Deployment) -> None:
    worker = deployment.start("slow", model_ms=2000)
    deployment.wait_healthy(worker)
    created = httpx.post(f"{worker.url}/v1/sessions", json={"session_id": "drain-1", "user_id": "bob"},
                         headers=deployment.headers, timeout=30)
    assert created.status_code == 201, created.text

    async def send_then_stop() -> httpx.Response:
        async with httpx.AsyncClient(headers=deployment.headers, timeout=60) as client:
            request = asyncio.create_task(client.post(f"{worker.url}/v1/sessions/drain-1/messages",
                                                      json={"text": "finish me"}))
            await asyncio.sleep(0.7)  # the turn is running: the model takes 2 s
            assert not request.done()
            worker.process.send_signal(signal.SIGTERM)
            return await request

    clock = time.perf_counter()
    response = asyncio.run(send_then_stop())
    assert response.status_code == 200, response.text
    assert response.json()["reply"] == "You said: finish me"
    code = worker.process.wait(30)
    took = time.perf_counter() - clock
    output = worker.output()
    assert "Finished server process" in output, output  # uvicorn's clean shutdown, after the lifespan's drain
    # uvicorn re-raises the SIGTERM after its clean shutdown; `concierge serve` turns that into exit 0.
    assert code == 0, (code, output)
    print(f"\nSIGTERM mid-turn: the turn finished (200) and the worker exited with {code} after {took:.1f} s")
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{worker.url}/healthz", timeout=2)
