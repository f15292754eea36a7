"""JSON for the per-turn write path: orjson, several times faster than the standard library.

A turn stores every new message as a JSON document; with the standard encoder that was a large
part of a durable turn's cost. The output is ordinary JSON that any reader (SQLAlchemy's JSON
type, `json.loads`, DuckDB) parses.
"""

from __future__ import annotations

from typing import Any

import orjson

_OPTIONS = orjson.OPT_NON_STR_KEYS  # like json.dumps: {1: "a"} is stored as {"1": "a"}


def dumps(value: Any) -> str:
    return orjson.dumps(value, option=_OPTIONS).decode()


def loads(text: str | bytes) -> Any:
    return orjson.loads(text)
