"""`VectorIndex`: a typed HNSW index (usearch) over L2-normalised embeddings, keyed by int64.

Why a wrapper: usearch accepts almost anything (float64, wrong widths, negative keys that wrap
to huge unsigned ones, duplicate keys in a `multi=False` index) and fails late or silently.
This class checks inputs at the boundary, answers in one shape — `(key, cosine similarity)`
pairs, best first — and keeps the HNSW parameters in one place.

Similarity is `1 - cosine distance`, so it lies in [-1, 1] and equals the dot product of
normalised vectors. `exact_search` scans every vector, to measure the ANN index's recall.

Thread safety: concurrent `search` calls are safe; do not `add`/`remove` on an index that is
being searched — build a new one and swap it in (`BlueGreenIndex`).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

try:  # pyarrow first: loaded after usearch's bundled libraries, its Parquet writer crashes (SIGSEGV)
    import pyarrow  # noqa: F401
except ImportError:  # no lake extra: nothing to protect
    pass
from usearch.index import BatchMatches, Index, Matches, MetricKind, ScalarKind

from concierge.core.errors import ValidationError

Hit = tuple[int, float]
KeysLike = np.ndarray | Sequence[int]

DEFAULT_CONNECTIVITY = 16
DEFAULT_EXPANSION_ADD = 128
DEFAULT_EXPANSION_SEARCH = 64


class VectorIndex:
    """Approximate nearest-neighbour search by cosine similarity, plus an exact scan for checks."""

    def __init__(
        self,
        dim: int,
        *,
        connectivity: int = DEFAULT_CONNECTIVITY,
        expansion_add: int = DEFAULT_EXPANSION_ADD,
        expansion_search: int = DEFAULT_EXPANSION_SEARCH,
    ) -> None:
        for name, value in (("dim", dim), ("connectivity", connectivity),
                            ("expansion_add", expansion_add), ("expansion_search", expansion_search)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValidationError(f"VectorIndex {name} must be a positive int, got {value!r}",
                                      hint="pass e.g. dim=384 for all-MiniLM-L6-v2 embeddings")
        self._dim = dim
        self._read_only = False
        self._index = Index(ndim=dim, metric=MetricKind.Cos, dtype=ScalarKind.F32,
                            connectivity=connectivity, expansion_add=expansion_add,
                            expansion_search=expansion_search)

    # ---------------------------------------------------------------- properties

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def read_only(self) -> bool:
        """True for an index memory-mapped with `load(..., view=True)`."""
        return self._read_only

    @property
    def expansion_search(self) -> int:
        return int(self._index.expansion_search)

    @expansion_search.setter
    def expansion_search(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValidationError(f"expansion_search must be a positive int, got {value!r}")
        self._index.expansion_search = value

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, bool) or not isinstance(key, int | np.integer) or key < 0:
            return False
        return bool(self._index.contains(int(key)))

    def __repr__(self) -> str:
        return f"VectorIndex(dim={self._dim}, size={len(self)}, read_only={self._read_only})"

    # ---------------------------------------------------------------- writes

    def add(self, keys: KeysLike, vectors: np.ndarray, *, threads: int = 0) -> None:
        """Insert `vectors[i]` under `keys[i]`; all-or-nothing on validation errors.

        `threads=0` uses every core (fast bulk loads); a background rebuild passes 1 so that
        concurrent queries keep a core (see `blue_green`).
        """
        self._check_writable("add")
        key_array = _as_keys(keys)
        matrix = _as_matrix(vectors, self._dim, what="vectors")
        if len(key_array) != len(matrix):
            raise ValidationError(f"{len(key_array)} keys for {len(matrix)} vectors",
                                  hint="pass one key per row of `vectors`")
        if len(key_array) == 0:
            return
        unique, counts = np.unique(key_array, return_counts=True)
        if (counts > 1).any():
            repeated = unique[counts > 1][:5].tolist()
            raise ValidationError(f"duplicate keys in one add() call: {repeated}",
                                  hint="each key identifies one vector; dedupe before adding")
        present = np.asarray(self._index.contains(key_array), dtype=bool)
        if present.any():
            taken = key_array[present][:5].tolist()
            raise ValidationError(f"keys already in the index: {taken}",
                                  hint="remove() them first to replace their vectors")
        self._index.add(key_array, matrix, threads=_threads(threads))

    def remove(self, keys: KeysLike) -> None:
        """Delete vectors by key; every key must be present (nothing is removed otherwise)."""
        self._check_writable("remove")
        key_array = _as_keys(keys)
        if len(key_array) == 0:
            return
        present = np.asarray(self._index.contains(key_array), dtype=bool)
        if not present.all():
            missing = key_array[~present][:5].tolist()
            raise ValidationError(f"keys not in the index: {missing}",
                                  hint="only keys that were added can be removed")
        self._index.remove(np.unique(key_array))

    # ---------------------------------------------------------------- reads

    def search(self, vector: np.ndarray, k: int) -> list[Hit]:
        """The `k` nearest vectors as `(key, similarity)`, most similar first (HNSW, approximate)."""
        return self._one(vector, k, exact=False)

    def exact_search(self, vector: np.ndarray, k: int) -> list[Hit]:
        """Like `search` but by brute force over every vector: the ground truth for recall."""
        return self._one(vector, k, exact=True)

    def search_many(self, vectors: np.ndarray, k: int, *, threads: int = 0) -> list[list[Hit]]:
        """`search` for each row of `vectors`, in one call (parallel over `threads`, 0 = all)."""
        return self._many(vectors, k, exact=False, threads=threads)

    def exact_search_many(self, vectors: np.ndarray, k: int, *, threads: int = 0) -> list[list[Hit]]:
        """`exact_search` for each row of `vectors`."""
        return self._many(vectors, k, exact=True, threads=threads)

    def _one(self, vector: np.ndarray, k: int, *, exact: bool) -> list[Hit]:
        _check_k(k)
        query = _as_matrix(vector, self._dim, what="query vector", single=True)
        if len(self._index) == 0:
            return []
        matches = self._index.search(query[0], k, threads=1, exact=exact)
        assert isinstance(matches, Matches)
        return _hits(matches.keys, matches.distances, len(matches.keys))

    def _many(self, vectors: np.ndarray, k: int, *, exact: bool, threads: int) -> list[list[Hit]]:
        _check_k(k)
        queries = _as_matrix(vectors, self._dim, what="query vectors")
        if len(queries) == 0:
            return []
        if len(self._index) == 0:
            return [[] for _ in range(len(queries))]
        found = self._index.search(queries, k, threads=_threads(threads), exact=exact)
        if isinstance(found, Matches):  # usearch answers a 1-row batch with a single Matches
            return [_hits(found.keys, found.distances, len(found.keys))]
        assert isinstance(found, BatchMatches)
        return [_hits(found.keys[i], found.distances[i], int(found.counts[i])) for i in range(len(queries))]

    # ---------------------------------------------------------------- persistence

    def save(self, path: Path) -> None:
        """Write the index to `path` atomically: a temp file in the same folder, fsync, os.replace.

        A reader (or a crash) sees either the previous file or the complete new one.
        """
        path = Path(path)
        if not path.parent.is_dir():
            raise ValidationError(f"cannot save index: folder {path.parent} does not exist",
                                  hint="create the folder first")
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            self._index.save(str(tmp))
            _fsync_file(tmp)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)

    @classmethod
    def load(cls, path: Path, *, dim: int, view: bool = False,
             expansion_search: int = DEFAULT_EXPANSION_SEARCH) -> VectorIndex:
        """Open a saved index; `view=True` memory-maps it read-only instead of reading it into RAM."""
        path = Path(path)
        meta = Index.metadata(str(path)) if path.is_file() else None
        if meta is None:
            raise ValidationError(f"no usearch index file at {path}",
                                  hint="save() an index there first, or check the path")
        if meta["dimensions"] != dim:
            raise ValidationError(f"index at {path} has dim {meta['dimensions']}, expected {dim}",
                                  hint="load with the dim of the embedding model that built it")
        if meta["kind_metric"] != MetricKind.Cos or meta["kind_scalar"] != ScalarKind.F32:
            raise ValidationError(f"index at {path} is {meta['kind_metric']}/{meta['kind_scalar']}, "
                                  "expected cosine/f32", hint="rebuild it with VectorIndex")
        out = cls(dim, expansion_search=expansion_search)
        if view:
            out._index.view(str(path))
        else:
            out._index.load(str(path))
        out._index.expansion_search = expansion_search
        out._read_only = view
        return out

    def _check_writable(self, op: str) -> None:
        if self._read_only:
            raise ValidationError(f"cannot {op}: this index is a read-only memory-mapped view",
                                  hint="load(..., view=False) to get a writable copy")


def recall_at_k(index: VectorIndex, queries: np.ndarray, k: int = 10) -> float:
    """Mean over queries of |ANN top-k ∩ exact top-k| / k: how much HNSW misses vs a full scan."""
    _check_k(k)
    approx = index.search_many(queries, k)
    exact = index.exact_search_many(queries, k)
    if not exact:
        raise ValidationError("recall_at_k needs at least one query", hint="pass a (n, dim) matrix, n ≥ 1")
    per_query = [len({key for key, _ in a} & {key for key, _ in e}) / k for a, e in zip(approx, exact)]
    return float(np.mean(per_query))


# -------------------------------------------------------------------- validation helpers


def _as_keys(keys: KeysLike) -> np.ndarray:
    array = np.asarray(keys)
    if array.ndim == 0:
        array = array.reshape(1)
    if array.ndim != 1:
        raise ValidationError(f"keys must be one-dimensional, got shape {array.shape}",
                              hint="pass a flat list or int64 array of keys")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ValidationError(f"keys must be integers, got dtype {array.dtype}",
                              hint="use np.int64 keys (e.g. chunk row ids)")
    array = array.astype(np.int64, copy=False)
    if array.size and array.min() < 0:
        raise ValidationError("keys must be non-negative", hint="usearch stores keys as unsigned 64-bit")
    return array


def _as_matrix(vectors: np.ndarray, dim: int, *, what: str, single: bool = False) -> np.ndarray:
    array = np.asarray(vectors)
    if array.dtype.kind not in "fiu":
        raise ValidationError(f"{what} must be numeric, got dtype {array.dtype}",
                              hint="pass float32 embeddings")
    if single and array.ndim == 1:
        array = array.reshape(1, -1)
    if array.ndim != 2 or (single and array.shape[0] != 1):
        expected = f"({dim},)" if single else f"(n, {dim})"
        raise ValidationError(f"{what} must have shape {expected}, got {array.shape}",
                              hint="one embedding per row")
    if array.shape[1] != dim:
        raise ValidationError(f"{what} have dim {array.shape[1]}, the index has dim {dim}",
                              hint="embed with the same model the index was built for")
    array = np.ascontiguousarray(array, dtype=np.float32)
    if not np.isfinite(array).all():
        raise ValidationError(f"{what} contain NaN or infinity", hint="check the embedding model output")
    return array


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValidationError(f"k must be a positive int, got {k!r}", hint="e.g. k=10")


def _threads(threads: int) -> int:
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
        raise ValidationError(f"threads must be an int ≥ 0, got {threads!r}", hint="0 means all cores")
    return threads


def _hits(keys: np.ndarray, distances: np.ndarray, count: int) -> list[Hit]:
    return [(int(key), 1.0 - float(dist)) for key, dist in zip(keys[:count], distances[:count])]


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable; not every platform can open a folder."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
