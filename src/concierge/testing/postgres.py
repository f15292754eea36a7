"""A throwaway PostgreSQL server for tests: `initdb` into a temp folder, start, use, stop, delete.

Needs the server binaries (Debian: `apt-get install postgresql`). initdb and postgres refuse to
run as root, so under root they run as the `postgres` system user that Debian's package creates.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Self

from ..core.errors import ConfigError


def find_bindir() -> Path | None:
    """The folder holding initdb and pg_ctl: `pg_config --bindir`, else the newest /usr/lib/postgresql/*/bin."""
    if shutil.which("pg_config"):
        try:
            out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True).stdout
        except (OSError, subprocess.CalledProcessError):
            out = ""
        if out.strip() and (Path(out.strip()) / "initdb").is_file():
            return Path(out.strip())
    candidates = [Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")]

    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in path.parent.name.split(".") if part.isdigit())

    return max(candidates, key=version) if candidates else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """A private PostgreSQL cluster on 127.0.0.1, trust auth, superuser `postgres`; `close()` removes it."""

    def __init__(self, bindir: Path | None = None) -> None:
        found = bindir or find_bindir()
        if found is None:
            raise ConfigError("PostgreSQL server binaries (initdb, pg_ctl) not found",
                              hint="install them: apt-get install postgresql (./dev test does this)")
        self.bindir = found
        self._prefix: list[str] = []
        user: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            try:
                user = pwd.getpwnam("postgres")
            except KeyError:
                raise ConfigError("initdb refuses to run as root and there is no 'postgres' user to run it as",
                                  hint="run the tests as a normal user, or install Debian's postgresql "
                                       "package, which creates the user") from None
            self._prefix = ["runuser", "-u", "postgres", "--"]
        self.dir = Path(tempfile.mkdtemp(prefix="concierge-pg-"))
        self.data = self.dir / "data"
        self.port = _free_port()
        self._started = False
        try:
            if user is not None:
                os.chown(self.dir, user.pw_uid, user.pw_gid)
            self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8",
                      "--locale", "C")
            options = f"-h 127.0.0.1 -p {self.port} -k {self.dir} -c fsync=off -c synchronous_commit=off " \
                      "-c full_page_writes=off"
            self._run("pg_ctl", "start", "-w", "-t", "60", "-D", str(self.data), "-l", str(self.dir / "log"),
                      "-o", options)
            self._started = True
        except BaseException:
            self.close()
            raise

    def _run(self, program: str, *args: str) -> None:
        command = [*self._prefix, str(self.bindir / program), *args]
        done = subprocess.run(command, check=False, capture_output=True, text=True, cwd=self.dir)
        if done.returncode != 0:
            log = self.dir / "log"
            tail = log.read_text(errors="replace")[-2000:] if log.is_file() else ""
            raise RuntimeError(f"{program} failed (exit {done.returncode}): {done.stderr.strip() or done.stdout}"
                               + (f"\nserver log:\n{tail}" if tail else ""))

    def create_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]

    def sync_url(self, db: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{db}"

    def async_url(self, db: str = "postgres") -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{db}"

    def close(self) -> None:
        if self._started:
            self._started = False
            try:
                self._run("pg_ctl", "stop", "-m", "immediate", "-w", "-D", str(self.data))
            except RuntimeError:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
