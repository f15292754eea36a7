"""The knowledge base's system of record: documents, chunks, their vectors and a BM25 index, in SQLite.

One file holds everything needed to rebuild any vector index (blue-green reindex reads from
here), and SQLite's FTS5 gives the lexical side: incremental, persisted, ranked with BM25. Every
query filters on the tenant here, whatever the vector index returned (defence in depth).
"""

from __future__ import annotations

import math
import re
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from ..core.errors import ValidationError
from .chunking import Chunk
from .documents import Document

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tenants (
    tenant TEXT PRIMARY KEY,
    dedicated INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS documents (
    tenant TEXT NOT NULL, doc_id TEXT NOT NULL, version INTEGER NOT NULL,
    title TEXT NOT NULL, updated_at TEXT NOT NULL, visibility TEXT NOT NULL, authority REAL NOT NULL,
    source TEXT, latest INTEGER NOT NULL,
    PRIMARY KEY (tenant, doc_id, version)
);
CREATE TABLE IF NOT EXISTS chunks (
    key INTEGER PRIMARY KEY,
    tenant TEXT NOT NULL, doc_id TEXT NOT NULL, version INTEGER NOT NULL, chunk_no INTEGER NOT NULL,
    heading TEXT NOT NULL, text TEXT NOT NULL, latest INTEGER NOT NULL, vector BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_by_doc ON chunks (tenant, doc_id, version);
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5 (text, content='chunks', content_rowid='key');
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_vocab USING fts5vocab (chunks_fts, 'row');
"""
_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True, slots=True)
class StoredChunk:
    key: int
    tenant: str
    doc_id: str
    version: int
    chunk_no: int
    heading: str
    text: str
    latest: bool
    updated_at: datetime
    authority: float
    visibility: str


class ChunkStore:
    """SQLite-backed store; one writer at a time (a lock), readers on their own connections."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._local = threading.local()
        with self._connect() as conn:
            conn.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    # tenants
    def add_tenant(self, tenant: str, *, dedicated: bool = False) -> None:
        with self._lock, self._connect() as conn:
            conn.execute("INSERT INTO tenants VALUES (?, ?) ON CONFLICT(tenant) DO UPDATE SET dedicated=excluded.dedicated",
                         (tenant, int(dedicated)))

    def tenants(self) -> dict[str, bool]:
        return {t: bool(d) for t, d in self._connect().execute("SELECT tenant, dedicated FROM tenants")}

    def require_tenant(self, tenant: object) -> str:
        if not isinstance(tenant, str) or not tenant:
            raise ValidationError(f"tenant must be a non-empty string, got {tenant!r}")
        if self._connect().execute("SELECT 1 FROM tenants WHERE tenant = ?", (tenant,)).fetchone() is None:
            raise ValidationError(f"unknown tenant {tenant!r}", hint="ingest a document for it first (kb ingest --tenant)")
        return tenant

    # writes
    def next_keys(self, count: int) -> list[int]:
        top = self._connect().execute("SELECT COALESCE(MAX(key), 0) FROM chunks").fetchone()[0]
        return list(range(top + 1, top + 1 + count))

    def add_document(self, doc: Document, chunks: Sequence[Chunk], vectors: np.ndarray,
                     keys: Sequence[int]) -> list[int]:
        """Store a document version and its chunks; returns the keys of the chunks it superseded.

        A version above the newest supersedes it; one below is history (stored, never latest);
        the same version twice is refused.
        """
        with self._lock, self._connect() as conn:
            versions = {v for (v,) in conn.execute("SELECT version FROM documents WHERE tenant = ? AND doc_id = ?",
                                                  (doc.tenant, doc.doc_id))}
            if doc.version in versions:
                raise ValidationError(
                    f"document {doc.doc_id!r} of tenant {doc.tenant!r} already has version {doc.version}",
                    hint=f"ingest a changed document as version {max(versions) + 1}")
            latest = not versions or doc.version > max(versions)
            superseded: list[int] = []
            if latest:
                superseded = [k for (k,) in conn.execute(
                    "SELECT key FROM chunks WHERE tenant = ? AND doc_id = ? AND latest = 1", (doc.tenant, doc.doc_id))]
                conn.execute("UPDATE documents SET latest = 0 WHERE tenant = ? AND doc_id = ?", (doc.tenant, doc.doc_id))
                conn.execute("UPDATE chunks SET latest = 0 WHERE tenant = ? AND doc_id = ?", (doc.tenant, doc.doc_id))
            conn.execute("INSERT INTO documents VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         (doc.tenant, doc.doc_id, doc.version, doc.title, doc.updated_at.isoformat(),
                          doc.visibility, doc.authority, doc.source, int(latest)))
            rows = [(key, doc.tenant, doc.doc_id, doc.version, c.chunk_no, c.heading, c.text, int(latest),
                     np.asarray(v, dtype=np.float32).tobytes()) for key, c, v in zip(keys, chunks, vectors, strict=True)]
            conn.executemany("INSERT INTO chunks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            conn.executemany("INSERT INTO chunks_fts (rowid, text) VALUES (?, ?)", [(r[0], r[6]) for r in rows])
        return superseded

    # reads
    def chunks(self, keys: Iterable[int], tenant: str | None) -> dict[int, StoredChunk]:
        """The chunks among `keys` that belong to `tenant` (others are dropped here, whatever asked).

        `tenant=None` skips that filter: only for tests that prove the other layer holds alone.
        """
        wanted = list(keys)
        if not wanted:
            return {}
        marks = ",".join("?" * len(wanted))
        where = "AND c.tenant = ?" if tenant is not None else ""
        params = (*wanted, tenant) if tenant is not None else tuple(wanted)
        rows = self._connect().execute(
            f"SELECT c.key, c.tenant, c.doc_id, c.version, c.chunk_no, c.heading, c.text, c.latest, d.updated_at, "
            f"d.authority, d.visibility FROM chunks c JOIN documents d ON d.tenant = c.tenant AND d.doc_id = c.doc_id "
            f"AND d.version = c.version WHERE c.key IN ({marks}) {where}", params)
        return {r[0]: StoredChunk(r[0], r[1], r[2], r[3], r[4], r[5], r[6], bool(r[7]),
                                  datetime.fromisoformat(r[8]).astimezone(UTC), r[9], r[10]) for r in rows}

    def lexical(self, query: str, tenant: str, limit: int, *, latest_only: bool = True) -> list[tuple[int, float]]:
        """BM25 over the tenant's chunks: (key, score) best first, score > 0 (FTS5's bm25 is negated)."""
        words = [w for w in _WORD.findall(query.lower()) if len(w) > 1]
        if not words:
            return []
        match = " OR ".join('"' + w.replace('"', "") + '"' for w in dict.fromkeys(words))
        latest = "AND c.latest = 1" if latest_only else ""
        rows = self._connect().execute(
            f"SELECT c.key, -bm25(chunks_fts) AS score FROM chunks_fts JOIN chunks c ON c.key = chunks_fts.rowid "
            f"WHERE chunks_fts MATCH ? AND c.tenant = ? {latest} ORDER BY score DESC LIMIT ?", (match, tenant, limit))
        return [(k, float(s)) for k, s in rows]

    def term_weights(self, terms: Iterable[str]) -> dict[str, float]:
        """Inverse document frequency of each term over all chunks: rare words say more.

        The counts come from the FTS index's vocabulary, so a lookup costs one indexed read per
        term; a term no chunk contains gets the highest weight.
        """
        wanted = list(dict.fromkeys(terms))
        if not wanted:
            return {}
        conn = self._connect()
        total = conn.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
        marks = ",".join("?" * len(wanted))
        counts = dict(conn.execute(f"SELECT term, doc FROM chunks_vocab WHERE term IN ({marks})", wanted).fetchall())
        return {t: math.log((total + 1) / (counts.get(t, 0) + 0.5)) for t in wanted}

    def vectors(self, tenants: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Every chunk's key and vector for these tenants: what a reindex builds from."""
        marks = ",".join("?" * len(tenants))
        rows = self._connect().execute(f"SELECT key, vector FROM chunks WHERE tenant IN ({marks}) ORDER BY key",
                                       tuple(tenants)).fetchall()
        if not rows:
            return np.empty(0, dtype=np.int64), np.empty((0, 0), dtype=np.float32)
        keys = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        return keys, np.stack([np.frombuffer(r[1], dtype=np.float32) for r in rows])

    def vectors_of(self, keys: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        marks = ",".join("?" * len(keys))
        rows = self._connect().execute(f"SELECT key, vector FROM chunks WHERE key IN ({marks})", tuple(keys)).fetchall()
        if not rows:
            return np.empty(0, dtype=np.int64), np.empty((0, 0), dtype=np.float32)
        return (np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows)),
                np.stack([np.frombuffer(r[1], dtype=np.float32) for r in rows]))

    def count(self, tenant: str) -> int:
        return int(self._connect().execute("SELECT COUNT(*) FROM chunks WHERE tenant = ?", (tenant,)).fetchone()[0])

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
