"""A rule's regular expression, compiled so that a long text costs little to search.

Python's engine tries a pattern at every position of the text unless the pattern starts with
something it can scan for (a literal, or a set of characters): `\\bignore ...` is tried at each of
32,000 positions, and a rule made of five `\\b...` alternatives tries five branches at each. So a
rule is compiled as its top-level alternatives (`split_alternatives`), each one

* behind its own gate of required literals (`needles.RuleGate`): skipped, with a few substring
  tests, when the text lacks them;
* when it is `\\b` followed by word characters, also compiled without the `\\b` (`word_start`, for
  `pattern.match` at a word start) and as `\\W` + the rest: the engine then skips word characters
  at C speed and tries the rest only after a non-word character (a match at the very start of the
  text is tried once, separately).

`Matcher.search` over the alternatives gives exactly what the original pattern's `search` gives:
the leftmost match, and at that position the first alternative that matches there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from re import _constants as _sre
from re import _parser as _sre_parse
from typing import Any

from .needles import OPEN_GATE, Presence, RuleGate, required_literals

_WORD = re.compile(r"\w")
_REPEATS = (_sre.MAX_REPEAT, _sre.MIN_REPEAT, getattr(_sre, "POSSESSIVE_REPEAT", _sre.MAX_REPEAT))
_ZERO_WIDTH = (_sre.AT, _sre.ASSERT, _sre.ASSERT_NOT)


def split_alternatives(pattern: str) -> list[str]:
    """The top-level alternatives of `pattern` ("a|(b|c)|d" → ["a", "(b|c)", "d"])."""
    parts: list[str] = []
    depth, start, i, in_class = 0, 0, 0, False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            i += 2
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
            i += 1
            if pattern.startswith("^", i):
                i += 1
            if pattern.startswith("]", i):  # "[]...]" and "[^]...]": the first "]" is literal
                i += 1
            continue
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif c == "|" and depth == 0:
            parts.append(pattern[start:i])
            start = i + 1
        i += 1
    parts.append(pattern[start:])
    return parts


def _first(items: Any) -> tuple[frozenset[str], bool] | None:
    """The characters a match of `items` can start with, and whether it can be empty; None: unknown."""
    chars: set[str] = set()
    for op, av in items:
        found = _first_item(op, av)
        if found is None:
            return None
        first, nullable = found
        chars |= first
        if not nullable:
            return frozenset(chars), False
    return frozenset(chars), True


def _first_item(op: Any, av: Any) -> tuple[frozenset[str], bool] | None:
    if op is _sre.LITERAL:
        return frozenset(chr(av)), False
    if op is _sre.IN:
        chars: set[str] = set()
        for kind, value in av:
            if kind is _sre.LITERAL:
                chars.add(chr(value))
            elif kind is _sre.RANGE and value[1] - value[0] < 256:
                chars.update(map(chr, range(value[0], value[1] + 1)))
            else:  # a negation or a category (\d, \s...): unknown here
                return None
        return frozenset(chars), False
    if op is _sre.SUBPATTERN:
        return _first(av[-1])
    if op is _sre.BRANCH:
        union: set[str] = set()
        nullable = False
        for branch in av[1]:
            found = _first(branch)
            if found is None:
                return None
            union |= found[0]
            nullable = nullable or found[1]
        return frozenset(union), nullable
    if op in _REPEATS:
        low, _high, body = av
        found = _first(body)
        return None if found is None else (found[0], found[1] or low == 0)
    if op in _ZERO_WIDTH:  # assertions add no characters
        return frozenset(), True
    return None


def _starts_with_word(pattern: str, flags: int) -> bool:
    """Whether every match of `pattern` starts with a word character (so `\\b` before it is `\\W` or the start)."""
    try:
        found = _first(_sre_parse.parse(pattern, flags))
    except (re.error, AttributeError, TypeError, ValueError, IndexError):  # pragma: no cover - another parser
        return False
    return found is not None and not found[1] and bool(found[0]) and all(_WORD.match(c) for c in found[0])


@dataclass(frozen=True, slots=True)
class Alternative:
    """One top-level alternative. `word_start`: the alternative without its leading `\\b`, when every
    match of it starts with a word character (searched as `\\W` + it, and once at position 0)."""

    pattern: re.Pattern[str]
    gate: RuleGate = OPEN_GATE
    word_start: re.Pattern[str] | None = None
    after_non_word: re.Pattern[str] | None = None  # `\W(?:word_start)`

    def search(self, text: str, pos: int = 0) -> tuple[int, int] | None:
        """The leftmost match starting at or after `pos`."""
        if self.after_non_word is None or self.word_start is None:
            m = self.pattern.search(text, pos)
            return None if m is None else m.span()
        m = self.word_start.match(text, pos) if pos == 0 else None
        if m is not None:
            return m.span()
        m = self.after_non_word.search(text, max(pos - 1, 0))
        return None if m is None else (m.start() + 1, m.end())


@dataclass(frozen=True, slots=True)
class Matcher:
    """A rule's pattern as alternatives; `search` equals `re.compile(pattern, flags).search`'s span.
    (`scanner.RuleScanner` searches the alternatives of all rules together, in one pass.)"""

    alternatives: tuple[Alternative, ...]

    def search(self, text: str, presence: Presence | None = None) -> tuple[int, int] | None:
        presence = presence if presence is not None else Presence(text)
        best: tuple[int, int] | None = None
        for alternative in self.alternatives:
            if not alternative.gate.admits(presence):
                continue
            span = alternative.search(text)
            if span is not None and (best is None or span[0] < best[0]):  # a tie keeps the earlier one
                best = span
        return best


def compile_rule(pattern: str, flags: int = 0) -> Matcher:
    """`pattern` compiled as gated alternatives (see the module docstring)."""
    alternatives = []
    for part in split_alternatives(pattern):
        gate = RuleGate(required_literals(part, flags))
        rest = part[2:]
        if part.startswith(r"\b") and _starts_with_word(rest, flags):
            alternatives.append(Alternative(re.compile(part, flags), gate, re.compile(rest, flags),
                                            re.compile(rf"\W(?:{rest})", flags)))
        else:
            alternatives.append(Alternative(re.compile(part, flags), gate))
    return Matcher(tuple(alternatives))
