"""From candidates to an answer: reciprocal-rank fusion, a feature reranker, and the grounding check.

The reranker's features are the ones a learned ranker will use later: embedding similarity,
BM25, recency, whether the chunk is from the latest version of its document, and the
document's authority. A superseded version gets no latest-version credit, so with equal text it
always ranks below the current one. The grounding check turns the top results into a confidence;
below the threshold the agent is told to say it does not know.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

import numpy as np

from .store import StoredChunk


def reciprocal_rank_fusion(*rankings: Sequence[int], k: int = 60) -> dict[int, float]:
    """RRF: each list adds 1 / (k + rank) for the keys it ranks (rank from 1)."""
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, key in enumerate(ranking, 1):
            fused[key] = fused.get(key, 0.0) + 1.0 / (k + rank)
    return fused


@dataclass(frozen=True, slots=True)
class Candidate:
    chunk: StoredChunk
    similarity: float  # cosine with the query, in [-1, 1]
    bm25: float  # 0 when the lexical search did not find it
    fused: float


@dataclass(frozen=True, slots=True)
class Scored:
    candidate: Candidate
    score: float
    features: dict[str, float]


class Reranker(Protocol):
    def rerank(self, query: str, candidates: Sequence[Candidate]) -> list[Scored]: ...


@dataclass(frozen=True, slots=True)
class FeatureReranker:
    """A weighted sum of features in [0, 1]; the weights sum to 1 so the score stays in [0, 1]."""

    similarity: float = 0.6
    lexical: float = 0.15
    latest: float = 0.15
    recency: float = 0.05
    authority: float = 0.05
    half_life_days: float = 365.0

    def rerank(self, query: str, candidates: Sequence[Candidate]) -> list[Scored]:
        if not candidates:
            return []
        top_bm25 = max(c.bm25 for c in candidates) or 1.0
        now = datetime.now(UTC)
        scored = []
        for c in candidates:
            age_days = max((now - c.chunk.updated_at).total_seconds() / 86400, 0.0)
            features = {
                "similarity": min(max(c.similarity, 0.0), 1.0),
                "lexical": c.bm25 / top_bm25,
                "latest": 1.0 if c.chunk.latest else 0.0,
                "recency": math.exp(-math.log(2) * age_days / self.half_life_days),
                "authority": c.chunk.authority,
            }
            score = sum(getattr(self, name) * value for name, value in features.items())
            scored.append(Scored(c, score, features))
        return sorted(scored, key=lambda s: (-s.score, s.candidate.chunk.key))


class CrossEncoderReranker:
    """Scores (query, chunk) pairs with a sentence-transformers cross-encoder, when one is configured."""

    def __init__(self, model_path: str) -> None:
        from sentence_transformers import CrossEncoder

        self._model = CrossEncoder(model_path, device="cpu")

    def rerank(self, query: str, candidates: Sequence[Candidate]) -> list[Scored]:
        if not candidates:
            return []
        logits = self._model.predict([(query, c.chunk.text) for c in candidates])
        probabilities = 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))
        scored = [Scored(c, float(p), {"cross_encoder": float(p)}) for c, p in zip(candidates, probabilities,
                                                                                     strict=True)]
        return sorted(scored, key=lambda s: (-s.score, s.candidate.chunk.key))


@dataclass(frozen=True, slots=True)
class Grounding:
    grounded: bool
    confidence: float
    reason: str
    signals: dict[str, float] = field(default_factory=dict)


_TERM = re.compile(r"\w+", re.UNICODE)


def query_terms(text: str) -> list[str]:
    """The query's words, lower-cased and deduplicated, in order (single letters dropped)."""
    return list(dict.fromkeys(w for w in _TERM.findall(text.lower()) if len(w) > 1))


def _stem(word: str) -> str:
    """A plural-only stemmer: enough for "candles" to meet "candle", too little to merge meanings."""
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def term_coverage(weights: Mapping[str, float], text: str) -> float:
    """The weighted share of the query's terms that occur in `text`, in [0, 1]."""
    total = sum(weights.values())
    if total <= 0:
        return 0.0
    present = {_stem(w) for w in _TERM.findall(text.lower())}
    return sum(weight for term, weight in weights.items() if _stem(term) in present) / total


@dataclass(frozen=True, slots=True)
class GroundingChecker:
    """Confidence from four signals: relevance, lead, agreement and the coverage of the query's words.

    - relevance: the top hit's cosine similarity rescaled from [floor, ceiling] to [0, 1] (for
      all-MiniLM-L6-v2, unrelated text sits near 0.1–0.3 and a paraphrase above 0.6);
    - lead: the top hit's score minus the best score from another document (two documents that
      answer equally well mean the question is ambiguous), doubled and capped at 1;
    - agreement: the share of the top three results that come from the top hit's document;
    - coverage: the largest share of the query's words, weighted by inverse document frequency,
      that one of the top three hits contains. A small embedding model blurs rare names ("American Express", "candle")
      that a passage either mentions or does not; a question about something the knowledge base
      never mentions leaves its rarest words uncovered.

    Without term weights the coverage signal is left out and the other weights are rescaled.
    The weights and the threshold were calibrated on the retail knowledge base's labelled
    questions (`domains/retail/knowledge/questions.json`); recalibrate for another corpus or model.
    """

    threshold: float = 0.41
    floor: float = 0.2
    ceiling: float = 0.7
    relevance_weight: float = 0.4  # the weights are relative: the confidence is their weighted mean
    lead_weight: float = 0.05
    agreement_weight: float = 0.2
    coverage_weight: float = 0.25

    def check(self, ranked: Sequence[Scored], term_weights: Mapping[str, float] | None = None) -> Grounding:
        if not ranked:
            return Grounding(False, 0.0, "nothing in the knowledge base matches the question")
        top = ranked[0]
        relevance = min(max((top.candidate.similarity - self.floor) / (self.ceiling - self.floor), 0.0), 1.0)
        rival = next((s.score for s in ranked[1:] if s.candidate.chunk.doc_id != top.candidate.chunk.doc_id), 0.0)
        lead = min(max(top.score - rival, 0.0) * 2, 1.0)
        same_doc = [s.candidate.chunk.doc_id == top.candidate.chunk.doc_id for s in ranked[:3]]
        agreement = sum(same_doc) / len(same_doc)
        signals = {"relevance": relevance, "lead": lead, "agreement": agreement}
        weights = {"relevance": self.relevance_weight, "lead": self.lead_weight, "agreement": self.agreement_weight}
        if term_weights:
            signals["coverage"] = max(term_coverage(term_weights, s.candidate.chunk.text) for s in ranked[:3])
            weights["coverage"] = self.coverage_weight
        confidence = sum(weights[name] * signals[name] for name in weights) / sum(weights.values())
        signals["top_similarity"] = top.candidate.similarity
        if confidence < self.threshold:
            return Grounding(False, confidence, f"low retrieval confidence ({confidence:.2f} < {self.threshold})",
                             signals)
        return Grounding(True, confidence, "grounded", signals)
