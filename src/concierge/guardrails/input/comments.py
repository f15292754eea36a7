"""HTML comments found in one linear pass.

A regular expression such as `<!--(.*?)-->` rescans the rest of the text from every `<!--` that
has no closing `-->`, so a text made of thousands of `<!--` costs time quadratic in its length.
These helpers find the same comments with `str.find` and bounded windows instead: each character
is looked at a constant number of times.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Iterator

OPEN = "<!--"
CLOSE = "-->"


def iter_comments(text: str) -> Iterator[tuple[int, int]]:
    """`(start, end)` of every comment, exactly the matches of `re.finditer(r"<!--(.*?)-->", text, re.DOTALL)`:
    the body is `text[start + 4:end - 3]`. Stops at the first `<!--` that is never closed, since no
    later one can be closed either."""
    pos = 0
    while True:
        start = text.find(OPEN, pos)
        if start < 0:
            return
        close = text.find(CLOSE, start + len(OPEN))
        if close < 0:
            return
        end = close + len(CLOSE)
        yield start, end
        pos = end


def find_keyword_comment(text: str, keyword: re.Pattern[str], gap: int) -> tuple[int, int] | None:
    """The first span matched by `<!--(?:(?!-->).){0,gap}?KEYWORD(?:(?!-->).){0,gap}?-->` (no DOTALL),
    found in linear time.

    A comment opened at `s` can only close at the first `-->` after `s + 4`; so the openings are
    grouped by the close they share, and for each close only the last `2 * gap + 40` characters
    before it (the longest body that can match, keyword included) are scanned for `keyword`. The
    windows of different closes do not overlap.
    """
    if OPEN not in text or CLOSE not in text:
        return None
    pos = 0
    while True:
        first = text.find(OPEN, pos)
        if first < 0:
            return None
        close = text.find(CLOSE, first + len(OPEN))
        if close < 0:
            return None
        # Bodies must hold no line break ("." does not match one) and be at most 2 * gap + 40 long.
        line_break = text.rfind("\n", first + len(OPEN), close)
        lowest_body = max(first + len(OPEN), close - 2 * gap - 40, line_break + 1)
        found = _first_opening(text, keyword, gap, lowest_body, close)
        if found is not None:
            return found, close + len(CLOSE)
        pos = close - len(OPEN) + 1  # an opening that overlaps this close ("<!-->") belongs to the next one


def _first_opening(text: str, keyword: re.Pattern[str], gap: int, lowest_body: int, close: int) -> int | None:
    """The leftmost opening whose body `[opening + 4, close)` starts at or after `lowest_body` and has a
    keyword at most `gap` characters after its start and at most `gap` before the close."""
    starts = [m.start() for m in keyword.finditer(text, lowest_body, close) if close - m.end() <= gap]
    if not starts:
        return None
    opening = text.find(OPEN, lowest_body - len(OPEN), close)
    while 0 <= opening:
        body = opening + len(OPEN)
        i = bisect_left(starts, body)
        if i < len(starts) and starts[i] - body <= gap:
            return opening
        opening = text.find(OPEN, opening + 1, close)
    return None
