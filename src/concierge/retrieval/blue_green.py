"""`BlueGreenIndex`: keep answering queries from the live index while a new one is built.

Why: re-embedding or re-indexing a knowledge base takes minutes; an HNSW index cannot be
rebuilt in place while it is being searched. So the new ("green") index is built off to the
side in a background thread and swapped in with one attribute assignment.

Read path, no lock: `search` reads `self._active` exactly once into a local and searches that
object. Rebinding an attribute is a single atomic store under the GIL, so a query sees either
the old index or the new one, never a mix. A query that read the old index just before the
swap finishes on it: the old index is "released" by dropping our reference, and reference
counting frees it only after that last in-flight query returns. We never call `reset()` on it
for that reason.

Build threads: a background build should use `add(..., threads=1)` (as `build_from` does).
usearch's default uses every core; on a small machine (2 cores) that starves the query path
and p99 latency climbs during a rebuild. One build thread leaves the other core to queries;
the build takes longer, which is the right trade for a background job. One thread is not
enough when the cores are also busy with other work (the OS then time-slices a query behind
the build for milliseconds), so on Linux the build thread also lowers its own scheduling
priority (`build_nice`, default +10: setpriority on the thread's id, which affects only that
thread and the usearch workers it starts). Queries then preempt the build when they wake up.

Persistence: `save_active` writes `index-<generation>.usearch` atomically, then moves the
`CURRENT` pointer file (temp file + os.replace), and only then deletes older index files, so
a crash at any point leaves `CURRENT` naming a complete file.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path

import numpy as np

from concierge.core.errors import ValidationError

from .vector_index import KeysLike, VectorIndex

CURRENT = "CURRENT"
BUILD_THREADS = 1
BUILD_NICE = 10
_INDEX_FILE = re.compile(r"^index-(\d+)\.usearch$")

Hit = tuple[int, float]
SwapCallback = Callable[[VectorIndex, int], None]


class BlueGreenIndex:
    """An active `VectorIndex` that can be replaced atomically while queries keep running."""

    def __init__(self, active: VectorIndex, *, generation: int = 0,
                 on_swap: SwapCallback | None = None, build_nice: int = BUILD_NICE) -> None:
        if not isinstance(active, VectorIndex):
            raise ValidationError(f"BlueGreenIndex needs a VectorIndex, got {type(active).__name__}")
        if not 0 <= build_nice <= 19:
            raise ValidationError(f"build_nice must be in 0..19, got {build_nice}",
                                  hint="0 keeps the build at the queries' priority")
        self._build_nice = build_nice
        self._active = active
        self._generation = generation
        self._on_swap = on_swap
        self._write_lock = threading.Lock()  # swaps and persistence only; never taken by search
        self._rebuilding = False

    @property
    def active(self) -> VectorIndex:
        return self._active

    @property
    def generation(self) -> int:
        """How many swaps this index has seen (or the generation it was loaded at)."""
        return self._generation

    @property
    def rebuilding(self) -> bool:
        return self._rebuilding

    @property
    def dim(self) -> int:
        return self._active.dim

    def __len__(self) -> int:
        return len(self._active)

    # ---------------------------------------------------------------- read path

    def search(self, vector: np.ndarray, k: int) -> list[Hit]:
        """Search the index that is active now; one attribute read, no lock (see module doc)."""
        active = self._active
        return active.search(vector, k)

    def search_many(self, vectors: np.ndarray, k: int) -> list[list[Hit]]:
        """Batch search against one snapshot of the active index."""
        active = self._active
        return active.search_many(vectors, k)

    # ---------------------------------------------------------------- swaps

    def swap(self, new: VectorIndex) -> VectorIndex:
        """Make `new` the active index now; returns the index it replaced."""
        if not isinstance(new, VectorIndex):
            raise ValidationError(f"swap() needs a VectorIndex, got {type(new).__name__}",
                                  hint="the build function must return a VectorIndex")
        if new.dim != self._active.dim:
            raise ValidationError(f"new index has dim {new.dim}, the active one {self._active.dim}",
                                  hint="queries are embedded for the active dim; build a new BlueGreenIndex")
        with self._write_lock:
            old = self._active
            self._active = new  # the atomic publish: readers see old or new
            self._generation += 1
            generation = self._generation
        if self._on_swap is not None:
            self._on_swap(new, generation)
        return old

    def rebuild(self, build: Callable[[], VectorIndex]) -> Future[VectorIndex]:
        """Run `build` in a background thread and swap its result in when it finishes.

        One rebuild at a time. If `build` raises, the active index is unchanged and the
        future carries the exception. The old index is dropped after the swap. (An exception
        from `on_swap` also lands in the future, but the swap has already happened.)
        """
        with self._write_lock:
            if self._rebuilding:
                raise ValidationError("a rebuild is already running",
                                      hint="wait for the Future of the running rebuild first")
            self._rebuilding = True
        future: Future[VectorIndex] = Future()
        future.set_running_or_notify_cancel()
        thread = threading.Thread(target=self._run_build, args=(build, future),
                                  name="blue-green-rebuild", daemon=True)
        try:
            thread.start()
        except BaseException:
            self._rebuilding = False
            raise
        return future

    def _run_build(self, build: Callable[[], VectorIndex], future: Future[VectorIndex]) -> None:
        try:
            _lower_thread_priority(self._build_nice)
            new = build()
            old = self.swap(new)
            del old  # release: the last in-flight query on it frees it
        except BaseException as exc:  # noqa: BLE001 - handed to the caller through the future
            self._rebuilding = False
            future.set_exception(exc)
            return
        self._rebuilding = False  # cleared before the result so a waiter can rebuild again at once
        future.set_result(new)

    # ---------------------------------------------------------------- persistence

    def save_active(self, folder: Path) -> Path:
        """Persist the active index as `index-<generation>.usearch` and point `CURRENT` at it."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with self._write_lock:  # a consistent (index, generation) pair; swaps wait
            active, generation = self._active, self._generation
            path = folder / f"index-{generation}.usearch"
            active.save(path)
            _write_pointer(folder, path.name)
            for stale in folder.iterdir():
                match = _INDEX_FILE.match(stale.name)
                if match and stale.name != path.name:
                    stale.unlink(missing_ok=True)
        return path

    @classmethod
    def load_current(cls, folder: Path, dim: int, *, view: bool = False,
                     on_swap: SwapCallback | None = None) -> BlueGreenIndex:
        """Open the index `CURRENT` names, at the generation in its file name."""
        pointer = Path(folder) / CURRENT
        if not pointer.is_file():
            raise ValidationError(f"no {CURRENT} pointer in {folder}",
                                  hint="save_active() into this folder first")
        name = pointer.read_text(encoding="utf-8").strip()
        match = _INDEX_FILE.match(name)
        if match is None:
            raise ValidationError(f"{pointer} names {name!r}, not an index-<generation>.usearch file",
                                  hint="the folder was not written by save_active()")
        index = VectorIndex.load(Path(folder) / name, dim=dim, view=view)
        return cls(index, generation=int(match.group(1)), on_swap=on_swap)


def build_from(keys: KeysLike, vectors: np.ndarray, *, dim: int, threads: int = BUILD_THREADS,
               **hnsw: int) -> Callable[[], VectorIndex]:
    """A `build` callable for `rebuild`: a fresh index over `vectors`, with few threads by default."""

    def build() -> VectorIndex:
        index = VectorIndex(dim, **hnsw)
        index.add(keys, vectors, threads=threads)
        return index

    return build


def _lower_thread_priority(increment: int) -> None:
    """Linux only: nice the calling thread (its TID); elsewhere PRIO_PROCESS would hit the process."""
    if increment <= 0 or not sys.platform.startswith("linux"):
        return
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + increment))
    except OSError:  # not permitted in some sandboxes: the build still runs, only less politely
        pass


def _write_pointer(folder: Path, name: str) -> None:
    fd, tmp_name = tempfile.mkstemp(prefix=f".{CURRENT}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(name + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, folder / CURRENT)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
