"""The FastAPI application: REST, WebSocket streaming, signed webhooks, health, and the web pages.

Identity is settled here, before the agent sees a token: every route authenticates the caller
(an API key or an end user's JWT), the session is looked up inside the caller's tenant, and the
principal the tools are checked against comes from that authentication, never from the model.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, Query, Request, WebSocket, WebSocketDisconnect
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter
from pydantic import ValidationError as PydanticValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._version import __version__
from ..core.errors import ConciergeError, ConfigError, ValidationError
from ..core.principal import Principal
from ..events.producer import FlusherStoppedError
from ..runtime.events import TurnEvent
from ..security.auth import Caller, Forbidden, Unauthenticated, issue_jwt, scopes_for, session_access
from ..security.onetime import OneTimeTokens
from ..tools.confirmation import Decision
from .errors import ApiError, error_body, install_error_handlers, status_of
from .limits import DEFAULT_MAX_BODY_BYTES, RequestLimits
from .openapi_links import add_session_links
from .records import SESSION_ID_MAX, SESSION_ID_PATTERN
from .service import TurnService
from .stream import FRAME_HINT, serve_frames
from .webhooks import DELIVERY_HEADER, SIGNATURE_HEADER, validate_delivery_id, verify

UI = Path(__file__).parent / "ui"
MAX_TEXT = 32_000
WS_BEARER = "concierge.bearer"
DEMO_OFF = "demo sign-in is off"
CONSOLE_USER = "console"
CONSOLE_TTL_S = 12 * 3600  # a working day: the console token cannot be used again
SessionId = Annotated[str, PathParam(pattern=SESSION_ID_PATTERN, min_length=1, max_length=SESSION_ID_MAX,
                                     description="The session's id (not only dots).")]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _valid_unicode(text: str) -> str:
    """JSON can spell an unpaired surrogate ("\\ud800"); such text is not Unicode and cannot be stored."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text contains an unpaired surrogate: it is not valid Unicode") from None
    return text


class MessageIn(_Body):
    text: Annotated[str, AfterValidator(_valid_unicode)] = Field(min_length=1, max_length=MAX_TEXT,
                                                                 description="What the user says.")


class StreamMessageIn(MessageIn):
    """A message over the WebSocket: the REST body of POST .../messages, plus its type."""

    type: Literal["message"]


class StreamActionIn(_Body):
    """A confirm or decline over the WebSocket: the REST route's action id, plus the type."""

    type: Literal["confirm", "decline"]
    action_id: str = Field(min_length=1, max_length=100)


StreamFrame: TypeAdapter[StreamMessageIn | StreamActionIn] = TypeAdapter(
    Annotated[StreamMessageIn | StreamActionIn, Field(discriminator="type")])


class SessionIn(_Body):
    session_id: str = Field(pattern=SESSION_ID_PATTERN, min_length=1, max_length=SESSION_ID_MAX)
    user_id: str | None = Field(None, min_length=1, max_length=255,
                                description="The end user (service keys only); default: the caller.")


class WebhookIn(_Body):
    session_id: str = Field(pattern=SESSION_ID_PATTERN, min_length=1, max_length=SESSION_ID_MAX)
    user_id: str = Field(min_length=1, max_length=255)
    text: str = Field(min_length=1, max_length=MAX_TEXT)


class DemoLoginIn(_Body):
    """Nothing to choose: demo sign-in always makes a fresh customer (unknown fields are a 422)."""


class ConsoleLoginIn(_Body):
    token: str = Field(min_length=1, max_length=200, description="The token in the printed console link")


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="allow")  # e.g. `problems` on 422, `retry_after_s`

    code: str = Field(description="Stable, machine-readable: 'unauthenticated', 'not_found', 'invalid_request'...")
    message: str = Field(description="What went wrong, for people.")
    hint: str | None = Field(None, description="What to do about it, when there is something to do.")


class ErrorBody(BaseModel):
    """The body of every 4xx and 5xx answer (see errors.py)."""

    error: ErrorDetail


# Declared for every operation, so the published spec says what errors look like; a "4XX" entry
# also replaces FastAPI's default 422 schema, which is not the body our handlers send.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {"model": ErrorBody, "description": "The request was refused (see error.code)."},
    "5XX": {"model": ErrorBody, "description": "The server failed, or is draining."},
}


@dataclass(frozen=True, slots=True)
class ServeOptions:
    # When set, POST /v1/demo/login signs visitors in as fresh customers of this tenant ("" is off).
    demo_tenant: str | None = None
    webhook_tolerance_s: int = 300
    # A webhook claim older than this is a dead worker's: a redelivery takes it over. Longer than a turn.
    webhook_lease_s: float = 900.0
    # Also accept the v1 signature, which does not sign the delivery id (senders being migrated).
    webhook_accept_legacy_signatures: bool = False
    # While demo is on, POST /v1/demo/console-login trades this for an operator token, once.
    console_token: str | None = None
    # Bodies over this are refused with 413 before they are read; WebSocket frames over the frame
    # limit close the stream with 1009 (see limits.py and stream.py).
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_frame_bytes: int = DEFAULT_MAX_BODY_BYTES

    def __post_init__(self) -> None:
        for name in ("demo_tenant", "console_token"):
            value = getattr(self, name)
            if isinstance(value, str) and not value.strip():
                object.__setattr__(self, name, None)


class WorkerHeader:
    """Names the worker process that answered (`X-Concierge-Worker`), for requests behind a load balancer.

    A pure ASGI middleware: it adds one header to the response start, where an `@app.middleware`
    function would run every request through a task and memory streams of its own.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.header = (b"x-concierge-worker", str(os.getpid()).encode("ascii"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def named(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), self.header]
            await send(message)

        await self.app(scope, receive, named)


def _token(authorization: str | None, api_key: str | None) -> str:
    if api_key:
        return api_key.strip()
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        raise Unauthenticated("the Authorization header must be 'Bearer <API key or token>'")
    raise Unauthenticated("missing credentials", hint="send 'Authorization: Bearer <API key or token>'")


async def authenticated(request: Request, authorization: Annotated[str | None, Header()] = None,
                        x_api_key: Annotated[str | None, Header()] = None) -> Caller:
    """The caller, from `Authorization: Bearer <API key or JWT>` or `X-API-Key`."""
    service: TurnService = request.app.state.service
    return await service.tenants.authenticate(_token(authorization, x_api_key))


Auth = Annotated[Caller, Depends(authenticated)]


def create_app(service: TurnService, options: ServeOptions | None = None, *,
               startup: Callable[[], Awaitable[None]] | None = None,
               shutdown: Callable[[], Awaitable[None]] | None = None) -> FastAPI:
    """The app around `service`; `startup`/`shutdown` run once per worker around serving."""
    options = options or ServeOptions()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if startup is not None:
            await startup()
        await service.runtime.recover()
        yield
        await service.drain()  # running turns finish before the worker exits
        if shutdown is not None:
            await shutdown()

    app = FastAPI(title="concierge", version=__version__, lifespan=lifespan, responses=ERROR_RESPONSES,
                  description="Customer-service agents that act correctly: sessions, streaming, webhooks.")
    install_error_handlers(app)
    app.add_middleware(RequestLimits, max_body_bytes=options.max_body_bytes)  # inside the worker header
    app.state.service = service
    app.add_middleware(WorkerHeader)  # outermost of ours: refusals by RequestLimits carry it too

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, Any]:
        """Liveness: the process answers."""
        return {"status": "ok", "version": __version__}

    @app.get("/readyz", tags=["health"])
    async def readyz() -> Any:
        """Readiness: not draining, the event pipeline runs, and the database answers."""
        if service.draining:
            return JSONResponse(error_body("draining", "this worker is shutting down"), status_code=503)
        failure = getattr(service.runtime.events, "failure", None)  # an EventProducer's dead flusher
        if isinstance(failure, str):
            return JSONResponse(error_body("events_unavailable", f"event pipeline: {failure}",
                                           hint="restart this worker (see its log)"), status_code=503)
        try:
            await service.tenants.list_tenants()
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            return JSONResponse(error_body("unavailable", f"database: {type(exc).__name__}"), status_code=503)
        return {"status": "ready", "running_turns": service.running}

    @app.get("/v1/me", tags=["sessions"])
    async def me(who: Auth) -> dict[str, Any]:
        """Who the credentials say the caller is."""
        return {"kind": who.kind, **who.principal.to_dict()}

    @app.get("/v1/sessions", tags=["sessions"])
    async def list_sessions(who: Auth, limit: Annotated[int, Query(ge=1, le=500)] = 100) -> dict[str, Any]:
        """The tenant's sessions, newest first; end users see only their own."""
        mine = None if who.can("sessions:read") else who.user_id
        items = await service.sessions.list(who.tenant, user_id=mine, limit=limit)
        return {"sessions": [s.to_dict() for s in items]}

    @app.post("/v1/sessions", status_code=201, tags=["sessions"])
    async def create_session(who: Auth, body: SessionIn) -> dict[str, Any]:
        """Open a session; its id is the client's (a chat tab, a ticket number)."""
        return (await service.create_session(who, body.session_id, body.user_id)).to_dict()

    @app.get("/v1/sessions/{session_id}", tags=["sessions"])
    async def get_session(who: Auth, session_id: SessionId) -> dict[str, Any]:
        """The whole conversation and the actions waiting for confirmation."""
        return await service.history(who, session_id)

    @app.post("/v1/sessions/{session_id}/messages", tags=["sessions"])
    async def post_message(who: Auth, session_id: SessionId, body: MessageIn) -> dict[str, Any]:
        """Send a message and wait for the agent's reply (use the WebSocket to stream it)."""
        return await service.answer(who, session_id, body.text)

    @app.post("/v1/sessions/{session_id}/actions/{action_id}/confirm", tags=["sessions"])
    async def confirm(who: Auth, session_id: SessionId,
                      action_id: Annotated[str, PathParam(min_length=1, max_length=100)]) -> dict[str, Any]:
        """Confirm the pending action: it runs exactly as it was shown (a structured decision, not text)."""
        return await service.answer(who, session_id, Decision(action_id, "confirm"))

    @app.post("/v1/sessions/{session_id}/actions/{action_id}/decline", tags=["sessions"])
    async def decline(who: Auth, session_id: SessionId,
                      action_id: Annotated[str, PathParam(min_length=1, max_length=100)]) -> dict[str, Any]:
        """Decline the pending action: nothing is done, and it is not proposed again unless asked for."""
        return await service.answer(who, session_id, Decision(action_id, "decline"))

    @app.get("/v1/sessions/{session_id}/turns", tags=["console"])
    async def turns(who: Auth, session_id: SessionId) -> dict[str, Any]:
        """Each turn's steps with start offsets and latencies: the trace waterfall."""
        info = await service.session(who, session_id)
        return {"session_id": session_id, "turns": await service.sessions.turns(info.tenant, session_id)}

    @app.get("/v1/sessions/{session_id}/ledger", tags=["console"])
    async def ledger(who: Auth, session_id: SessionId) -> dict[str, Any]:
        """The tool ledger (what was done to the world) and the refusals (scopes, preconditions)."""
        return await service.ledger(who, session_id)

    @app.post("/v1/sessions/{session_id}/end", tags=["sessions"])
    async def end(who: Auth, session_id: SessionId) -> dict[str, Any]:
        """The customer is done: extract what to remember for next time (long-term memory)."""
        return await service.end(who, session_id)

    @app.get("/v1/sessions/{session_id}/audit", tags=["console"])
    async def audit(who: Auth, session_id: SessionId) -> dict[str, Any]:
        """Every decision of the session, turn by turn: input verdicts, retrievals, reasoning, tool calls
        with their ledger outcome, refusals, output checks, replies (from the audit index)."""
        try:
            return await service.audit_trail(who, session_id)
        except FlusherStoppedError as exc:  # the trail would miss every event since: say so, not 500
            raise ApiError(503, "events_unavailable", f"the audit trail cannot be brought up to date: {exc.message}",
                           hint="restart this worker (see its log)") from None

    turn_limit_s = service.runtime.agent.limits.timeout_s
    if options.webhook_lease_s <= turn_limit_s:  # a live worker's claim would be taken over: two turns
        raise ConfigError(f"webhook_lease_s ({options.webhook_lease_s:g} s) must be longer than a turn "
                          f"({turn_limit_s:g} s)", hint="raise [serve] webhook_lease_s")

    @app.post("/v1/webhooks/{tenant}", tags=["webhooks"])
    async def webhook(request: Request, tenant: Annotated[str, PathParam(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")],
                      signature: Annotated[str | None, Header(alias=SIGNATURE_HEADER)] = None,
                      delivery: Annotated[str | None, Header(alias=DELIVERY_HEADER)] = None) -> dict[str, Any]:
        """A message from a channel, signed with the tenant's webhook secret; redeliveries run once."""
        record = await service.tenants.get_tenant(tenant)
        if record is None:
            raise Unauthenticated("unknown webhook tenant or bad signature")
        if not delivery:
            raise ValidationError(f"the {DELIVERY_HEADER} header is required", hint="a unique id per delivery")
        validate_delivery_id(delivery)
        raw = await request.body()
        verify([record.webhook_secret], signature, raw, delivery_id=delivery, now=time.time(),
               tolerance_s=options.webhook_tolerance_s, accept_legacy=options.webhook_accept_legacy_signatures)
        try:
            body = WebhookIn.model_validate_json(raw)
        except ValueError as exc:
            raise ValidationError(f"invalid webhook body: {str(exc).splitlines()[0]}") from None
        claim = await service.deliveries.claim(tenant, delivery, stale_after_s=options.webhook_lease_s)
        if not claim.first:
            if claim.status != "done":
                wait = claim.retry_after_s(options.webhook_lease_s)
                raise ApiError(409, "in_progress", "this delivery is being processed", hint=f"retry in {wait} s",
                               headers={"Retry-After": str(wait)})
            return {**(claim.result or {}), "duplicate": True}
        principal = Principal(body.user_id, tenant=tenant, role="customer", scopes=scopes_for("customer"))
        who = Caller(principal, "api_key")
        try:
            info = await service.sessions.open(tenant, body.session_id, body.user_id, datetime.now(UTC))
            service_caller_check(who, info)
            result = await service.run(who, info, body.text)
        except BaseException:
            await service.deliveries.release(tenant, delivery, claimed_at=claim.claimed_at)
            raise
        await service.deliveries.complete(tenant, delivery, result)
        return {**result, "duplicate": False}

    once = OneTimeTokens.from_engine(service.tenants.engine)  # the tenants' database: shared by workers

    def demo_tenant() -> str:
        if options.demo_tenant is None:
            raise ApiError(404, "not_found", DEMO_OFF, hint="start the server with --demo")
        return options.demo_tenant

    @app.post("/v1/demo/login", tags=["demo"])
    async def demo_login(body: DemoLoginIn | None = None) -> dict[str, Any]:
        """A fresh demo customer (a new random user id each time) of the demo tenant; 404 when demo is off.

        Nothing can be chosen: no user id (that would sign in as someone else) and no role.
        """
        tenant = demo_tenant()
        user_id = f"demo-{secrets.token_hex(8)}"
        token = issue_jwt(await service.tenants.jwt_config(tenant), subject=user_id, role="customer")
        return {"token": token, "tenant": tenant, "user_id": user_id, "role": "customer"}

    @app.post("/v1/demo/console-login", tags=["demo"])
    async def console_login(body: ConsoleLoginIn) -> dict[str, Any]:
        """An operator token for the console, in exchange for the token `concierge serve` printed (once)."""
        tenant = demo_tenant()
        if options.console_token is None:
            raise ApiError(404, "not_found", "console sign-in is off on this server",
                           hint="sign in with an operator key (concierge tenants key TENANT --role operator)")
        if not hmac.compare_digest(body.token.encode("utf-8"), options.console_token.encode("utf-8")):
            raise Unauthenticated("invalid console token", hint="use the console link that concierge serve printed")
        if not await once.redeem(body.token, "console"):
            raise Unauthenticated("this console token was already used",
                                  hint="restart concierge serve for a new link, or use an operator API key")
        token = issue_jwt(await service.tenants.jwt_config(tenant), subject=CONSOLE_USER, role="operator",
                          ttl_s=CONSOLE_TTL_S)
        return {"token": token, "tenant": tenant, "user_id": CONSOLE_USER, "role": "operator"}

    @app.websocket("/v1/sessions/{session_id}/stream")
    async def stream(websocket: WebSocket, session_id: str, token: str = "") -> None:
        """Send {"type": "message", "text"} or {"type": "confirm"|"decline", "action_id"}; events stream back.

        Credentials come as the subprotocols `concierge.bearer, <token>` (what a browser can send,
        and what stays out of access logs) or, for other clients, as `?token=`.
        """
        offered = [p.strip() for p in websocket.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
        if len(offered) == 2 and offered[0] == WS_BEARER:
            token = offered[1]
            await websocket.accept(subprotocol=WS_BEARER)
        else:
            await websocket.accept()
        try:
            who = await service.tenants.authenticate(token)
            info = await service.session(who, session_id)
        except ConciergeError as exc:
            status, code = status_of(exc)
            await websocket.send_json({"type": "error", "status": status, **error_body(code, exc.message)})
            await websocket.close(code=4000 + status)
            return
        # "read" (an operator): it may connect, but each message, confirm or decline gets a 403 error frame.
        await websocket.send_json({"type": "ready", "session_id": session_id,
                                   "access": session_access(who, info.tenant, info.user_id)})

        async def forward(event: TurnEvent) -> None:
            await websocket.send_json(event.to_dict())

        async def turn(raw: str) -> dict[str, Any]:
            return await service.answer(who, session_id, _ws_request(raw), observer=forward)

        try:
            await serve_frames(websocket, options.max_frame_bytes, turn)
        except WebSocketDisconnect:
            return

    if UI.is_dir():
        app.mount("/ui", StaticFiles(directory=UI), name="ui")

        @app.get("/", include_in_schema=False)
        async def home() -> RedirectResponse:
            return RedirectResponse("/chat")

        @app.get("/chat", include_in_schema=False)
        async def chat_page() -> FileResponse:
            return FileResponse(UI / "chat.html")

        @app.get("/console", include_in_schema=False)
        async def console_page() -> FileResponse:
            return FileResponse(UI / "console.html")

    add_session_links(app)  # the spec says which answers carry the ids later calls take
    return app


def service_caller_check(who: Caller, info: Any) -> None:
    """A webhook speaks for the user it names: that user must own the session."""
    if info.user_id != who.user_id:
        raise Forbidden("this session belongs to another user")


def _ws_request(raw: str) -> str | Decision:
    """The text or the decision (confirm, decline) a frame carries, validated as REST validates bodies."""
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValidationError(f"the frame is not JSON: {exc.msg} at character {exc.pos}", hint=FRAME_HINT) from None
    except RecursionError:
        raise ValidationError("the frame's JSON is nested too deeply", hint=FRAME_HINT) from None
    try:
        frame = StreamFrame.validate_python(data)
    except PydanticValidationError as exc:
        first = exc.errors()[0]
        loc = tuple(first.get("loc", ()))[1:]  # the first item names the frame type, not a field
        where = ".".join(str(p) for p in loc) or "frame"
        raise ValidationError(f"{where}: {first.get('msg', 'invalid')}", hint=FRAME_HINT) from None
    if isinstance(frame, StreamMessageIn):
        return frame.text
    return Decision(frame.action_id, frame.type)
