"""`StreamingOutputGuard`: the output checks on a reply that is streamed token by token.

Deltas are buffered until a sentence is complete (see `segment.py` for what ends one); the
sentence is then checked and released, replaced or masked. Nothing of a sentence is released
before it has been checked, so a violating sentence is never seen even in part, and the cost is
at most one sentence of latency (plus one character: a "." is only known to end a sentence once
the next character shows it is not "$40.50"). A sentence longer than `max_chars` (400 by
default) is checked and released in pieces cut at whitespace, so the buffer stays bounded;
a claim or an email cut across two pieces is judged piece by piece.

For the same facts and `max_chars`, `"".join(everything feed() and close() returned)` equals
`OutputGuard(max_chars=...).check(full_text, facts).text`, however the text was split.
"""

from __future__ import annotations

from ...core.errors import ValidationError
from .facts import OutputFacts
from .guard import Finding, OutputVerdict, SentenceChecker, _check_max_chars
from .segment import DEFAULT_MAX_CHARS, next_cut


class StreamingOutputGuard:
    """One guard per streamed reply: `feed(delta)` for each token, then `close()` once."""

    __slots__ = ("_buffer", "_checker", "_closed", "_emitted", "_findings", "max_chars")

    def __init__(self, facts: OutputFacts, *, max_chars: int = DEFAULT_MAX_CHARS) -> None:
        self.max_chars = _check_max_chars(max_chars)
        self._checker = SentenceChecker(facts)
        self._buffer = ""
        self._emitted: list[str] = []
        self._findings: list[Finding] = []
        self._closed = False

    def feed(self, delta: str) -> list[str]:
        """Take the next piece of the reply; return the text that is safe to emit now (maybe none)."""
        if not isinstance(delta, str):
            raise ValidationError(f"a delta must be a string, got {type(delta).__name__}")
        if self._closed:
            raise ValidationError("the stream is closed", hint="use a new StreamingOutputGuard per reply")
        self._buffer += delta
        return self._drain(final=False)

    def close(self) -> list[str]:
        """The reply is complete: check and return whatever is still held back."""
        if self._closed:
            return []
        out = self._drain(final=True)
        if self._buffer:
            out.append(self._release(self._buffer))
            self._buffer = ""
        self._closed = True
        return out

    @property
    def pending(self) -> str:
        """Text received but not yet released (at most about one sentence)."""
        return self._buffer

    @property
    def findings(self) -> tuple[Finding, ...]:
        return tuple(self._findings)

    @property
    def text(self) -> str:
        """Everything released so far."""
        return "".join(self._emitted)

    def verdict(self) -> OutputVerdict:
        """The released text and findings (call after `close()` for the whole reply)."""
        return OutputVerdict(self.text, self.findings)

    def _drain(self, *, final: bool) -> list[str]:
        out: list[str] = []
        while (cut := next_cut(self._buffer, final, self.max_chars)) is not None:
            segment, self._buffer = self._buffer[:cut], self._buffer[cut:]
            out.append(self._release(segment))
        return out

    def _release(self, segment: str) -> str:
        checked, finding = self._checker(segment)
        if finding is not None:
            self._findings.append(finding)
        self._emitted.append(checked)
        return checked
