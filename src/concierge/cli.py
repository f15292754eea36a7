"""The `concierge` command: the offline demo, an interactive chat, domain data, and the version.

The only synchronous surface of the platform: each agent command runs one asyncio loop.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.panel import Panel

from ._version import __version__
from .core.errors import ConciergeError, ConfigError, ValidationError
from .runtime.result import TurnResult
from .runtime.runtime import Runtime
from .settings import Settings, load_settings
from .tools.outcome import error_message

app = typer.Typer(add_completion=False, no_args_is_help=True, help="concierge: customer-service agents that act.")
console = Console(highlight=False)

ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="Path of a concierge.toml (default: ./concierge.toml if present).")
]
SessionOption = Annotated[str | None, typer.Option("--session", "-s", help="Session id to start or continue.")]


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


def _runtime(settings: Settings) -> Runtime:
    """The demo shop's agent, with the demo's own limits unless the settings name some."""
    from .domains.demo import DemoShop, make_demo_agent
    from .factory import (
        build_executor,
        build_limits,
        build_model,
        build_model_settings,
        build_store,
        build_tracer,
    )

    limits = build_limits(settings) if settings.limits.model_fields_set else None
    model_settings = build_model_settings(settings) if {"temperature", "max_tokens"} & settings.model.model_fields_set \
        else None
    agent = make_demo_agent(build_model(settings), DemoShop(), limits=limits, model_settings=model_settings)
    return Runtime(agent, store=build_store(settings), executor=build_executor(settings),
                   tracer=build_tracer(settings))


async def _close_ledger(runtime: Runtime) -> None:
    close = getattr(getattr(runtime.executor, "ledger", None), "close", None)
    if close is not None:
        await close()


def _print_turn(user_text: str, result: TurnResult, seconds: float) -> None:
    console.print(f"[bold cyan]customer ›[/] {user_text}")
    for step in result.steps:
        if step.kind != "tool":
            continue
        args = json.dumps(step.arguments, ensure_ascii=False)
        if step.error:
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


async def _demo(settings: Settings, session_id: str) -> int:
    from .domains.demo import DEMO_CONVERSATION

    runtime = _runtime(settings)
    model_name = runtime.agent.model.name
    console.print(Panel.fit(
        f"model: [bold]{model_name}[/] ({settings.model.provider}, offline)\n"
        f"sessions: {settings.sessions.url}\nsession: {session_id}",
        title="concierge demo: a customer talks to the demo shop's agent",
    ))
    executed = failed = handoffs = 0
    try:
        for number, text in enumerate(DEMO_CONVERSATION):
            started = time.perf_counter()
            status = "loading the model and thinking…" if number == 0 else "thinking…"
            with console.status(status):
                result = await runtime.turn(session_id, text, principal="demo-customer")
            _print_turn(text, result, time.perf_counter() - started)
            executed += sum(1 for s in result.tool_calls if not s.error)
            failed += sum(1 for s in result.tool_calls if s.error)
            handoffs += result.handed_off
    finally:
        await runtime.store.close()
        await _close_ledger(runtime)
    console.print(
        f"[bold]{len(DEMO_CONVERSATION)} turns: {executed} tool calls succeeded, {failed} failed, "
        f"{handoffs} hand-offs.[/] Every word above came from {model_name}; the tool results came from the "
        "demo shop. A 135M-parameter model is weak: point model.provider at a larger model for quality."
    )
    if executed + failed == 0:
        console.print("[bold red]No tool call was executed in this demo run.[/]")
        return 1
    return 0


@app.command()
def demo(config: ConfigOption = None, session: SessionOption = None) -> None:
    """Run the offline demo: a scripted customer, the real model, real tool calls."""
    try:
        settings = load_settings(config)
        code = asyncio.run(_demo(settings, session or f"demo-{uuid.uuid4().hex[:8]}"))
    except ConciergeError as exc:
        raise _fail(exc) from None
    raise typer.Exit(code)


async def _chat(settings: Settings, session_id: str) -> None:
    runtime = _runtime(settings)
    console.print(f"[dim]session {session_id} · model {runtime.agent.model.name} · type 'exit' to leave[/]")
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
                result = await runtime.turn(session_id, text, principal="cli-user")
            for step in result.tool_calls:
                mark = "✗" if step.error else "→"
                text_out = error_message(step.error) if step.error else step.result_summary
                console.print(f"  [dim]⚙ {step.name} {mark} {text_out[:120]}[/]")
            console.print(f"[bold magenta]agent ›[/] {result.reply} [dim]({time.perf_counter() - started:.1f} s)[/]")
    finally:
        await runtime.store.close()
        await _close_ledger(runtime)


@app.command()
def chat(config: ConfigOption = None, session: SessionOption = None) -> None:
    """Talk to the demo shop's agent; `--session` continues an earlier conversation."""
    try:
        settings = load_settings(config)
        asyncio.run(_chat(settings, session or f"chat-{uuid.uuid4().hex[:8]}"))
    except ConciergeError as exc:
        raise _fail(exc) from None


domain_app = typer.Typer(no_args_is_help=True, help="Reference business domains: generate their data.")
app.add_typer(domain_app, name="domain")


@domain_app.command("generate")
def domain_generate(
    domain: Annotated[str, typer.Argument(help="The domain to generate: retail.")],
    users: Annotated[int, typer.Option(help="Number of customers.")] = 500,
    orders: Annotated[int, typer.Option(help="Number of orders, spread over the customers.")] = 1000,
    seed: Annotated[int, typer.Option(help="The same seed always gives the same store.")] = 0,
    out: Annotated[Path | None, typer.Option(help="Folder to write (default: ./stores/<domain>-<seed>).")] = None,
) -> None:
    """Write a generated store (db.json and policy.md) in tau2-bench's format."""
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
    except ConciergeError as exc:
        console.print(f"[bold red]error:[/] {exc}", soft_wrap=True)
        raise typer.Exit(2 if isinstance(exc, ConfigError | ValidationError) else 1) from None
    except OSError as exc:
        console.print(f"[bold red]error:[/] cannot write the store: {exc}", soft_wrap=True)
        raise typer.Exit(1) from None
    variants = sum(len(product["variants"]) for product in db["products"].values())
    console.print(
        f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB): {len(db['products'])} products "
        f"({variants} variants), {len(db['users'])} users, {len(db['orders'])} orders, seed {seed}, "
        f"in {time.perf_counter() - started:.1f} s",
        soft_wrap=True,
    )


def main() -> None:
    app()
