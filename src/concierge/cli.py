"""The `concierge` command: the offline demo, an interactive chat, domain data, and the version.

The only synchronous surface of the platform: each agent command runs one asyncio loop.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import httpx
import typer
from rich.console import Console
from rich.panel import Panel

from ._version import __version__
from .cli_audit import audit_command
from .cli_eval import eval_app
from .cli_kb import kb_app
from .cli_lake import lake_app, sql_command
from .cli_serve import serve, tenants_app
from .core.errors import ConciergeError, ConfigError, ValidationError
from .core.principal import Principal
from .erasure.cli import forget as memory_forget
from .erasure.cli import show as memory_show
from .runtime.result import TurnResult
from .runtime.runtime import Runtime
from .settings import Settings, load_settings
from .tools.outcome import error_message

if TYPE_CHECKING:
    from .domains.retail.demo import DemoCustomer

app = typer.Typer(add_completion=False, no_args_is_help=True, help="concierge: customer-service agents that act.")
console = Console(highlight=False)

ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="Path of a concierge.toml (default: ./concierge.toml if present).")
]
SessionOption = Annotated[str | None, typer.Option("--session", "-s", help="Session id to start or continue.")]
SeedOption = Annotated[int, typer.Option("--seed", min=0, help="Which generated demo store to use.")]


def _version(value: bool) -> None:
    if value:
        console.print(f"concierge {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Offline by default: the embedded SmolLM2 model, SQLite sessions under ./.concierge."""


def _fail(exc: ConciergeError) -> typer.Exit:
    console.print(f"[bold red]error:[/] {exc}", soft_wrap=True)
    return typer.Exit(2 if isinstance(exc, ConfigError) else 1)


STORES = Path(".concierge/stores")
CUSTOMER_SCOPES = frozenset({"retail:write"})


def _runtime(settings: Settings, client: httpx.AsyncClient) -> Runtime:
    """The retail agent over `client`, with its own limits unless the settings name some."""
    from .domains.retail.agent import make_retail_agent
    from .domains.retail.caps import retail_measures
    from .factory import (
        build_event_producer,
        build_executor,
        build_guardrails,
        build_limits,
        build_memory,
        build_model,
        build_model_settings,
        build_store,
        build_tracer,
    )

    limits = build_limits(settings) if settings.limits.model_fields_set else None
    model_settings = build_model_settings(settings) if {"temperature", "max_tokens"} & settings.model.model_fields_set \
        else None
    agent = make_retail_agent(build_model(settings), client, limits=limits, model_settings=model_settings)
    return Runtime(agent, store=build_store(settings), executor=build_executor(settings, retail_measures(client)),
                   tracer=build_tracer(settings), events=build_event_producer(settings),
                   guardrails=build_guardrails(settings), memory=build_memory(settings),
                   memory_tokens=settings.memory.context_tokens)


async def _close_ledger(runtime: Runtime) -> None:
    """Release the ledger and memory, and deliver the conversation's last events to the bus."""
    if runtime.memory is not None:
        await runtime.memory.close()
    close = getattr(getattr(runtime.executor, "ledger", None), "close", None)
    if close is not None:
        await close()
    producer = runtime.events
    if producer is not None:
        await producer.close()  # type: ignore[attr-defined]
        await producer.log.close()  # type: ignore[attr-defined]


def _print_turn(user_text: str, result: TurnResult, seconds: float) -> None:
    console.print(f"[bold cyan]customer ›[/] {user_text}")
    for step in result.steps:
        if step.kind != "tool":
            continue
        args = json.dumps(step.arguments, ensure_ascii=False)
        if any(p.tool == step.name and p.arguments == step.arguments for p in result.pending_actions):
            console.print(f"  [cyan]⏸ {step.name}({args}) waits for the customer's yes[/]")
        elif step.error:
            console.print(f"  [yellow]⚙ {step.name}({args}) ✗ {error_message(step.error)[:160]}[/]")
        else:
            console.print(f"  [green]⚙ {step.name}({args}) → {step.result_summary[:160]}[/]")
    style = "bold red" if result.handed_off else "bold magenta"
    console.print(f"[{style}]agent ›[/] {result.reply}")
    model_calls = sum(1 for s in result.steps if s.kind == "model")
    stop = f", stopped by {result.stopped_by}" if result.stopped_by else ""
    console.print(
        f"[dim]  {model_calls} model calls, {len(result.tool_calls)} tool calls, "
        f"{result.usage.total_tokens} tokens, {seconds:.1f} s{stop}[/]\n"
    )


async def _demo(settings: Settings, session_id: str, seed: int) -> int:
    from .domains.retail.demo import demo_customer, open_demo_store, order_status, store_client

    with console.status("opening the generated store…"):
        engine = open_demo_store(STORES, seed=seed)
        customer = demo_customer(engine)
    client = store_client(engine)
    runtime = _runtime(settings, client)
    model_name = runtime.agent.model.name
    conversation = customer.conversation()
    console.print(Panel.fit(
        f"model: [bold]{model_name}[/] ({settings.model.provider})\n"
        f"store: {engine.url.database} (generated, seed {seed}), served in-process over HTTP\n"
        f"customer: {customer.user_id}, order {customer.order_id} is "
        f"{order_status(engine, customer.order_id)}\n"
        f"sessions and tool ledger: {settings.sessions.url}\nsession: {session_id}",
        title="concierge demo: a customer asks the retail agent to cancel an order",
    ))
    try:
        executed, failed = await _converse(runtime, session_id, conversation)
    finally:
        await runtime.store.close()
        await _close_ledger(runtime)
        await client.aclose()
    final = order_status(engine, customer.order_id)
    engine.dispose()
    console.print(
        f"[bold]{len(conversation)} turns: {executed} tool calls succeeded, {failed} failed; "
        f"order {customer.order_id} is now {final}.[/] Every word above came from {model_name}; tool "
        "results come from the store's API, and no change runs before the customer's explicit yes.\n"
    )
    if settings.model.provider == "embedded":
        console.print(
            "[dim]The embedded model has 135M parameters: it runs anywhere, but rarely picks the right "
            "tool on a 16-tool store. Point model.provider at a larger model to see the agent finish "
            "the job; below, a scripted planner shows the path it should take.[/]\n"
        )
    await _walkthrough(customer, seed)
    return 0


async def _converse(runtime: Runtime, session_id: str, conversation: list[str]) -> tuple[int, int]:
    """Play the customer's turns; (tool calls that succeeded, that failed)."""
    principal = Principal("demo-customer", scopes=CUSTOMER_SCOPES)
    executed = failed = 0
    for number, text in enumerate(conversation):
        started = time.perf_counter()
        with console.status("loading the model and thinking…" if number == 0 else "thinking…"):
            result = await runtime.turn(session_id, text, principal=principal)
        _print_turn(text, result, time.perf_counter() - started)
        executed += sum(1 for s in result.tool_calls if not s.error)
        failed += sum(1 for s in result.tool_calls if s.error)
    return executed, failed


async def _walkthrough(customer: DemoCustomer, seed: int) -> None:
    """The same conversation with a scripted planner, on an in-memory copy of the store."""
    from .domains.retail.agent import make_retail_agent
    from .domains.retail.demo import order_status, store_client, walkthrough_store
    from .tools import InMemoryLedger, TransactionalExecutor

    engine = walkthrough_store(seed)
    client = store_client(engine)
    ledger = InMemoryLedger()
    runtime = Runtime(make_retail_agent(customer.walkthrough_model(), client),
                      executor=TransactionalExecutor(ledger))
    console.print(Panel.fit(
        "the same customer, with a scripted planner (concierge.testing.ScriptedModel) in place of the model;\n"
        "the store, its API, the confirmation gate and the tool ledger are the real ones (an in-memory copy)",
        title="walkthrough: the path a capable model takes",
    ))
    try:
        await _converse(runtime, "walkthrough", customer.conversation())
        entries = await ledger.entries("walkthrough")
    finally:
        await client.aclose()
    writes = ", ".join(f"{e.tool} {e.status} (key {e.key[:12]}…)" for e in entries) or "none"
    console.print(f"[bold]ledger:[/] {writes}; order {customer.order_id} is now "
                  f"{order_status(engine, customer.order_id)} in the copy.")
    engine.dispose()


@app.command()
def demo(config: ConfigOption = None, session: SessionOption = None, seed: SeedOption = 0) -> None:
    """Run the offline demo: a scripted customer, the real model, the retail store's real API."""
    try:
        settings = load_settings(config)
        code = asyncio.run(_demo(settings, session or f"demo-{uuid.uuid4().hex[:8]}", seed))
    except ConciergeError as exc:
        raise _fail(exc) from None
    raise typer.Exit(code)


async def _chat(settings: Settings, session_id: str, seed: int) -> None:
    from .domains.retail.demo import demo_customer, open_demo_store, store_client

    engine = open_demo_store(STORES, seed=seed)
    customer = demo_customer(engine)
    client = store_client(engine)
    runtime = _runtime(settings, client)
    console.print(f"[dim]session {session_id} · model {runtime.agent.model.name} · store {engine.url.database} · "
                  f"try: my email is {customer.email}, cancel {customer.order_id} · type 'exit' to leave[/]")
    try:
        while True:
            try:
                text = await asyncio.to_thread(console.input, "[bold cyan]you ›[/] ")
            except (EOFError, KeyboardInterrupt):
                break
            if text.strip().lower() in {"exit", "quit"}:
                break
            if not text.strip():
                continue
            started = time.perf_counter()
            with console.status("thinking…"):
                result = await runtime.turn(session_id, text, principal=Principal("cli-user", scopes=CUSTOMER_SCOPES))
            for step in result.tool_calls:
                mark = "✗" if step.error else "→"
                text_out = error_message(step.error) if step.error else step.result_summary
                console.print(f"  [dim]⚙ {step.name} {mark} {text_out[:120]}[/]")
            console.print(f"[bold magenta]agent ›[/] {result.reply} [dim]({time.perf_counter() - started:.1f} s)[/]")
        if runtime.memory is not None:
            with console.status("remembering what matters from this conversation…"):
                remembered = await runtime.end_conversation(session_id, Principal("cli-user", scopes=CUSTOMER_SCOPES))
            if remembered is not None:
                kept = remembered.memory
                count = len(kept.preferences) + len(kept.facts) + len(kept.unresolved)
                console.print(f"[dim]remembered {count} item(s) for next time[/]")
    finally:
        await runtime.store.close()
        await _close_ledger(runtime)
        await client.aclose()
        engine.dispose()


@app.command()
def chat(config: ConfigOption = None, session: SessionOption = None, seed: SeedOption = 0) -> None:
    """Talk to the retail agent as a customer of the demo store; `--session` continues a conversation."""
    try:
        settings = load_settings(config)
        asyncio.run(_chat(settings, session or f"chat-{uuid.uuid4().hex[:8]}", seed))
    except ConciergeError as exc:
        raise _fail(exc) from None


domain_app = typer.Typer(no_args_is_help=True, help="Reference business domains: generate their data.")
app.add_typer(domain_app, name="domain")
app.add_typer(eval_app, name="eval")
app.add_typer(kb_app, name="kb")
app.add_typer(tenants_app, name="tenants")
app.command("serve")(serve)
app.command("sql")(sql_command)
app.add_typer(lake_app, name="lake")
app.command("audit")(audit_command)
memory_app = typer.Typer(no_args_is_help=True, help="What the agent remembers about end users; forget them everywhere.")
memory_app.command("show")(memory_show)
memory_app.command("forget")(memory_forget)
app.add_typer(memory_app, name="memory")


@memory_app.command("expire")
def memory_expire(config: ConfigOption = None) -> None:
    """Remove memories past their retention that no open issue needs (run it daily)."""
    from .factory import build_memory

    try:
        memory = build_memory(load_settings(config))
    except ConciergeError as exc:
        raise _fail(exc) from None
    if memory is None:
        console.print("memory is off ([memory] enabled = false): nothing to expire")
        return

    async def run() -> dict[str, int]:
        try:
            return await memory.expire()
        finally:
            await memory.close()

    removed = asyncio.run(run())
    console.print("expired: " + ", ".join(f"{name} {count}" for name, count in removed.items()))


@domain_app.command("generate")
def domain_generate(
    domain: Annotated[str, typer.Argument(help="The domain to generate: retail.")],
    users: Annotated[int, typer.Option(help="Number of customers.")] = 500,
    orders: Annotated[int, typer.Option(help="Number of orders, spread over the customers.")] = 1000,
    seed: Annotated[int, typer.Option(help="The same seed always gives the same store.")] = 0,
    out: Annotated[Path | None, typer.Option(help="Folder to write (default: ./stores/<domain>-<seed>).")] = None,
    tasks: Annotated[int, typer.Option(min=0, help="Also write this many golden evaluation tasks (tasks.json).")] = 0,
) -> None:
    """Write a generated store (db.json and policy.md) in tau2-bench's format, and golden tasks for it."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .domains.retail.generator import check_arguments, generate_store, write_store

    started = time.perf_counter()
    try:
        if domain != "retail":
            raise ValidationError(f"unknown domain {domain!r}", hint="the domains that can be generated: retail")
        check_arguments(users=users, orders=orders, seed=seed)
        folder = out or Path("stores") / f"{domain}-{seed}"
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console, transient=True) as bar:
            task = bar.add_task("users and orders", total=users + orders)
            db = generate_store(users=users, orders=orders, seed=seed,
                                progress=lambda done: bar.update(task, completed=done))
        with console.status(f"writing {folder / 'db.json'}…"):
            path = write_store(db, folder)
            if tasks:
                from .domains.retail.eval_tasks import generate_tasks

                written = generate_tasks(db, tasks, seed=seed)
                (folder / "tasks.json").write_text(json.dumps(written, indent=2) + "\n", encoding="utf-8")
    except ConciergeError as exc:
        console.print(f"[bold red]error:[/] {exc}", soft_wrap=True)
        raise typer.Exit(2 if isinstance(exc, ConfigError | ValidationError) else 1) from None
    except OSError as exc:
        console.print(f"[bold red]error:[/] cannot write the store: {exc}", soft_wrap=True)
        raise typer.Exit(1) from None
    variants = sum(len(product["variants"]) for product in db["products"].values())
    console.print(
        f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB): {len(db['products'])} products "
        f"({variants} variants), {len(db['users'])} users, {len(db['orders'])} orders, seed {seed}"
        f"{f', {tasks} tasks' if tasks else ''}, "
        f"in {time.perf_counter() - started:.1f} s",
        soft_wrap=True,
    )


def main() -> None:
    app()
