"""Silver → gold: daily metrics per tenant, day and agent version, recomputed per affected day.

Recomputed from silver rather than updated incrementally, so a late event, a duplicate or an
erasure can never leave a gold number that silver does not support. Definitions:

- conversations / resolved / escalated: `silver.conversations` rows by the day they started;
  rates are over conversations (null when there were none).
- tool_calls: `tool_call_end` events; tool_errors: those whose payload has a non-empty `error`
  or a `status` other than ok/success.
- guardrail_triggers: `guardrail_triggered` events.
- latency p50/p95 (linear interpolation): `latency_ms` of `response_sent` payloads, i.e. what the
  customer waited per reply (LLM and tool latencies are parts of it and are not mixed in).
- input/output tokens and cost: sums over `llm_call_end` payloads' `input_tokens`,
  `output_tokens` and `cost_usd`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import date
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.catalog import Catalog
from pyiceberg.expressions import AlwaysTrue, And, BooleanExpression, EqualTo

from ..core.errors import ValidationError
from .catalog import CONVERSATIONS, GOLD, GOLD_SCHEMA, SILVER, ensure_tables
from .silver import any_of, day_of, replace_rows, tenant_days_filter

_OK = {"ok", "success", "succeeded"}

_SQL = """
WITH ev AS (
  SELECT tenant, day, agent_version,
         count(*) FILTER (WHERE type = 'tool_call_end') AS tool_calls,
         count(*) FILTER (WHERE type = 'tool_call_end' AND tool_error) AS tool_errors,
         count(*) FILTER (WHERE type = 'guardrail_triggered') AS guardrail_triggers,
         quantile_cont(latency_ms, 0.5) FILTER (WHERE type = 'response_sent') AS latency_p50_ms,
         quantile_cont(latency_ms, 0.95) FILTER (WHERE type = 'response_sent') AS latency_p95_ms,
         coalesce(sum(input_tokens) FILTER (WHERE type = 'llm_call_end'), 0)::BIGINT AS input_tokens,
         coalesce(sum(output_tokens) FILTER (WHERE type = 'llm_call_end'), 0)::BIGINT AS output_tokens,
         coalesce(sum(cost_usd) FILTER (WHERE type = 'llm_call_end'), 0) AS cost_usd
  FROM events GROUP BY ALL),
cv AS (
  SELECT tenant, day, agent_version, count(*) AS conversations,
         sum(resolved)::BIGINT AS resolved, sum(escalated)::BIGINT AS escalated
  FROM convs GROUP BY ALL)
SELECT coalesce(ev.tenant, cv.tenant) AS tenant, coalesce(ev.day, cv.day) AS day,
       coalesce(ev.agent_version, cv.agent_version) AS agent_version,
       coalesce(cv.conversations, 0) AS conversations, coalesce(cv.resolved, 0) AS resolved,
       coalesce(cv.escalated, 0) AS escalated,
       cv.resolved / nullif(cv.conversations, 0) AS resolution_rate,
       cv.escalated / nullif(cv.conversations, 0) AS escalation_rate,
       coalesce(ev.tool_calls, 0) AS tool_calls, coalesce(ev.tool_errors, 0) AS tool_errors,
       ev.tool_errors / nullif(ev.tool_calls, 0) AS tool_error_rate,
       coalesce(ev.guardrail_triggers, 0) AS guardrail_triggers,
       ev.latency_p50_ms, ev.latency_p95_ms,
       coalesce(ev.input_tokens, 0) AS input_tokens, coalesce(ev.output_tokens, 0) AS output_tokens,
       coalesce(ev.cost_usd, 0) AS cost_usd
FROM ev FULL OUTER JOIN cv USING (tenant, day, agent_version)
ORDER BY tenant, day, agent_version
"""


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _tool_error(payload: dict[str, Any]) -> bool:
    status = payload.get("status")
    return bool(payload.get("error")) or (status is not None and str(status).lower() not in _OK)


def _event_rows(events: pa.Table) -> pa.Table:
    rows = []
    for e in events.to_pylist():
        payload = json.loads(e["payload"] or "{}")
        rows.append({"tenant": e["tenant"], "day": day_of(e["ts"]), "agent_version": e["agent_version"] or "",
                     "type": e["type"], "tool_error": _tool_error(payload),
                     "latency_ms": _number(payload.get("latency_ms")),
                     "input_tokens": _number(payload.get("input_tokens")),
                     "output_tokens": _number(payload.get("output_tokens")),
                     "cost_usd": _number(payload.get("cost_usd"))})
    schema = pa.schema([("tenant", pa.string()), ("day", pa.string()), ("agent_version", pa.string()),
                        ("type", pa.string()), ("tool_error", pa.bool_()), ("latency_ms", pa.float64()),
                        ("input_tokens", pa.float64()), ("output_tokens", pa.float64()), ("cost_usd", pa.float64())])
    return pa.Table.from_pylist(rows, schema=schema)


def _normalize(keys: Iterable[tuple[str, str | date]]) -> set[tuple[str, str]]:
    out = set()
    for key in keys:
        if not (isinstance(key, tuple) and len(key) == 2 and isinstance(key[0], str) and key[0]):
            raise ValidationError(f"gold days must be (tenant, day) pairs, got {key!r}")
        day = key[1].isoformat() if isinstance(key[1], date) else str(key[1])
        try:
            date.fromisoformat(day)
        except ValueError as exc:
            raise ValidationError(f"not a YYYY-MM-DD day: {day!r}") from exc
        out.add((key[0], day))
    return out


def aggregate(catalog: Catalog, *, days: Iterable[tuple[str, str | date]] | None = None) -> int:
    """Recompute `gold.daily` for the (tenant, day) keys (all of gold when None); returns rows written."""
    tables = ensure_tables(catalog)
    keys = None if days is None else _normalize(days)
    if keys is not None and not keys:
        return 0
    event_filter: BooleanExpression = AlwaysTrue() if keys is None else tenant_days_filter(keys)
    day_filter: BooleanExpression = AlwaysTrue() if keys is None else any_of(
        [And(EqualTo("tenant", t), EqualTo("day", d)) for t, d in sorted(keys)])
    columns = ("tenant", "ts", "agent_version", "type", "payload")
    events = _event_rows(tables[SILVER].scan(row_filter=event_filter, selected_fields=columns).to_arrow())
    convs = tables[CONVERSATIONS].scan(
        row_filter=day_filter, selected_fields=("tenant", "day", "agent_version", "resolved", "escalated")).to_arrow()
    convs = convs.set_column(convs.schema.get_field_index("agent_version"), "agent_version",
                             pc.fill_null(convs["agent_version"], ""))
    with duckdb.connect() as con:
        con.register("events", events)
        con.register("convs", convs)
        result = con.execute(_SQL).to_arrow_table()
    result = result.select(GOLD_SCHEMA.as_arrow().names).cast(GOLD_SCHEMA.as_arrow())
    replace_rows(tables[GOLD], result, day_filter)
    return result.num_rows

