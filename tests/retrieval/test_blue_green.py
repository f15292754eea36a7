"""BlueGreenIndex: queries stay on the old index during a rebuild, then move to the new one."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from concierge.core.errors import ValidationError
from concierge.retrieval.blue_green import CURRENT, BlueGreenIndex, build_from
from concierge.retrieval.vector_index import VectorIndex

DIM = 8
WAIT_S = 10.0


def index_of(keys: list[int], seed: int) -> tuple[VectorIndex, np.ndarray]:
    vectors = np.random.default_rng(seed).standard_normal((len(keys), DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = VectorIndex(DIM)
    index.add(keys, vectors)
    return index, vectors


def keys_found(bg: BlueGreenIndex, query: np.ndarray) -> set[int]:
    return {key for key, _ in bg.search(query, 10)}


def test_queries_hit_the_old_index_until_the_swap_then_the_new_one() -> None:
    old, old_vectors = index_of([1, 2, 3], seed=1)
    new, _ = index_of([101, 102, 103, 104], seed=2)
    swaps: list[tuple[VectorIndex, int]] = []
    bg = BlueGreenIndex(old, on_swap=lambda index, generation: swaps.append((index, generation)))
    started, release = threading.Event(), threading.Event()

    def build() -> VectorIndex:
        started.set()
        assert release.wait(WAIT_S)
        return new

    future = bg.rebuild(build)
    assert started.wait(WAIT_S)
    assert bg.rebuilding
    for _ in range(20):  # the build is parked: every query still answers from the old index
        assert keys_found(bg, old_vectors[0]) == {1, 2, 3}
    assert bg.generation == 0 and bg.active is old and not swaps

    release.set()
    assert future.result(timeout=WAIT_S) is new
    assert keys_found(bg, old_vectors[0]) == {101, 102, 103, 104}
    assert bg.active is new and bg.generation == 1 and not bg.rebuilding
    assert swaps == [(new, 1)]
    assert [len(r) for r in bg.search_many(old_vectors, 2)] == [2, 2, 2]


def test_a_failing_build_leaves_the_active_index() -> None:
    old, vectors = index_of([1, 2, 3], seed=1)
    bg = BlueGreenIndex(old)

    def build() -> VectorIndex:
        raise RuntimeError("embedding model crashed")

    future = bg.rebuild(build)
    with pytest.raises(RuntimeError, match="embedding model crashed"):
        future.result(timeout=WAIT_S)
    assert bg.active is old and bg.generation == 0 and not bg.rebuilding
    assert keys_found(bg, vectors[0]) == {1, 2, 3}


def test_a_build_returning_the_wrong_dim_is_not_swapped_in() -> None:
    old, _ = index_of([1], seed=1)
    bg = BlueGreenIndex(old)
    future = bg.rebuild(lambda: VectorIndex(DIM * 2))
    with pytest.raises(ValidationError, match="dim"):
        future.result(timeout=WAIT_S)
    assert bg.active is old


def test_a_second_concurrent_rebuild_is_refused() -> None:
    old, _ = index_of([1, 2], seed=1)
    new, _ = index_of([5, 6], seed=2)
    bg = BlueGreenIndex(old)
    release = threading.Event()

    def build() -> VectorIndex:
        assert release.wait(WAIT_S)
        return new

    future = bg.rebuild(build)
    with pytest.raises(ValidationError, match="already running"):
        bg.rebuild(lambda: new)
    release.set()
    future.result(timeout=WAIT_S)
    # once finished, the next rebuild is accepted
    again = bg.rebuild(lambda: old)
    assert again.result(timeout=WAIT_S) is old
    assert bg.generation == 2


def test_explicit_swap_and_build_from() -> None:
    old, vectors = index_of([1, 2], seed=1)
    bg = BlueGreenIndex(old)
    built = build_from([7, 8], vectors, dim=DIM)()
    assert bg.swap(built) is old
    assert keys_found(bg, vectors[0]) == {7, 8}
    assert bg.generation == 1
    with pytest.raises(ValidationError, match="dim"):
        bg.swap(VectorIndex(DIM + 1))
    with pytest.raises(ValidationError, match="VectorIndex"):
        bg.swap("not an index")  # type: ignore[arg-type]


@pytest.mark.parametrize("view", [False, True])
def test_save_active_and_load_current_round_trip(tmp_path: Path, view: bool) -> None:
    first, vectors = index_of([1, 2, 3], seed=1)
    second, _ = index_of([11, 12, 13], seed=2)
    bg = BlueGreenIndex(first)

    path0 = bg.save_active(tmp_path)
    assert path0.name == "index-0.usearch"
    assert (tmp_path / CURRENT).read_text().strip() == "index-0.usearch"

    bg.swap(second)
    path1 = bg.save_active(tmp_path)
    assert path1.name == "index-1.usearch"
    assert sorted(p.name for p in tmp_path.iterdir()) == [CURRENT, "index-1.usearch"]  # old file gone

    loaded = BlueGreenIndex.load_current(tmp_path, DIM, view=view)
    assert loaded.generation == 1
    assert loaded.active.read_only is view
    assert keys_found(loaded, vectors[0]) == {11, 12, 13}


def test_load_current_errors(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="no CURRENT"):
        BlueGreenIndex.load_current(tmp_path, DIM)
    (tmp_path / CURRENT).write_text("../etc/passwd\n")
    with pytest.raises(ValidationError, match="not an index"):
        BlueGreenIndex.load_current(tmp_path, DIM)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice is Linux-only")
def test_the_build_thread_runs_at_lower_priority() -> None:
    old, _ = index_of([1], seed=1)
    seen: list[int] = []

    def build() -> VectorIndex:
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        return old

    base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    BlueGreenIndex(old, build_nice=5).rebuild(build).result(timeout=WAIT_S)
    assert seen == [min(19, base + 5)]
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == base  # the caller is untouched
    with pytest.raises(ValidationError, match="build_nice"):
        BlueGreenIndex(old, build_nice=25)
