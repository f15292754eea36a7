"""Request limits enforced before a route reads anything: body size and content type.

A pure ASGI middleware, so nothing is buffered on the way: a body announced bigger than the limit
(`Content-Length`) is refused with 413 before a byte of it is read, and a body without a length
(chunked) is counted as it streams in and refused as soon as it passes the limit. Requests to the
JSON API that carry a body must say it is JSON (415 otherwise), so a form post or a text upload is
named for what it is instead of failing validation field by field. A body that declares no type
is passed on: the webhook reads its raw body as JSON, the other routes do not parse it (a 422).
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import error_body

DEFAULT_MAX_BODY_BYTES = 256 * 1024
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class BodyTooLarge(HTTPException):
    """Raised from `receive` when a streamed body passes the limit (the app's error handlers answer 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit} bytes")


def is_json(content_type: str) -> bool:
    """`application/json` (any parameters) or a `+json` structured type such as `application/problem+json`."""
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


class RequestLimits:
    """Refuse oversized bodies (413) and non-JSON bodies on JSON routes (415) with the JSON error body."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
                 json_prefixes: Sequence[str] = ("/v1/",)) -> None:
        if max_body_bytes < 1:
            raise ValueError(f"max_body_bytes must be >= 1, got {max_body_bytes}")
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.json_prefixes = tuple(json_prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        length = headers.get("content-length")
        if length is not None:
            size = int(length) if length.strip().isdigit() else -1
            if size < 0:
                await _refuse(scope, receive, send, 400, "bad_request", "the Content-Length header is not a number")
                return
            if size > self.max_body_bytes:
                await _refuse(scope, receive, send, 413, "too_large",
                              f"the request body has {size} bytes; the limit is {self.max_body_bytes}",
                              hint="send a smaller body")
                return
        has_body = (length is not None and length.strip() != "0") or "transfer-encoding" in headers
        given = headers.get("content-type", "").strip()  # none declared: not this check's business
        if (has_body and given and not is_json(given) and scope["method"] in _BODY_METHODS
                and scope["path"].startswith(self.json_prefixes)):
            await _refuse(scope, receive, send, 415, "unsupported_media_type",
                          f"this route takes a JSON body, not {given[:100]!r}",
                          hint="send 'Content-Type: application/json'")
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, self._counting(receive), tracked)
        except BodyTooLarge as exc:  # a route that read the body outside the app's error handlers
            if started:
                raise
            await _refuse(scope, receive, send, 413, "too_large", str(exc.detail), hint="send a smaller body")

    def _counting(self, receive: Receive) -> Receive:
        """`receive`, raising `BodyTooLarge` once the body read so far passes the limit."""
        limit = self.max_body_bytes
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        return counted


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, code: str, message: str,
                  hint: str | None = None) -> None:
    """Answer at once without reading the body; the server closes the connection if the body is unread."""
    response = JSONResponse(error_body(code, message, hint), status_code=status)
    await response(scope, receive, send)
