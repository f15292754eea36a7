"""Literal strings a rule cannot match without, read off its regular expression.

A rule such as `\\b(?:ignore|disregard) ... (?:instructions?|rules)\\b` can only match a text that
contains one of "ignore"/"disregard" *and* one of "instruction"/"rules". `required_literals`
derives such groups from the parsed pattern, and `RuleGate` checks them with plain substring
tests (C speed, no backtracking) before the rule's expression runs. Most texts, and most
adversarial ones (digit runs, brackets, a single long word), skip nearly every rule this way.

The derivation is conservative: a group is only kept when every way of matching passes through
one of its strings; anything it does not understand (look-arounds, optional parts, classes)
contributes nothing, so a gate can let a text through needlessly but never turns a match away.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from re import _constants as _sre  # the parser behind `re` (Python >= 3.11)
from re import _parser as _sre_parse
from typing import Any

Group = frozenset[str]  # one of these strings occurs in every match
_MIN_LEN = 2            # shorter literals ("a", ":") are everywhere and screen nothing out
_MAX_GROUPS = 2         # the most selective groups are enough to skip a rule


def _best(groups: list[Group]) -> Group | None:
    """The most selective group: longest shortest member, then fewest members."""
    usable = [g for g in groups if g and min(map(len, g)) >= _MIN_LEN]
    if not usable:
        return None
    return max(usable, key=lambda g: (min(map(len, g)), -len(g)))


def _sequence(items: Any) -> list[Group]:
    """Groups required by a sequence of parsed items (all of them must match, in order)."""
    groups: list[Group] = []
    run: list[str] = []

    def flush() -> None:
        if len(run) >= _MIN_LEN:
            groups.append(frozenset({"".join(run)}))
        run.clear()

    for op, av in items:
        if op is _sre.LITERAL:
            run.append(chr(av))
            continue
        flush()
        if op is _sre.SUBPATTERN:
            groups.extend(_sequence(av[-1]))
        elif op is _sre.BRANCH:
            per_branch = [_best(_sequence(branch)) for branch in av[1]]
            if all(g is not None for g in per_branch):
                groups.append(frozenset().union(*per_branch))  # type: ignore[arg-type]
        elif op in (_sre.MAX_REPEAT, _sre.MIN_REPEAT, getattr(_sre, "POSSESSIVE_REPEAT", None)):
            low, _high, body = av
            if low >= 1:
                groups.extend(_sequence(body))
        elif op is getattr(_sre, "ATOMIC_GROUP", None):
            groups.extend(_sequence(av))
        # IN, ANY, AT, ASSERT, ASSERT_NOT, CATEGORY...: nothing required from them
    flush()
    return groups


def required_literals(pattern: str, flags: int = 0) -> tuple[Group, ...]:
    """Up to two groups of strings, each of which has a member in every match of `pattern`.

    Empty when nothing can be said (then the rule always runs). Case-insensitive patterns get no
    groups: the rules match lower-cased, normalised text and are written in lower case."""
    try:
        parsed = _sre_parse.parse(pattern, flags)
        if parsed.state.flags & _sre.SRE_FLAG_IGNORECASE:
            return ()
        groups = [g for g in _sequence(parsed) if min(map(len, g), default=0) >= _MIN_LEN]
    except (re.error, AttributeError, TypeError, ValueError, IndexError):  # pragma: no cover - another parser
        return ()  # no gate: the rule always runs
    ranked = sorted(set(groups), key=lambda g: (-min(map(len, g)), len(g), sorted(g)))
    return tuple(ranked[:_MAX_GROUPS])


class Presence:
    """Which strings occur in one text, each looked for once however many rules ask. A string with a
    character the text lacks is absent without a scan: a text of digits or brackets rules out every
    word at the cost of one pass to collect its characters."""

    __slots__ = ("_chars", "_known", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self._known: dict[str, bool] = {}
        self._chars: frozenset[str] | None = None

    def has(self, s: str) -> bool:
        found = self._known.get(s)
        if found is None:
            if self._chars is None:
                self._chars = frozenset(self.text)
            found = self._known[s] = self._chars.issuperset(s) and s in self.text
        return found


@dataclass(frozen=True, slots=True)
class RuleGate:
    """Whether a text can possibly match: every group has a member in it."""

    groups: tuple[Group, ...]

    def admits(self, presence: Presence) -> bool:
        return all(any(presence.has(s) for s in group) for group in self.groups)


OPEN_GATE = RuleGate(())  # admits every text


def literal_trie(words: list[str] | tuple[str, ...]) -> str:
    """A regular expression matching any of `words`, factored into a trie ("ab|ac" → "a(?:b|c)") so
    that the engine tries one branch per character instead of one per word."""
    tree: dict[str, Any] = {}
    for word in words:
        node = tree
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}

    def build(node: dict[str, Any]) -> str:
        branches = [re.escape(ch) + build(child) for ch, child in sorted(node.items()) if ch]
        if "" in node:  # a word ends here: the rest is optional
            return f"(?:{'|'.join(branches)})?" if branches else ""
        return branches[0] if len(branches) == 1 else f"(?:{'|'.join(branches)})"

    return build(tree)
