"""The one-pass partitioned append writes what pyiceberg's own `append` writes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa
from pyiceberg.expressions import And, EqualTo, GreaterThanOrEqual, LessThan
from pyiceberg.schema import Schema
from pyiceberg.types import NestedField, StringType

from concierge.lakehouse.catalog import BRONZE, BRONZE_SCHEMA, ensure_table, open_catalog
from concierge.lakehouse.partitioned import append_partitioned

ARROW = BRONZE_SCHEMA.as_arrow()
DAY0 = datetime(2026, 11, 20, tzinfo=UTC)


def _rows(n: int) -> pa.Table:
    """Rows in no particular order across 3 tenants and 3 days (one day holds a single tenant)."""
    tenants = [f"t{(i * 7) % 3}" for i in range(n)]  # every tenant on every day: i mod 3 and i div 3
    days = [(i // 3) % 3 for i in range(n)]
    tenants = [t if d != 2 else "t9" for t, d in zip(tenants, days, strict=True)]
    return pa.Table.from_pydict({
        "event_id": [f"e{i}" for i in range(n)], "type": ["message_received"] * n,
        "ts": [DAY0 + timedelta(days=d, seconds=i) for i, d in enumerate(days)], "tenant": tenants,
        "conversation_id": [f"c{i % 11}" for i in range(n)], "turn": [i % 4 for i in range(n)],
        "trace_id": [""] * n, "user_id": [f"u{i % 5}" for i in range(n)], "agent_version": ["v1"] * n,
        "schema_version": [1] * n, "payload": [f'{{"i": {i}}}' for i in range(n)],
        "log_partition": [i % 4 for i in range(n)], "log_offset": list(range(n)),
        "ingested_at": [DAY0] * n,
    }, schema=ARROW)


def _files(table) -> list[tuple[tuple, int]]:  # type: ignore[no-untyped-def]
    return sorted((tuple(task.file.partition), task.file.record_count) for task in table.scan().plan_files())


def test_same_files_partitions_and_rows_as_pyiceberg_append(tmp_path) -> None:
    rows = _rows(1000)
    ours = ensure_table(open_catalog(tmp_path / "ours"), BRONZE)
    theirs = ensure_table(open_catalog(tmp_path / "theirs"), BRONZE)
    tx = ours.transaction()
    files = append_partitioned(tx, ours.io, rows, {"concierge.test": "yes"})
    ours = tx.commit_transaction()
    theirs.append(rows)

    assert files == 7  # days 0 and 1 × tenants t0..t2, day 2 × t9
    assert _files(ours) == _files(theirs)
    assert ours.current_snapshot().summary["concierge.test"] == "yes"
    assert ours.current_snapshot().summary.operation.value == "append"
    assert ours.scan().to_arrow().sort_by("log_offset").equals(rows.sort_by("log_offset"))

    # Partition pruning works off the tuples it wrote: one tenant-day plans one file.
    day1 = And(EqualTo("tenant", "t1"), And(GreaterThanOrEqual("ts", (DAY0 + timedelta(days=1)).isoformat()),
                                             LessThan("ts", (DAY0 + timedelta(days=2)).isoformat())))
    planned = list(ours.scan(row_filter=day1).plan_files())
    assert len(planned) == 1
    expected = sorted(r["event_id"] for r in rows.to_pylist()
                      if r["tenant"] == "t1" and r["ts"].date() == (DAY0 + timedelta(days=1)).date())
    assert sorted(ours.scan(row_filter=day1).to_arrow().column("event_id").to_pylist()) == expected


def test_unpartitioned_table_gets_one_file(tmp_path) -> None:
    catalog = open_catalog(tmp_path)
    catalog.create_namespace("x")
    table = catalog.create_table("x.plain", schema=Schema(NestedField(1, "name", StringType(), required=False)))
    rows = pa.table({"name": ["a", "b", None]}, schema=table.schema().as_arrow())
    tx = table.transaction()
    assert append_partitioned(tx, table.io, rows, {}) == 1
    assert tx.commit_transaction().scan().to_arrow().column("name").to_pylist() == ["a", "b", None]
