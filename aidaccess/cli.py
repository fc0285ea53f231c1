"""The operators' command: ``aidaccess serve | db | orgs | users | seed | openapi | audit``."""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from enum import IntEnum
from pathlib import Path
from typing import Annotated

import typer

from aidaccess.settings import ConfigurationError, describe_invalid, get_settings
from auth.roles import OrganizationKind, Role, Scope


class Exit(IntEnum):
    ok = 0
    refused = 1  # the request was understood and refused (duplicate, invalid, ...)
    usage = 2
    config = 3  # fix the configuration
    database = 4  # the database is unreachable or not migrated
    tampered = 5  # the audit chain is broken


# Never show local variables in tracebacks: they may hold passwords or tokens.
app = typer.Typer(
    no_args_is_help=True,
    add_completion=True,  # roles, kinds and scopes are choices the shell completes
    pretty_exceptions_show_locals=False,
    help="Run and operate the aidaccess API.",
)
db_app = typer.Typer(no_args_is_help=True, help="Database schema.")
orgs_app = typer.Typer(no_args_is_help=True, help="Organizations.")
users_app = typer.Typer(no_args_is_help=True, help="Users.")
seed_app = typer.Typer(no_args_is_help=True, help="Demo data.")
audit_app = typer.Typer(no_args_is_help=True, help="The audit trail.")
service_accounts_app = typer.Typer(no_args_is_help=True, help="Service accounts (integrations).")


def _print_version(given: bool) -> None:
    if given:
        from aidaccess import __version__

        typer.echo(f"aidaccess {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Run and operate the aidaccess API."""


app.add_typer(db_app, name="db")
app.add_typer(orgs_app, name="orgs")
app.add_typer(users_app, name="users")
app.add_typer(seed_app, name="seed")
app.add_typer(audit_app, name="audit")
app.add_typer(service_accounts_app, name="service-accounts")


def _fail(message: str, code: Exit) -> None:
    typer.echo(f"aidaccess: {message}", err=True)
    raise typer.Exit(int(code))


def _settings():  # noqa: ANN202
    from pydantic import ValidationError

    from workflow.audit import set_seal_key

    try:
        settings = get_settings()
        settings.check_production_ready()
    except ValidationError as exc:
        _fail(describe_invalid(exc), Exit.config)
    except ConfigurationError as exc:
        _fail(str(exc), Exit.config)
    # Whatever the command writes is sealed with it; a trail from before seals is sealed on upgrade
    # (alembic 0011); the events' public names are made with it (the worker's webhooks).
    set_seal_key(settings.audit_signing_key())
    return settings


@contextmanager
def _unit_of_work():  # noqa: ANN202
    """A write session for one command: committed once, or not at all."""
    from sqlalchemy.exc import OperationalError

    from db.engine import Database
    from db.migrations import current_revision, head_revision
    from workflow.errors import DomainError

    settings = _settings()
    database = Database(settings.resolved_database_url, pool_size=1)
    try:
        with database.engine.connect() as connection:
            if current_revision(connection) != head_revision():
                _fail("the database is not migrated to the current schema; run 'aidaccess db upgrade'", Exit.database)
        session = database.session(write=True)
        try:
            yield settings, session
            session.commit()
        except DomainError as exc:
            session.rollback()
            _fail(exc.detail, Exit.refused)
        finally:
            session.close()
    except OperationalError as exc:
        _fail(f"cannot reach the database ({type(exc.orig).__name__}): check AIDACCESS_DATABASE_URL", Exit.database)
    finally:
        database.dispose()


def _hasher(settings):  # noqa: ANN001, ANN202
    from auth.passwords import PasswordHasher

    return PasswordHasher(
        time_cost=settings.argon2_time_cost,
        memory_cost=settings.argon2_memory_kib,
        parallelism=settings.argon2_parallelism,
    )


def _validated(model, **fields):  # noqa: ANN001, ANN003, ANN202
    """``fields`` through the API's own schema (api.schemas): the API's messages, exit 1, nothing written."""
    from pydantic import ValidationError

    try:
        return model.model_validate(fields)
    except ValidationError as error:
        _fail(
            "; ".join(f"{'.'.join(str(part) for part in e['loc'])}: {e['msg']}" for e in error.errors()), Exit.refused
        )


def _read_password() -> str:
    if sys.stdin.isatty():
        import getpass

        return getpass.getpass("Password: ")
    line = sys.stdin.readline().rstrip("\r\n")
    if not line:
        _fail("no password on standard input", Exit.usage)
    return line


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
) -> None:
    """Serve the API with uvicorn."""
    from api.listen import serve as serve_with_workers

    settings = _settings()
    try:
        settings.signing_key()
    except OSError as exc:
        _fail(f"cannot keep the development key in {settings.data_dir}: {exc}", Exit.config)
    serve_with_workers(
        "api.app:serve_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop="uvloop",
        http="httptools",
        log_config=None,
        access_log=False,
        server_header=False,
        # Forwarded headers only from the proxies configured to be trusted (docs/operations.md).
        proxy_headers=bool(settings.trusted_proxies.strip()),
        forwarded_allow_ips=settings.trusted_proxies.strip() or None,
    )


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Option(help="Target revision.")] = "head") -> None:
    """Migrate the database schema (creates the SQLite file if needed)."""
    from sqlalchemy.exc import OperationalError

    from db import migrations
    from workflow.audit import ChainBroken

    settings = _settings()
    try:
        migrations.upgrade(settings.resolved_database_url, revision)
    except OperationalError as exc:
        _fail(f"cannot reach the database ({type(exc.orig).__name__}): check AIDACCESS_DATABASE_URL", Exit.database)
    except ChainBroken as exc:
        _fail(f"{exc}; the database stays at the revision before", Exit.tampered)
    typer.echo(f"database at {revision}")


@db_app.command("backup")
def db_backup(path: Annotated[str, typer.Argument(help="Where to write the copy (a new SQLite file).")]) -> None:
    """Copy an SQLite database with SQLite's online backup API: safe while the server writes.

    For PostgreSQL use pg_dump (see the README); this command says so and changes nothing."""
    import sqlite3
    from pathlib import Path

    from sqlalchemy.engine import make_url

    settings = _settings()
    url = make_url(settings.resolved_database_url)
    if url.get_backend_name() != "sqlite":
        _fail(
            "PostgreSQL is backed up with pg_dump: pg_dump --format=custom --file=PATH DBNAME (see the README)",
            Exit.usage,
        )
    source_path = Path(url.database or "")
    target = Path(path)
    if not source_path.exists():
        _fail(f"no database at {source_path}", Exit.database)
    if target.exists():
        _fail(f"{target} exists already; choose a new file", Exit.usage)
    source = sqlite3.connect(f"file:{source_path}?mode=ro", uri=True)
    copy = sqlite3.connect(target)
    try:
        # Page by page, letting writers in between steps; a consistent snapshot at the end.
        source.backup(copy, pages=1024)
        copy.execute("PRAGMA journal_mode=WAL")
    finally:
        copy.close()
        source.close()
    typer.echo(f"backed up {source_path} to {target}")


@db_app.command("downgrade")
def db_downgrade(
    revision: Annotated[str, typer.Argument(help="Target revision; 'base' removes everything.")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask before removing every table ('base').")] = False,
) -> None:
    """Undo migrations down to REVISION."""
    from db import migrations

    if revision == "base" and not yes:
        if not sys.stdin.isatty():
            _fail("'db downgrade base' removes every table and all data; add --yes to confirm", Exit.usage)
        if not typer.confirm("This removes every table and all their data. Continue?", default=False):
            _fail("nothing was changed", Exit.refused)
    migrations.downgrade(_settings().resolved_database_url, revision)
    typer.echo(f"database at {revision}")


@orgs_app.command("create")
def orgs_create(
    name: str,
    kind: Annotated[OrganizationKind, typer.Option(help="The kind of organization.", case_sensitive=False)],
) -> None:
    """Create an organization."""
    from api.schemas.admin import OrganizationCreate
    from workflow.admin import create_organization
    from workflow.audit import Actor

    body = _validated(OrganizationCreate, name=name, kind=kind)
    with _unit_of_work() as (_settings_, session):
        organization = create_organization(
            session=session, actor=Actor.system("aidaccess orgs create"), name=body.name, kind=body.kind
        )
        typer.echo(f"created organization {organization.id} {organization.name!r} ({organization.kind})")


@users_app.command("create")
def users_create(
    email: str,
    org: Annotated[str, typer.Option(help="The organization's name.")],
    role: Annotated[Role, typer.Option(help="The user's role.", case_sensitive=False)],
    name: Annotated[str | None, typer.Option(help="Full name (default: the email).")] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
) -> None:
    """Create a user. The password is read from standard input, never from the command line."""
    from sqlalchemy import select

    from db.models import Organization
    from workflow.admin import create_user
    from workflow.audit import Actor
    from workflow.identity import normalize_email

    user_role = role
    if not password_stdin:
        _fail("give --password-stdin and the password on standard input", Exit.usage)
    from api.schemas.admin import UserCreate

    password = _read_password()
    with _unit_of_work() as (settings, session):
        organization = session.execute(select(Organization).where(Organization.name == org)).scalar_one_or_none()
        if organization is None:
            _fail(f"no organization named {org!r}; create it with 'aidaccess orgs create'", Exit.refused)
        body = _validated(
            UserCreate,
            email=email,
            full_name=name or normalize_email(email),
            organization_id=organization.id,
            role=user_role,
            password=password,
        )
        user = create_user(
            session=session,
            actor=Actor.system("aidaccess users create"),
            hasher=_hasher(settings),
            email=body.email,
            full_name=body.full_name,
            organization_id=organization.id,
            role=body.role,
            password=body.password,
        )
        typer.echo(f"created user {user.id} {user.email} ({user.role} in {organization.name})")


def _organization_named(session, name: str):  # noqa: ANN001, ANN202
    from sqlalchemy import select

    from db.models import Organization

    organization = session.execute(select(Organization).where(Organization.name == name)).scalar_one_or_none()
    if organization is None:
        _fail(f"no organization named {name!r}; see 'aidaccess orgs list'", Exit.refused)
    return organization


def _user_by_email(session, email: str):  # noqa: ANN001, ANN202
    from sqlalchemy import select

    from db.models import User
    from workflow.identity import normalize_email

    user = session.execute(select(User).where(User.email == normalize_email(email))).scalar_one_or_none()
    if user is None:
        _fail(f"no user with the email {email!r}; see 'aidaccess users list'", Exit.refused)
    return user


def _every(fetch):  # noqa: ANN001, ANN202
    """Every row of a keyset-paged workflow list."""
    from workflow.common import PageRequest

    rows, after = [], None
    while True:
        page, more = fetch(PageRequest(limit=200, after=after))
        rows += page
        if not more:
            return rows
        after = page[-1].id


@orgs_app.command("list")
def orgs_list(
    kind: Annotated[OrganizationKind | None, typer.Option(help="Only this kind.", case_sensitive=False)] = None,
) -> None:
    """Every organization: id, kind, name (tab-separated)."""
    from workflow.admin import list_organizations
    from workflow.audit import Actor

    with _unit_of_work() as (_settings_, session):
        actor = Actor.system("aidaccess orgs list")
        for organization in _every(lambda page: list_organizations(session=session, actor=actor, page=page, kind=kind)):
            typer.echo(f"{organization.id}\t{organization.kind}\t{organization.name}")


@users_app.command("list")
def users_list(
    org: Annotated[str | None, typer.Option(help="Only this organization's (its name).")] = None,
    role: Annotated[Role | None, typer.Option(help="Only this role.", case_sensitive=False)] = None,
) -> None:
    """Every user: id, email, role, active or inactive, organization (tab-separated)."""
    from db.models import Organization
    from workflow.admin import list_users
    from workflow.audit import Actor

    with _unit_of_work() as (_settings_, session):
        organization_id = _organization_named(session, org).id if org else None
        names = {o.id: o.name for o in session.query(Organization)}
        actor = Actor.system("aidaccess users list")
        for user in _every(
            lambda page: list_users(session=session, actor=actor, page=page, organization_id=organization_id, role=role)
        ):
            typer.echo(
                f"{user.id}\t{user.email}\t{user.role}\t{'active' if user.active else 'inactive'}\t{names[user.organization_id]}"
            )


@users_app.command("deactivate")
def users_deactivate(email: str) -> None:
    """Deactivate a user: every token and console sign-in of theirs stops at once."""
    from workflow.admin import update_user
    from workflow.audit import Actor

    with _unit_of_work() as (settings, session):
        user = _user_by_email(session, email)
        update_user(
            session=session,
            actor=Actor.system("aidaccess users deactivate"),
            hasher=_hasher(settings),
            user_id=user.id,
            changes={"active": False},
        )
        typer.echo(f"deactivated {user.email}")


@users_app.command("reset-password")
def users_reset_password(
    email: str,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the new password from standard input.")
    ] = False,
) -> None:
    """Set a user's password (the API's rules) and sign them out everywhere."""
    from api.schemas.admin import UserUpdate
    from workflow.admin import update_user
    from workflow.audit import Actor

    if not password_stdin:
        _fail("give --password-stdin and the new password on standard input", Exit.usage)
    password = _read_password()
    body = _validated(UserUpdate, password=password)
    with _unit_of_work() as (settings, session):
        user = _user_by_email(session, email)
        update_user(
            session=session,
            actor=Actor.system("aidaccess users reset-password"),
            hasher=_hasher(settings),
            user_id=user.id,
            changes={"password": body.password},
        )
        typer.echo(f"password reset for {user.email}; their sign-ins were ended")


@service_accounts_app.command("create")
def service_accounts_create(
    name: str,
    org: Annotated[str, typer.Option(help="The organization's name.")],
    scope: Annotated[
        list[Scope] | None, typer.Option(help="A scope (repeat for more); default: read.", case_sensitive=False)
    ] = None,
) -> None:
    """Create a service account for an integration; its secret is printed this once."""
    from api.schemas.admin import ServiceAccountCreate
    from workflow.admin import create_service_account
    from workflow.audit import Actor

    scopes = scope or [Scope.read]
    with _unit_of_work() as (settings, session):
        organization = _organization_named(session, org)
        body = _validated(ServiceAccountCreate, name=name, organization_id=organization.id, scopes=scopes)
        account, secret = create_service_account(
            session=session,
            actor=Actor.system("aidaccess service-accounts create"),
            hasher=_hasher(settings),
            name=body.name,
            organization_id=organization.id,
            scopes=body.scopes,
        )
        typer.echo(
            f"created service account {account.id} {account.name!r} in {organization.name} ({' '.join(account.scopes)})"
        )
        typer.echo(f"client_id: {account.client_id}")
        typer.echo(f"client_secret: {secret}  (shown this once; store it now)")


@seed_app.command("demo")
def seed_demo(
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Give every demo user the password read from standard input.")
    ] = False,
) -> None:
    """Demo organizations, a user of each role and the 14 cities; running it again changes nothing."""
    from db.seed import seed_demo as run_seed

    password = _read_password() if password_stdin else None
    with _unit_of_work() as (settings, session):
        report = run_seed(session, hasher=_hasher(settings), password=password)
    typer.echo(
        f"seeded: {report.organizations_created} organizations, {len(report.users_created)} users, "
        f"{report.cities_created} cities, {report.designations_created} designations"
    )
    if report.users_created and not password_stdin:
        typer.echo("demo sign-ins (shown this once):")
        for email, user_password in report.users_created.items():
            typer.echo(f"  {email:36} {user_password}")


@app.command()
def openapi(
    output: Annotated[str | None, typer.Option(help="Write to this file instead of standard output.")] = None,
) -> None:
    """Print the OpenAPI contract."""
    from aidaccess.settings import Settings
    from api.app import create_app

    # The contract does not depend on configuration: build it from defaults.
    text = json.dumps(create_app(Settings(_env_file=None)).openapi(), indent=2, ensure_ascii=False) + "\n"
    if output:
        with open(output, "w", encoding="utf-8") as handle:
            handle.write(text)
    else:
        sys.stdout.write(text)


@app.command()
def worker(
    once: Annotated[bool, typer.Option("--once", help="One round, then exit.")] = False,
    interval: Annotated[float, typer.Option(help="Seconds between rounds when idle.")] = 1.0,
) -> None:
    """Deliver webhooks (several workers may run on PostgreSQL; one on SQLite)."""
    import time

    import httpx

    from aidaccess.logs import configure_logging
    from db.engine import Database
    from workflow.webhooks import TIMEOUT_SECONDS, run_once

    settings = _settings()
    configure_logging(settings.log_level)
    database = Database(settings.resolved_database_url, pool_size=2)

    def session_factory():  # noqa: ANN202
        return database.session(write=True)

    # Never follow redirects: a subscriber could point us at an internal address.
    with httpx.Client(timeout=TIMEOUT_SECONDS, follow_redirects=False) as http:
        while True:
            sent = run_once(session_factory, http=http, production=settings.is_production)
            if once:
                typer.echo(f"attempted {sent} deliveries")
                break
            if not sent:
                time.sleep(interval)
    database.dispose()


@audit_app.command("verify")
def audit_verify(
    checkpoint: Annotated[
        Path | None,
        typer.Option(
            "--checkpoint",
            help="A file of 'aidaccess audit checkpoint': the trail must still hold it (not cut short, not rewritten).",
        ),
    ] = None,
) -> None:
    """Check the audit trail's hash chain and seals (and a checkpoint); name the first broken link."""
    from workflow.audit import check_checkpoint, verify_chain

    saved = None
    if checkpoint is not None:
        try:
            saved = json.loads(checkpoint.read_text())
        except (OSError, ValueError) as exc:
            _fail(f"cannot read the checkpoint {checkpoint}: {exc}", Exit.usage)
    with _unit_of_work() as (_settings_, session):
        report = verify_chain(session)
        problem = check_checkpoint(session, saved) if report.ok and saved is not None else None
    if not report.ok:
        _fail(
            f"audit chain broken at event {report.broken_at}: {report.problem} ({report.checked} events verified before it)",
            Exit.tampered,
        )
    if problem:
        _fail(f"audit trail does not hold the checkpoint: {problem}", Exit.tampered)
    held = f"; it holds the checkpoint of {saved['made_at']} ({saved['events']} events)" if saved is not None else ""
    typer.echo(f"audit chain intact: {report.checked} events, every one sealed{held}")


@audit_app.command("checkpoint")
def audit_checkpoint(
    output: Annotated[
        Path | None, typer.Option("--output", help="Write it to this file (default: standard output).")
    ] = None,
) -> None:
    """The trail's event count and head hash, now, signed with the audit key: keep it elsewhere, and
    check the trail against it with 'aidaccess audit verify --checkpoint FILE'."""
    from workflow.audit import make_checkpoint, verify_chain

    with _unit_of_work() as (_settings_, session):
        report = verify_chain(session)
        if not report.ok:
            _fail(
                f"audit chain broken at event {report.broken_at}: {report.problem}; no checkpoint of a broken trail",
                Exit.tampered,
            )
        made = make_checkpoint(session)
    text = json.dumps(made, indent=2) + "\n"
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text)
        typer.echo(f"checkpoint of {made['events']} events written to {output}", err=True)


def main() -> None:
    from pydantic import ValidationError

    try:
        app()
    except ValidationError as exc:  # settings read outside _settings (the contract, the app's own factory)
        typer.echo(f"aidaccess: {describe_invalid(exc)}", err=True)
        sys.exit(int(Exit.config))
