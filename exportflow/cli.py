"""``exportflow``: seed sample data, run exports, and read jobs from the shell.

Heavy imports (Prefect, Great Expectations) happen only in the commands that run flows;
``jobs`` and ``job`` only touch the database.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import ValidationError

from core.formats import FORMATS
from core.memory import tune_allocators
from core.settings import Settings, get_settings, settings_problems

if TYPE_CHECKING:
    from core.params import ExportParameters
    from entities import Entity

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Asynchronous bulk exports from PostgreSQL, built on Prefect 3.",
)


def prefect_env(verbose: bool = False) -> None:
    """Local-mode Prefect defaults for in-process flow runs (state under EXPORTFLOW_HOME)."""
    from devtools.procs import prefect_defaults

    prefect_defaults(os.environ, get_settings().home, quiet=not verbose)


def _engine() -> Any:
    from db.engine import get_engine
    from db.migrate import upgrade

    engine = get_engine()
    upgrade(engine)
    return engine


def _fail(message: str, code: int = 2) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


@app.command()
def seed(
    vouchers: Annotated[int, typer.Option(help="Vouchers per tenant.")] = 100_000,
    tenants: Annotated[int, typer.Option(help="Tenants: demo, acme, tenant3, ...")] = 2,
    random_seed: Annotated[int, typer.Option("--seed", help="RNG seed.")] = 42,
    force: Annotated[bool, typer.Option(help="Regenerate even if already seeded.")] = False,
) -> None:
    """Create the sample schema and load deterministic sample data through COPY."""
    from devtools.sample import create_source_schema
    from devtools.sample import seed as run_seed

    if vouchers < 1 or tenants < 1:
        _fail("--vouchers and --tenants must be at least 1")
    engine = _engine()
    create_source_schema(engine)
    started = time.perf_counter()
    report = run_seed(engine, vouchers, tenants, seed=random_seed, force=force)
    for tenant, counts in report.items():
        if counts.get("skipped"):
            typer.echo(f"{tenant}: already has {vouchers:,} vouchers (use --force to reload)")
        else:
            typer.echo(f"{tenant}: " + ", ".join(f"{n:,} {t}" for t, n in counts.items()))
    typer.echo(f"seeded in {time.perf_counter() - started:.1f}s")


def run_flow(exported_object: str, tenant: str, parameters: ExportParameters) -> dict[str, Any]:
    """Run the entity's flow in-process; returns the job (raises ExportError on failure)."""
    from entities import get_entity
    from flows.exports import FLOWS
    from flows.launch import run_here

    entity = get_entity(exported_object)
    flow = FLOWS[entity.name]
    result: dict[str, Any] = run_here(flow, tenant=tenant, parameters=parameters.stored())
    return result


def print_job(job: dict[str, Any]) -> None:
    result = job.get("result") or {}
    lines = [
        ("job", job["id"]),
        ("status", job["status"]),
        (
            "object",
            f"{job['exported_object']} ({job['tenant']}, {job['format']}, "
            f"channel {job['channel']})",
        ),
        ("parameters", json.dumps(job["parameters"], ensure_ascii=False)),
        (
            "rows",
            f"{result.get('row_count', job.get('progress') or 0):,}"
            + (f" of {job['total']:,}" if job.get("total") is not None else ""),
        ),
    ]
    if result:
        lines += [
            ("bytes", f"{result['bytes']:,}"),
            ("sha256", result["sha256"]),
            ("file", result["location"]),
        ]
    if job.get("error"):
        lines.append(("error", job["error"]))
    for label, value in lines:
        typer.echo(f"  {label:<11}{value}")


def _resolve_object(name: str) -> Entity:
    """The entity ``name`` (singular or plural) names, or ``InvalidRequest``."""
    from core.names import resolve
    from entities import ENTITIES

    return ENTITIES[resolve({n: e.names for n, e in ENTITIES.items()}, name).name]


@app.command()
def export(
    exported_object: Annotated[str, typer.Argument(help="voucher, order, ... (or plural)")],
    tenant: Annotated[str, typer.Option(help="Tenant whose rows to export.")] = "demo",
    fields: Annotated[str | None, typer.Option(help="Comma-separated fields, in order.")] = None,
    order: Annotated[str | None, typer.Option(help="Sort key, '-' prefix = descending.")] = None,
    filter: Annotated[str | None, typer.Option(help="Filters as JSON (Voucherify format).")] = None,
    format: Annotated[str, typer.Option(help=f"One of: {', '.join(FORMATS)}.")] = "csv",
    compression: Annotated[str | None, typer.Option(help="gzip | zstd")] = None,
    partition_by: Annotated[
        str | None, typer.Option(help="One file per value of this field, in one ZIP.")
    ] = None,
    header: Annotated[str | None, typer.Option(help="names | labels")] = None,
    title: Annotated[str | None, typer.Option(help="XLSX title row / PDF title.")] = None,
    neutralize_formulas: Annotated[
        bool,
        typer.Option(
            "--neutralize-formulas/--keep-formulas",
            help="CSV: prefix ' to text a spreadsheet would run as a formula.",
        ),
    ] = True,
    validation: Annotated[
        bool,
        typer.Option("--validate/--skip-validation", help="Run the Great Expectations checks."),
    ] = True,
    verbose: Annotated[bool, typer.Option(help="Show Prefect's logs.")] = False,
) -> None:
    """Run one export now (in-process Prefect flow) and print its job.

    The request is checked against the entity before Prefect starts: a bad one is refused at once.
    """
    from core.errors import ExportError
    from core.names import load_names, resolve

    filters = None
    if filter:
        try:
            filters = json.loads(filter)
        except json.JSONDecodeError as exc:
            _fail(f"--filter is not valid JSON: {exc}")
    field_list = [f.strip() for f in fields.split(",")] if fields else None
    raw = {
        "fields": field_list,
        "order": order,
        "filters": filters,
        "format": format,
        "compression": compression,
        "partition_by": partition_by,
        "header": header,
        "title": title,
        "neutralize_formulas": None if neutralize_formulas else False,
        "validation": validation,
    }
    saved = load_names(_names_cache())
    if saved is not None:  # refuse what is certainly wrong before importing the catalog
        try:
            names = resolve(saved, exported_object)
            names.check_fields(field_list)
            names.check_order(order)
        except ExportError as exc:
            _fail(exc.message)
    try:
        entity_name, parameters = check_request(exported_object, tenant, raw)
    except ExportError as exc:
        _fail(exc.message)
    finally:
        if saved is None:
            _save_names()
    warn_if_tenant_is_empty(_engine(), entity_name, tenant)
    prefect_env(verbose)
    from exportflow.show import ProgressView
    from tasks.report import progress_listener

    view = ProgressView(f"{entity_name} export for {tenant}")
    try:
        with progress_listener(lambda _job, rows, total: view.update(rows, total)):
            job = run_flow(entity_name, tenant, parameters)
    except ExportError as exc:
        view.close()
        _fail(exc.message)
    except Exception as exc:  # database down, Prefect failure, ...
        view.close()
        _fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, 1)
    view.close()
    print_job(job)


def _names_cache() -> Path:
    return get_settings().home / "cache"


def _save_names() -> None:
    """Keep the catalog's names for the next ``export``'s early refusal (``core.names``)."""
    from core.names import save_names
    from entities import ENTITIES

    save_names(_names_cache(), (entity.names for entity in ENTITIES.values()))


def warn_if_tenant_is_empty(engine: Any, entity_name: str, tenant: str) -> None:
    """A tenant with no rows at all is most likely misspelt: say so (the export still runs)."""
    from entities import get_entity
    from query.sql import tenant_has_rows_statement

    entity = get_entity(entity_name)
    with engine.connect() as conn:
        if conn.execute(tenant_has_rows_statement(entity, tenant)).scalar_one():
            return
    typer.secho(
        f"warning: tenant {tenant!r} has no {entity.plural} at all (a misspelt --tenant?);"
        " the export will be empty",
        fg=typer.colors.YELLOW,
        err=True,
    )


def check_request(
    exported_object: str, tenant: str, raw: dict[str, Any]
) -> tuple[str, ExportParameters]:
    """The entity name and parameters of a CLI request, checked as the flow will check them."""
    from query.plan import parse_parameters, plan_export

    entity = _resolve_object(exported_object)
    parameters = parse_parameters({k: v for k, v in raw.items() if v is not None})
    plan_export(entity, tenant, parameters)
    return entity.name, parameters


@app.command()
def entities() -> None:
    """List what can be exported: entities, their flows, field counts, default order."""
    from exportflow.show import entities_table

    for line in entities_table():
        typer.echo(line)


@app.command()
def fields(
    exported_object: Annotated[str, typer.Argument(help="voucher, order, ... (or plural)")],
) -> None:
    """List an entity's fields with types, defaults, sort keys, filters and checks."""
    from core.errors import ExportError
    from exportflow.show import fields_table

    try:
        entity = _resolve_object(exported_object)
    except ExportError as exc:
        _fail(exc.message)
    for line in fields_table(entity):
        typer.echo(line)


@app.command()
def jobs(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's jobs.")] = None,
    status: Annotated[str | None, typer.Option(help="Only jobs in this status.")] = None,
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 20,
) -> None:
    """List recent export jobs."""
    from db.jobs import list_jobs

    page, total = list_jobs(_engine(), tenant=tenant, status=status, limit=limit)
    typer.echo(
        f"{'ID':<36}  {'STATUS':<11} {'OBJECT':<20} {'TENANT':<8} {'FMT':<5} {'ROWS':>10}  CREATED"
    )
    for job in page:
        rows = (job.result or {}).get("row_count", job.progress)
        typer.echo(
            f"{job.id!s:<36}  {job.status:<11} {job.exported_object:<20} "
            f"{job.tenant:<8} {job.format:<5} {rows:>10,}  {job.created_at:%Y-%m-%d %H:%M:%S}"
        )
    typer.echo(f"{len(page)} of {total} jobs")


@app.command()
def job(job_id: Annotated[str, typer.Argument(help="Export id.")]) -> None:
    """Show one export job as JSON."""
    from core.errors import NotFound
    from db.jobs import get_job

    try:
        found = get_job(_engine(), job_id)
    except NotFound as exc:
        _fail(exc.message, 1)
    typer.echo(json.dumps(found.as_dict(), indent=2, ensure_ascii=False))


@app.command()
def demo(
    vouchers: Annotated[int, typer.Option(help="Vouchers per tenant.")] = 100_000,
) -> None:
    """Seed sample data and run two voucher exports end to end; print where the files are."""
    from core.params import ExportParameters

    seed(vouchers=vouchers, tenants=2, random_seed=42, force=False)
    prefect_env()
    runs: list[tuple[str, dict[str, Any]]] = [
        ("vouchers of tenant demo, default fields, CSV", {}),
        (
            "vouchers of tenant demo created since 2025-07-01 in campaigns 1-3, chosen fields, "
            "newest first, JSON",
            {
                "fields": [
                    "code",
                    "campaign",
                    "value",
                    "discount_type",
                    "created_at",
                    "metadata.region",
                    "metadata",
                ],
                "order": "-created_at",
                "filters": {
                    "junction": "and",
                    "created_at": {"conditions": {"$after": "2025-07-01T00:00:00Z"}},
                    "campaign_ids": {
                        "conditions": {
                            "$in": [
                                "camp_demo_00000000",
                                "camp_demo_00000001",
                                "camp_demo_00000002",
                            ]
                        }
                    },
                },
                "format": "json",
            },
        ),
    ]
    for title, params in runs:
        typer.secho(f"\n{title}", bold=True)
        started = time.perf_counter()
        job = run_flow("voucher", "demo", ExportParameters.model_validate(params))
        print_job(job)
        typer.echo(f"  {'took':<11}{time.perf_counter() - started:.1f}s")


keys_app = typer.Typer(no_args_is_help=True, help="API keys of the exports API.")
app.add_typer(keys_app, name="keys")


@keys_app.command("create")
def keys_create(
    tenant: Annotated[str, typer.Option(help="Tenant the key acts for.")],
    scopes: Annotated[
        str, typer.Option(help="Comma-separated: exports:read, exports:write.")
    ] = "exports:read,exports:write",
    name: Annotated[str | None, typer.Option(help="A note on what the key is for.")] = None,
    rate_limit: Annotated[
        int | None, typer.Option(help="POSTs per window for this key (default: the setting).")
    ] = None,
) -> None:
    """Create an API key; prints its two headers (the token is not shown again)."""
    from api.auth import create_key
    from core.errors import ExportError

    try:
        app_id, token = create_key(
            _engine(),
            tenant,
            tuple(s.strip() for s in scopes.split(",") if s.strip()),
            name=name,
            rate_limit=rate_limit,
        )
    except ExportError as exc:
        _fail(exc.message)
    typer.echo(f"X-App-Id: {app_id}")
    typer.echo(f"X-App-Token: {token}")


@keys_app.command("list")
def keys_list(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's keys.")] = None,
) -> None:
    """List API keys (never their tokens)."""
    from api.auth import list_keys

    for key in list_keys(_engine(), tenant):
        state = f"revoked {key.revoked_at:%Y-%m-%d}" if key.revoked_at else "active"
        typer.echo(
            f"{key.app_id:<30} {key.tenant:<12} {','.join(key.scopes):<28} {state:<18} "
            f"{key.name or ''}"
        )


@keys_app.command("revoke")
def keys_revoke(app_id: Annotated[str, typer.Argument(help="The X-App-Id to revoke.")]) -> None:
    """Revoke an API key at once."""
    from api.auth import revoke_key

    if not revoke_key(_engine(), app_id):
        _fail(f"no active key {app_id!r}", 1)
    typer.echo(f"revoked {app_id}")


def _cli_origin() -> Any:
    import getpass

    from db.audit import Origin

    try:
        user = getpass.getuser()
    except Exception:  # containers without a passwd entry
        user = f"uid:{os.getuid()}"
    return Origin(user, "os_user", "CLI")


@app.command()
def erase(
    tenant: Annotated[
        str | None, typer.Option(help="Tenant (default for --requester: the API key's).")
    ] = None,
    requester: Annotated[
        str | None,
        typer.Option(help="Delete every export this API key id (or user) created."),
    ] = None,
    customer: Annotated[
        str | None,
        typer.Option(help="Data-subject erasure: remove every file that can hold this customer."),
    ] = None,
) -> None:
    """Erase exports: those of a requester, or every file that can hold a customer's data.

    Prints the report (JSON) of what was removed; both are recorded in the audit trail.
    """
    from api.auth import list_keys
    from core.tenants import check_tenant
    from storage.removal import erase_customer, erase_requester

    if (requester is None) == (customer is None):
        _fail("give exactly one of --requester or --customer")
    engine = _engine()
    if tenant is None and requester is not None:
        tenant = next((k.tenant for k in list_keys(engine) if k.app_id == requester), None)
    if tenant is None:
        _fail("--tenant is required (the requester is not a known API key)")
    from core.errors import ExportError

    try:
        check_tenant(tenant)
    except ExportError as exc:
        _fail(exc.message)
    assert tenant is not None
    prefect_env()
    settings = get_settings()
    if requester is not None:
        report = erase_requester(engine, settings, tenant, requester, _cli_origin())
    else:
        assert customer is not None
        report = erase_customer(engine, settings, tenant, customer, _cli_origin())
    typer.echo(json.dumps(report.as_dict(), indent=2, ensure_ascii=False))
    if report.failed:
        _fail(f"{len(report.failed)} files could not be removed; run the erasure again", 1)


@app.command()
def audit(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's events.")] = None,
    export_id: Annotated[str | None, typer.Option("--export", help="Only this export.")] = None,
    action: Annotated[
        str | None, typer.Option(help="create, download, delete, erase or expire.")
    ] = None,
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """Show the audit trail: who created, downloaded, deleted, erased or expired exports."""
    import uuid

    from db.audit import ACTIONS, list_events

    if action is not None and action not in ACTIONS:
        _fail(f"unknown action {action!r}; allowed: {', '.join(ACTIONS)}")
    try:
        export_uuid = uuid.UUID(export_id) if export_id else None
    except ValueError:
        _fail(f"--export {export_id!r} is not an export id")
    events, total = list_events(
        _engine(), tenant=tenant, export_id=export_uuid, action=action, limit=limit
    )
    for event in events:
        if as_json:
            typer.echo(json.dumps(event.as_dict(), ensure_ascii=False, default=str))
            continue
        where = " ".join(x for x in (event.channel, event.ip) if x)
        typer.echo(
            f"{event.at:%Y-%m-%d %H:%M:%S}  {event.action:<8} {event.tenant:<10} "
            f"{event.export_id or '-'!s:<36}  {event.actor or '-'} ({where})"
        )
    if not as_json:
        typer.echo(f"{len(events)} of {total} events")


@app.command()
def maintain() -> None:
    """Run the maintenance flow once, here: relaunch or fail lost exports, remove orphaned
    temp files and dead uploads; prints what it did."""
    _engine()
    prefect_env()
    from flows.launch import run_here
    from flows.maintenance import maintain as maintain_flow

    done = run_here(maintain_flow)
    for line in done:
        typer.echo(line)
    typer.echo(f"maintenance: {len(done)} actions" if done else "maintenance: nothing to do")


@app.command()
def serve() -> None:
    """Run the whole service here: PostgreSQL, Prefect server + worker, the API (Ctrl-C stops)."""
    from devtools.serve import main as serve_main

    serve_main()


def main() -> None:
    tune_allocators()  # before a command imports pyarrow; serve's processes inherit it
    try:
        Settings()  # read afresh (not cached): a command may still set variables of its own
    except ValidationError as exc:
        typer.secho("error: invalid settings:", fg=typer.colors.RED, err=True)
        for line in settings_problems(exc):
            typer.echo(f"  {line}", err=True)
        sys.exit(2)
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
