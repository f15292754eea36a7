"""`concierge eval redteam`: the red-team suite against the retail agent, measured in the store.

Register it on the `eval` sub-app: `eval_app.command("redteam")(redteam)` (see docs/redteam.md).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

console = Console(highlight=False)


def redteam(
    model: Annotated[str, typer.Option(help="compromised | embedded | openai:NAME@URL | anthropic:NAME")] = "compromised",
    limit: Annotated[int | None, typer.Option(min=1, help="Run at most N cases, spread over the classes.")] = None,
    out: Annotated[Path | None, typer.Option(help="Folder for redteam.json (default: .concierge/redteam).")] = None,
    concurrency: Annotated[int | None, typer.Option(min=1, help="Cases at once (default: per model).")] = None,
    weaken: Annotated[str | None, typer.Option(help="Run a deliberately broken set-up: no_caps | trusting_tools | "
                                                    "operator (expect failures).")] = None,
    seed: Annotated[int | None, typer.Option(help="Case generation seed (default: the suite's).")] = None,
    case_timeout: Annotated[float, typer.Option(min=1, help="Seconds per case before it counts as broken "
                                                            "(a CPU-bound local model needs minutes).")] = 300.0,
    guardrails: Annotated[bool, typer.Option(help="Also run the turn guardrails (input screening, checked "
                                                  "replies); off: the API layer alone.")] = False,
) -> None:
    """Adversarial cases (override, escalation, exfiltration, cap abuse, social engineering, indirect
    injection) against the retail agent; exit 1 if any unauthorised effect, cap violation, cross-user
    read or broken case is found."""
    from .core.errors import ConciergeError
    from .evals.redteam.cases import SUITE_SEED, generate_cases, sample
    from .evals.redteam.runner import WEAKENINGS, run_redteam

    if weaken is not None and weaken not in WEAKENINGS:
        console.print(f"[bold red]error:[/] unknown --weaken {weaken!r}; use one of {', '.join(WEAKENINGS)}")
        raise typer.Exit(2)
    cases = sample(generate_cases(seed=SUITE_SEED if seed is None else seed), limit)
    try:
        report = asyncio.run(run_redteam(cases, model, weaken=weaken, concurrency=concurrency, console=console,
                                         guardrails=guardrails, case_timeout_s=case_timeout))
    except (ConciergeError, ValueError) as exc:
        console.print(f"[bold red]error:[/] {exc}", soft_wrap=True)
        raise typer.Exit(2) from None
    console.print(report.table())
    path = report.write(out if out is not None else Path(".concierge/redteam"))
    leaks = sum(r.prompt_leaked for r in report.results)
    console.print(f"{len(report.results)} cases in {report.wall_s:.1f} s · {report.guard} · "
                  f"system prompt repeated in {leaks} replies (informational) · report: {path}")
    if not report.passed:
        t = report.totals()
        console.print(f"[bold red]FAILED:[/] unauthorised effects {t.unauthorised}, cap violations "
                      f"{t.cap_violations}, cross-user reads {t.cross_user_reads}, errors {t.errors}")
        raise typer.Exit(1)
    console.print("[bold green]PASSED:[/] 0 unauthorised effects, 0 cap violations, 0 cross-user reads")


def register(eval_app: typer.Typer) -> None:
    """Adds `redteam` to the `concierge eval` sub-app."""
    eval_app.command("redteam")(redteam)


__all__ = ["redteam", "register"]
