"""`concierge serve` and `concierge tenants`: run the HTTP/WebSocket server and manage who may use it."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from .core.errors import ConciergeError, ConfigError, ValidationError
from .settings import Settings, load_settings

console = Console(highlight=False)
tenants_app = typer.Typer(no_args_is_help=True, help="Tenants of the server: create them, issue API keys.")
BACKLOG = 4096  # pending connections the listening socket queues (uvicorn's default: 2048)
ConfigOption = Annotated[Path | None, typer.Option("--config", "-c", help="Path of a concierge.toml.")]


def _fail(exc: ConciergeError) -> typer.Exit:
    console.print(f"[bold red]error:[/] {exc}", soft_wrap=True)
    return typer.Exit(2 if isinstance(exc, ConfigError | ValidationError) else 1)


def serve(
    config: ConfigOption = None,
    host: Annotated[str | None, typer.Option(help="Interface to listen on (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(min=0, max=65535, help="Port (default 8000).")] = None,
    workers: Annotated[int | None, typer.Option(min=1, max=64, help="Worker processes.")] = None,
    redis: Annotated[str | None, typer.Option("--redis", help="redis:// URL shared by workers.")] = None,
    test_model: Annotated[str | None, typer.Option(help="A test double instead of the model: echo:MS.")] = None,
    demo: Annotated[bool | None, typer.Option(help="Sign chat visitors in as fresh demo customers.")] = None,
    demo_public: Annotated[bool, typer.Option("--demo-public", help="Demo sign-in beyond loopback.")] = False,
) -> None:
    """Serve the retail agent over HTTP and WebSocket, with the chat page and the operator console."""
    import uvicorn

    from .security.redaction import install

    # Through the environment, so that every worker process reads the same settings.
    overrides = {"HOST": host, "PORT": port, "WORKERS": workers, "REDIS_URL": redis, "TEST_MODEL": test_model}
    for name, value in overrides.items():
        if value is not None:
            os.environ[f"CONCIERGE_SERVE__{name}"] = str(value)
    if demo is False:
        os.environ["CONCIERGE_SERVE__DEMO_TENANT"] = ""
    if demo_public:
        os.environ["CONCIERGE_SERVE__DEMO_PUBLIC"] = "true"
    # The console's one-time sign-in token: fresh at every start, the same in every worker.
    os.environ["CONCIERGE_SERVE__CONSOLE_TOKEN"] = secrets.token_urlsafe(32)
    if config is not None:
        os.environ["CONCIERGE_CONFIG_FILE"] = str(config)
    try:
        settings = load_settings(config)
        if demo and not settings.serve.demo_tenant:  # --demo over a file that turned it off
            os.environ["CONCIERGE_SERVE__DEMO_TENANT"] = "demo"
            settings = load_settings(config)
        settings.serve.check_demo_exposure()
        if settings.serve.workers > 1 and not settings.serve.redis_url:
            raise ConfigError("several workers need a shared Redis for session locks and rate limits",
                              hint="pass --redis redis://127.0.0.1:6379/0, or run one worker")
        _announce(settings)
        install()  # whatever else logs in this process: no secrets in its lines
        # uvicorn drains, then re-raises SIGTERM into the previous handler: make that a clean exit.
        signal.signal(signal.SIGTERM, _exit_cleanly)
        raise_open_file_limit()
        common = uvicorn_options(settings)
        if settings.serve.workers == 1:
            from .serving.server import build_app

            uvicorn.run(build_app(settings), **common)
        else:
            uvicorn.run("concierge.serving.server:app_from_env", factory=True, workers=settings.serve.workers,
                        **common)
    except ConciergeError as exc:
        raise _fail(exc) from None


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """What every worker's uvicorn runs with.

    - `ws_max_size`: a bigger frame closes the stream with 1009;
    - `ws_per_message_deflate` off: a compressed stream keeps a zlib context per direction for
      its whole life (memory per idle connection) and runs every frame through zlib (CPU per
      turn), for frames of about a kilobyte on what is mostly a local network hop;
    - `backlog`: a burst of connections (clients reconnecting after a deploy) waits in the
      kernel's queue rather than being refused; the kernel caps it at `net.core.somaxconn`.
    """
    from .security.redaction import uvicorn_log_config

    serve = settings.serve
    return {"host": serve.host, "port": serve.port, "log_level": "info", "log_config": uvicorn_log_config(),
            "timeout_graceful_shutdown": int(serve.drain_timeout_s), "ws_max_size": serve.max_frame_bytes,
            "ws_per_message_deflate": False, "backlog": BACKLOG}


def raise_open_file_limit() -> tuple[int, int]:
    """Each WebSocket holds a file descriptor for its whole life: lift the soft limit to the hard one."""
    import resource  # POSIX only, like the rest of serving

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):  # not allowed here: serve with what there is
            pass
    return soft, hard


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _announce(settings: Settings) -> None:
    serve = settings.serve
    base = f"http://{serve.host}:{serve.port}"
    model = serve.test_model or settings.model.provider
    console.print(f"[bold]concierge[/] serving the retail agent ({model}) on {base} with {serve.workers} worker(s)")
    console_url = f"{base}/console"
    if serve.demo_tenant and serve.console_token:
        console_url += f"?token={serve.console_token.get_secret_value()}"  # one use, like Jupyter's
    console.print(f"  chat      {base}/chat\n  console   {console_url}\n  API docs  {base}/docs",
                  soft_wrap=True)
    if serve.demo_tenant:
        console.print(f"  [yellow]demo sign-in is on for tenant {serve.demo_tenant!r}: anyone who can reach this "
                      "port can chat as a new customer; the console link signs in once; use --no-demo "
                      "outside a laptop[/]")


@tenants_app.command("create")
def create_tenant(
    name: Annotated[str, typer.Argument(help="Tenant name: lowercase letters, digits, '-' or '_'.")],
    config: ConfigOption = None,
    rate: Annotated[float, typer.Option(help="Turns per second for the whole tenant.")] = 20.0,
    burst: Annotated[int, typer.Option(help="Tenant burst.")] = 40,
    user_rate: Annotated[float, typer.Option(help="Turns per second per end user.")] = 2.0,
    user_burst: Annotated[int, typer.Option(help="End-user burst.")] = 10,
) -> None:
    """Create a tenant; prints its webhook secret and the JWT settings its end users' tokens need."""
    from .security.tenants import TenantDirectory

    async def run() -> None:
        directory = TenantDirectory(load_settings(config).sessions.url)
        try:
            record = await directory.create_tenant(name, rate=(rate, burst), user_rate=(user_rate, user_burst))
        finally:
            await directory.close()
        console.print(f"tenant {record.name} created", soft_wrap=True)
        console.print(f"  JWT: HS256, iss={record.jwt_issuer}, aud={record.jwt_audience}, secret={record.jwt_secret}",
                      soft_wrap=True)
        console.print(f"  webhook secret: {record.webhook_secret}", soft_wrap=True)

    try:
        asyncio.run(run())
    except ConciergeError as exc:
        raise _fail(exc) from None


@tenants_app.command("key")
def issue_key(
    tenant: Annotated[str, typer.Argument(help="The tenant.")],
    role: Annotated[str, typer.Option(help="customer, operator, service or admin.")] = "service",
    label: Annotated[str, typer.Option(help="What the key is for (shown in audit records).")] = "",
    config: ConfigOption = None,
) -> None:
    """Issue an API key; it is printed once and stored only as a hash."""
    from .security.tenants import TenantDirectory

    async def run() -> str:
        directory = TenantDirectory(load_settings(config).sessions.url)
        try:
            return await directory.issue_key(tenant, role, label)
        finally:
            await directory.close()

    try:
        key = asyncio.run(run())
    except ConciergeError as exc:
        raise _fail(exc) from None
    console.print(f"API key for {tenant} ({role}); store it now, it cannot be shown again:\n{key}", soft_wrap=True)


@tenants_app.command("list")
def list_tenants(config: ConfigOption = None) -> None:
    """The tenants and their rate limits."""
    from .security.tenants import TenantDirectory

    async def run() -> None:
        directory = TenantDirectory(load_settings(config).sessions.url)
        try:
            for record in await directory.list_tenants():
                console.print(f"{record.name}: {record.rate[0]:g}/s burst {record.rate[1]}, per user "
                              f"{record.user_rate[0]:g}/s burst {record.user_rate[1]}")
        finally:
            await directory.close()

    try:
        asyncio.run(run())
    except ConciergeError as exc:
        raise _fail(exc) from None
