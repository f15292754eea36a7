"""An embedding test double: one axis per vocabulary word, so similarities are easy to reason about.

For tests of memory and retrieval that must not load a real embedding model.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

VOCABULARY = ("refund", "order", "damaged", "email", "phone", "number", "contact", "channel", "newsletter",
              "gift", "wrap", "size", "delivery", "late", "language")


class KeywordEmbedder:
    """One axis per vocabulary word plus one for 'anything else': cosine similarities are easy to reason about."""

    name = "keyword-test"
    dim = len(VOCABULARY) + 1

    def __init__(self) -> None:
        self.calls = 0

    def vector(self, text: str) -> np.ndarray:
        row = np.zeros(self.dim, dtype=np.float32)
        for word in re.findall(r"[a-z]+", text.lower()):
            if word in VOCABULARY:
                row[VOCABULARY.index(word)] += 1.0
        if not row.any():
            row[-1] = 1.0
        return row / np.linalg.norm(row)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        return np.stack([self.vector(t) for t in texts]).astype(np.float32) if texts else np.zeros((0, self.dim))

    def similarity(self, a: str, b: str) -> float:
        return float(self.vector(a) @ self.vector(b))
