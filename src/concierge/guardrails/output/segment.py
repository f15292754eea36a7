"""Cutting a reply into sentences, the same way whether it arrives whole or token by token.

A segment is `leading whitespace + sentence`: the cut falls right after a sentence's last
character, so the whitespace that follows belongs to the next segment. `next_cut` looks at one
buffer and says where its first segment ends, or None when it cannot tell yet. Its answer
depends only on the buffer's text (never on how that text was split into deltas) and it never
cuts before a boundary it has not fully seen, which is what makes the streaming guard emit
exactly what the whole-text check returns.

A boundary is:
- a run of `.`, `!`, `?` or `…`, with any closing quotes, brackets or markdown emphasis, that is
  followed by whitespace: "$40.50", "3.5", "example.com/a?b", "a.b@x.io" and "#W1.2" have no
  whitespace after their dots and do not end a sentence. Not a boundary: a known abbreviation
  ("e.g.", "Mr.", "approx."), a single letter ("J. Smith") or a numbered-list marker ("1. ")
  at the start of a line. Deciding needs the character after the run, so a sentence is held
  until one more character has arrived (or the reply ends);
- a newline (the newline starts the next segment).

A segment with no boundary in its first `max_chars` characters is cut anyway, at the last
whitespace within them (mid-word only when there is none), so a reply that never ends a
sentence is still checked and emitted in bounded pieces.
"""

from __future__ import annotations

import re

DEFAULT_MAX_CHARS = 400
MIN_MAX_CHARS = 40

_CANDIDATE = re.compile(r"[.!?\u2026]+[\"'\u2019\u201d)\]*_]*|\n")
_WORD_BEFORE = re.compile(r"[^\s(\[\"'\u2018\u201c]+$")
_LIST_MARKER = re.compile(r"^\s*\d{1,3}$")
ABBREVIATIONS: frozenset[str] = frozenset({
    "e.g", "i.e", "etc", "vs", "cf", "approx", "incl", "excl", "esp", "dept", "fig", "nos", "mr", "mrs",
    "ms", "dr", "prof", "st", "sr", "jr", "inc", "ltd", "corp", "jan", "feb", "apr", "jun", "jul", "aug",
    "sep", "sept", "oct", "nov", "dec", "a.m", "p.m", "u.s", "u.k", "qty", "ref", "tel", "ext", "vol",
})


def _is_boundary(buffer: str, start: int, body_start: int) -> bool:
    """Whether the terminator run beginning at `start` ends a sentence (looking only backwards)."""
    if buffer[start] != ".":
        return True  # ! ? … always end a sentence
    word = _WORD_BEFORE.search(buffer, body_start, start)
    if word is None:
        return True
    token = word.group(0).lower().rstrip(".")
    if token in ABBREVIATIONS or (len(token) == 1 and token.isalpha()):
        return False
    return not _LIST_MARKER.match(buffer[body_start:start])


def next_cut(buffer: str, final: bool, max_chars: int = DEFAULT_MAX_CHARS) -> int | None:
    """Where the first segment of `buffer` ends (0 < cut < len), or None: no cut yet (or, when
    `final`, none at all: the whole buffer is the last segment)."""
    size = len(buffer)
    body_start = size - len(buffer.lstrip())
    for match in _CANDIDATE.finditer(buffer, body_start):
        if match.group(0) == "\n":
            cut = match.start()
        elif match.end() >= size:
            break  # the run may go on, or the reply may end here: wait for the next character
        elif buffer[match.end()].isspace() and _is_boundary(buffer, match.start(), body_start):
            cut = match.end()
        else:
            continue
        if cut > max_chars:
            break
        return cut
    if size <= max_chars:
        return None
    # No boundary in the first max_chars characters: cut at the last whitespace, else mid-word.
    space = max(buffer.rfind(c, 1, max_chars + 1) for c in " \t\r\n")
    return space if space > 0 else max_chars


def segments(text: str, max_chars: int = DEFAULT_MAX_CHARS) -> list[str]:
    """`text` cut into segments; `"".join(segments(text)) == text`."""
    out: list[str] = []
    while (cut := next_cut(text, True, max_chars)) is not None:
        out.append(text[:cut])
        text = text[cut:]
    if text:
        out.append(text)
    return out
