"""`concierge sql`: ad-hoc SQL over the lakehouse (bronze, silver, gold) from the terminal."""

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

lake_app = typer.Typer(no_args_is_help=True, help="The lakehouse: SQL over bronze, silver and gold.")
console = Console(highlight=False)
DEFAULT_LAKE = Path(".concierge/lake")


class Format(StrEnum):
    TABLE = "table"
    CSV = "csv"
    JSON = "json"


@lake_app.callback()
def _lake() -> None:
    """The lakehouse: SQL over bronze, silver and gold."""


@lake_app.command("sql")
def sql_command(
    statement: Annotated[str, typer.Argument(help='SQL, e.g. "SELECT tenant, count(*) FROM silver.events GROUP BY 1".')],
    lake: Annotated[Path, typer.Option("--lake", help="Lake folder (catalog.db and warehouse/).")] = DEFAULT_LAKE,
    output: Annotated[Format, typer.Option("--format", "-f", help="table, csv or json.")] = Format.TABLE,
) -> None:
    """Run SQL over the lake's tables: bronze.events, silver.events, silver.dead_letters, silver.conversations, gold.daily."""
    from .lakehouse.sql import open_lake

    try:
        opened = open_lake(lake)
        try:
            result = opened.query(statement)
        finally:
            opened.close()
    except ConciergeError as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(2 if isinstance(exc, ConfigError | ValidationError) else 1) from exc
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
