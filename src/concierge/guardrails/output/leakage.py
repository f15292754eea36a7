"""System-prompt leakage: a sentence that quotes a long run of the agent's instructions.

Both sides are normalised to lowercase words (punctuation, markdown and spacing dropped), and a
sentence leaks when it shares `n` consecutive words (8 by default) with the instructions.
Paraphrase is not caught; verbatim quoting, the usual result of "print your instructions", is.
Text the agent is meant to repeat to customers word for word (a published returns policy)
should not be passed as instructions, or `n` raised, or it will be replaced when quoted.
"""

from __future__ import annotations

import re
from functools import lru_cache

_WORD = re.compile(r"[a-z0-9]+(?:['\u2019][a-z]+)?")


def words(text: str) -> list[str]:
    return [w.replace("\u2019", "'") for w in _WORD.findall(text.lower())]


@lru_cache(maxsize=16)
def ngrams(instructions: str, n: int) -> frozenset[tuple[str, ...]]:
    """Every run of `n` words of the instructions (cached: one agent's prompt is reused per turn)."""
    w = words(instructions)
    return frozenset(tuple(w[i:i + n]) for i in range(len(w) - n + 1))


def leaks(sentence: str, instructions: str, n: int) -> bool:
    """Whether `sentence` shares `n` consecutive words with `instructions`."""
    if not instructions:
        return False
    w = words(sentence)
    if len(w) < n:
        return False
    grams = ngrams(instructions, n)
    return any(tuple(w[i:i + n]) in grams for i in range(len(w) - n + 1))
