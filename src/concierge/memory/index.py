"""One vector index per (tenant, user): the embeddings of that user's profile facts.

SQL is the source of truth; an index is derived from it. When a saved index does not hold
exactly the ids of the user's facts (a crash between the SQL commit and the index save, an
index folder copied from elsewhere), it is rebuilt from the facts, so recall never sees a
vector whose fact is gone, nor misses a stored fact. Per-user indexes keep tenants and users
apart by construction: a query can only ever search one user's vectors.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..core.errors import ValidationError
from ..retrieval.embeddings import Embedder
from ..retrieval.vector_index import Hit, VectorIndex
from .checks import check_id
from .profile import Fact

EXACT_SCAN_LIMIT = 5000  # a user with at most this many facts is scanned exactly (deterministic scores)


class FactIndex:
    def __init__(self, embedder: Embedder, folder: Path | None = None) -> None:
        self.embedder = embedder
        self.folder = None if folder is None else Path(folder)
        self._indexes: dict[tuple[str, str], VectorIndex] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    def lock(self, tenant: str, user_id: str) -> asyncio.Lock:
        """Held by the facade around every change of one user's facts and vectors."""
        return self._locks.setdefault((tenant, user_id), asyncio.Lock())

    def path(self, tenant: str, user_id: str) -> Path | None:
        if self.folder is None:
            return None
        digest = hashlib.sha256(check_id("user id", user_id).encode()).hexdigest()[:32]
        return self.folder / check_id("tenant", tenant) / f"{digest}.usearch"

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.embedder.dim), dtype=np.float32)
        return await asyncio.to_thread(self.embedder.embed, list(texts))

    def _load(self, tenant: str, user_id: str) -> VectorIndex | None:
        path = self.path(tenant, user_id)
        if path is None or not path.is_file():
            return None
        try:
            return VectorIndex.load(path, dim=self.embedder.dim)
        except (ValidationError, OSError, RuntimeError):
            return None  # unreadable or built by another model: rebuilt from SQL by the caller

    async def ensure(self, tenant: str, user_id: str, facts: Sequence[Fact]) -> VectorIndex:
        """The user's index, holding exactly the vectors of `facts` (loaded, reused or rebuilt)."""
        key = (tenant, user_id)
        ids = [f.id for f in facts]
        index = self._indexes.get(key) or self._load(tenant, user_id)
        if index is not None and len(index) == len(ids) and all(i in index for i in ids):
            self._indexes[key] = index
            return index
        index = VectorIndex(self.embedder.dim)
        if facts:
            index.add(np.asarray(ids, dtype=np.int64), await self.embed([f.text for f in facts]))
        self._indexes[key] = index
        self._save(tenant, user_id)
        return index

    async def put(self, tenant: str, user_id: str, facts: Sequence[Fact], vectors: np.ndarray | None = None) -> None:
        """Add or replace the vectors of `facts` (already stored in SQL) in the user's index."""
        if not facts:
            return
        index = self._indexes.get((tenant, user_id))
        if index is None:
            raise ValidationError("FactIndex.put before ensure()", hint="call ensure() with the user's facts first")
        if vectors is None:
            vectors = await self.embed([f.text for f in facts])
        ids = np.asarray([f.id for f in facts], dtype=np.int64)
        present = [int(i) for i in ids if int(i) in index]
        if present:
            index.remove(present)
        index.add(ids, vectors)
        self._save(tenant, user_id)

    def remove(self, tenant: str, user_id: str, ids: Sequence[int]) -> int:
        index = self._indexes.get((tenant, user_id)) or self._load(tenant, user_id)
        if index is None:
            return 0
        self._indexes[(tenant, user_id)] = index
        present = sorted({int(i) for i in ids if int(i) in index})
        if present:
            index.remove(present)
            self._save(tenant, user_id)
        return len(present)

    async def search(self, tenant: str, user_id: str, query: str, k: int) -> list[Hit]:
        index = self._indexes.get((tenant, user_id))
        if index is None or len(index) == 0:
            return []
        vector = (await self.embed([query]))[0]
        k = max(1, min(k, len(index)))
        if len(index) <= EXACT_SCAN_LIMIT:
            return index.exact_search(vector, len(index))  # small: score every fact, exactly
        return index.search(vector, k)

    def count(self, tenant: str, user_id: str) -> int:
        index = self._indexes.get((tenant, user_id)) or self._load(tenant, user_id)
        return 0 if index is None else len(index)

    def contains(self, tenant: str, user_id: str, fact_id: int) -> bool:
        index = self._indexes.get((tenant, user_id)) or self._load(tenant, user_id)
        return index is not None and fact_id in index

    def drop(self, tenant: str, user_id: str) -> int:
        """Forget the user's whole index (memory and disk); returns how many vectors it held."""
        count = self.count(tenant, user_id)
        self._indexes.pop((tenant, user_id), None)
        path = self.path(tenant, user_id)
        if path is not None:
            path.unlink(missing_ok=True)
        return count

    def _save(self, tenant: str, user_id: str) -> None:
        path = self.path(tenant, user_id)
        index = self._indexes.get((tenant, user_id))
        if path is None or index is None:
            return
        if len(index) == 0:
            path.unlink(missing_ok=True)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        index.save(path)
