"""WebSocket frames for the streaming route: what may arrive, and how a bad frame is answered.

A frame that can be answered is answered with an error frame and the connection stays usable
(malformed JSON, nesting too deep, a field that REST would refuse); a frame that cannot be is
answered with the close code RFC 6455 has for it: 1003 for binary data (the protocol is JSON text),
1009 for a frame over the size limit. Text that is not valid UTF-8 never reaches this module: the
server's WebSocket layer closes such a connection with 1007.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from ..core.errors import ConciergeError
from .errors import error_body, status_of

logger = logging.getLogger(__name__)

UNSUPPORTED_DATA = 1003  # RFC 6455 7.4.1: a type of data the endpoint cannot accept (binary here)
INVALID_PAYLOAD = 1007  # data inconsistent with the type of the message
MESSAGE_TOO_BIG = 1009
FRAME_HINT = '{"type": "message", "text": "..."} or {"type": "confirm"|"decline", "action_id": "..."}'


def error_frame(status: int, code: str, message: str, hint: str | None = None, **extra: Any) -> dict[str, Any]:
    """The error frame: the REST error body plus `type` and the HTTP status it would have had."""
    return {"type": "error", "status": status, **error_body(code, message, hint, **extra)}


async def serve_frames(websocket: WebSocket, max_frame_bytes: int,
                       handle: Callable[[str], Awaitable[dict[str, Any]]]) -> None:
    """Answer each text frame with `handle`'s result (a `turn_finished` frame) or an error frame.

    Our own errors become error frames with their HTTP status; any other failure is logged and
    answered as a 500 error frame: the connection stays usable either way.
    """
    while True:
        raw = await receive_frame(websocket, max_frame_bytes)
        if raw is None:
            return
        try:
            result = await handle(raw)
        except ConciergeError as exc:
            status, code = status_of(exc)
            extra = {"retry_after_s": exc.retry_after_s} if hasattr(exc, "retry_after_s") else {}
            await websocket.send_json(error_frame(status, code, exc.message, exc.hint, **extra))
            continue
        except WebSocketDisconnect:
            return
        except Exception:
            logger.exception("a streamed turn failed")
            if not is_open(websocket):
                return
            await websocket.send_json(error_frame(500, "internal_error", "the server failed to answer this message"))
            continue
        await websocket.send_json({"type": "turn_finished", **result})


async def receive_frame(websocket: WebSocket, max_frame_bytes: int) -> str | None:
    """The next text frame; None when the client left or the frame was refused (the socket is then closed)."""
    message = await websocket.receive()
    if message["type"] == "websocket.disconnect":
        return None
    text = message.get("text")
    if text is None:
        await refuse(websocket, UNSUPPORTED_DATA, 415, "unsupported_media_type",
                     "binary frames are not supported: send JSON text frames", FRAME_HINT)
        return None
    size = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
    if size > max_frame_bytes:
        await refuse(websocket, MESSAGE_TOO_BIG, 413, "too_large",
                     f"the frame has {size} bytes; the limit is {max_frame_bytes}", "send a shorter message")
        return None
    return text


async def refuse(websocket: WebSocket, close_code: int, status: int, code: str, message: str,
                 hint: str | None = None) -> None:
    """Say why in an error frame, then close with `close_code` (the reason repeats the message)."""
    try:
        await websocket.send_json(error_frame(status, code, message, hint))
        await websocket.close(code=close_code, reason=message.encode("ascii", "replace")[:120].decode())
    except Exception:  # the client may already be gone; nothing left to tell it
        logger.debug("could not close the stream with %d", close_code, exc_info=True)


def is_open(websocket: WebSocket) -> bool:
    return (websocket.client_state == WebSocketState.CONNECTED
            and websocket.application_state == WebSocketState.CONNECTED)
