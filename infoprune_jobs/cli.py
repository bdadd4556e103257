"""Service subcommands of the ``infoprune`` console script: ``serve``, ``worker``, ``migrate``, ``keys``.

Registered through the ``infoprune.commands`` entry-point group. Registering imports nothing of the
service (settings, database, Celery): those are imported when a command runs.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from infoprune_jobs.settings import Settings


def _settings() -> Settings:
    from infoprune_jobs.settings import Settings

    return Settings()


def register(subparsers: Any) -> None:
    serve = subparsers.add_parser("serve", help="run the HTTP API (embedded worker unless a broker is set)")
    serve.add_argument("--host", default=None, help="bind address (default INFOPRUNE_HOST, 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default INFOPRUNE_PORT, 8000)")
    serve.add_argument("--migrate", action="store_true", help="upgrade the database first (always done for SQLite)")
    serve.set_defaults(func=cmd_serve)

    worker = subparsers.add_parser("worker", help="run a Celery worker (needs INFOPRUNE_BROKER_URL)")
    worker.add_argument(
        "--device-class",
        action="append",
        dest="device_classes",
        metavar="CLASS",
        help="queue(s) to consume, e.g. gpu or cpu (repeatable; default INFOPRUNE_DEFAULT_DEVICE_CLASS)",
    )
    worker.add_argument("--concurrency", type=int, default=1, help="jobs at once (one per GPU; default 1)")
    worker.add_argument("--pool", default="prefork", choices=["prefork", "solo", "threads"])
    worker.add_argument("--hostname", default=None, help="Celery node name")
    worker.add_argument(
        "--metrics-port", type=int, default=None, help="serve job metrics here (default INFOPRUNE_WORKER_METRICS_PORT)"
    )
    worker.set_defaults(func=cmd_worker)

    migrate = subparsers.add_parser(
        "migrate", help="bring the database (INFOPRUNE_DATABASE_URL) to the latest schema; from any directory"
    )
    migrate.add_argument("--revision", default="head", help="target revision (default head)")
    migrate.set_defaults(func=cmd_migrate)

    keys = subparsers.add_parser("keys", help="manage API keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="create a key for a tenant (created if new); printed once")
    create.add_argument("--tenant", required=True, help="tenant name (1-100 chars: letters, digits, . _ -)")
    create.set_defaults(func=cmd_keys_create)
    revoke = keys_sub.add_parser("revoke", help="revoke a key by its prefix (first 16 characters)")
    revoke.add_argument("prefix")
    revoke.set_defaults(func=cmd_keys_revoke)
    rotate = keys_sub.add_parser("rotate", help="issue a new key for the tenant of a key; printed once")
    rotate.add_argument("prefix", help="the key to replace (its first 16 characters)")
    rotate.add_argument(
        "--grace-seconds", type=int, default=0, help="the old key stays valid this long (default 0: revoked now)"
    )
    rotate.set_defaults(func=cmd_keys_rotate)


def _prepare_db(settings: Settings, force: bool = False) -> None:
    from infoprune_jobs import migrate

    if force or settings.sqlalchemy_url.startswith("sqlite"):
        migrate.upgrade(settings.sqlalchemy_url)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from api import build_context, create_app
    from infoprune_jobs.dispatch import LocalDispatcher
    from infoprune_jobs.logs import configure_logging

    settings = _settings()
    configure_logging(settings.log_level)
    _prepare_db(settings, force=args.migrate)
    ctx = build_context(settings)
    app = create_app(ctx)
    embedded = None
    if isinstance(ctx.dispatcher, LocalDispatcher):
        from worker.embedded import EmbeddedWorker
        from worker.runner import RunnerContext

        settings.models_dir.mkdir(parents=True, exist_ok=True)
        embedded = EmbeddedWorker(RunnerContext(settings, ctx.sessions, ctx.storage), ctx.dispatcher)
        embedded.start()
    host = args.host or settings.host
    port = settings.port if args.port is None else args.port
    print(
        f"infoprune: serving on http://{host}:{port} "
        f"({'embedded worker' if embedded else 'Celery workers'}; models root {settings.models_dir})",
        file=sys.stderr,
    )
    try:
        uvicorn.run(app, host=host, port=port, log_config=None, access_log=False)
    finally:
        if embedded is not None:
            embedded.stop()
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from infoprune_jobs import migrate

    settings = _settings()
    migrate.upgrade(settings.sqlalchemy_url, args.revision)
    print(f"infoprune: database at revision {args.revision}", file=sys.stderr)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    import os

    if args.metrics_port is not None:  # read by worker.main, in this process
        os.environ["INFOPRUNE_WORKER_METRICS_PORT"] = str(args.metrics_port)
    settings = _settings()
    if settings.broker_url is None:
        print(
            "infoprune worker: set INFOPRUNE_BROKER_URL (e.g. redis://localhost:6379/0); "
            "without a broker, `infoprune serve` runs jobs in-process",
            file=sys.stderr,
        )
        return 2
    classes = args.device_classes or [settings.default_device_class]
    unknown = [c for c in classes if c not in settings.device_classes]
    if unknown:
        print(
            f"infoprune worker: device class {unknown} is not configured; configured (INFOPRUNE_DEVICE_CLASSES, "
            f"the same for the API and every worker): {settings.device_classes}",
            file=sys.stderr,
        )
        return 2
    from worker.devices import device_for, unusable_in_fresh_process

    for device_class in classes:
        if (problem := unusable_in_fresh_process(device_for(device_class))) is not None:
            print(
                f"infoprune worker: device class {device_class!r} needs {device_for(device_class)}: {problem}",
                file=sys.stderr,
            )
            return 2
    from worker.main import app

    argv = [
        "worker",
        "-Q",
        ",".join(settings.queue_for(c) for c in classes),
        f"--concurrency={args.concurrency}",
        f"--pool={args.pool}",
        f"--loglevel={settings.log_level}",
        "--without-gossip",
        "--without-mingle",
    ]
    if args.hostname:
        argv.append(f"--hostname={args.hostname}")
    app.worker_main(argv)
    return 0


def cmd_keys_create(args: argparse.Namespace) -> int:
    import re

    from infoprune_jobs.db import make_engine, make_sessionmaker, transaction
    from infoprune_jobs.repository import TenantAdmin

    if not re.fullmatch(r"[A-Za-z0-9._-]{1,100}", args.tenant):
        print("infoprune keys: tenant names are 1-100 letters, digits, '.', '_' or '-'", file=sys.stderr)
        return 2
    from sqlalchemy.exc import SQLAlchemyError

    settings = _settings()
    _prepare_db(settings)
    engine = make_engine(settings.sqlalchemy_url)
    try:
        with transaction(make_sessionmaker(engine)) as session:
            admin = TenantAdmin(session)
            tenant, created = admin.get_or_create_tenant(args.tenant)
            key = admin.create_key(tenant)
            secret = tenant.webhook_secret
    except SQLAlchemyError as exc:
        print(
            f"infoprune keys: database unusable ({type(exc).__name__}); is it reachable and migrated "
            "(`alembic upgrade head` or `infoprune serve --migrate`)?",
            file=sys.stderr,
        )
        return 1
    finally:
        engine.dispose()
    print(key)
    print(f"# API key for tenant {args.tenant!r}: shown once, store it now.", file=sys.stderr)
    if created:
        print(f"# new tenant; its webhook signing secret (Standard Webhooks): {secret}", file=sys.stderr)
    return 0


def _admin(action: Any) -> Any:
    """Run ``action(TenantAdmin)`` in one transaction of the configured database."""
    from infoprune_jobs.db import make_engine, make_sessionmaker, transaction
    from infoprune_jobs.repository import TenantAdmin

    engine = make_engine(_settings().sqlalchemy_url)
    try:
        with transaction(make_sessionmaker(engine)) as session:
            return action(TenantAdmin(session))
    finally:
        engine.dispose()


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    revoked = _admin(lambda admin: admin.revoke_key(args.prefix))
    print("revoked" if revoked else "no such active key", file=sys.stderr)
    return 0 if revoked else 1


def cmd_keys_rotate(args: argparse.Namespace) -> int:
    if args.grace_seconds < 0:
        print("infoprune keys: --grace-seconds must be >= 0", file=sys.stderr)
        return 2

    def rotate(admin: Any) -> tuple[str, str] | None:
        rotated = admin.rotate_key(args.prefix, grace_s=args.grace_seconds)
        return None if rotated is None else (rotated[0], rotated[1].revoked_at.isoformat())

    result = _admin(rotate)
    if result is None:
        print("no such active key", file=sys.stderr)
        return 1
    print(result[0])
    print(f"# new API key: shown once, store it now. The old key is refused from {result[1]}.", file=sys.stderr)
    return 0
