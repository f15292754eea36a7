"""Embedders: the real MiniLM model, an OpenAI-compatible endpoint (through a transport double), the cache."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
from collections.abc import Sequence
from pathlib import Path

import httpx
import numpy as np
import pytest

from concierge.core.errors import ConfigError, ModelError, ModelHTTPError, ValidationError
from concierge.retrieval.embeddings import (
    CachedEmbedder,
    Embedder,
    MiniLMEmbedder,
    OpenAIEmbedder,
    cache_key,
    minilm_model_path,
)


def _assert_unit_rows(vectors: np.ndarray, dim: int) -> None:
    assert vectors.dtype == np.float32
    assert vectors.ndim == 2 and vectors.shape[1] == dim
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


# --- MiniLM, the real model ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def minilm() -> MiniLMEmbedder:
    return MiniLMEmbedder(batch_size=8)


def test_minilm_embeds_unit_vectors_of_384(minilm: MiniLMEmbedder) -> None:
    vectors = minilm.embed(["Electronics can be returned within 30 days.", "Gift cards never expire."])
    assert (minilm.name, minilm.dim) == ("all-MiniLM-L6-v2", 384)
    assert vectors.shape == (2, 384)
    _assert_unit_rows(vectors, 384)
    assert isinstance(minilm, Embedder)


def test_minilm_paraphrase_is_closer_than_an_unrelated_sentence(minilm: MiniLMEmbedder) -> None:
    query, paraphrase, unrelated = minilm.embed([
        "How long do I have to send back headphones?",
        "Electronics such as headphones can be returned within 30 days of delivery.",
        "Our cast iron skillets are pre-seasoned with vegetable oil.",
    ])
    assert float(query @ paraphrase) > float(query @ unrelated) + 0.2


def test_minilm_is_deterministic_and_batch_independent(minilm: MiniLMEmbedder) -> None:
    texts = [f"sentence number {i} about refunds" for i in range(11)]
    together = minilm.embed(texts)
    alone = np.vstack([minilm.embed([text]) for text in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_minilm_empty_list_and_empty_string(minilm: MiniLMEmbedder) -> None:
    assert minilm.embed([]).shape == (0, 384)
    with pytest.raises(ValidationError, match="#1 .*empty"):
        minilm.embed(["fine", "  "])
    with pytest.raises(ValidationError, match="not a single string"):
        minilm.embed("a bare string")  # type: ignore[arg-type]


def test_minilm_model_is_found_in_the_installed_package() -> None:
    path = minilm_model_path()
    assert (path / "config.json").is_file()


def test_missing_model_package_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> object:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(ConfigError) as caught:
        MiniLMEmbedder().embed(["hello"])
    assert caught.value.hint == "install concierge[retrieval]"


def test_minilm_rejects_a_bad_batch_size() -> None:
    with pytest.raises(ConfigError, match="batch_size"):
        MiniLMEmbedder(batch_size=0)


# --- OpenAI-compatible endpoint, through an httpx transport double ---------------------------------


def _fake_vector(text: str, dim: int) -> list[float]:
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")
    return (np.random.default_rng(seed).normal(size=dim) * 3).tolist()  # deliberately not normalised


class EmbeddingsDouble:
    """Stands in for POST /embeddings: records requests, answers in shuffled index order."""

    def __init__(self, dim: int = 8) -> None:
        self.dim = dim
        self.requests: list[httpx.Request] = []
        self.status = 200
        self.body: object | None = None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.status != 200:
            return httpx.Response(self.status, text="model 'nope' does not exist " + "x" * 1000)
        if self.body is not None:
            return httpx.Response(200, json=self.body)
        payload = json.loads(request.content)
        data = [{"object": "embedding", "index": i, "embedding": _fake_vector(text, self.dim)}
                for i, text in enumerate(payload["input"])]
        return httpx.Response(200, json={"object": "list", "data": list(reversed(data)), "model": payload["model"]})

    def client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self))


def test_openai_embedder_posts_batches_and_orders_by_index() -> None:
    double = EmbeddingsDouble(dim=8)
    embedder = OpenAIEmbedder("text-embed", "http://emb.test/v1/", "sk-test", batch_size=2,
                              client=double.client())
    texts = ["alpha", "beta", "gamma", "delta", "epsilon"]
    vectors = embedder.embed(texts)
    assert vectors.shape == (5, 8)
    _assert_unit_rows(vectors, 8)
    for row, text in zip(vectors, texts, strict=True):
        expected = np.asarray(_fake_vector(text, 8))
        np.testing.assert_allclose(row, expected / np.linalg.norm(expected), atol=1e-6)
    assert [json.loads(r.content)["input"] for r in double.requests] == [["alpha", "beta"], ["gamma", "delta"],
                                                                          ["epsilon"]]
    first = double.requests[0]
    assert str(first.url) == "http://emb.test/v1/embeddings"
    assert first.headers["authorization"] == "Bearer sk-test"
    assert json.loads(first.content)["model"] == "text-embed"
    assert embedder.dim == 8 and embedder.name == "text-embed"


def test_openai_embedder_learns_dim_with_one_probe() -> None:
    double = EmbeddingsDouble(dim=5)
    embedder = OpenAIEmbedder("m", "http://emb.test", client=double.client())
    assert embedder.dim == 5
    assert len(double.requests) == 1 and "authorization" not in double.requests[0].headers
    assert embedder.embed([]).shape == (0, 5)
    assert len(double.requests) == 1


def test_openai_embedder_checks_a_configured_dim() -> None:
    embedder = OpenAIEmbedder("m", "http://emb.test", dim=16, client=EmbeddingsDouble(dim=8).client())
    with pytest.raises(ModelError, match="size 8, expected 16"):
        embedder.embed(["text"])


def test_openai_http_error_carries_status_and_body_excerpt() -> None:
    double = EmbeddingsDouble()
    double.status = 404
    embedder = OpenAIEmbedder("nope", "http://emb.test", client=double.client())
    with pytest.raises(ModelHTTPError) as caught:
        embedder.embed(["text"])
    error = caught.value
    assert error.status_code == 404
    assert "HTTP 404" in str(error) and "does not exist" in str(error)
    assert len(error.body) <= 300


@pytest.mark.parametrize("body, texts", [
    ({"unexpected": True}, ["text"]),
    ({"data": [{"index": 0}]}, ["text"]),
    ({"data": []}, ["text"]),
    ({"data": [{"index": 0, "embedding": [1.0, 0.0]}, {"index": 0, "embedding": [1.0, 0.0]}]}, ["one", "two"]),
    ({"data": [{"index": 0, "embedding": [0.0, 0.0]}]}, ["text"]),
])
def test_openai_malformed_answers_are_model_errors(body: object, texts: list[str]) -> None:
    double = EmbeddingsDouble()
    double.body = body
    embedder = OpenAIEmbedder("m", "http://emb.test", client=double.client())
    with pytest.raises(ModelError):
        embedder.embed(texts)


def test_openai_unreachable_server_is_a_model_error() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    embedder = OpenAIEmbedder("m", "http://emb.test", client=httpx.Client(transport=httpx.MockTransport(refuse)))
    with pytest.raises(ModelError, match="ConnectError"):
        embedder.embed(["text"])


def test_openai_embedder_validates_configuration_and_texts() -> None:
    with pytest.raises(ConfigError, match="base_url"):
        OpenAIEmbedder("m", "emb.test")
    with pytest.raises(ConfigError, match="model"):
        OpenAIEmbedder(" ", "http://emb.test")
    with pytest.raises(ConfigError, match="dim"):
        OpenAIEmbedder("m", "http://emb.test", dim=0)
    double = EmbeddingsDouble()
    embedder = OpenAIEmbedder("m", "http://emb.test", client=double.client())
    with pytest.raises(ValidationError, match="empty"):
        embedder.embed(["ok", ""])
    assert double.requests == []


# --- cache -----------------------------------------------------------------------------------------


class CountingEmbedder:
    """A deterministic fake model that remembers every batch it was asked for."""

    def __init__(self, name: str = "fake", dim: int = 4) -> None:
        self.name = name
        self.dim = dim
        self.calls: list[list[str]] = []

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        rows = np.asarray([_fake_vector(text, self.dim) for text in texts], dtype=np.float32)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_cache_sends_only_misses_in_one_batch_and_keeps_order() -> None:
    inner = CountingEmbedder()
    cached = CachedEmbedder(inner)
    first = cached.embed(["a", "b"])
    assert (cached.hits, cached.misses) == (0, 2)
    mixed = cached.embed(["c", "a", "d", "b", "c"])
    assert inner.calls == [["a", "b"], ["c", "d"]]
    assert (cached.hits, cached.misses) == (3, 4)
    np.testing.assert_array_equal(mixed[1], first[0])
    np.testing.assert_array_equal(mixed[3], first[1])
    np.testing.assert_array_equal(mixed[0], mixed[4])
    np.testing.assert_array_equal(mixed, inner.embed(["c", "a", "d", "b", "c"]))
    _assert_unit_rows(mixed, 4)
    assert (cached.name, cached.dim) == ("fake", 4)


def test_cache_all_hits_do_not_call_the_model() -> None:
    inner = CountingEmbedder()
    cached = CachedEmbedder(inner)
    cached.embed(["x"])
    cached.embed(["x", "x"])
    assert inner.calls == [["x"]]
    assert (cached.hits, cached.misses) == (2, 1)


def test_cache_persists_in_sqlite_across_instances(tmp_path: Path) -> None:
    path = tmp_path / "cache" / "embeddings.sqlite"
    first = CachedEmbedder(CountingEmbedder(), path)
    vectors = first.embed(["refunds take 5 to 7 business days", "gift cards never expire"])
    first.close()

    inner = CountingEmbedder()
    second = CachedEmbedder(inner, path)
    again = second.embed(["gift cards never expire", "refunds take 5 to 7 business days", "new text"])
    assert inner.calls == [["new text"]]
    assert (second.hits, second.misses) == (2, 1)
    np.testing.assert_array_equal(again[0], vectors[1])
    np.testing.assert_array_equal(again[1], vectors[0])
    second.close()

    import sqlite3

    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("SELECT COUNT(*) FROM embedding_cache").fetchone()[0] == 3


def test_cache_keeps_models_apart(tmp_path: Path) -> None:
    path = tmp_path / "embeddings.sqlite"
    CachedEmbedder(CountingEmbedder("model-a"), path).embed(["same text"])
    other = CountingEmbedder("model-b")
    cached = CachedEmbedder(other, path)
    cached.embed(["same text"])
    assert other.calls == [["same text"]] and cached.misses == 1
    assert cache_key("model-a", "same text") != cache_key("model-b", "same text")


def test_cache_ignores_stored_vectors_of_another_dimension(tmp_path: Path) -> None:
    path = tmp_path / "embeddings.sqlite"
    CachedEmbedder(CountingEmbedder(dim=4), path).embed(["text"])
    inner = CountingEmbedder(dim=6)
    vectors = CachedEmbedder(inner, path).embed(["text"])
    assert vectors.shape == (1, 6) and inner.calls == [["text"]]


def test_cache_empty_inputs() -> None:
    inner = CountingEmbedder()
    cached = CachedEmbedder(inner)
    assert cached.embed([]).shape == (0, 4)
    with pytest.raises(ValidationError, match="empty"):
        cached.embed(["", "x"])
    assert inner.calls == []


def test_cache_in_front_of_minilm(minilm: MiniLMEmbedder, tmp_path: Path) -> None:
    cached = CachedEmbedder(minilm, tmp_path / "c.sqlite")
    direct = minilm.embed(["Exchanges are allowed once per order."])
    np.testing.assert_allclose(cached.embed(["Exchanges are allowed once per order."]), direct, atol=1e-6)
    np.testing.assert_array_equal(cached.embed(["Exchanges are allowed once per order."]),
                                  cached.embed(["Exchanges are allowed once per order."]))
    assert cached.misses == 1 and cached.hits == 2


def test_unwritable_cache_path_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ConfigError, match="embedding cache"):
        CachedEmbedder(CountingEmbedder(), blocker / "cache.sqlite")
