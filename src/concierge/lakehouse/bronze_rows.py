"""Bus records → bronze rows, fast: one vectorised JSON parse per batch, a row-by-row path as fallback.

Bronze ingestion is bound by parsing. Arrow's JSON reader parses a whole batch's envelopes (ids,
tenant, timestamps) in C; only the payload, which bronze keeps as raw JSON text, is re-encoded
per row. A batch the reader refuses (one malformed record, an unparsable timestamp) goes through
the row-by-row path instead, which keeps what it can and counts the rest as unreadable.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import UTC, datetime

import orjson
import pyarrow as pa
import pyarrow.compute as pc
from pyarrow import json as pajson

from ..events.bus import Record
from .catalog import BRONZE_SCHEMA

ARROW = BRONZE_SCHEMA.as_arrow()
_STRINGS = ("type", "conversation_id", "trace_id", "user_id", "agent_version")
_TEXT = pa.large_string()  # the table's own string type: no copy when the columns go in
_ENVELOPE = pa.schema([
    ("event_id", _TEXT), ("type", _TEXT), ("ts", pa.timestamp("us", tz="UTC")), ("tenant", _TEXT),
    ("conversation_id", _TEXT), ("turn", pa.int64()), ("trace_id", _TEXT), ("user_id", _TEXT),
    ("agent_version", _TEXT), ("schema_version", pa.int64()),
])
_OPTIONS = pajson.ParseOptions(explicit_schema=_ENVELOPE, unexpected_field_behavior="ignore")


def bronze_rows(records: Sequence[Record], seen: set[str], now: datetime) -> tuple[pa.Table, set[str], int]:
    """The new rows among `records` (ids in `seen` or repeated in the batch dropped), their ids, and
    how many records were unreadable (no id or no tenant: bronze needs both)."""
    fast = _vectorised(records, seen, now)
    return fast if fast is not None else _row_by_row(records, seen, now)


def _vectorised(records: Sequence[Record], seen: set[str], now: datetime) -> tuple[pa.Table, set[str], int] | None:
    try:
        envelope = pajson.read_json(io.BytesIO(b"\n".join(r.data for r in records)), parse_options=_OPTIONS)
        payloads = [_raw_payload(r.data) for r in records]
    except (pa.ArrowInvalid, orjson.JSONDecodeError, AttributeError):
        return None
    if envelope.num_rows != len(records):
        return None
    ids = envelope.column("event_id").to_pylist()
    keep, new_ids, unreadable = _new_rows(ids, envelope.column("tenant").to_pylist(), seen)
    try:
        columns = {
            "event_id": envelope.column("event_id"), "tenant": envelope.column("tenant"),
            "ts": pc.fill_null(envelope.column("ts"), pa.scalar(now, pa.timestamp("us", tz="UTC"))),
            **{name: pc.fill_null(envelope.column(name), "") for name in _STRINGS},
            "turn": envelope.column("turn").cast(pa.int32()),
            "schema_version": envelope.column("schema_version").cast(pa.int32()),
            "payload": pa.array(payloads, pa.large_string()),
            "log_partition": pa.array([r.partition for r in records], pa.int32()),
            "log_offset": pa.array([r.offset for r in records], pa.int64()),
            "ingested_at": pa.repeat(pa.scalar(now, pa.timestamp("us", tz="UTC")), len(records)),
        }
    except pa.ArrowInvalid:  # an integer out of range: let the row path decide
        return None
    table = pa.table([columns[name] for name in ARROW.names], names=ARROW.names)
    if keep is not None:
        table = table.filter(pa.array(keep))
    return table.cast(ARROW), new_ids, unreadable


def _new_rows(ids: list[str | None], tenants: list[str | None],
              seen: set[str]) -> tuple[list[bool] | None, set[str], int]:
    """Which rows to keep (None: all of them), the new ids, how many rows lack an id or a tenant.

    The usual batch has neither repeats nor gaps, which set arithmetic shows without a Python loop.
    """
    new_ids = set(ids)
    if len(new_ids) == len(ids) and new_ids.isdisjoint(seen) and not ({None, ""} & new_ids) \
            and None not in tenants and "" not in tenants:
        return None, new_ids, 0  # type: ignore[return-value]  # no None in it: checked above
    keep, new_ids, unreadable = [], set(), 0
    for event_id, tenant in zip(ids, tenants, strict=True):
        if not event_id or not tenant:
            unreadable += 1
            keep.append(False)
        elif event_id in seen or event_id in new_ids:
            keep.append(False)
        else:
            new_ids.add(event_id)
            keep.append(True)
    return keep, new_ids, unreadable


_PRODUCED = b'{"schema_version":'
_PAYLOAD_KEY = b',"payload":'


def _raw_payload(data: bytes) -> str:
    """The payload's JSON text, sliced out without parsing when `AgentEvent.to_json` wrote the record.

    That writer puts the fields in a fixed order, scalars first and `payload` last, and a JSON string
    cannot hold an unescaped quote, so the first `,"payload":` is the top-level key and the payload
    runs from there to the closing brace. Anything else is parsed.
    """
    if data.startswith(_PRODUCED) and data.endswith(b"}"):
        start = data.find(_PAYLOAD_KEY)
        if start > 0:
            return data[start + len(_PAYLOAD_KEY):-1].decode()
    return _payload(orjson.loads(data))


def _payload(data: object) -> str:
    payload = data.get("payload") if isinstance(data, dict) else None  # type: ignore[union-attr]
    return payload if isinstance(payload, str) else orjson.dumps(payload).decode()


def _row_by_row(records: Sequence[Record], seen: set[str], now: datetime) -> tuple[pa.Table, set[str], int]:
    columns: dict[str, list[object]] = {name: [] for name in ARROW.names}
    new_ids: set[str] = set()
    unreadable = 0
    for record in records:
        try:
            data = orjson.loads(record.data)
        except orjson.JSONDecodeError:
            data = None
        if not isinstance(data, dict) or not data.get("event_id") or not data.get("tenant"):
            unreadable += 1
            continue
        event_id = str(data["event_id"])
        if event_id in seen or event_id in new_ids:
            continue
        new_ids.add(event_id)
        _add(columns, data, record, now)
    return pa.Table.from_pydict(columns, schema=ARROW), new_ids, unreadable


def _add(columns: dict[str, list[object]], data: dict[str, object], record: Record, now: datetime) -> None:
    try:
        ts = datetime.fromisoformat(str(data.get("ts"))).astimezone(UTC)
    except ValueError:
        ts = now
    columns["event_id"].append(str(data["event_id"]))
    columns["tenant"].append(str(data["tenant"]))
    columns["ts"].append(ts)
    for name in _STRINGS:
        columns[name].append(str(data.get(name, "")))
    turn, version = data.get("turn"), data.get("schema_version")
    columns["turn"].append(turn if type(turn) is int else None)
    columns["schema_version"].append(version if type(version) is int else None)
    columns["payload"].append(_payload(data))
    columns["log_partition"].append(record.partition)
    columns["log_offset"].append(record.offset)
    columns["ingested_at"].append(now)
