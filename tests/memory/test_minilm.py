"""Recall with the real offline MiniLM embedder (no download: the weights ship in a package)."""

from __future__ import annotations

from pathlib import Path

import pytest

from concierge.core.errors import ConfigError
from concierge.memory import Memory
from concierge.memory.extract import parse_extraction
from concierge.retrieval.embeddings import minilm_model_path

from .conftest import answer

pytest.importorskip("sentence_transformers")


async def test_semantic_recall_and_forget_with_minilm(tmp_path: Path) -> None:
    try:
        minilm_model_path()
    except ConfigError as error:
        print(f"\nskipping MiniLM memory test: {error}")
        pytest.skip(str(error))
    memory = Memory(tmp_path / "m.db", tmp_path / "idx")  # the default embedder: all-MiniLM-L6-v2
    try:
        await memory.remember("shop", "alice", parse_extraction(answer(
            "s", preferences=[{"key": "contact_channel", "value": "email", "turn": 1},
                              {"key": "shirt_size", "value": "size M shirts", "turn": 1}],
            unresolved=[{"key": "refund_order_w123", "description": "refund for damaged order W123", "turn": 1}],
            facts=[{"key": "phone_number", "value": "555-0100", "turn": 1}]), "conv-1", 1))
        first = await memory.recall("shop", "alice", "what size do I wear", 1000)
        assert first[0].fact.key == "shirt_size"
        first = await memory.recall("shop", "alice", "where is my money back for the broken parcel?", 1000)
        assert first[0].fact.key == "refund_order_w123"
        gone = await memory.forget("shop", "alice", query="forget my phone number")
        assert [f.key for f in gone] == ["phone_number"]
    finally:
        await memory.close()
