"""`segmentation`: services, schema, synthetic lake, API keys, runs, rollback, API server, demo."""

from __future__ import annotations

import os
import sys
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated, Optional

import typer

from resources.settings import get_settings

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
services_app = typer.Typer(no_args_is_help=True, help="Local Elasticsearch, PostgreSQL and Redis.")
db_app = typer.Typer(no_args_is_help=True, help="The config store's schema.")
lake_app = typer.Typer(no_args_is_help=True, help="The data lake.")
keys_app = typer.Typer(no_args_is_help=True, help="API keys.")
app.add_typer(services_app, name="services")
app.add_typer(db_app, name="db")
app.add_typer(lake_app, name="lake")
app.add_typer(keys_app, name="api-keys")


@app.callback()
def _logging() -> None:
    # Every command logs through structlog: readable on a terminal, JSON lines otherwise (resources/json_logs.py).
    from resources.json_logs import configure_logging

    configure_logging(default_format="auto")


def _print_services(states) -> None:
    for state in states:
        running = "running" if state.running else "stopped"
        owner = "managed" if state.managed else "external"
        typer.echo(f"{state.name:<14} {running:<8} {owner:<9} {state.url}  {state.detail}")


@services_app.command("up")
def services_up() -> None:
    """Install where missing and start Elasticsearch, PostgreSQL and Redis; idempotent."""
    from devtools.local_services import ServiceError, services_up as up

    try:
        _print_services(up(get_settings()))
    except ServiceError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from error


@services_app.command("down")
def services_down() -> None:
    """Stop what `services up` started; leave external services alone."""
    from devtools.local_services import services_down as down

    _print_services(down(get_settings()))


@services_app.command("status")
def services_status() -> None:
    from devtools.local_services import services_status as status

    _print_services(status(get_settings()))


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Create or migrate the config store's schema (Alembic)."""
    from resources.config_store.database import upgrade_schema

    upgrade_schema(get_settings().database_url, revision)
    typer.echo(f"config store schema at {revision}")


@lake_app.command("generate")
def lake_generate(
    out: Annotated[Optional[str], typer.Option(help="Lake URI; defaults to SEGMENTATION_LAKE_URI.")] = None,
    customers: int = 100_000,
    days: int = 90,
    seed: int = 42,
    end: Annotated[Optional[str], typer.Option(help="Last day with orders, YYYY-MM-DD; default yesterday (UTC).")] = None,
) -> None:
    """Write a deterministic, realistic synthetic raw lake."""
    from devtools.synthetic_lake import generate_lake

    end_date = date.fromisoformat(end) if end else datetime.now(timezone.utc).date() - timedelta(days=1)
    summary = generate_lake(out or get_settings().lake_uri, customers=customers, days=days, seed=seed, end=end_date)
    typer.echo(
        f"{summary.customers} customers, {summary.stores} stores, {summary.orders} orders "
        f"({summary.cancelled_orders} cancelled, {summary.invalid_rows} invalid) "
        f"from {summary.start} to {summary.end} in {summary.seconds:.1f}s"
    )


@keys_app.command("create")
def api_keys_create(
    name: Annotated[str, typer.Option(help="Who uses the key; the actor in the audit log. Never reused.")],
    scope: Annotated[str, typer.Option(help="read (lookups) or admin (everything)")] = "read",
) -> None:
    """Print a new API key once; only its hash is stored."""
    from resources.config_store.api_keys import ApiKeyRepository

    try:
        token = ApiKeyRepository(_config_sessions()).create(name, scope)  # type: ignore[arg-type]
    except ValueError as error:  # an invalid name or scope, or a name taken
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from error
    typer.echo(token)


@keys_app.command("revoke")
def api_keys_revoke(name: Annotated[str, typer.Option(help="The key's name.")]) -> None:
    """Revoke a key: every API process refuses it within a second; its name stays taken."""
    from redis import RedisError

    from api.key_cache import API_KEY_CACHE_SECONDS
    from resources.config_store.api_keys import ApiKeyRepository
    from resources.config_store.revocations import announce_revocation

    if not ApiKeyRepository(_config_sessions()).revoke(name):
        typer.echo(f"no active key named {name!r}", err=True)
        raise typer.Exit(1)
    settings = get_settings()
    try:
        heard = announce_revocation(settings.coordination_redis_url, settings.index_prefix, name)
    except RedisError as error:
        typer.echo(f"revoked {name}; the notice to the API failed ({error}): it refuses the key within {API_KEY_CACHE_SECONDS:.0f} s")
        return
    typer.echo(f"revoked {name}; {heard} API processes were told")


@keys_app.command("list")
def api_keys_list() -> None:
    """Every key: name, scope, created, last used, state. Keys themselves are never shown again."""
    from resources.config_store.api_keys import ApiKeyRepository

    def when(moment: datetime | None) -> str:
        return f"{moment:%Y-%m-%d %H:%M}" if moment else "never"

    typer.echo(f"{'name':<30} {'scope':<6} {'created':<16} {'last used':<16} state")
    for key in ApiKeyRepository(_config_sessions()).list():
        state = f"revoked {key['revoked_at']:%Y-%m-%d %H:%M}" if key["revoked_at"] else "active"
        typer.echo(
            f"{key['name']:<30} {key['scope']:<6} {when(key['created_at']):<16} {when(key['last_used_at']):<16} {state}"
        )


def _config_sessions():
    from resources.config_store.database import session_factory

    return session_factory(get_settings().database_url)


@app.command("run")
def run(
    partition: Annotated[str, typer.Option(help="Partition key, e.g. 2026-11-25.")],
    segment_type: Annotated[Optional[list[str]], typer.Option(help="Only these types (repeatable).")] = None,
) -> None:
    """Materialize calculation, index and alias for a partition, through Dagster."""
    from cli.runs import materialize_partition

    import structlog

    structlog.contextvars.bind_contextvars(command="run", partition=partition)
    result = materialize_partition(get_settings(), partition, segment_type or [])
    for line in result.summary_lines:
        typer.echo(line)
    if not result.success:
        raise typer.Exit(1)


@app.command("rollback")
def rollback(
    segment_type: Annotated[str, typer.Option(help="The segment type whose aliases move.")],
    to: Annotated[Optional[str], typer.Option(help="A retained index to serve; default: the previous one.")] = None,
) -> None:
    """Point the type's alias back at the previous (or the named) retained index."""
    from resources.publishing.lock import IngestionLocked
    from resources.publishing.aliases import PublicationRefused
    from segmentation_assets.rollback import roll_back_with_settings

    try:
        move = roll_back_with_settings(get_settings(), segment_type, to)
    except (IngestionLocked, PublicationRefused, ValueError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from error
    was = ", ".join(move.previous) or "nothing"
    generation = f", generation {move.generation}" if move.generation is not None else " (already served)"
    typer.echo(f"{segment_type} served from {move.served} (was {was}){generation}")
    for problem in move.problems:
        typer.echo(f"warning: {problem}", err=True)


@app.command("ui")
def ui(
    host: str = "127.0.0.1",
    port: Annotated[int, typer.Option(help="The webserver's port.")] = 3000,
) -> None:
    """Serve the Dagster UI and run its daemon (schedules, sensors) on the project's instance."""
    from cli.dagster_ui import serve_ui

    typer.echo(f"Dagster UI on http://{host}:{port} (code location `segmentation`)", err=True)
    serve_ui(get_settings(), host, port)


@app.command("api")
def api(
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes; default one per CPU.")] = os.cpu_count() or 1,
) -> None:
    """Serve the HTTP API (uvloop, httptools; several workers for production)."""
    from cli.api_server import WorkerFailedToStart, serve

    if workers > 1:
        from resources.serving.metrics import prepare_multiprocess_dir

        prepare_multiprocess_dir()  # so that /metrics adds up every worker
    try:
        serve(host, port, workers)
    except WorkerFailedToStart as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from error


@app.command("openapi")
def openapi(out: Annotated[Optional[Path], typer.Option(help="Default: docs/openapi.json in the repository.")] = None) -> None:
    """Write the OpenAPI document, as the API serves it at /openapi.json, to a file."""
    from api.main import OPENAPI_FILE, render_openapi

    target = out or OPENAPI_FILE
    target.write_text(render_openapi())
    typer.echo(f"wrote {target}")


@app.command("demo")
def demo(
    customers: int = 20_000,
    days: int = 60,
    serve: Annotated[bool, typer.Option(help="Keep the API running after the demo.")] = False,
) -> None:
    """Services, a generated lake, sample segments, every asset materialized, the API answering."""
    from cli.demo import run_demo

    sys.exit(run_demo(get_settings(), customers=customers, days=days, serve=serve))


if __name__ == "__main__":
    app()
