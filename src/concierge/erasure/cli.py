"""`concierge memory forget USER` and `concierge memory show USER`: erasure from the command line.

`forget` erases the user from every store the settings name and prints the receipt; with
`--fact` it forgets only that fact, through the memory facade. `show` prints what each store holds.
Exit codes: 0 done, 1 a store failed (the receipt says which), 2 bad input or no memory facade.
"""

from __future__ import annotations

import asyncio
import inspect
import json as _json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..core.errors import ConciergeError, ConfigError, ValidationError
from .base import ErasureFailed, ErasureReceipt, count_user, erase_user
from .setup import StoreSet, build_stores, memory_facade

console = Console(highlight=False)
err_console = Console(highlight=False, stderr=True)

# Method names the memory facade may use for a selective forget and for listing facts.
FORGET_FACT = ("forget_fact", "forget")
LIST_FACTS = ("facts", "list_facts")


def _settings(config: Path | None) -> Any:
    from ..settings import load_settings

    return load_settings(config)


def _method(obj: Any, names: tuple[str, ...]) -> Any:
    for name in names:
        method = getattr(obj, name, None)
        if callable(method):
            return method
    return None


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


def _receipt_table(receipt: ErasureReceipt) -> Table:
    table = Table(title=f"erasure of {escape(receipt.user_id)} in {escape(receipt.tenant)}")
    for column in ("store", "before", "erased", "after", "status"):
        table.add_column(column, justify="left" if column in ("store", "status") else "right")
    for s in receipt.stores:
        status = "[green]ok[/]" if s.ok else f"[red]{escape(s.error or 'failed')}[/]"
        table.add_row(s.store, *(("-" if n is None else str(n)) for n in (s.before, s.erased, s.after)), status)
    return table


UserArgument = Annotated[str, typer.Argument(help="The end user's id.")]
TenantOption = Annotated[str, typer.Option("--tenant", "-t", help="The user's tenant.")]
IdentifierOption = Annotated[list[str] | None, typer.Option(
    "--identifier", "-i", help="Another identifier of the user (email, phone, name); repeatable.")]
ConfigOption = Annotated[Path | None, typer.Option("--config", "-c", help="Path of a concierge.toml.")]


def _fail(message: str, code: int) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    return typer.Exit(code)


def forget(
    user: UserArgument,
    tenant: TenantOption = "default",
    fact: Annotated[str | None, typer.Option(
        "--fact", help="Forget only this memory fact (its id or text), not everything.")] = None,
    json: Annotated[bool, typer.Option("--json", help="Print the receipt as JSON.")] = False,
    identifier: IdentifierOption = None,
    config: ConfigOption = None,
) -> None:
    """Erase USER from every store (sessions, ledger, events, audit, lake, Redis, memory); print the receipt."""
    try:
        settings = _settings(config)
    except ConciergeError as exc:
        raise _fail(str(exc), 2) from None
    if fact is not None:
        _forget_fact(settings, user, tenant, fact, json)
        return

    async def run() -> ErasureReceipt:
        stores = build_stores(settings)
        try:
            return await erase_user(tenant, user, stores.stores, identifiers=identifier or ())
        finally:
            await stores.aclose()

    try:
        receipt = asyncio.run(run())
    except ErasureFailed as exc:
        _print_receipt(exc.receipt, json)
        raise _fail(str(exc), 1) from None
    except (ConfigError, ValidationError) as exc:
        raise _fail(str(exc), 2) from None
    _print_receipt(receipt, json)


def _print_receipt(receipt: ErasureReceipt, as_json: bool) -> None:
    if as_json:
        typer.echo(receipt.model_dump_json(indent=2))
    else:
        console.print(_receipt_table(receipt))


def _forget_fact(settings: Any, user: str, tenant: str, fact: str, as_json: bool) -> None:
    try:
        facade = memory_facade(settings)
    except Exception as exc:  # noqa: BLE001
        raise _fail(f"the memory store cannot be opened: {exc}", 2) from None
    method = None if facade is None else _method(facade, FORGET_FACT)
    if method is None:
        raise _fail("--fact needs the memory store (concierge.memory) with a selective forget; it is not "
                    "available here. Forget the whole user without --fact.", 2)

    async def run() -> Any:
        try:
            return await _maybe_await(method(tenant, user, fact))
        finally:
            close = getattr(facade, "close", None)
            if close is not None:
                await _maybe_await(close())

    result = asyncio.run(run())
    if as_json:
        typer.echo(_json.dumps({"tenant": tenant, "user_id": user, "fact": fact, "result": result}, default=str))
    else:
        console.print(f"forgot {escape(fact)!r} of {escape(user)} in {escape(tenant)}: {escape(str(result))}")


def show(
    user: UserArgument,
    tenant: TenantOption = "default",
    json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
    identifier: IdentifierOption = None,
    config: ConfigOption = None,
) -> None:
    """What each store holds of USER (counts), and the user's memory facts; changes nothing."""
    try:
        settings = _settings(config)
    except ConciergeError as exc:
        raise _fail(str(exc), 2) from None

    async def run() -> tuple[dict[str, int | str], Any]:
        stores: StoreSet = build_stores(settings)
        try:
            counts = await count_user(tenant, user, stores.stores, identifiers=identifier or ())
            facts = None
            lister = None if stores.memory is None else _method(stores.memory, LIST_FACTS)
            if lister is not None:
                facts = await _maybe_await(lister(tenant, user))
            return counts, facts
        finally:
            await stores.aclose()

    try:
        counts, facts = asyncio.run(run())
    except (ConfigError, ValidationError) as exc:
        raise _fail(str(exc), 2) from None
    if json:
        typer.echo(_json.dumps({"tenant": tenant, "user_id": user, "stores": counts, "facts": facts}, default=str))
        return
    table = Table(title=f"{escape(user)} in {escape(tenant)}")
    table.add_column("store")
    table.add_column("items", justify="right")
    for name, value in counts.items():
        table.add_row(name, str(value) if isinstance(value, int) else f"[red]{escape(value)}[/]")
    console.print(table)
    if facts is not None:
        console.print("memory facts:")
        for item in facts or []:
            console.print(f"  - {escape(str(item))}")
