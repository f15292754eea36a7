"""Run a concierge app on a real loopback port inside the test process, on its own event loop.

Tests talk to it over real HTTP and WebSockets (what a browser or a load tester does), and
`call()` runs a coroutine on the server's loop, for setup that must share its database engines.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import Any, Self, TypeVar

import uvicorn
from fastapi import FastAPI

T = TypeVar("T")


class ServerThread:
    def __init__(self, make_app: Callable[[], FastAPI], *, host: str = "127.0.0.1",
                 startup_timeout_s: float = 30.0) -> None:
        self._make_app = make_app
        self.host = host
        self.port = 0
        self.app: FastAPI | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: uvicorn.Server | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="concierge-test-server", daemon=True)
        self._timeout = startup_timeout_s

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    def start(self) -> Self:
        self._thread.start()
        if not self._ready.wait(self._timeout) or self._error is not None:
            self.stop()
            raise RuntimeError(f"the test server did not start: {self._error!r}")
        return self

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as exc:  # noqa: BLE001 - reported to start()
            self._error = exc
            self._ready.set()
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        self.app = self._make_app()
        config = uvicorn.Config(self.app, host=self.host, port=0, log_level="warning", ws="websockets-sansio",
                                lifespan="on", timeout_graceful_shutdown=10)
        self._server = uvicorn.Server(config)
        task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if task.done():
                task.result()
                raise RuntimeError("uvicorn stopped before it started")
            await asyncio.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        self._ready.set()
        await task

    def call(self, coroutine: Coroutine[Any, Any, T], timeout_s: float = 60.0) -> T:
        """Run `coroutine` on the server's event loop and return its result."""
        assert self._loop is not None, "start() the server first"
        future: Future[T] = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        return future.result(timeout_s)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(30)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
