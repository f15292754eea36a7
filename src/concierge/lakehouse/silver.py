"""Bronze → silver: validate, deduplicate, mask PII; rebuild the affected conversations.

Incremental by snapshot lineage. Every silver write records the bronze snapshot it consumed up to,
in the silver snapshot's summary (`concierge.bronze_snapshot`, for audit) and, in the same commit,
in silver's table properties (which survive snapshot expiry). A run reads only the data files that
bronze *append* snapshots added after that point (pyiceberg's incremental append scan): bronze is
append-only for ingestion, while compaction and erasure commit `overwrite`/`delete` snapshots that
re-add rows already consumed, so those are skipped. The bronze sequence number is kept too, so the
start point is found even when the recorded snapshot itself has since been expired.

Crash safety: dead letters are written first, keyed by the bronze position (log partition and
offset), then silver with the marker in one commit. A re-run after a crash between the two
re-reads the same bronze rows, skips dead letters already written and event ids already in silver.
"""

from __future__ import annotations

import json
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pydantic
from pyiceberg.catalog import Catalog
from pyiceberg.expressions import (
    AlwaysFalse,
    And,
    BooleanExpression,
    EqualTo,
    GreaterThanOrEqual,
    In,
    IsNull,
    LessThan,
    Or,
)
from pyiceberg.table import Table
from pyiceberg.table.snapshots import ancestors_of

from ..events.schema import SCHEMA_VERSION, AgentEvent, EventType
from .catalog import (
    BRONZE,
    CONVERSATION_SCHEMA,
    CONVERSATIONS,
    DEAD_LETTER_SCHEMA,
    DEAD_LETTERS,
    SILVER,
    SILVER_SCHEMA,
    ensure_tables,
)
from .pii import mask_text, mask_value, pseudonymize_user

MARKER = "concierge.bronze_snapshot"
MARKER_SEQUENCE = "concierge.bronze_sequence"
SUPPORTED_SCHEMA_VERSIONS = frozenset({SCHEMA_VERSION})
_EVENT_COLUMNS = ("event_id", "type", "ts", "tenant", "conversation_id", "turn", "trace_id", "user_id",
                  "agent_version", "schema_version", "payload")


@dataclass(frozen=True)
class RefineResult:
    """What one run did; `days` are the (tenant, YYYY-MM-DD) keys gold must recompute."""

    bronze_snapshot: int | None
    read: int = 0
    written: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    conversations: int = 0
    days: frozenset[tuple[str, str]] = field(default_factory=frozenset)


def day_of(ts: datetime) -> str:
    return ts.astimezone(UTC).date().isoformat()


def day_range(day: str) -> tuple[datetime, datetime]:
    start = datetime.fromisoformat(day).replace(tzinfo=UTC)
    return start, start + timedelta(days=1)


def any_of(expressions: list[BooleanExpression]) -> BooleanExpression:
    if not expressions:
        return AlwaysFalse()
    return expressions[0] if len(expressions) == 1 else Or(*expressions)


def tenant_days_filter(keys: set[tuple[str, str]], time_field: str = "ts") -> BooleanExpression:
    """(tenant, day) keys as an Iceberg filter that prunes to exactly those partitions."""
    parts = []
    for tenant, day in sorted(keys):
        start, end = day_range(day)
        parts.append(And(EqualTo("tenant", tenant), GreaterThanOrEqual(time_field, start.isoformat()),
                         LessThan(time_field, end.isoformat())))
    return any_of(parts)


def conversations_filter(keys: set[tuple[str, str]]) -> BooleanExpression:
    by_tenant: dict[str, set[str]] = defaultdict(set)
    for tenant, conversation in keys:
        by_tenant[tenant].add(conversation)
    return any_of([And(EqualTo("tenant", t), In("conversation_id", ids)) for t, ids in sorted(by_tenant.items())])


def replace_rows(table: Table, rows: pa.Table, row_filter: BooleanExpression) -> None:
    """Overwrite by filter in one commit (silencing the warning when nothing matched yet)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Delete operation did not match any records")
        table.overwrite(rows, overwrite_filter=row_filter)


def bronze_marker(silver: Table) -> tuple[int | None, int | None]:
    """(bronze snapshot id, its sequence number) silver has consumed up to; (None, None) at first."""
    props = silver.properties
    if MARKER in props:
        return int(props[MARKER]), int(props[MARKER_SEQUENCE])
    return None, None


def _pending_bronze(bronze: Table, consumed_sequence: int | None) -> tuple[pa.Table, int | None, int | None]:
    current = bronze.current_snapshot()
    if current is None:
        return bronze.schema().as_arrow().empty_table(), None, None
    newer = [s for s in ancestors_of(current, bronze.metadata)
             if consumed_sequence is None or (s.sequence_number or 0) > consumed_sequence]
    if not newer:
        return bronze.schema().as_arrow().empty_table(), current.snapshot_id, current.sequence_number
    parent = newer[-1].parent_snapshot_id
    start = parent if parent is not None and bronze.metadata.snapshot_by_id(parent) is not None else None
    rows = bronze.incremental_append_scan(from_snapshot_id_exclusive=start,
                                          to_snapshot_id_inclusive=current.snapshot_id).to_arrow()
    return rows, current.snapshot_id, current.sequence_number


def validate_row(row: dict[str, Any]) -> tuple[AgentEvent | None, str]:
    """The bronze row as an event, or None and a reason that quotes no field value (no PII)."""
    raw_payload = row.get("payload")
    try:
        payload = json.loads(raw_payload) if raw_payload not in (None, "") else {}
    except (TypeError, ValueError) as exc:
        return None, f"payload is not valid JSON: {type(exc).__name__} at position {getattr(exc, 'pos', '?')}"
    if not isinstance(payload, dict):
        return None, f"payload must be a JSON object, got {type(payload).__name__}"
    version = row.get("schema_version")
    if version is not None and version not in SUPPORTED_SCHEMA_VERSIONS:
        return None, f"unsupported schema_version {version} (supported: {sorted(SUPPORTED_SCHEMA_VERSIONS)})"
    if row.get("type") is not None and row["type"] not in EventType._value2member_map_:
        return None, "unknown event type"
    data = {k: row[k] for k in _EVENT_COLUMNS if k != "payload" and row.get(k) is not None}
    try:
        return AgentEvent.model_validate({**data, "payload": payload}), ""
    except pydantic.ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'event'}: {e['msg']}" for e in exc.errors())
        return None, f"invalid event: {problems}"


def _masked_raw(row: dict[str, Any]) -> str:
    raw = dict(row)
    try:
        raw["payload"] = json.loads(raw["payload"]) if raw.get("payload") else raw.get("payload")
    except ValueError:
        pass  # kept as text; mask_value masks it as a string
    raw["user_id"] = pseudonymize_user(raw.get("user_id"))
    return json.dumps(mask_value(raw), default=str, sort_keys=True)


def _existing_dead_letter_keys(table: Table, tenants: set[str | None]) -> set[tuple[Any, Any]]:
    named = [t for t in tenants if t is not None]
    row_filter = Or(In("tenant", named), IsNull("tenant")) if named else IsNull("tenant")
    keys = set()
    for raw in table.scan(row_filter=row_filter, selected_fields=("raw",)).to_arrow()["raw"].to_pylist():
        parsed = json.loads(raw)
        keys.add((parsed.get("log_partition"), parsed.get("log_offset")))
    return keys


def _write_dead_letters(table: Table, rows: list[tuple[dict[str, Any], str]], now: datetime) -> int:
    if not rows:
        return 0
    seen = _existing_dead_letter_keys(table, {r.get("tenant") for r, _ in rows})
    out = []
    for row, reason in rows:
        key = (row.get("log_partition"), row.get("log_offset"))
        if key in seen:
            continue
        seen.add(key)
        event_id, tenant = row.get("event_id"), row.get("tenant")
        out.append({"event_id": mask_text(event_id) if isinstance(event_id, str) else None,
                    "tenant": tenant if isinstance(tenant, str) and tenant else None,
                    "raw": _masked_raw(row), "reason": reason, "failed_at": now})
    if out:
        table.append(pa.Table.from_pylist(out, schema=DEAD_LETTER_SCHEMA.as_arrow()))
    return len(out)


def _silver_row(event: AgentEvent, now: datetime) -> dict[str, Any]:
    return {"event_id": event.event_id, "type": event.type.value, "ts": event.ts, "tenant": event.tenant,
            "conversation_id": event.conversation_id, "turn": event.turn, "trace_id": event.trace_id,
            "user_id": pseudonymize_user(event.user_id), "agent_version": mask_text(event.agent_version),
            "schema_version": event.schema_version,
            "payload": json.dumps(mask_value(event.payload), sort_keys=True, default=str),
            "processed_at": now}


def refine(catalog: Catalog, *, now: datetime | None = None) -> RefineResult:
    """Move what bronze gained since the last run into silver; rebuild touched conversations."""
    now = now or datetime.now(UTC)
    tables = ensure_tables(catalog)
    bronze, silver = tables[BRONZE], tables[SILVER]
    _, consumed_sequence = bronze_marker(silver)
    rows, snapshot_id, sequence = _pending_bronze(bronze, consumed_sequence)
    if snapshot_id is None or (not rows.num_rows and bronze_marker(silver)[0] == snapshot_id):
        return RefineResult(bronze_snapshot=snapshot_id)

    valid: dict[str, AgentEvent] = {}
    invalid: list[tuple[dict[str, Any], str]] = []
    duplicates = 0
    for row in sorted(rows.to_pylist(), key=lambda r: (r.get("log_partition") or 0, r.get("log_offset") or 0)):
        event, reason = validate_row(row)
        if event is None:
            invalid.append((row, reason))
        elif event.event_id in valid:
            duplicates += 1
        else:
            valid[event.event_id] = event
    dead = _write_dead_letters(tables[DEAD_LETTERS], invalid, now)

    days = {(e.tenant, day_of(e.ts)) for e in valid.values()}
    if days:
        existing = silver.scan(row_filter=tenant_days_filter(days), selected_fields=("event_id",)).to_arrow()
        for event_id in set(existing["event_id"].to_pylist()) & valid.keys():
            del valid[event_id]
            duplicates += 1
    marker = {MARKER: str(snapshot_id), MARKER_SEQUENCE: str(sequence)}
    with silver.transaction() as tx:
        if valid:
            table = pa.Table.from_pylist([_silver_row(e, now) for e in valid.values()],
                                         schema=SILVER_SCHEMA.as_arrow())
            tx.append(table, snapshot_properties=marker)
        tx.set_properties(marker)

    keys = {(e.tenant, e.conversation_id) for e in valid.values()}
    touched = rebuild_conversations(catalog, keys)
    return RefineResult(bronze_snapshot=snapshot_id, read=rows.num_rows, written=len(valid), duplicates=duplicates,
                        dead_letters=dead, conversations=len(keys),
                        days=frozenset({(e.tenant, day_of(e.ts)) for e in valid.values()} | touched))


def _conversation(tenant: str, conversation_id: str, events: list[dict[str, Any]]) -> dict[str, Any]:
    events.sort(key=lambda e: (e["ts"], e["turn"] or 0))
    lines, types = [], {e["type"] for e in events}
    for e in events:
        if e["type"] in (EventType.MESSAGE_RECEIVED, EventType.RESPONSE_SENT):
            text = (json.loads(e["payload"] or "{}") or {}).get("text")
            if isinstance(text, str) and text:
                who = "user" if e["type"] == EventType.MESSAGE_RECEIVED else "agent"
                lines.append(f"{who}: {mask_text(text)}")
    escalated = EventType.ESCALATED in types
    return {
        "tenant": tenant, "conversation_id": conversation_id,
        "user_id": next((e["user_id"] for e in events if e["user_id"]), None),
        "agent_version": next((e["agent_version"] for e in reversed(events) if e["agent_version"]), None),
        "day": day_of(events[0]["ts"]), "started_at": events[0]["ts"], "ended_at": events[-1]["ts"],
        "turns": sum(e["type"] == EventType.MESSAGE_RECEIVED for e in events), "events": len(events),
        "transcript": "\n".join(lines),
        "resolved": int(EventType.RESPONSE_SENT in types and not escalated), "escalated": int(escalated),
    }


def rebuild_conversations(catalog: Catalog, keys: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """Recompute `silver.conversations` rows for the keys from silver; returns old and new (tenant, day)."""
    if not keys:
        return set()
    tables = ensure_tables(catalog)
    conversations, row_filter = tables[CONVERSATIONS], conversations_filter(keys)
    old = conversations.scan(row_filter=row_filter, selected_fields=("tenant", "day")).to_arrow()
    touched = set(zip(old["tenant"].to_pylist(), old["day"].to_pylist(), strict=True))
    columns = ("tenant", "conversation_id", "ts", "turn", "type", "user_id", "agent_version", "payload")
    events = tables[SILVER].scan(row_filter=row_filter, selected_fields=columns).to_arrow().to_pylist()
    grouped: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        grouped[(e["tenant"], e["conversation_id"])].append(e)
    rows = [_conversation(t, c, evs) for (t, c), evs in sorted(grouped.items())]
    touched |= {(r["tenant"], r["day"]) for r in rows}
    replace_rows(conversations, pa.Table.from_pylist(rows, schema=CONVERSATION_SCHEMA.as_arrow()), row_filter)
    return touched
