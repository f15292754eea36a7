"""Per-tenant knowledge bases: ingest documents, search them hybrid, and say when there is no answer.

A search embeds the query, asks the tenant's ANN index and the BM25 index for candidates, fuses
the two rankings, reranks with features, and runs the grounding check. The tenant comes from the
caller (the session principal), never from the model, and is enforced twice: large tenants get
a dedicated index holding only their vectors, small ones share a partitioned index, and in both
cases every candidate is filtered on its tenant in the store before it is returned.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import ValidationError
from .blue_green import BlueGreenIndex
from .chunking import chunk_document
from .documents import Document, load_folder
from .embeddings import CachedEmbedder, Embedder, MiniLMEmbedder
from .ranking import (
    Candidate,
    FeatureReranker,
    Grounding,
    GroundingChecker,
    Reranker,
    Scored,
    query_terms,
    reciprocal_rank_fusion,
)
from .store import ChunkStore, StoredChunk
from .vector_index import VectorIndex

MAX_QUERY_CHARS = 2000
SHARED = "shared"


@dataclass(frozen=True, slots=True)
class Hit:
    doc_id: str
    version: int
    chunk_no: int
    heading: str
    text: str
    score: float
    similarity: float
    latest: bool

    @property
    def citation(self) -> str:
        return f"{self.doc_id}#{self.chunk_no}"

    def to_dict(self) -> dict[str, Any]:
        return {"citation": self.citation, "doc_id": self.doc_id, "version": self.version, "heading": self.heading,
                "text": self.text, "score": round(self.score, 4), "similarity": round(self.similarity, 4),
                "latest": self.latest}


@dataclass(frozen=True, slots=True)
class SearchResult:
    query: str
    tenant: str
    hits: list[Hit]
    grounding: Grounding

    @property
    def citations(self) -> list[str]:
        return [h.citation for h in self.hits]


@dataclass(frozen=True, slots=True)
class IngestResult:
    tenant: str
    doc_id: str
    version: int
    chunks: int
    superseded_chunks: int = 0


@dataclass
class _Group:
    index: BlueGreenIndex
    tenants: set[str] = field(default_factory=set)


def _spread(ranked: list[Scored]) -> list[Scored]:
    """Each document's best chunk first (in rank order), then the rest: citations cover more sources."""
    seen: set[str] = set()
    first, rest = [], []
    for s in ranked:
        (rest if s.candidate.chunk.doc_id in seen else first).append(s)
        seen.add(s.candidate.chunk.doc_id)
    return first + rest


class KnowledgeBase:
    def __init__(self, folder: Path | str, embedder: Embedder | None = None, *, reranker: Reranker | None = None,
                 grounding: GroundingChecker | None = None, candidates: int = 50) -> None:
        self.folder = Path(folder)
        self.store = ChunkStore(self.folder / "kb.sqlite")
        self.embedder = CachedEmbedder(embedder or MiniLMEmbedder(), self.folder / "embeddings.sqlite")
        self.reranker = reranker or FeatureReranker()
        self.grounding = grounding or GroundingChecker()
        self.candidates = candidates
        self._groups: dict[str, _Group] = {}
        self._dirty: set[str] = set()  # groups whose index changed since it was saved
        members: dict[str, set[str]] = {}
        for tenant, dedicated in self.store.tenants().items():
            members.setdefault(self._group_name(tenant, dedicated), set()).add(tenant)
        for name, tenants in members.items():
            self._groups[name] = _Group(self._open_index(name, tenants), tenants)

    # tenants and indexes
    def _group_name(self, tenant: str, dedicated: bool) -> str:
        return f"tenant:{tenant}" if dedicated else SHARED

    def _index_folder(self, group: str) -> Path:
        return self.folder / "indexes" / group.replace(":", "-")

    def _open_index(self, group: str, tenants: set[str]) -> BlueGreenIndex:
        """The group's saved index if it holds exactly the store's vectors, else one rebuilt from the store."""
        keys, vectors = self.store.vectors(sorted(tenants))
        folder = self._index_folder(group)
        if (folder / "CURRENT").is_file():
            try:
                saved = BlueGreenIndex.load_current(folder, self.embedder.dim)
            except (ValidationError, OSError, RuntimeError):
                saved = None
            if saved is not None and len(saved) == len(keys) and all(int(k) in saved.active for k in keys[:100]):
                return saved
        index = VectorIndex(self.embedder.dim)
        if len(keys):
            index.add(keys, vectors)
        return BlueGreenIndex(index)

    def save(self) -> None:
        """Persist the changed vector indexes next to the store, so the next open does not rebuild them."""
        for name in sorted(self._dirty):
            self._groups[name].index.save_active(self._index_folder(name))
        self._dirty.clear()

    def _group_for(self, tenant: str, dedicated: bool) -> _Group:
        name = self._group_name(tenant, dedicated)
        group = self._groups.get(name)
        if group is None:
            group = self._groups[name] = _Group(BlueGreenIndex(VectorIndex(self.embedder.dim)))
        if tenant not in group.tenants:
            group.tenants.add(tenant)
            keys, vectors = self.store.vectors([tenant])
            if len(keys):
                group.index.active.add(keys, vectors)
        return group

    def add_tenant(self, tenant: str, *, dedicated: bool = False) -> None:
        """Register a tenant; `dedicated` gives it an index of its own (for large tenants)."""
        Document(tenant=tenant, doc_id="check", text="x")  # the same name rules as documents
        known = self.store.tenants()
        if tenant in known and known[tenant] != dedicated:
            raise ValidationError(f"tenant {tenant!r} is already {'dedicated' if known[tenant] else 'shared'}",
                                  hint="move a tenant between index kinds with a reindex, not add_tenant")
        self.store.add_tenant(tenant, dedicated=dedicated)
        self._group_for(tenant, dedicated)

    def _tenant_group(self, tenant: str) -> _Group:
        tenant = self.store.require_tenant(tenant)
        return self._group_for(tenant, self.store.tenants()[tenant])

    # ingestion
    def ingest(self, doc: Document) -> IngestResult:
        """Chunk, embed and store one document version; nothing changes if any step fails."""
        if not isinstance(doc, Document):
            raise ValidationError(f"expected a Document, got {type(doc).__name__}")
        if doc.tenant not in self.store.tenants():
            self.add_tenant(doc.tenant)
        group = self._tenant_group(doc.tenant)
        chunks = chunk_document(doc)
        if not chunks:
            raise ValidationError(f"document {doc.doc_id!r} has no text to index")
        vectors = self.embedder.embed([c.text for c in chunks])  # before any write: a failure changes nothing
        keys = self.store.next_keys(len(chunks))
        superseded = self.store.add_document(doc, chunks, vectors, keys)
        group.index.active.add(np.asarray(keys, dtype=np.int64), vectors)
        self._dirty.add(self._group_name(doc.tenant, self.store.tenants()[doc.tenant]))
        return IngestResult(doc.tenant, doc.doc_id, doc.version, len(chunks), len(superseded))

    def ingest_folder(self, folder: Path, tenant: str) -> list[IngestResult]:
        return [self.ingest(doc) for doc in load_folder(folder, tenant)]

    def reindex(self, tenant: str) -> Future[VectorIndex]:
        """Rebuild the tenant's index from the store in the background; queries use the old one meanwhile."""
        group = self._tenant_group(tenant)
        members = sorted(group.tenants)

        def build() -> VectorIndex:
            index = VectorIndex(self.embedder.dim)
            keys, vectors = self.store.vectors(members)
            if len(keys):
                index.add(keys, vectors)
            return index

        self._dirty.add(self._group_name(tenant, self.store.tenants()[tenant]))
        return group.index.rebuild(build)

    # search
    def search(self, query: str, tenant: str, *, k: int = 5, include_superseded: bool = False,
               visibility: frozenset[str] = frozenset({"public"})) -> SearchResult:
        """The best `k` chunks of `tenant` for `query`, and whether they ground an answer.

        `visibility` says which documents the caller may see (customers: public ones only).
        """
        if not isinstance(query, str) or not query.strip():
            raise ValidationError("the query is empty", hint="ask a question in words")
        if len(query) > MAX_QUERY_CHARS:
            raise ValidationError(f"the query has {len(query)} characters; the limit is {MAX_QUERY_CHARS}")
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 50:
            raise ValidationError(f"k must be an integer from 1 to 50, got {k!r}")
        group = self._tenant_group(tenant)
        vector = self.embedder.embed([query.strip()])[0]
        # A shared index holds other tenants too: ask for more so the filter leaves enough.
        wanted = self.candidates * (1 if len(group.tenants) == 1 else 4)
        semantic = group.index.search(vector, wanted)
        lexical = self.store.lexical(query, tenant, self.candidates, latest_only=not include_superseded)
        fused = reciprocal_rank_fusion([key for key, _ in semantic], [key for key, _ in lexical])
        chunks = {key: chunk for key, chunk in self._fetch(fused, tenant).items()
                  if (include_superseded or chunk.latest) and chunk.visibility in visibility}
        similarity = dict(semantic)
        missing = [key for key in chunks if key not in similarity]
        if missing:  # found by BM25 only: score them against the query too
            keys, vectors = self.store.vectors_of(missing)
            similarity.update(zip(keys.tolist(), (vectors @ vector).tolist(), strict=True))
        bm25 = dict(lexical)
        candidates = [Candidate(chunk, similarity[key], bm25.get(key, 0.0), fused[key]) for key, chunk in chunks.items()]
        candidates.sort(key=lambda c: -c.fused)
        ranked = self.reranker.rerank(query, candidates[: self.candidates])
        grounding = self.grounding.check(ranked, self.store.term_weights(query_terms(query)))
        return SearchResult(query, tenant, [self._hit(s) for s in _spread(ranked)[:k]], grounding)

    def _fetch(self, keys: Sequence[int] | dict[int, float], tenant: str) -> dict[int, StoredChunk]:
        """The candidates' chunks, filtered on the tenant (the second of the two isolation layers)."""
        return self.store.chunks(keys, tenant)

    @staticmethod
    def _hit(scored: Scored) -> Hit:
        c = scored.candidate.chunk
        return Hit(c.doc_id, c.version, c.chunk_no, c.heading, c.text, scored.score, scored.candidate.similarity,
                   c.latest)

    def close(self) -> None:
        """Save the indexes and release the files."""
        self.save()
        self.store.close()
        close = getattr(self.embedder, "close", None)
        if close is not None:
            close()
