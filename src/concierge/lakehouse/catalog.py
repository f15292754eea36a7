"""The Iceberg catalog and the lake's table definitions.

A SQL catalog keeps the table pointers (SQLite file by default, PostgreSQL by URL) and a
warehouse folder holds the Parquet data and the Iceberg metadata (a local folder by default,
object storage by URL). Tables are real Iceberg: Spark, Trino or DuckDB can read them.

Layers: `bronze.events` (raw, append-only), `silver.events` (deduplicated, validated, PII
masked), `silver.dead_letters` (what failed validation, with the reason), `silver.conversations`
and `gold.daily` (per tenant, day and agent version). Events are partitioned by day and tenant,
so a one-tenant, one-day query reads only that partition's files.
"""

from __future__ import annotations

from pathlib import Path

from pyiceberg.catalog import Catalog
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import NamespaceAlreadyExistsError, NoSuchTableError
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.transforms import DayTransform, IdentityTransform
from pyiceberg.types import (
    DoubleType,
    IntegerType,
    LongType,
    NestedField,
    StringType,
    TimestamptzType,
)

from ..core.errors import ConfigError

BRONZE = "bronze.events"
SILVER = "silver.events"
DEAD_LETTERS = "silver.dead_letters"
CONVERSATIONS = "silver.conversations"
GOLD = "gold.daily"

# The event's own fields, shared by bronze and silver (bronze keeps `payload` as raw JSON text).
_EVENT_FIELDS = [
    ("event_id", StringType(), True),
    ("type", StringType(), True),
    ("ts", TimestamptzType(), True),
    ("tenant", StringType(), True),
    ("conversation_id", StringType(), True),
    ("turn", IntegerType(), False),
    ("trace_id", StringType(), False),
    ("user_id", StringType(), False),
    ("agent_version", StringType(), False),
    ("schema_version", IntegerType(), False),
    ("payload", StringType(), False),
]


def _schema(fields: list[tuple[str, object, bool]]) -> Schema:
    return Schema(*[NestedField(i, name, kind, required=required)  # type: ignore[arg-type]
                    for i, (name, kind, required) in enumerate(fields, 1)])


BRONZE_SCHEMA = _schema([
    *_EVENT_FIELDS,
    ("log_partition", IntegerType(), True),
    ("log_offset", LongType(), True),
    ("ingested_at", TimestamptzType(), True),
])
SILVER_SCHEMA = _schema([*_EVENT_FIELDS, ("processed_at", TimestamptzType(), True)])
DEAD_LETTER_SCHEMA = _schema([
    ("event_id", StringType(), False),
    ("tenant", StringType(), False),
    ("raw", StringType(), True),  # the bronze row as JSON, PII masked
    ("reason", StringType(), True),
    ("failed_at", TimestamptzType(), True),
])
CONVERSATION_SCHEMA = _schema([
    ("tenant", StringType(), True),
    ("conversation_id", StringType(), True),
    ("user_id", StringType(), False),
    ("agent_version", StringType(), False),
    ("day", StringType(), True),
    ("started_at", TimestamptzType(), True),
    ("ended_at", TimestamptzType(), True),
    ("turns", IntegerType(), True),
    ("events", IntegerType(), True),
    ("transcript", StringType(), False),  # PII masked
    ("resolved", IntegerType(), True),
    ("escalated", IntegerType(), True),
])
GOLD_SCHEMA = _schema([
    ("tenant", StringType(), True),
    ("day", StringType(), True),
    ("agent_version", StringType(), True),
    ("conversations", LongType(), True),
    ("resolved", LongType(), True),
    ("escalated", LongType(), True),
    ("resolution_rate", DoubleType(), False),
    ("escalation_rate", DoubleType(), False),
    ("tool_calls", LongType(), True),
    ("tool_errors", LongType(), True),
    ("tool_error_rate", DoubleType(), False),
    ("guardrail_triggers", LongType(), True),
    ("latency_p50_ms", DoubleType(), False),
    ("latency_p95_ms", DoubleType(), False),
    ("input_tokens", LongType(), True),
    ("output_tokens", LongType(), True),
    ("cost_usd", DoubleType(), True),
])


def _by_day_and_tenant(schema: Schema, time_field: str = "ts") -> PartitionSpec:
    return PartitionSpec(
        PartitionField(schema.find_field(time_field).field_id, 1000, DayTransform(), f"{time_field}_day"),
        PartitionField(schema.find_field("tenant").field_id, 1001, IdentityTransform(), "tenant"),
    )


def _by_tenant(schema: Schema) -> PartitionSpec:
    return PartitionSpec(PartitionField(schema.find_field("tenant").field_id, 1000, IdentityTransform(), "tenant"))


TABLES: dict[str, tuple[Schema, PartitionSpec]] = {
    BRONZE: (BRONZE_SCHEMA, _by_day_and_tenant(BRONZE_SCHEMA)),
    SILVER: (SILVER_SCHEMA, _by_day_and_tenant(SILVER_SCHEMA)),
    DEAD_LETTERS: (DEAD_LETTER_SCHEMA, _by_tenant(DEAD_LETTER_SCHEMA)),
    CONVERSATIONS: (CONVERSATION_SCHEMA, _by_tenant(CONVERSATION_SCHEMA)),
    GOLD: (GOLD_SCHEMA, _by_tenant(GOLD_SCHEMA)),
}


# Tables that hold masked data are written without Parquet compression, so a byte-level audit of
# their files (the PII test does one) sees every string exactly as stored.
UNCOMPRESSED = {"write.parquet.compression-codec": "uncompressed"}
# Bronze: pyiceberg must not retry a conflicting append rebased onto the winner's snapshot (that would
# drop the writer's requirement that the bus position it read is still current), and lz4 writes
# about twice as fast as the default zstd, which is what ingestion is bound by.
BRONZE_PROPERTIES = {"commit.retry.num-retries": "0", "write.parquet.compression-codec": "lz4"}
TABLE_PROPERTIES: dict[str, dict[str, str]] = {
    BRONZE: BRONZE_PROPERTIES, SILVER: UNCOMPRESSED, DEAD_LETTERS: UNCOMPRESSED, CONVERSATIONS: UNCOMPRESSED, GOLD: UNCOMPRESSED,
}


def open_catalog(folder: Path | str, *, catalog_url: str | None = None, warehouse: str | None = None) -> Catalog:
    """The lake's catalog: by default `folder/catalog.db` (SQLite) and `folder/warehouse/`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    uri = catalog_url or f"sqlite:///{folder / 'catalog.db'}"
    location = warehouse or (folder / "warehouse").resolve().as_uri()
    try:
        return SqlCatalog("concierge", uri=uri, warehouse=location)
    except Exception as exc:
        raise ConfigError(f"cannot open the lake catalog at {uri}: {exc}",
                          hint="catalog_url is a SQLAlchemy URL: sqlite:///path or postgresql+psycopg://...") from exc


def ensure_table(catalog: Catalog, name: str) -> Table:
    """The table, created with its schema and partitioning on first use."""
    schema, spec = TABLES[name]
    namespace = name.split(".")[0]
    try:
        catalog.create_namespace(namespace)
    except NamespaceAlreadyExistsError:
        pass
    properties = TABLE_PROPERTIES.get(name, {})
    try:
        table = catalog.load_table(name)
    except NoSuchTableError:
        return catalog.create_table_if_not_exists(name, schema=schema, partition_spec=spec, properties=properties)
    missing = {key: value for key, value in properties.items() if table.properties.get(key) != value}
    if missing:  # a table created before the property existed
        with table.transaction() as tx:
            tx.set_properties(missing)
        table = catalog.load_table(name)
    return table


def ensure_tables(catalog: Catalog) -> dict[str, Table]:
    return {name: ensure_table(catalog, name) for name in TABLES}
