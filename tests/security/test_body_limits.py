"""Row 6 (and the content types of row 12): request bodies had no size limit and any content type.

Observed on the landed server: 100 MB bodies were read in full before authentication or
validation (four at once took the server from 252 to 1,129 MB RSS), and a body that was not
JSON got a 422 about its fields instead of a 415. Now a body announced bigger than the limit
(256 KiB by default, `[serve] max_body_bytes`) gets 413 before any of it is read, a chunked body
gets 413 as soon as it passes the limit, and a JSON route refuses other content types with 415.
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from concierge import Agent, Runtime
from concierge.runtime.sessions.sql import SqlSessionStore
from concierge.security.tenants import TenantDirectory
from concierge.serving.app import ServeOptions, create_app
from concierge.serving.ratelimit import InProcessRateLimiter
from concierge.serving.records import SessionDirectory
from concierge.serving.service import TurnService
from concierge.serving.webhooks import DeliveryLog
from concierge.settings import load_settings
from concierge.testing import EchoModel
from concierge.testing.serving import ServerThread

MB = 1024 * 1024


@dataclass
class Env:
    server: ServerThread  # the default limit
    key: str
    url: str  # the database, for a second server with other options

    def post(self, path: str, content: bytes, content_type: str | None = "application/json",
             server: ServerThread | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.key}"}
        if content_type:
            headers["Content-Type"] = content_type
        return httpx.post(f"{(server or self.server).url}{path}", content=content, headers=headers, timeout=30)


def _app(url: str, options: ServeOptions, services: list[TurnService]):  # an app factory
    def make_app():
        runtime = Runtime(Agent(instructions="You help.", model=EchoModel()), store=SqlSessionStore(url))
        services.append(TurnService(runtime, TenantDirectory(url), SessionDirectory(url), DeliveryLog(url),
                                    InProcessRateLimiter()))
        return create_app(services[-1], options)
    return make_app


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    folder: Path = tmp_path_factory.mktemp("body-limits")
    url = f"sqlite+aiosqlite:///{folder}/serve.db"
    services: list[TurnService] = []
    with ServerThread(_app(url, ServeOptions(), services)) as server:
        tenants = services[0].tenants

        async def setup() -> str:
            await tenants.create_tenant("acme", rate=(100.0, 200), user_rate=(100.0, 200))
            return await tenants.issue_key("acme", "service", "backend")

        yield Env(server, server.call(setup()), url)


@pytest.fixture(scope="module")
def small(env: Env) -> Iterator[ServerThread]:
    """A second server on the same database with a 2 KiB body limit."""
    with ServerThread(_app(env.url, ServeOptions(max_body_bytes=2048), [])) as server:
        yield server


def _vm_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/self/status")


def _response(sock: socket.socket) -> tuple[int, dict[str, Any]]:
    """Read one HTTP response (headers and a Content-Length body) from a raw socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = next(int(v) for k, _, v in (h.partition(":") for h in lines[1:]) if k.lower() == "content-length")
    while len(body) < length:
        body += sock.recv(65536)
    return int(lines[0].split()[1]), json.loads(body[:length])


def _send_until_answered(server: ServerThread, head: bytes, chunks: Iterator[bytes], timeout_s: float = 20.0,
                         ) -> tuple[int, dict[str, Any], int]:
    """Send `head`, then body chunks until the server answers (or the body ends); (status, body, bytes sent)."""
    with socket.create_connection((server.host, server.port), timeout=timeout_s) as sock:
        sock.sendall(head)
        sent = 0
        select.select([sock], [], [], 0.5)  # a server that answers on the headers alone does it now
        for chunk in chunks:
            if select.select([sock], [], [], 0)[0]:
                break  # the answer is there: the server is not reading any more
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        status, body = _response(sock)
        return status, body, sent


def _head(env: Env, path: str, extra: str) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {env.key}\r\n"
            f"Content-Type: application/json\r\n{extra}\r\n").encode()


def test_a_100_mb_body_with_content_length_gets_413_before_it_is_read(env: Env) -> None:
    assert env.post("/v1/sessions", json.dumps({"session_id": "limits-1", "user_id": "ann"}).encode()
                    ).status_code == 201
    path = "/v1/sessions/limits-1/messages"
    head = _head(env, path, f"Content-Length: {100 * MB}\r\n")
    with socket.create_connection((env.server.host, env.server.port), timeout=5) as sock:
        sock.sendall(head + b'{"text": "')  # and nothing more: an answer now means nothing was waited for
        status, body = _response(sock)
    assert status == 413 and body["error"]["code"] == "too_large", body
    assert str(100 * MB) in body["error"]["message"]

    try:  # the peak RSS from here on (Linux: writing 5 to clear_refs resets VmHWM)
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    megabyte = b"x" * MB
    before = _vm_kib("VmHWM")
    results: list[tuple[int, dict[str, Any], int]] = []

    def attack() -> None:
        results.append(_send_until_answered(env.server, head, (megabyte for _ in range(100))))

    started = time.monotonic()
    threads = [threading.Thread(target=attack) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    elapsed = time.monotonic() - started
    grown_mb = (_vm_kib("VmHWM") - before) / 1024
    assert [status for status, _, _ in results] == [413] * 4, results
    assert all(sent < 20 * MB for _, _, sent in results), [sent for _, _, sent in results]
    assert grown_mb < 50, f"peak RSS grew by {grown_mb:.0f} MB for four 100 MB bodies ({elapsed:.1f} s)"


def test_a_chunked_body_is_refused_as_soon_as_it_passes_the_limit(env: Env) -> None:
    assert env.post("/v1/sessions", json.dumps({"session_id": "limits-2", "user_id": "ann"}).encode()
                    ).status_code == 201
    piece = b'"' + b"x" * (64 * 1024 - 2) + b'"'

    def chunks() -> Iterator[bytes]:
        yield b"%x\r\n%s\r\n" % (len(b'{"text": '), b'{"text": ')
        for _ in range(1024):  # 64 MiB if nobody stops it: more than the sockets' buffers hold
            yield b"%x\r\n%s\r\n" % (len(piece), piece)
        yield b"1\r\n}\r\n0\r\n\r\n"

    head = _head(env, "/v1/sessions/limits-2/messages", "Transfer-Encoding: chunked\r\n")
    status, body, sent = _send_until_answered(env.server, head, chunks())
    assert status == 413 and body["error"]["code"] == "too_large", body
    assert sent < 16 * MB, f"{sent / MB:.1f} MB sent before the answer"


def test_the_configured_limit_is_honoured(env: Env, small: ServerThread) -> None:
    text = json.dumps({"session_id": "limits-3", "user_id": "ann", "pad": " " * 1500}).encode()
    assert len(text) < 2048 and env.post("/v1/sessions", text, server=small).status_code == 422  # "pad"
    big = json.dumps({"session_id": "limits-3", "user_id": "ann" + " " * 2100}).encode()
    response = env.post("/v1/sessions", big, server=small)
    assert response.status_code == 413 and response.json()["error"]["code"] == "too_large"
    assert env.post("/v1/sessions", big).status_code == 422  # the default limit lets it through (bad user id)
    assert load_settings().serve.max_body_bytes == 256 * 1024
    assert load_settings(serve={"max_body_bytes": 4096}).serve.max_body_bytes == 4096


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                                          "application/xml"])
def test_a_json_route_refuses_other_content_types_with_415(env: Env, content_type: str) -> None:
    body = json.dumps({"session_id": "limits-4", "user_id": "ann"}).encode()
    response = env.post("/v1/sessions", body, content_type=content_type)
    assert response.status_code == 415, response.text
    error = response.json()["error"]
    assert error["code"] == "unsupported_media_type" and "application/json" in error["hint"]
    webhook = httpx.post(f"{env.server.url}/v1/webhooks/acme", content=b"{}", timeout=30,
                         headers={"Content-Type": content_type})
    assert webhook.status_code == 415, webhook.text


def test_json_types_pass_and_a_missing_content_type_is_not_a_415(env: Env) -> None:
    for n, content_type in enumerate(["application/json; charset=utf-8", "application/merge-patch+json"]):
        body = json.dumps({"session_id": f"limits-json-{n}", "user_id": "ann"}).encode()
        response = env.post("/v1/sessions", body, content_type=content_type)
        assert response.status_code == 201, (content_type, response.text)
    undeclared = env.post("/v1/sessions", b'{"session_id": "limits-json-x"}', content_type=None)
    assert undeclared.status_code == 422, undeclared.text  # not read as JSON (FastAPI's CSRF guard)


def test_posts_without_a_body_need_no_content_type(env: Env) -> None:
    assert env.post("/v1/sessions", json.dumps({"session_id": "limits-5", "user_id": "ann"}).encode()
                    ).status_code == 201
    response = httpx.post(f"{env.server.url}/v1/sessions/limits-5/end", timeout=30,
                          headers={"Authorization": f"Bearer {env.key}"})
    assert response.status_code != 415, response.text
