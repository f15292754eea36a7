"""VectorIndex: recall of the HNSW index against an exact scan, input checks, persistence."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from concierge.core.errors import ValidationError
from concierge.retrieval.vector_index import VectorIndex, recall_at_k

DIM = 16


def clustered(rng: np.random.Generator, centres: np.ndarray, n: int, noise: float) -> np.ndarray:
    """Embedding-like vectors: a random cluster centre plus isotropic noise, L2-normalised."""
    dim = centres.shape[1]
    picks = rng.integers(0, len(centres), n)
    vectors = centres[picks] + noise * rng.standard_normal((n, dim)).astype(np.float32) / np.sqrt(dim)
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture
def small() -> tuple[VectorIndex, np.ndarray]:
    vectors = unit(np.random.default_rng(1), 500)
    index = VectorIndex(DIM)
    index.add(np.arange(500, dtype=np.int64), vectors)
    return index, vectors


# ------------------------------------------------------------------------- recall


def test_recall_at_10_on_100k_clustered_vectors() -> None:
    """≥ 0.95 recall@10 on 100k vectors with the default HNSW parameters (dim 64, ~20 s on 2 cores)."""
    dim, n, clusters = 64, 100_000, 300
    rng = np.random.default_rng(20261124)
    centres = unit(rng, clusters, dim)
    corpus = clustered(rng, centres, n, noise=1.0)
    queries = clustered(rng, centres, 300, noise=1.0)

    index = VectorIndex(dim)
    started = time.perf_counter()
    index.add(np.arange(n, dtype=np.int64), corpus)
    build_s = time.perf_counter() - started
    assert len(index) == n

    recall = recall_at_k(index, queries, k=10)
    print(f"\nrecall@10 = {recall:.4f} over {len(queries)} queries; build of {n:,} × {dim} took {build_s:.1f} s")
    assert recall >= 0.95


def test_recall_is_near_one_on_a_small_index(small: tuple[VectorIndex, np.ndarray]) -> None:
    index, vectors = small
    # HNSW is approximate even when small: a multi-threaded build can miss a neighbour now and then.
    assert recall_at_k(index, vectors[:20], k=5) >= 0.95


# ------------------------------------------------------------------------- search results


def test_search_is_sorted_and_matches_numpy_dot_products(small: tuple[VectorIndex, np.ndarray]) -> None:
    index, vectors = small
    query = unit(np.random.default_rng(2), 1)[0]
    hits = index.search(query, 10)
    assert len(hits) == 10
    sims = [s for _, s in hits]
    assert sims == sorted(sims, reverse=True)
    for key, sim in hits:
        assert sim == pytest.approx(float(vectors[key] @ query), abs=1e-5)
        assert -1.0 <= sim <= 1.0

    truth = np.argsort(-(vectors @ query))[:10]
    exact = index.exact_search(query, 10)
    assert [k for k, _ in exact] == truth.tolist()


def test_search_finds_the_vector_itself(small: tuple[VectorIndex, np.ndarray]) -> None:
    index, vectors = small
    key, sim = index.search(vectors[42], 1)[0]
    assert key == 42
    assert sim == pytest.approx(1.0, abs=1e-5)


def test_search_many_matches_single_searches(small: tuple[VectorIndex, np.ndarray]) -> None:
    index, vectors = small
    batch = index.search_many(vectors[:5], 3)
    assert len(batch) == 5
    for row, vector in zip(batch, vectors[:5]):
        assert [k for k, _ in row] == [k for k, _ in index.search(vector, 3)]
    assert len(index.search_many(vectors[:1], 3)) == 1


def test_k_larger_than_the_index_and_empty_index() -> None:
    index = VectorIndex(DIM)
    query = unit(np.random.default_rng(3), 1)[0]
    assert index.search(query, 5) == []
    assert index.search_many(query.reshape(1, -1), 5) == [[]]
    index.add([7, 8], unit(np.random.default_rng(4), 2))
    assert sorted(k for k, _ in index.search(query, 5)) == [7, 8]
    assert [len(r) for r in index.search_many(unit(np.random.default_rng(5), 3), 5)] == [2, 2, 2]


# ------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("keys", "vectors", "fragment"),
    [
        ([1, 2], np.zeros((3, DIM), np.float32), "2 keys for 3 vectors"),
        ([1], np.zeros((1, DIM + 1), np.float32), "dim"),
        ([1], np.zeros(DIM, np.float32), "shape"),
        ([1.5], np.zeros((1, DIM), np.float32), "integers"),
        ([-1], np.zeros((1, DIM), np.float32), "non-negative"),
        ([[1]], np.zeros((1, DIM), np.float32), "one-dimensional"),
        ([1], np.full((1, DIM), np.nan, np.float32), "NaN"),
        ([1], np.array([["a"] * DIM]), "numeric"),
    ],
)
def test_add_rejects_malformed_input(keys: object, vectors: np.ndarray, fragment: str) -> None:
    index = VectorIndex(DIM)
    with pytest.raises(ValidationError, match=fragment) as err:
        index.add(keys, vectors)  # type: ignore[arg-type]
    assert err.value.hint
    assert len(index) == 0


def test_add_converts_float64_and_lists_of_keys() -> None:
    index = VectorIndex(DIM)
    index.add([3, 4], unit(np.random.default_rng(6), 2).astype(np.float64))
    assert 3 in index and 4 in index and 5 not in index and -1 not in index and "3" not in index


def test_duplicate_keys_are_rejected(small: tuple[VectorIndex, np.ndarray]) -> None:
    index, _ = small
    fresh = unit(np.random.default_rng(7), 2)
    with pytest.raises(ValidationError, match="already in the index"):
        index.add([10, 1000], fresh)
    assert 1000 not in index  # all or nothing
    with pytest.raises(ValidationError, match="duplicate keys"):
        index.add([1001, 1001], fresh)
    assert len(index) == 500


def test_query_shape_and_k_errors(small: tuple[VectorIndex, np.ndarray]) -> None:
    index, _ = small
    with pytest.raises(ValidationError, match="dim 8"):
        index.search(np.zeros(8, np.float32), 3)
    with pytest.raises(ValidationError, match="shape"):
        index.search(np.zeros((2, DIM), np.float32), 3)
    with pytest.raises(ValidationError, match="shape"):
        index.search_many(np.zeros(DIM, np.float32), 3)
    with pytest.raises(ValidationError, match="k must be"):
        index.search(np.zeros(DIM, np.float32), 0)


def test_constructor_rejects_bad_parameters() -> None:
    with pytest.raises(ValidationError, match="dim"):
        VectorIndex(0)
    with pytest.raises(ValidationError, match="connectivity"):
        VectorIndex(DIM, connectivity=-2)


# ------------------------------------------------------------------------- remove


def test_remove(small: tuple[VectorIndex, np.ndarray]) -> None:
    index, vectors = small
    index.remove([42, 43])
    assert len(index) == 498
    assert 42 not in index
    assert 42 not in [k for k, _ in index.search(vectors[42], 10)]
    assert 42 not in [k for k, _ in index.exact_search(vectors[42], 10)]
    with pytest.raises(ValidationError, match="not in the index"):
        index.remove([44, 42])
    assert 44 in index  # nothing removed when one key is missing
    index.add([42], vectors[42:43])  # a removed key can be added again
    assert index.search(vectors[42], 1)[0][0] == 42


# ------------------------------------------------------------------------- persistence


@pytest.mark.parametrize("view", [False, True])
def test_save_load_round_trip(small: tuple[VectorIndex, np.ndarray], tmp_path: Path, view: bool) -> None:
    index, vectors = small
    path = tmp_path / "kb.usearch"
    index.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["kb.usearch"]  # no temp file left behind

    loaded = VectorIndex.load(path, dim=DIM, view=view)
    assert len(loaded) == len(index)
    assert loaded.read_only is view
    assert 17 in loaded
    for query in vectors[:5]:
        assert loaded.search(query, 5) == index.search(query, 5)
    if view:
        with pytest.raises(ValidationError, match="read-only"):
            loaded.add([9999], vectors[:1])
    else:
        loaded.add([9999], vectors[:1])
        assert len(loaded) == 501


def test_save_replaces_an_existing_file(small: tuple[VectorIndex, np.ndarray], tmp_path: Path) -> None:
    index, _ = small
    path = tmp_path / "kb.usearch"
    VectorIndex(DIM).save(path)
    index.save(path)
    assert len(VectorIndex.load(path, dim=DIM)) == 500


def test_load_errors(small: tuple[VectorIndex, np.ndarray], tmp_path: Path) -> None:
    index, _ = small
    with pytest.raises(ValidationError, match="no usearch index"):
        VectorIndex.load(tmp_path / "missing.usearch", dim=DIM)
    index.save(tmp_path / "kb.usearch")
    with pytest.raises(ValidationError, match="expected 32"):
        VectorIndex.load(tmp_path / "kb.usearch", dim=32)
    with pytest.raises(ValidationError, match="does not exist"):
        index.save(tmp_path / "nope" / "kb.usearch")
