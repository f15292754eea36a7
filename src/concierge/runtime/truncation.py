"""Tool results are cut to a token budget before they enter the conversation.

Large API payloads (full order records, search hits) would crowd out the conversation; the
fields a tool declares essential are always kept, others fill the rest of the budget in order.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ..llm.tokens import TokenCounter

# What json.dumps(value, ensure_ascii=False, default=str, separators=(",", ":")) uses, built once.
_ENCODER = json.JSONEncoder(ensure_ascii=False, default=str, separators=(",", ":"))


def render(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return _ENCODER.encode(value)
    except (TypeError, ValueError):
        return repr(value)


def truncate_result(value: Any, essential: Sequence[str], budget_tokens: int, counter: TokenCounter) -> str:
    text = render(value)
    if counter.count(text) <= budget_tokens:
        return text
    if isinstance(value, dict):
        return _truncate_mapping(value, essential, budget_tokens, counter)
    return cut_text(text, budget_tokens, counter)


def _truncate_mapping(value: dict[str, Any], essential: Sequence[str], budget: int, counter: TokenCounter) -> str:
    kept: dict[str, Any] = {k: value[k] for k in essential if k in value}
    omitted: list[str] = []
    for key, item in value.items():
        if key in kept:
            continue
        trial = {**kept, key: item, "_omitted": [*omitted, "…"]}
        if counter.count(render(trial)) <= budget:
            kept[key] = item
        else:
            omitted.append(key)
    if omitted:
        kept["_omitted"] = omitted
    return render(kept)


def cut_text(text: str, budget: int, counter: TokenCounter) -> str:
    marker = " …[truncated]"
    low, high = 0, len(text)
    while low < high:  # longest prefix that fits, by bisection on characters
        mid = (low + high + 1) // 2
        if counter.count(text[:mid] + marker) <= budget:
            low = mid
        else:
            high = mid - 1
    return text[:low] + marker
