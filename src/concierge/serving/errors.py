"""One error shape for every 4xx and 5xx: `{"error": {"code", "message", "hint"?}}`.

Clients (and the API fuzzer) can rely on a JSON body with a stable `code` whatever went wrong:
our own errors, FastAPI's request validation, unknown routes and wrong methods alike.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..core.errors import ConciergeError, ConfigError, SessionError, ValidationError

logger = logging.getLogger(__name__)

_HTTP_CODES = {400: "bad_request", 401: "unauthenticated", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 409: "conflict", 413: "too_large", 415: "unsupported_media_type",
               422: "invalid_request", 429: "rate_limited", 503: "unavailable"}


class ApiError(ConciergeError):
    """An error the serving layer raises itself, with its HTTP status and stable code."""

    def __init__(self, status: int, code: str, message: str, *, hint: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status, self.code, self.headers = status, code, headers or {}


class RateLimited(ApiError):
    def __init__(self, who: str, retry_after_s: float) -> None:
        seconds = max(1, math.ceil(retry_after_s))
        super().__init__(429, "rate_limited", f"too many requests for this {who}; retry in {seconds} s",
                         headers={"Retry-After": str(seconds)})
        self.retry_after_s = retry_after_s


def error_body(code: str, message: str, hint: str | None = None, **extra: Any) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if hint:
        error["hint"] = hint
    error.update(extra)
    return {"error": error}


def status_of(exc: ConciergeError) -> tuple[int, str]:
    """The HTTP status and code for one of our errors (auth errors carry their own)."""
    status = getattr(exc, "status", None)
    code = getattr(exc, "code", None)
    if isinstance(status, int) and isinstance(code, str):
        return status, code
    if isinstance(exc, ValidationError):
        return 422, "invalid_request"
    if isinstance(exc, SessionError):
        return 409, "conflict"
    if isinstance(exc, ConfigError):
        return 500, "server_misconfigured"
    return 500, "internal_error"


def install_error_handlers(app: FastAPI) -> None:
    async def concierge_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ConciergeError)
        status, code = status_of(exc)
        if status >= 500:
            logger.error("request %s %s failed: %s", request.method, request.url.path, exc)
        return JSONResponse(error_body(code, exc.message, exc.hint), status_code=status,
                            headers=getattr(exc, "headers", None))

    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        problems = [{"where": ".".join(str(p) for p in e.get("loc", ())), "problem": e.get("msg", "")}
                    for e in exc.errors()]
        first = problems[0] if problems else {"where": "request", "problem": "invalid"}
        return JSONResponse(error_body("invalid_request", f"{first['where']}: {first['problem']}",
                                       problems=problems), status_code=422)

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error in %s %s", request.method, request.url.path)
        return JSONResponse(error_body("internal_error", "the server failed to handle this request"),
                            status_code=500)

    app.add_exception_handler(ConciergeError, concierge_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)
