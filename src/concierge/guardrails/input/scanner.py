"""All rules over one text in a single pass over its words.

Searching each rule on its own costs one pass of the regular-expression engine per alternative
(about 60 of them), each trying every word of the text. Most alternatives start at a word (`\\b`
then a word character) with one of a few known prefixes: "ignore", "disregard", "you are", ...
`RuleScanner` finds the words that start one of those prefixes with one expression (a trie of the
first three characters of every prefix), and at each such word tries only the alternatives that
can start there, with `pattern.match` at that position. An alternative's first success is its
leftmost match, so the scan stops trying it; a rule's hit is its leftmost alternative (the first
in order on a tie), which is exactly what `re.search` of the whole rule returns.

Alternatives that do not start at a word, or whose prefixes cannot be read off the pattern, are
searched on their own (`Alternative.search`), behind their gates as before.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .matching import _REPEATS, _ZERO_WIDTH, Alternative, Matcher, _sre, _sre_parse
from .needles import Presence, literal_trie

KEY_CHARS = 3  # prefixes are compared on their first three characters
_MAX_KEYS = 400  # a prefix set larger than this screens nothing out: search that alternative on its own
# An alternative tried in vain at least _MIN_MISSES times, once every _DENSE characters or more often,
# is searched on its own for the rest of the text: one pass of the engine (about 30 ns a character)
# costs less than a call from Python (under a microsecond) every _DENSE characters.
_MIN_MISSES = 32
_DENSE = 24
_FEW = 8  # up to this many alternatives to try, each is searched on its own (the scan's fixed cost is ~3 ms)

Prefix = tuple[str, bool]  # (characters, whether more characters of the same match may follow)


def _item_prefixes(op: Any, av: Any) -> set[Prefix] | None:
    if op is _sre.LITERAL:
        return {(chr(av), True)}
    if op is _sre.IN:
        chars: set[str] = set()
        for kind, value in av:
            if kind is _sre.LITERAL:
                chars.add(chr(value))
            elif kind is _sre.RANGE and value[1] - value[0] < 32:
                chars.update(map(chr, range(value[0], value[1] + 1)))
            else:
                return None
        return {(c, True) for c in chars}
    if op is _sre.SUBPATTERN:
        return _prefixes(av[-1])
    if op is _sre.BRANCH:
        union: set[Prefix] = set()
        for branch in av[1]:
            found = _prefixes(branch)
            if found is None:
                return None
            union |= found
        return union
    if op in _REPEATS:
        low, _high, body = av
        found = _prefixes(body)
        if found is None:
            return None
        closed = {(s, False) for s, _ in found}  # one repetition read: stop there
        return closed | {("", True)} if low == 0 else closed
    if op in _ZERO_WIDTH:
        return {("", True)}
    return None


def _prefixes(items: Any) -> set[Prefix] | None:
    """Strings of at most KEY_CHARS characters, one of which starts every match of `items`."""
    state: set[Prefix] = {("", True)}
    for op, av in items:
        if not any(open_ and len(s) < KEY_CHARS for s, open_ in state):
            break
        step = _item_prefixes(op, av)
        if step is None:  # unknown from here: what is known so far still starts every match
            state = {(s, False) for s, _ in state}
            break
        grown: set[Prefix] = set()
        for s, open_ in state:
            if not open_ or len(s) >= KEY_CHARS:
                grown.add((s[:KEY_CHARS], False))
                continue
            for t, more in step:
                joined = s + t
                grown.add((joined[:KEY_CHARS], more and len(joined) < KEY_CHARS))
        state = grown
        if len(state) > _MAX_KEYS:
            return None
    return state


def word_keys(pattern: re.Pattern[str]) -> frozenset[str]:
    """The first (up to three) characters every match of `pattern` starts with; empty when unknown."""
    try:
        found = _prefixes(_sre_parse.parse(pattern.pattern, pattern.flags))
    except (re.error, AttributeError, TypeError, ValueError, IndexError):  # pragma: no cover - another parser
        return frozenset()
    if found is None or any(not s for s, _ in found):
        return frozenset()
    return frozenset(s for s, _ in found)


@dataclass(frozen=True, slots=True)
class _Entry:
    rule: int
    index: int  # of the alternative within its rule
    alternative: Alternative


class RuleScanner:
    """The leftmost match of every rule of `matchers` in a text, in one pass over its words."""

    def __init__(self, matchers: Sequence[Matcher]) -> None:
        self.entries: list[_Entry] = []
        self.alone: list[int] = []  # entries searched on their own
        self.table: dict[str, list[int]] = {}
        keys_seen: set[str] = set()
        for r, matcher in enumerate(matchers):
            for i, alternative in enumerate(matcher.alternatives):
                entry_id = len(self.entries)
                self.entries.append(_Entry(r, i, alternative))
                keys = word_keys(alternative.word_start) if alternative.word_start is not None else frozenset()
                if not keys:
                    self.alone.append(entry_id)
                    continue
                for key in keys:
                    self.table.setdefault(key, []).append(entry_id)
                keys_seen |= keys
        self.lengths = sorted({len(k) for k in keys_seen}, reverse=True)
        self._alone = frozenset(self.alone)
        trie = literal_trie(sorted(keys_seen)) if keys_seen else "(?!)"
        self._at_start = re.compile(trie)
        self._after_non_word = re.compile(rf"\W(?={trie})")

    def scan(self, text: str, wanted: Callable[[int], bool], presence: Presence) -> dict[int, tuple[int, int]]:
        """`{rule: span}` of the leftmost match of every rule for which `wanted(rule)` holds."""
        admitted = [wanted(e.rule) and e.alternative.gate.admits(presence) for e in self.entries]
        found: dict[int, tuple[int, int]] = {}  # entry -> span
        for entry_id in self.alone:
            if admitted[entry_id]:
                span = self.entries[entry_id].alternative.search(text)
                if span is not None:
                    found[entry_id] = span
        pending = [e for e, ok in enumerate(admitted) if ok and e not in self._alone]
        if len(pending) <= _FEW:  # a few passes of the engine cost less than one pass over the words
            for entry_id in pending:
                span = self.entries[entry_id].alternative.search(text)
                if span is not None:
                    found[entry_id] = span
        else:
            self._scan_words(text, admitted, found, len(pending))
        return self._per_rule(found)

    def _scan_words(self, text: str, admitted: list[bool], found: dict[int, tuple[int, int]], pending: int) -> None:
        table, entries, lengths = self.table, self.entries, self.lengths
        misses = [0] * len(entries)
        starts = [m.start() + 1 for m in self._after_non_word.finditer(text)]
        if self._at_start.match(text):  # keys start with a word character: a word starts at 0
            starts.insert(0, 0)
        for start in starts:
            for length in lengths:
                candidates = table.get(text[start:start + length])
                if candidates is None:
                    continue
                for entry_id in candidates:
                    if not admitted[entry_id]:
                        continue
                    alternative = entries[entry_id].alternative
                    m = alternative.word_start.match(text, start)  # type: ignore[union-attr]
                    if m is None:
                        misses[entry_id] += 1
                        if misses[entry_id] < _MIN_MISSES or misses[entry_id] * _DENSE < start:
                            continue
                        # Tried in vain every few words (a text that repeats them): one search of the rest
                        # costs less than trying it at each of them.
                        span = alternative.search(text, start + 1)
                    else:
                        span = m.span()
                    if span is not None:
                        found[entry_id] = span
                    admitted[entry_id] = False  # settled
                    pending -= 1
                    if not pending:
                        return

    def _per_rule(self, found: dict[int, tuple[int, int]]) -> dict[int, tuple[int, int]]:
        best: dict[int, tuple[int, int, tuple[int, int]]] = {}  # rule -> (start, alternative, span)
        for entry_id, span in found.items():
            entry = self.entries[entry_id]
            key = (span[0], entry.index, span)
            if entry.rule not in best or key < best[entry.rule]:
                best[entry.rule] = key
        return {rule: value[2] for rule, value in best.items()}
