"""SQL over the lake: a DuckDB connection where every lake table has its own name.

Two ways to expose a table, tried in order:

1. DuckDB's iceberg extension, loaded by path from the `duckdb_extension_iceberg` package
   (never installed from the network: auto-install is switched off) and `iceberg_scan` over the
   table's current metadata file. It needs DuckDB's `avro` extension too; where that is not on
   the machine the load fails fast, and
2. a view over pyiceberg's Arrow scan of the current snapshot (reads every partition's files;
   fine for the lake sizes a CLI query targets).

`Lake.backend` says which one was used ("iceberg" or "arrow").
"""

from __future__ import annotations

import glob
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa
from pyiceberg.catalog import Catalog

from ..core.errors import ValidationError
from .catalog import TABLES, ensure_tables, open_catalog

ICEBERG = "iceberg"
ARROW = "arrow"


def _extension_files(package: str, name: str) -> list[str]:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return []
    return sorted(p for root in spec.submodule_search_locations
                  for p in glob.glob(f"{root}/**/{name}.duckdb_extension", recursive=True))


def load_iceberg_extension(con: duckdb.DuckDBPyConnection) -> str | None:
    """Load the iceberg extension offline; None when loaded, else why not."""
    try:
        for path in _extension_files("duckdb_extension_avro", "avro"):
            con.execute(f"LOAD '{path}'")
        paths = _extension_files("duckdb_extension_iceberg", "iceberg")
        if not paths:
            return "the duckdb_extension_iceberg package is not installed"
        con.execute(f"LOAD '{paths[-1]}'")
        return None
    except duckdb.Error as exc:
        return str(exc).splitlines()[0][:300]


@dataclass
class Lake:
    """An open DuckDB connection with the lake's tables as views."""

    con: duckdb.DuckDBPyConnection
    backend: str
    reason: str | None = None  # why the extension was not used
    tables: list[str] = field(default_factory=list)

    def query(self, sql: str) -> pa.Table:
        if not sql or not sql.strip():
            raise ValidationError("empty SQL")
        try:
            return self.con.execute(sql).to_arrow_table()
        except duckdb.Error as exc:
            raise ValidationError(f"SQL failed: {exc}",
                                  hint=f"tables: {', '.join(self.tables)}") from exc

    def close(self) -> None:
        self.con.close()


def _local(location: str) -> str:
    return location.removeprefix("file://") if location.startswith("file://") else location


def open_lake(lake: Catalog | Path | str, *, prefer_extension: bool = True) -> Lake:
    """Every lake table as `schema.table` (e.g. `silver.events`) in a fresh in-memory DuckDB."""
    catalog = lake if isinstance(lake, Catalog) else open_catalog(Path(lake))
    tables = ensure_tables(catalog)
    con = duckdb.connect(config={"autoinstall_known_extensions": "false", "autoload_known_extensions": "false"})
    reason = load_iceberg_extension(con) if prefer_extension else "extension not requested"
    backend = ICEBERG if reason is None else ARROW
    for name, table in tables.items():
        schema = name.split(".")[0]
        con.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        quoted = ".".join(f'"{part}"' for part in name.split("."))
        if backend == ICEBERG and table.current_snapshot() is not None:
            location = _local(table.metadata_location).replace("'", "''")
            con.execute(f"CREATE VIEW {quoted} AS SELECT * FROM iceberg_scan('{location}')")
        else:
            arrow = table.scan().to_arrow() if table.current_snapshot() is not None else \
                table.schema().as_arrow().empty_table()
            view = f"__{name.replace('.', '_')}"
            con.register(view, arrow)
            con.execute(f'CREATE VIEW {quoted} AS SELECT * FROM "{view}"')
    return Lake(con, backend, reason, sorted(TABLES))


def query(lake: Catalog | Path | str, sql: str) -> pa.Table:
    """Run one SQL statement over the lake; ValidationError (with DuckDB's message) when it fails."""
    opened = open_lake(lake)
    try:
        return opened.query(sql)
    finally:
        opened.close()
