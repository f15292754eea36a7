"""Running test services as separate processes on 127.0.0.1.

A service in its own process is a real peer: the code under test reaches it over sockets, and
either side can be killed without the other. `ServiceProcess` runs any `python -m module`
that takes `--port`; `PaymentService` runs the test payment service and wraps its admin API.

Only httpx is imported here: the payment service itself (which needs FastAPI) runs in the
child process, so `import concierge.testing` works without the server extra installed.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import httpx

PAYMENT_SERVICE_MODULE = "concierge.testing.payment_service"
_TAIL_CHARS = 4000


def _free_port() -> int:
    """A port the OS considers free right now (bound to port 0, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServiceProcess:
    """A Python module run as a child process on a free local port, healthy before `start` returns."""

    def __init__(self, module: str, args: Sequence[str] = (), *, health_path: str = "/health",
                 startup_timeout_s: float = 30.0, env: Mapping[str, str] | None = None) -> None:
        self.module = module
        self.args = tuple(args)
        self.health_path = health_path
        self.startup_timeout_s = startup_timeout_s
        self.env = dict(env) if env is not None else None
        self._port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError(f"{self.module} has not been started")
        return self._port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> Self:
        """Start the process and wait until `health_path` answers 200.

        Raises RuntimeError, with the tail of the process's output, if it exits early or is not
        healthy within `startup_timeout_s`; the process is stopped first.
        """
        if self._process is not None:
            raise RuntimeError(f"{self.module} is already started")
        self._port = _free_port()
        # Output goes to a file, not a pipe nobody drains; it stays open until `stop`.
        self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115
            prefix="concierge-service-", suffix=".log", delete=False)
        # The child inherits this environment (PATH, the venv) plus what the caller adds.
        environment = {**os.environ, "PYTHONUNBUFFERED": "1", **(self.env or {})}
        command = [sys.executable, "-m", self.module, *self.args, "--port", str(self._port)]
        self._process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=self._log,
                                         stderr=subprocess.STDOUT, env=environment)
        deadline = time.monotonic() + self.startup_timeout_s
        with httpx.Client(timeout=1.0) as client:
            while True:
                code = self._process.poll()
                if code is not None:
                    self._fail(f"exited with code {code} before becoming healthy")
                try:
                    if client.get(self.url + self.health_path).status_code == 200:
                        return self
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    self._fail(f"was not healthy at {self.health_path} within {self.startup_timeout_s:.0f} s")
                time.sleep(0.05)

    def _fail(self, reason: str) -> None:
        tail = self.output_tail()
        self.stop()
        raise RuntimeError(f"service {self.module} {reason}; its output ended with:\n{tail}")

    def output_tail(self, chars: int = _TAIL_CHARS) -> str:
        """The last `chars` characters the process wrote to stdout and stderr."""
        if self._log is None:
            return ""
        self._log.flush()
        data = Path(self._log.name).read_bytes()
        return data[-chars:].decode("utf-8", errors="replace")

    def stop(self) -> None:
        """Terminate the process (kill it after 5 s); safe to call more than once."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log, self._log = self._log, None
        if log is not None:
            log.close()
            Path(log.name).unlink(missing_ok=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


class PaymentService(ServiceProcess):
    """The test payment service in its own process, over its own SQLite file, with admin helpers."""

    def __init__(self, db_path: str | Path, *, startup_timeout_s: float = 30.0,
                 env: Mapping[str, str] | None = None) -> None:
        super().__init__(PAYMENT_SERVICE_MODULE, ["--db", str(db_path)], startup_timeout_s=startup_timeout_s,
                         env=env)
        self.db_path = Path(db_path)
        self._client: httpx.Client | None = None

    def _admin(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(base_url=self.url, timeout=10.0)
        return self._client

    def stop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()
        super().stop()

    def effects(self, reference: str | None = None) -> list[dict[str, Any]]:
        """Every payment row the service holds (optionally one reference's), oldest first."""
        params = {"reference": reference} if reference is not None else None
        response = self._admin().get("/_admin/effects", params=params)
        response.raise_for_status()
        payments: list[dict[str, Any]] = response.json()["payments"]
        return payments

    def inject(self, *faults: dict[str, Any]) -> None:
        """Queue faults, each consumed by the next request it matches (see `payment_service`)."""
        self._admin().post("/_admin/faults", json={"faults": list(faults)}).raise_for_status()

    def inflight(self) -> list[dict[str, Any]]:
        """The faulted requests the service is holding open right now."""
        response = self._admin().get("/_admin/inflight")
        response.raise_for_status()
        entries: list[dict[str, Any]] = response.json()["data"]
        return entries

    def reset(self) -> None:
        """Delete every payment, idempotency record and queued fault."""
        self._admin().post("/_admin/reset").raise_for_status()

    def wait_inflight(self, stage: str, timeout_s: float = 10.0) -> dict[str, Any]:
        """The first held request at `stage` ("before_effect" or "after_effect"), once there is one."""
        deadline = time.monotonic() + timeout_s
        while True:
            for entry in self.inflight():
                if entry["stage"] == stage:
                    return entry
            if time.monotonic() > deadline:
                raise TimeoutError(f"no request held at stage {stage!r} within {timeout_s} s")
            time.sleep(0.01)

    def wait_idle(self, timeout_s: float = 10.0) -> None:
        """Return once no faulted request is held open, so a test starts from a quiet service."""
        deadline = time.monotonic() + timeout_s
        while self.inflight():
            if time.monotonic() > deadline:
                raise TimeoutError(f"the payment service still held requests after {timeout_s} s")
            time.sleep(0.01)
