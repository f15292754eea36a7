"""A throwaway Redis server for tests: a private `redis-server` on a free port, nothing saved to disk.

Needs the server binary (Debian: `apt-get install redis-server`; `./dev test` installs it).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ping(port: int) -> bool:
    """One raw RESP PING, so that waiting for the server needs no client library."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """A private redis-server on 127.0.0.1; `stop()` ends it and removes its folder."""

    def __init__(self, *, binary: str | None = None, timeout_s: float = 10.0) -> None:
        found = binary or shutil.which("redis-server")
        if found is None:
            raise RuntimeError("redis-server not found on PATH: apt-get install redis-server "
                               "(./dev test installs it)")
        self.binary = found
        self.dir = Path(tempfile.mkdtemp(prefix="concierge-redis-"))
        self.port = _free_port()
        self._log = open(self.dir / "log", "wb")  # noqa: SIM115 - closed in stop()
        self._process: subprocess.Popen[bytes] | None = subprocess.Popen(
            [found, "--save", "", "--appendonly", "no", "--port", str(self.port), "--bind", "127.0.0.1",
             "--daemonize", "no", "--dir", str(self.dir)],
            cwd=self.dir, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            self._wait_ready(timeout_s)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self._process.returncode}:\n{self._tail()}")
            if _ping(self.port):
                return
            time.sleep(0.02)
        raise RuntimeError(f"redis-server did not answer PING on port {self.port} within {timeout_s} s:\n"
                           f"{self._tail()}")

    def _tail(self) -> str:
        self._log.flush()
        log = self.dir / "log"
        return log.read_text(errors="replace")[-2000:] if log.is_file() else ""

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        if not self._log.closed:
            self._log.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
