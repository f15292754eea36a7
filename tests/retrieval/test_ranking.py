"""Fusion, the feature reranker and the grounding check, on hand-made candidates (no model needed)."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from concierge.retrieval.chunking import Chunk
from concierge.retrieval.documents import Document
from concierge.retrieval.ranking import (
    Candidate,
    FeatureReranker,
    GroundingChecker,
    Scored,
    query_terms,
    reciprocal_rank_fusion,
    term_coverage,
)
from concierge.retrieval.store import ChunkStore, StoredChunk

NOW = datetime.now(UTC)


def _chunk(key: int, doc_id: str, text: str = "text", *, latest: bool = True) -> StoredChunk:
    return StoredChunk(key, "shop", doc_id, 1, 0, "", text, latest, NOW, 1.0, "public")


def _scored(key: int, doc_id: str, similarity: float, score: float, text: str = "text") -> Scored:
    return Scored(Candidate(_chunk(key, doc_id, text), similarity, 0.0, 0.0), score, {})


def test_fusion_rewards_agreement_between_rankings() -> None:
    fused = reciprocal_rank_fusion([1, 2, 3], [3, 1])
    assert max(fused, key=fused.get) == 1
    assert fused[3] > fused[2]
    assert fused[2] == pytest.approx(1 / 62)


def test_a_superseded_chunk_ranks_below_the_current_one_with_equal_text() -> None:
    current = Candidate(_chunk(1, "returns", "30 days"), 0.8, 2.0, 0.0)
    old = Candidate(_chunk(2, "returns", "30 days", latest=False), 0.8, 2.0, 0.0)
    ranked = FeatureReranker().rerank("how long", [old, current])
    assert [s.candidate.chunk.key for s in ranked] == [1, 2]
    assert ranked[0].features["latest"] == 1.0 and ranked[1].features["latest"] == 0.0


def test_query_terms_are_lower_case_unique_and_skip_single_letters() -> None:
    assert query_terms("Can I return a Candle? candle!") == ["can", "return", "candle"]


def test_coverage_is_the_weighted_share_of_terms_found_and_matches_plurals() -> None:
    weights = {"candles": 3.0, "return": 1.0}
    assert term_coverage(weights, "A candle that was burned cannot be returned.") == pytest.approx(0.75)
    assert term_coverage(weights, "Return it within 30 days. A return is free.") == pytest.approx(0.25)
    assert term_coverage({}, "anything") == 0.0
    assert term_coverage({"glass": 1.0}, "a glas") == 0.0  # "ss" words are not plurals


def test_grounding_says_no_on_an_empty_result() -> None:
    grounding = GroundingChecker().check([])
    assert not grounding.grounded and grounding.confidence == 0.0


def test_grounding_confidence_rises_with_relevance_agreement_and_coverage() -> None:
    checker = GroundingChecker()
    weights = {"warranty": 2.0, "headphones": 2.0}
    strong = [_scored(1, "warranty", 0.72, 0.9, "warranty for headphones"), _scored(2, "warranty", 0.6, 0.8),
              _scored(3, "returns", 0.3, 0.3)]
    weak = [_scored(1, "warranty", 0.3, 0.5, "shipping"), _scored(2, "returns", 0.29, 0.49),
            _scored(3, "shipping", 0.28, 0.48)]
    high, low = checker.check(strong, weights), checker.check(weak, weights)
    assert high.grounded and not low.grounded
    assert high.signals["coverage"] == 1.0 and low.signals["coverage"] == 0.0
    assert high.signals["agreement"] == pytest.approx(2 / 3) and low.signals["agreement"] == pytest.approx(1 / 3)
    assert "low retrieval confidence" in low.reason


def test_coverage_can_lift_a_weakly_similar_hit_that_names_the_rare_word() -> None:
    checker = GroundingChecker()
    ranked = [_scored(1, "payments", 0.36, 0.5, "We accept Visa and American Express."),
              _scored(2, "payments", 0.34, 0.45)]
    weights = {"american": 3.0, "express": 3.0, "take": 0.5, "you": 0.1, "do": 0.1}
    without, with_words = checker.check(ranked), checker.check(ranked, weights)
    assert "coverage" not in without.signals
    assert with_words.confidence > without.confidence
    assert with_words.grounded


def test_store_term_weights_rank_rare_words_above_common_ones(tmp_path) -> None:
    store = ChunkStore(tmp_path / "kb.sqlite")
    texts = ["returns are free", "returns of candles", "returns take 30 days", "shipping is free"]
    doc = Document(tenant="shop", doc_id="policy", text="\n\n".join(texts))
    chunks = [Chunk("policy", i, "", t) for i, t in enumerate(texts)]
    store.add_document(doc, chunks, np.zeros((4, 3), dtype=np.float32), [1, 2, 3, 4])
    weights = store.term_weights(["returns", "candles", "unicorn", "returns"])
    assert list(weights) == ["returns", "candles", "unicorn"]
    assert weights["unicorn"] > weights["candles"] > weights["returns"]
    assert store.term_weights([]) == {}
    store.close()
