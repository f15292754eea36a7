"""Table maintenance: compaction, snapshot expiry, schema evolution, time travel, erasure.

Erasure (GDPR art. 17) semantics: `erase_user` deletes the user's rows from every layer's
*current* snapshot (copy-on-write: the files holding them are rewritten without them), rebuilds
the user's conversations and the affected gold days from what remains, then expires every older
snapshot of the five tables and deletes the data, manifest and manifest-list files that only the
expired snapshots referenced. Afterwards no live snapshot and no file in the warehouse holds the
user's rows, and time travel to before the erasure is no longer possible (that is the point).
Old `metadata.json` files remain; they hold schemas and snapshot summaries (counts), no rows.
Silver stores a hash instead of a user id that is itself PII, and erasure matches both forms.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pyarrow as pa
from pyiceberg.catalog import Catalog
from pyiceberg.expressions import (
    AlwaysTrue,
    And,
    BooleanExpression,
    EqualTo,
    GreaterThanOrEqual,
    In,
    IsNull,
    LessThan,
    Or,
)
from pyiceberg.partitioning import PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.transforms import DayTransform, IdentityTransform
from pyiceberg.types import (
    BooleanType,
    DateType,
    DoubleType,
    IcebergType,
    IntegerType,
    LongType,
    StringType,
    TimestamptzType,
)

from ..core.errors import ValidationError
from .catalog import BRONZE, CONVERSATIONS, DEAD_LETTERS, GOLD, SILVER, TABLES, ensure_table, ensure_tables
from .gold import aggregate
from .pii import pseudonymize_user
from .silver import bronze_marker, day_of, rebuild_conversations, refine

_TYPES: dict[str, IcebergType] = {
    "string": StringType(), "int": IntegerType(), "long": LongType(), "double": DoubleType(),
    "boolean": BooleanType(), "date": DateType(), "timestamptz": TimestamptzType(),
}

ALL_ROWS: BooleanExpression = AlwaysTrue()


@dataclass(frozen=True)
class CompactResult:
    files_before: int
    files_after: int
    partitions_rewritten: int


def _table(catalog: Catalog, name: str) -> Table:
    if name not in TABLES:
        raise ValidationError(f"unknown lake table {name!r}", hint=f"one of: {', '.join(TABLES)}")
    return ensure_table(catalog, name)


def count_files(table: Table, row_filter: BooleanExpression | str | None = None) -> int:
    """Data files a scan with this filter would read: the scan plan, after partition pruning."""
    return sum(1 for _ in table.scan(row_filter=row_filter if row_filter is not None else AlwaysTrue()).plan_files())


def _partition_filter(spec: PartitionSpec, schema: Schema, partition: tuple[Any, ...]) -> BooleanExpression:
    parts: list[BooleanExpression] = []
    for field, value in zip(spec.fields, partition, strict=True):
        column = schema.find_column_name(field.source_id)
        if value is None:
            parts.append(IsNull(column))
        elif isinstance(field.transform, IdentityTransform):
            parts.append(EqualTo(column, value))
        elif isinstance(field.transform, DayTransform):
            start = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=value if isinstance(value, int) else
                                                                 (value - date(1970, 1, 1)).days)
            parts.append(GreaterThanOrEqual(column, start.isoformat()))
            parts.append(LessThan(column, (start + timedelta(days=1)).isoformat()))
        else:
            raise ValidationError(f"compaction does not handle the {field.transform} partition transform")
    if not parts:
        return AlwaysTrue()
    return parts[0] if len(parts) == 1 else And(*parts)


def compact(catalog: Catalog, table_name: str, *, target_rows_per_file: int = 1_000_000) -> CompactResult:
    """Rewrite each partition's small files into ceil(rows / target) files, in one commit.

    Each partition is deleted by its partition filter (whole files drop, nothing is rewritten row
    by row) and its rows appended back in chunks; readers see the old files or the new, never both.
    """
    if target_rows_per_file < 1:
        raise ValidationError(f"target_rows_per_file must be >= 1, got {target_rows_per_file}")
    table = _table(catalog, table_name)
    groups: dict[tuple[int, tuple[Any, ...]], list[int]] = defaultdict(list)
    for task in table.scan().plan_files():
        key = (task.file.spec_id, tuple(task.file.partition[i] for i in range(len(task.file.partition))))
        groups[key].append(task.file.record_count)
    before = sum(len(v) for v in groups.values())
    todo = [(key, sum(counts)) for key, counts in groups.items() if len(counts) > -(-sum(counts) // target_rows_per_file)]
    if todo:
        with table.transaction() as tx:
            for (spec_id, partition), _rows in todo:
                row_filter = _partition_filter(table.specs()[spec_id], table.schema(), partition)
                rows = table.scan(row_filter=row_filter).to_arrow()
                tx.delete(row_filter)
                for start in range(0, rows.num_rows, target_rows_per_file):
                    tx.append(rows.slice(start, target_rows_per_file))
        table = table.refresh()
    return CompactResult(before, count_files(table), len(todo))


def _referenced_files(table: Table) -> set[str]:
    paths: set[str] = set()
    seen_manifests: set[str] = set()
    for snapshot in table.metadata.snapshots:
        paths.add(snapshot.manifest_list)
        for manifest in snapshot.manifests(table.io):
            if manifest.manifest_path in seen_manifests:
                continue
            seen_manifests.add(manifest.manifest_path)
            paths.update(entry.data_file.file_path for entry in manifest.fetch_manifest_entry(table.io))
    return paths | seen_manifests


def expire_snapshots(catalog: Catalog, table_name: str, older_than: datetime) -> dict[str, int]:
    """Expire unprotected snapshots older than `older_than` and delete files only they referenced.

    Bronze keeps every snapshot silver has not consumed yet: the incremental refine needs them.
    """
    if older_than.tzinfo is None:
        raise ValidationError("older_than must be timezone-aware")
    table = _table(catalog, table_name)
    cutoff = int(older_than.timestamp() * 1000)
    protected = {ref.snapshot_id for ref in table.metadata.refs.values()}
    if table_name == BRONZE:  # keep the lineage back to silver's marker while appends wait there
        consumed = bronze_marker(ensure_table(catalog, SILVER))[1] or 0
        if any((s.sequence_number or 0) > consumed and s.summary is not None and s.summary.operation == "append"
               for s in table.metadata.snapshots):
            protected |= {s.snapshot_id for s in table.metadata.snapshots if (s.sequence_number or 0) > consumed}
    expire = [s.snapshot_id for s in table.metadata.snapshots if s.timestamp_ms < cutoff and s.snapshot_id not in protected]
    if not expire:
        return {"snapshots": 0, "files_deleted": 0}
    before = _referenced_files(table)
    table.maintenance.expire_snapshots().by_ids(expire).commit()
    orphans = before - _referenced_files(table.refresh())
    for path in orphans:
        table.io.delete(path)
    return {"snapshots": len(expire), "files_deleted": len(orphans)}


def add_column(catalog: Catalog, table_name: str, name: str, kind: IcebergType | str, *, doc: str | None = None) -> Table:
    """Schema evolution: an optional column; existing rows read it as null, new writes carry it."""
    if isinstance(kind, str):
        if kind not in _TYPES:
            raise ValidationError(f"unknown column type {kind!r}", hint=f"one of: {', '.join(_TYPES)}")
        kind = _TYPES[kind]
    table = _table(catalog, table_name)
    if name.lower() in {f.name.lower() for f in table.schema().fields}:
        raise ValidationError(f"{table_name} already has a column {name!r}")
    with table.update_schema() as update:
        update.add_column(name, kind, doc=doc)
    return table.refresh()


def scan_at(catalog: Catalog, table_name: str, *, snapshot_id: int | None = None, at: datetime | None = None,
            row_filter: BooleanExpression | str = ALL_ROWS) -> pa.Table:
    """Time travel: the table as it was at a snapshot id, or at a moment (the snapshot current then)."""
    if (snapshot_id is None) == (at is None):
        raise ValidationError("give exactly one of snapshot_id or at")
    table = _table(catalog, table_name)
    if at is not None:
        if at.tzinfo is None:
            raise ValidationError("at must be timezone-aware")
        snapshot = table.snapshot_as_of_timestamp(int(at.timestamp() * 1000))
        if snapshot is None:
            raise ValidationError(f"{table_name} had no snapshot at {at.isoformat()}")
        snapshot_id = snapshot.snapshot_id
    elif table.snapshot_by_id(snapshot_id) is None:  # type: ignore[arg-type]
        raise ValidationError(f"{table_name} has no snapshot {snapshot_id} (expired?)")
    return table.scan(row_filter=row_filter, snapshot_id=snapshot_id).to_arrow()


def _delete_rows(table: Table, row_filter: BooleanExpression) -> pa.Table:
    """Delete the matching rows; returns them (their keys tell what to recompute)."""
    rows = table.scan(row_filter=row_filter).to_arrow()
    if rows.num_rows:
        table.delete(row_filter)
    return rows


def erase_user(catalog: Catalog, tenant: str, user_id: str, *, now: datetime | None = None) -> dict[str, int]:
    """Erase one user's rows from every layer and every live snapshot.

    Returns rows deleted per table; for `gold.daily`, the number of day rows recomputed.
    """
    if not tenant or not user_id:
        raise ValidationError("erase_user needs a tenant and a user id")
    refine(catalog)  # consume pending bronze first: its added files would otherwise resurrect the rows
    tables = ensure_tables(catalog)
    ids = sorted({user_id, pseudonymize_user(user_id) or user_id})
    user_filter = And(EqualTo("tenant", tenant), In("user_id", ids))
    counts = {BRONZE: _delete_rows(tables[BRONZE], user_filter).num_rows}
    silver_rows = _delete_rows(tables[SILVER], user_filter)
    counts[SILVER] = silver_rows.num_rows

    dead_filter = Or(EqualTo("tenant", tenant), IsNull("tenant"))
    dead = tables[DEAD_LETTERS].scan(row_filter=dead_filter).to_arrow()
    keep = []
    for row in dead.to_pylist():
        raw = json.loads(row["raw"])
        keep.append(not (raw.get("user_id") in ids and raw.get("tenant") in (tenant, None, "")))
    counts[DEAD_LETTERS] = keep.count(False)
    if counts[DEAD_LETTERS]:
        tables[DEAD_LETTERS].overwrite(dead.filter(pa.array(keep)), overwrite_filter=dead_filter)

    conversations = tables[CONVERSATIONS]
    theirs = conversations.scan(row_filter=user_filter, selected_fields=("tenant", "conversation_id", "day")).to_arrow()
    keys = set(zip(silver_rows["tenant"].to_pylist(), silver_rows["conversation_id"].to_pylist(), strict=True))
    keys |= set(zip(theirs["tenant"].to_pylist(), theirs["conversation_id"].to_pylist(), strict=True))
    days = {(tenant, day_of(ts)) for ts in silver_rows["ts"].to_pylist()}
    days |= rebuild_conversations(catalog, keys)
    _delete_rows(conversations.refresh(), user_filter)  # a conversation shared with others keeps no trace either
    counts[CONVERSATIONS] = theirs.num_rows
    counts[GOLD] = aggregate(catalog, days=days) if days else 0

    cutoff = (now or datetime.now(UTC)) + timedelta(seconds=1)
    for name in (BRONZE, SILVER, DEAD_LETTERS, CONVERSATIONS, GOLD):
        expire_snapshots(catalog, name, cutoff)
    return counts
