"""`concierge kb`: put documents into a tenant's knowledge base and search it as the agent would."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .core.errors import ConciergeError, ConfigError, ValidationError

kb_app = typer.Typer(no_args_is_help=True, help="Knowledge bases: ingest documents, search with grounding.")
console = Console(highlight=False)
KbOption = Annotated[Path, typer.Option("--kb", help="Knowledge base folder.")]
TenantOption = Annotated[str, typer.Option("--tenant", "-t", help="Whose knowledge base.")]
DEFAULT_KB = Path(".concierge/kb")


def _fail(exc: ConciergeError) -> typer.Exit:
    console.print(f"[bold red]error:[/] {exc}", soft_wrap=True)
    return typer.Exit(2 if isinstance(exc, ConfigError | ValidationError) else 1)


@kb_app.command("ingest")
def ingest(
    path: Annotated[Path, typer.Argument(help="A document (.md, .txt, .html) or a folder of them.")],
    tenant: TenantOption,
    kb: KbOption = DEFAULT_KB,
    dedicated: Annotated[bool, typer.Option(help="Give a new tenant an index of its own.")] = False,
) -> None:
    """Chunk, embed and index documents; a new version of a document supersedes the old one."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from .retrieval.documents import load_document, load_folder
    from .retrieval.knowledge_base import KnowledgeBase

    started = time.perf_counter()
    try:
        if not path.exists():
            raise ValidationError(f"{path} does not exist")
        docs = load_folder(path, tenant) if path.is_dir() else [load_document(path, tenant)]
        base = KnowledgeBase(kb)
        if dedicated and tenant not in base.store.tenants():
            base.add_tenant(tenant, dedicated=True)
        results = []
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=console,
                      transient=True) as bar:
            task = bar.add_task("documents", total=len(docs))
            for doc in docs:
                results.append(base.ingest(doc))
                bar.advance(task)
        base.close()
    except ConciergeError as exc:
        raise _fail(exc) from None
    for r in results:
        note = f", supersedes {r.superseded_chunks} chunks" if r.superseded_chunks else ""
        console.print(f"  {r.doc_id} v{r.version}: {r.chunks} chunks{note}")
    console.print(f"ingested {len(results)} documents for tenant {tenant} into {kb} "
                  f"in {time.perf_counter() - started:.1f} s")


@kb_app.command("search")
def search(
    query: Annotated[str, typer.Argument(help="The question.")],
    tenant: TenantOption,
    kb: KbOption = DEFAULT_KB,
    k: Annotated[int, typer.Option(min=1, max=50, help="How many results.")] = 5,
    superseded: Annotated[bool, typer.Option(help="Also show superseded versions.")] = False,
) -> None:
    """Search like the agent: scores, grounding confidence, citations."""
    from .retrieval.knowledge_base import KnowledgeBase

    try:
        base = KnowledgeBase(kb)
        result = base.search(query, tenant, k=k, include_superseded=superseded,
                             visibility=frozenset({"public", "internal"}))
        base.close()
    except ConciergeError as exc:
        raise _fail(exc) from None
    table = Table(title=escape(f"{tenant}: {query}"))
    table.add_column("#")
    table.add_column("citation", no_wrap=True)
    table.add_column("ver", no_wrap=True)
    table.add_column("score")
    table.add_column("cosine")
    table.add_column("text (heading path first)")
    for rank, hit in enumerate(result.hits, 1):
        version = f"v{hit.version}" + ("" if hit.latest else " old")
        table.add_row(str(rank), escape(hit.citation), version, f"{hit.score:.3f}", f"{hit.similarity:.3f}",
                      escape(" ".join(hit.text.split())[:100]))
    console.print(table)
    g = result.grounding
    verdict = "[green]grounded[/]" if g.grounded else "[bold red]not grounded: the agent says it does not know[/]"
    console.print(f"grounding confidence {g.confidence:.2f}: {verdict} ({g.reason})")
    console.print("[dim]signals: " + ", ".join(f"{name} {value:.2f}" for name, value in g.signals.items()) + "[/]")
    if g.grounded:
        console.print("citations: " + escape(", ".join(f"[{c}]" for c in result.citations[:3])))
