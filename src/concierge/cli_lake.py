"""`concierge sql` and `concierge lake …`: query the lakehouse and run its jobs from the terminal."""

from __future__ import annotations

import csv
import io
import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .core.errors import ConciergeError, ConfigError, ValidationError

lake_app = typer.Typer(no_args_is_help=True, help="The lakehouse: ingest events, refine, compact, erase, SQL.")
console = Console(highlight=False)


class Format(StrEnum):
    TABLE = "table"
    CSV = "csv"
    JSON = "json"


LakeOption = Annotated[Path | None, typer.Option("--lake", help="Lake folder (default: [lake] folder).")]
ConfigOption = Annotated[Path | None, typer.Option("--config", "-c", help="Path of a concierge.toml.")]


def _catalog(lake: Path | None, config: Path | None = None):
    """The lake's catalog: `--lake` wins, else the `[lake]` settings (folder, catalog URL, warehouse)."""
    from .lakehouse.catalog import open_catalog
    from .settings import load_settings

    settings = load_settings(config).lake
    if lake is not None:
        return open_catalog(lake)
    return open_catalog(settings.folder, catalog_url=settings.catalog_url, warehouse=settings.warehouse)


def _fail(exc: ConciergeError) -> typer.Exit:
    console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
    return typer.Exit(2 if isinstance(exc, ConfigError | ValidationError) else 1)


@lake_app.command("ingest")
def ingest_command(
    config: ConfigOption = None,
    lake: LakeOption = None,
    follow: Annotated[bool, typer.Option(help="Keep running and ingest as events arrive.")] = False,
) -> None:
    """Move the bus's events ([events] bus) into bronze, exactly once; then stop (or --follow)."""
    import asyncio

    from .events.bus import open_log
    from .lakehouse.ingest import ingest
    from .settings import load_settings

    try:
        settings = load_settings(config)
        if settings.events.bus == "off":
            raise ConfigError("events are off ([events] bus = \"off\"): there is nothing to ingest")
        log = open_log(settings.events.bus, partitions=settings.events.partitions)

        async def run() -> int:
            try:
                return await ingest(_catalog(lake, config), log, until_drained=not follow)
            finally:
                await log.close()

        written = asyncio.run(run())
    except ConciergeError as exc:
        raise _fail(exc) from None
    console.print(f"bronze: {written:,} new events from {settings.events.bus}")


@lake_app.command("refine")
def refine_command(lake: LakeOption = None) -> None:
    """bronze → silver (validated, deduplicated, PII masked; dead letters) → gold, incrementally."""
    from .lakehouse.gold import aggregate
    from .lakehouse.silver import refine

    try:
        catalog = _catalog(lake)
        result = refine(catalog)
        rows = aggregate(catalog, days=result.days) if result.days else 0
    except ConciergeError as exc:
        raise _fail(exc) from None
    console.print(f"silver: {result.written:,} events ({result.duplicates:,} duplicates dropped, "
                  f"{result.dead_letters:,} dead letters), {result.conversations:,} conversations; "
                  f"gold: {rows:,} tenant-days recomputed")


@lake_app.command("compact")
def compact_command(
    table: Annotated[str, typer.Argument(help="bronze.events, silver.events, silver.conversations, gold.daily …")],
    lake: LakeOption = None,
) -> None:
    """Rewrite a table's small files into few per partition; queries return the same rows."""
    from .lakehouse.catalog import TABLES
    from .lakehouse.maintenance import compact

    try:
        if table not in TABLES:
            raise ValidationError(f"unknown table {table!r}", hint="one of " + ", ".join(TABLES))
        result = compact(_catalog(lake), table)
    except ConciergeError as exc:
        raise _fail(exc) from None
    console.print(f"{table}: {result.files_before:,} files → {result.files_after:,} "
                  f"({result.partitions_rewritten} partitions rewritten)")


@lake_app.command("erase")
def erase_command(
    tenant: Annotated[str, typer.Option(help="The user's tenant.")],
    user: Annotated[str, typer.Option(help="The end user to erase (GDPR).")],
    lake: LakeOption = None,
) -> None:
    """Delete one end user's rows from every layer and expire the snapshots that still held them."""
    from .lakehouse.maintenance import erase_user

    try:
        deleted = erase_user(_catalog(lake), tenant, user)
    except ConciergeError as exc:
        raise _fail(exc) from None
    for name, count in deleted.items():
        console.print(f"  {name}: {count:,}")
    console.print(f"erased {user} of {tenant}")


@lake_app.command("sql")
def sql_command(
    statement: Annotated[str, typer.Argument(help='SQL, e.g. "SELECT tenant, count(*) FROM silver.events GROUP BY 1".')],
    lake: LakeOption = None,
    output: Annotated[Format, typer.Option("--format", "-f", help="table, csv or json.")] = Format.TABLE,
) -> None:
    """Run SQL over the lake's tables: bronze.events, silver.events, silver.dead_letters, silver.conversations, gold.daily."""
    from .lakehouse.sql import open_lake

    try:
        opened = open_lake(_catalog(lake))
        try:
            result = opened.query(statement)
        finally:
            opened.close()
    except ConciergeError as exc:
        raise _fail(exc) from exc
    rows = result.to_pylist()
    if output is Format.JSON:
        typer.echo(json.dumps(rows, default=str, indent=2))
    elif output is Format.CSV:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(result.column_names)
        writer.writerows([[row[c] for c in result.column_names] for row in rows])
        typer.echo(buffer.getvalue(), nl=False)
    else:
        table = Table(caption=f"{len(rows)} rows · {opened.backend} backend")
        for name in result.column_names:
            table.add_column(escape(name))
        for row in rows:
            table.add_row(*("" if row[c] is None else escape(str(row[c])) for c in result.column_names))
        console.print(table)
