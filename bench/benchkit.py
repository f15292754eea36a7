"""What the benchmark scripts share: timing statistics and a description of the machine.

The scripts run as `python bench/<name>.py`, so this folder is on `sys.path` and they import
it as `benchkit`.
"""

from __future__ import annotations

import math
import os
import platform
import shlex
import sqlite3
import sys
from pathlib import Path
from typing import Any


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def percentile(sorted_ns: list[int], q: float) -> float:
    """Nearest-rank percentile of already sorted samples."""
    rank = max(1, math.ceil(q / 100 * len(sorted_ns)))
    return float(sorted_ns[rank - 1])


def summarise(label: str, samples_ns: list[int], note: str = "") -> dict[str, Any]:
    s = sorted(samples_ns)
    return {
        "row": label,
        "n": len(s),
        "p50_us": percentile(s, 50) / 1000,
        "p99_us": percentile(s, 99) / 1000,
        "mean_us": sum(s) / len(s) / 1000,
        "min_us": s[0] / 1000,
        "max_us": s[-1] / 1000,
        "note": note,
    }


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def filesystem(path: Path) -> str:
    """The mount (device and type) holding `path`, from /proc/mounts; '?' elsewhere."""
    best, found = "", "?"
    try:
        with open("/proc/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and str(path).startswith(parts[1]) and len(parts[1]) >= len(best):
                    best, found = parts[1], f"{parts[2]} on {parts[0]}"
    except OSError:
        pass
    return found


def command_line() -> str:
    exe = Path(sys.executable)
    cwd = Path.cwd()
    exe_s = os.path.relpath(exe, cwd) if exe.is_relative_to(cwd) else str(exe)
    return f"{exe_s} {' '.join(shlex.quote(a) for a in sys.argv)}"


def fmt_us(x: float) -> str:
    return f"{x:,.1f}" if abs(x) < 100 else f"{x:,.0f}"


def versions(packages: tuple[str, ...]) -> dict[str, str | None]:
    """Python, SQLite and the given packages' versions, for the results file."""
    import importlib.metadata

    out: dict[str, str | None] = {"python": platform.python_version(), "sqlite": sqlite3.sqlite_version}
    for package in packages:
        try:
            out[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            out[package] = None
    return out
