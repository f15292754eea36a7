"""OpenAPI links between the session operations, so clients and tools can follow one session through the API.

A session's id comes back from `POST /v1/sessions` (and from a message's answer, and from the
list); every `/v1/sessions/{session_id}...` operation takes it. A pending action's id comes back
in a message's answer; confirm and decline take it. The published spec says so with OpenAPI
`links` (3.0 and 3.1), which generated clients and stateful API testers (schemathesis) read to
chain calls: open a session, talk in it, read its history, end it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI

SESSION_PATH = "/v1/sessions/{session_id}"
_METHODS = ("get", "post", "put", "patch", "delete")


@dataclass(frozen=True, slots=True)
class Producer:
    """An answer that carries a session id (and perhaps a pending action's id), as runtime expressions."""

    path: str
    method: str
    status: str
    session_id: str
    action_id: str | None = None


PRODUCERS = (
    Producer("/v1/sessions", "post", "201", "$response.body#/session_id"),
    Producer("/v1/sessions", "get", "200", "$response.body#/sessions/0/session_id"),
    Producer(f"{SESSION_PATH}/messages", "post", "200", "$response.body#/session_id",
             "$response.body#/pending_actions/0/id"),
)


def session_links(spec: dict[str, Any]) -> dict[str, Any]:
    """Add the links to `spec` (in place, idempotent) and return it; operations it lacks are skipped."""
    paths: dict[str, Any] = spec.get("paths", {})
    targets = [(path, method, operation) for path, item in paths.items()
               if path == SESSION_PATH or path.startswith(SESSION_PATH + "/")
               for method, operation in item.items() if method in _METHODS and operation.get("operationId")]
    for producer in PRODUCERS:
        response = paths.get(producer.path, {}).get(producer.method, {}).get("responses", {}).get(producer.status)
        if response is None:
            continue
        links: dict[str, Any] = response.setdefault("links", {})
        for path, method, operation in targets:
            parameters = {"path.session_id": producer.session_id}
            if "{action_id}" in path:
                if producer.action_id is None:
                    continue
                parameters["path.action_id"] = producer.action_id
            links[operation["operationId"]] = {
                "operationId": operation["operationId"], "parameters": parameters,
                "description": f"{method.upper()} {path} on the same session",
            }
    return spec


def add_session_links(app: FastAPI) -> None:
    """Publish the links in the app's OpenAPI document (`/openapi.json`)."""
    build: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        return session_links(build())

    app.openapi = openapi  # type: ignore[method-assign]
