"""Mark tool results and retrieved passages as data, and take the instructions out of them.

`mark_untrusted(text, source)` returns

    <untrusted source="tool:get_order_details">…</untrusted>

where `…` is the text with

* every sentence that looks like an instruction to the assistant (a rule hit, or with a guard,
  a classifier attack probability at or above its flag threshold) replaced by
  `[removed: instruction-like text]` — inside a JSON result only the offending string values
  are rewritten, so the rest of the object stays machine- and model-readable;
* every HTML comment that carries instruction-like text removed the same way;
* role markers ("system:", "assistant:" at the start of a line or a value), chat-template tokens
  (`<|im_start|>`, `[INST]`, `<<SYS>>`) and any embedded `<untrusted>`/`</untrusted>` tag defused
  so the data cannot close the wrapper or pose as another turn.

Ordinary results are cheap: a byte-level keyword screen (case- and leetspeak-folded) decides in
a few microseconds that a benign JSON result needs no rewriting, and only then is it just
wrapped. Marking is idempotent: marking a marked text with the same source returns it unchanged.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from ...core.errors import ValidationError
from .comments import iter_comments
from .rules import match_rules, normalise

if TYPE_CHECKING:
    from . import InputGuard

REMOVED = "[removed: instruction-like text]"
_SOURCE_RE = re.compile(r"^[A-Za-z0-9_.:@/-]{1,128}$")
_WRAPPED = re.compile(r'^<untrusted source="([A-Za-z0-9_.:@/-]{1,128})">(.*)</untrusted>$', re.DOTALL)

# Byte table: ASCII upper → lower, leetspeak digits/symbols → letters, for the cheap screen.
_FOLD = bytearray(range(256))
for _c in range(65, 91):
    _FOLD[_c] = _c + 32
for _a, _b in zip(b"0134579@$!|", b"oieastgasii", strict=True):
    _FOLD[_a] = _b
_FOLD_TABLE = bytes(_FOLD)
_SCREEN = tuple(w.encode() for w in (
    "ignore", "disregard", "forget", "override", "bypass", "instruct", "prompt", "system", "assistant", "develop",
    "admin", "operator", "superuser", "privilege", "permission", "grant", "escalat", "pretend", "jailbreak",
    "reveal", "verbatim", "conversation", "transcript", "customers", "database", "untrusted", "sudo", "[inst",
    "<<sys", "<|", "<!--", " ai ", " ai,", " ai:", "ai:", "chatbot", "agent", " llm", "llm ", " mode", "polic",
    "rules", "directive", "refund all", "refund every", "cancel all", "cancel every", ":write", "other user",
    "all user", "every user", " bot", "dan ", "do anything", "model", "execute", "invoke",
))

# Every blank run is read once, possessively, from a start that no other start's run contains:
# a text of 32,000 blanks or line breaks costs one pass, not one rescan per position.
_ROLE_MARKER = re.compile(
    r"(?im)(^|\\n|[\"'>\[{(]|[.!?](?=\s))([^\S\n]*+)(#+ ?|\*\*|\[|<)?(system|assistant|developer)(\]|>|\*\*)?"
    r"(\s*+):(?!//)")
_TEMPLATE_TOKEN = re.compile(r"(?i)<\|([a-z_]+)\|?>|\[(/?inst)\]|<<(/?sys)>>")
_UNTRUSTED_TAG = re.compile(r"(?i)<(\s*+/?\s*+untrusted)")
_SENTENCE = re.compile(r"[^.!?\n]*(?:[.!?]+|\n|$)")
_DEFUSED_ONLY = frozenset({"indirect.role_marker", "indirect.untrusted_escape"})


def needs_scan(text: str) -> bool:
    """Cheap screen: False when the text contains none of the words instructions are made of."""
    if not text.isascii():
        return True
    folded = text.encode().translate(_FOLD_TABLE)
    return any(word in folded for word in _SCREEN)


def _defuse(text: str) -> str:
    text = _UNTRUSTED_TAG.sub(lambda m: "&lt;" + m.group(1), text)
    text = _TEMPLATE_TOKEN.sub(lambda m: "(" + (m.group(1) or m.group(2) or m.group(3)) + ")", text)
    return _ROLE_MARKER.sub(lambda m: f"{m.group(1)}{m.group(2)}{m.group(4)} (quoted){m.group(6)}:", text)


class _Scanner:
    def __init__(self, guard: InputGuard | None) -> None:
        self.guard = guard
        self.hits = 0

    def suspicious(self, sentences: list[str]) -> list[bool]:
        out = []
        for s in sentences:
            rules = {h.rule_id for h in match_rules(s, source="tool")} - _DEFUSED_ONLY if s.strip() else set()
            out.append(bool(rules))
        guard = self.guard
        if guard is not None and guard.classifier is not None:
            todo = [i for i, s in enumerate(sentences) if not out[i] and len(s.strip()) >= 12]
            if todo:
                scores = guard.classifier.score_many([sentences[i] for i in todo])
                for i, score in zip(todo, scores, strict=True):
                    out[i] = 1.0 - score["benign"] >= guard.flag_threshold
        return out

    def plain(self, text: str) -> str:
        if not needs_scan(text):
            return text
        text = self._comments(text)
        if REMOVED in text:  # marked (now or before): leave the markers, look at what is between them
            return REMOVED.join(self._sentences(part) for part in text.split(REMOVED))
        return self._sentences(text)

    def _sentences(self, text: str) -> str:
        pieces = [m.group(0) for m in _SENTENCE.finditer(text) if m.group(0)]
        flags = self.suspicious(pieces)
        if not any(flags):
            return text
        out = []
        for piece, bad in zip(pieces, flags, strict=True):
            if bad:
                self.hits += 1
                lead = piece[: len(piece) - len(piece.lstrip())]
                out.append(lead + REMOVED + piece[len(piece.rstrip()):])
            else:
                out.append(piece)
        return "".join(out)

    def _comments(self, text: str) -> str:
        """Every HTML comment that carries instruction-like text replaced by a marker."""
        out: list[str] = []
        last = 0
        for start, end in iter_comments(text):
            out.append(text[last:start])
            out.append(self._comment(text[start:end], text[start + 4:end - 3]))
            last = end
        if not out:
            return text
        out.append(text[last:])
        return "".join(out)

    def _comment(self, comment: str, body: str) -> str:
        if body.strip() == REMOVED:
            return comment
        rules = {h.rule_id for h in match_rules(comment, source="tool")} - _DEFUSED_ONLY
        if rules or any(self.suspicious([body])):
            self.hits += 1
            return f"<!-- {REMOVED} -->"
        return comment

    def value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.plain(value)
        if isinstance(value, list):
            return [self.value(v) for v in value]
        if isinstance(value, dict):
            return {k: self.value(v) for k, v in value.items()}
        return value


def neutralise(text: str, *, guard: InputGuard | None = None) -> tuple[str, int]:
    """The text with instruction-like sentences removed and markers defused, and how many were removed."""
    if not needs_scan(text):
        return text, 0
    scanner = _Scanner(guard)
    body = text
    stripped = text.strip()
    if stripped[:1] in "{[":
        try:
            data = json.loads(stripped)
        except ValueError:
            data = None
        if data is not None:
            cleaned = scanner.value(data)
            if scanner.hits:
                body = json.dumps(cleaned, ensure_ascii=False)
            return _defuse(body), scanner.hits
    return _defuse(scanner.plain(body)), scanner.hits


def mark_untrusted(text: str, source: str, *, guard: InputGuard | None = None) -> str:
    """Wrap `text` (a tool result, a retrieved passage) as untrusted data from `source`.

    `source` names where it came from, like "tool:get_order_details" or "kb:returns-policy"
    (letters, digits and `_.:@/-`). Without `guard`, rules decide what is instruction-like;
    with one, its classifier too (at its flag threshold).
    """
    if not isinstance(text, str):
        raise ValidationError(f"text must be a str, got {type(text).__name__}", hint="serialise the result first")
    if not isinstance(source, str) or not _SOURCE_RE.match(source):
        raise ValidationError(f"bad untrusted source {source!r}",
                              hint="use letters, digits and _.:@/- only, like 'tool:get_order_details'")
    wrapped = _WRAPPED.match(text)
    if wrapped is not None and wrapped.group(1) == source and not _UNTRUSTED_TAG.search(wrapped.group(2)):
        text = wrapped.group(2)
    body, _ = neutralise(text, guard=guard)
    return f'<untrusted source="{source}">{body}</untrusted>'


def instruction_like(text: str, *, guard: InputGuard | None = None) -> bool:
    """Whether `text` (one sentence or a short passage) reads as an instruction to the assistant."""
    return any(_Scanner(guard).suspicious([normalise(text)]))
