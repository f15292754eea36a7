"""Decay-weighted ranking: the scores are exactly α·sim + (1−α)·0.5**(age/half-life) (+ open-issue boost)."""

from __future__ import annotations

import pytest

from concierge.memory import Memory, MemoryPolicy, recency, score
from concierge.memory.extract import parse_extraction

from .conftest import DAY, KeywordEmbedder, answer


def _fact(key: str, value: str) -> str:
    return answer("", facts=[{"key": key, "value": value, "turn": 1}])


async def _store_table(memory: Memory, clock) -> None:
    """Two old facts (day 0) and two recent ones (day 28), one relevant to refunds and one not in each pair."""
    await memory.remember("shop", "alice", parse_extraction(_fact("old_refund", "refund order"), "conv-old-1", 1))
    await memory.remember("shop", "alice", parse_extraction(_fact("old_newsletter", "newsletter"), "conv-old-2", 1))
    clock.advance(28 * DAY)
    await memory.remember("shop", "alice", parse_extraction(_fact("new_refund", "refund delivery late"),
                                                            "conv-new-1", 1))
    await memory.remember("shop", "alice", parse_extraction(_fact("new_gift", "gift wrap"), "conv-new-2", 1))
    clock.advance(2 * DAY)  # now = day 30


async def test_ranking_table_follows_the_formula(memory: Memory, clock, embedder: KeywordEmbedder) -> None:
    await _store_table(memory, clock)
    query = "refund"
    recalled = await memory.recall("shop", "alice", query, 10_000)
    table = {r.fact.key: r for r in recalled}
    ages = {"old_refund": 30, "old_newsletter": 30, "new_refund": 2, "new_gift": 2}
    texts = {"old_refund": "fact old refund: refund order", "old_newsletter": "fact old newsletter: newsletter",
             "new_refund": "fact new refund: refund delivery late", "new_gift": "fact new gift: gift wrap"}
    # Hand-computed similarities of the keyword embedder: refund ×2 + order → 2/√5, refund ×2 + delivery + late → 2/√6.
    expected_sim = {"old_refund": 2 / 5 ** 0.5, "old_newsletter": 0.0, "new_refund": 2 / 6 ** 0.5, "new_gift": 0.0}
    for key, row in table.items():
        assert row.fact.text == texts[key]
        assert row.similarity == pytest.approx(embedder.similarity(query, texts[key]), abs=1e-6)
        assert row.similarity == pytest.approx(expected_sim[key], abs=1e-6)
        assert row.recency == pytest.approx(0.5 ** (ages[key] / 7))
        assert row.score == pytest.approx(0.7 * expected_sim[key] + 0.3 * 0.5 ** (ages[key] / 7), abs=1e-6)
        assert not row.linked_to_open_issue
    print("\n" + "\n".join(f"{r.fact.key:15} sim={r.similarity:.4f} recency={r.recency:.4f} score={r.score:.4f}"
                           for r in recalled))
    # old_refund: 0.7·0.8944 + 0.3·0.0513 = 0.6415; new_refund: 0.7·0.8165 + 0.3·0.8204 = 0.8177
    assert table["old_refund"].score == pytest.approx(0.64150, abs=1e-4)
    assert table["new_refund"].score == pytest.approx(0.81766, abs=1e-4)
    assert table["new_gift"].score == pytest.approx(0.24613, abs=1e-4)
    assert table["old_newsletter"].score == pytest.approx(0.01539, abs=1e-4)
    assert [r.fact.key for r in recalled] == ["new_refund", "old_refund", "new_gift", "old_newsletter"]


async def test_tenant_policy_changes_the_weights(memory: Memory, clock) -> None:
    await _store_table(memory, clock)
    memory.set_policy("shop", MemoryPolicy(alpha=0.0, half_life_days=30))  # recency only, slower decay
    recalled = await memory.recall("shop", "alice", "refund", 10_000)
    assert [r.fact.key for r in recalled][:2] == ["new_refund", "new_gift"]  # equal scores: lower id first
    assert recalled[0].score == pytest.approx(0.5 ** (2 / 30))
    assert recalled[-1].score == pytest.approx(0.5 ** (30 / 30))
    assert (await memory.recall("other", "alice", "refund", 100)) == []  # other tenants keep the default


async def test_open_issue_boost(memory: Memory, clock) -> None:
    issue = answer("", unresolved=[{"key": "newsletter_spam", "description": "newsletter keeps coming", "turn": 1}])
    await memory.remember("shop", "alice", parse_extraction(issue, "conv-1", 1))
    await memory.remember("shop", "alice", parse_extraction(_fact("gift_note", "gift wrap"), "conv-2", 1))
    clock.advance(7 * DAY)
    rows = {r.fact.key: r for r in await memory.recall("shop", "alice", "anything else", 10_000)}
    assert rows["newsletter_spam"].linked_to_open_issue
    assert rows["newsletter_spam"].score == pytest.approx(0.3 * 0.5 + 0.2)
    assert rows["gift_note"].score == pytest.approx(0.3 * 0.5)


def test_formula_helpers() -> None:
    from datetime import timedelta

    policy = MemoryPolicy()
    assert (policy.alpha, policy.half_life_days) == (0.7, 7.0)
    assert recency(timedelta(days=7), 7) == pytest.approx(0.5)
    assert recency(timedelta(days=14), 7) == pytest.approx(0.25)
    assert recency(timedelta(days=-1), 7) == 1.0  # a clock skewed into the future is not a bonus
    assert score(0.5, timedelta(0), policy) == pytest.approx(0.7 * 0.5 + 0.3)
    assert score(-0.4, timedelta(0), policy) == pytest.approx(0.3)  # negative cosine counts as 0
    assert score(0.5, timedelta(0), policy, True) == pytest.approx(0.65 + 0.2)
