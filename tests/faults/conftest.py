"""Fault-injection fixtures: the service stack of tests/service (API, Celery worker processes,
PostgreSQL, Redis, S3) with parts a test may break. Nothing is mocked:

- ``own_redis``, ``own_postgres``, ``own_s3``: a Redis server, a PostgreSQL cluster and a SeaweedFS S3
  server of the test's own, on free loopback ports, that it may kill and restart (the machine's shared
  servers are never touched);
- pause points (``make_stack(pause_points=True)``, then ``stack.pauses.at(...)``): hold a worker inside
  PostgreSQL while it writes a given job event (a trigger makes the writing transaction wait for an
  advisory lock the test holds), so a fault is injected at an exact stage of a real job instead of
  racing a sub-second pipeline;
- ``make_stack``: API (in-process, or a real ``infoprune serve`` process) and Celery worker processes
  wired to any of these.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api import build_context, create_app
from infoprune_jobs import migrate
from infoprune_jobs.db import transaction
from infoprune_jobs.models import Artifact, Job
from infoprune_jobs.repository import TenantAdmin
from infoprune_jobs.settings import Settings
from infoprune_jobs.storage import ArtifactStorage
from tests.conftest import FAST_CONFIG, RUN_ID, S3_KEY, S3_SECRET, S3Server, free_port, weed_mini_command
from tests.service.helpers import TERMINAL, env_for, kill_group, start, wait_for_job, wait_until

# -- servers a test owns -------------------------------------------------------------------------


class Server:
    """A server process the test starts, kills (SIGKILL: no clean shutdown) and restarts as it was."""

    name = "server"

    def __init__(self, command: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.command, self.log, self.env = command, log, env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.command, stdout=self.log.open("ab"), stderr=subprocess.STDOUT, env=self.env, start_new_session=True
        )
        wait_until(self._ready, 60, f"{self.name} to start")

    def _ready(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, self.log.read_text(errors="replace")[-2000:]
        return self.ready()

    def ready(self) -> bool:
        raise NotImplementedError

    def kill(self) -> None:
        if self.proc is not None:
            kill_group(self.proc)
            self.proc = None

    def restart(self) -> None:
        self.kill()
        self.start()


class RedisServer(Server):
    """redis-server without persistence: a restart loses every message, as a crashed cache would."""

    name = "redis"

    def __init__(self, log: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        super().__init__(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], log
        )

    def ready(self) -> bool:
        import redis

        try:
            return bool(redis.Redis.from_url(self.url, socket_timeout=1).ping())
        except redis.RedisError:
            return False

    def client(self) -> Any:
        import redis

        return redis.Redis.from_url(self.url)


class WeedServer(Server):
    """SeaweedFS ``weed mini`` whose data and ports survive a restart, like an S3 service back up."""

    name = "weed mini"

    def __init__(self, data: Path) -> None:
        command, ports = weed_mini_command(data)
        env = {**os.environ, "AWS_ACCESS_KEY_ID": S3_KEY, "AWS_SECRET_ACCESS_KEY": S3_SECRET}
        env.pop("S3_BUCKET", None)
        self.s3 = S3Server(f"http://127.0.0.1:{ports['s3.port']}", S3_KEY, S3_SECRET)
        super().__init__(command, data / "weed.log", env)

    def ready(self) -> bool:
        try:
            self.s3.client().list_buckets()
            return True
        except Exception:
            return False


class PostgresCluster:
    """A throwaway PostgreSQL cluster (initdb) on a free port. PostgreSQL refuses to run as root, so as
    root the cluster belongs to the ``postgres`` system user and its commands run through ``runuser``."""

    def __init__(self, bindir: Path, root: Path) -> None:
        self.bindir, self.root = bindir, root
        self.data, self.log = root / "data", root / "postgres.log"
        self.port = free_port()
        self.admin_url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {root} -c fsync=off -c full_page_writes=off"
        self._as: list[str] = []
        if os.geteuid() == 0:
            try:
                user = pwd.getpwnam("postgres")
            except KeyError:
                pytest.skip("running as root and there is no 'postgres' user to own a PostgreSQL cluster")
            os.chown(root, user.pw_uid, user.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]

    def _run(self, *args: str) -> None:
        subprocess.run([*self._as, *args], check=True, capture_output=True, timeout=120)

    def init(self) -> None:
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
        )

    def pg_ctl(self, *args: str) -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", *args)

    def start(self) -> None:
        self.pg_ctl("-o", self._options, "start")

    def restart(self) -> None:
        """Fast shutdown (every connection is cut, open transactions roll back), then start again."""
        self.pg_ctl("-m", "fast", "-o", self._options, "restart")

    def stop(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError):
            self.pg_ctl("-m", "immediate", "stop")

    def new_database(self) -> str:
        import psycopg

        name = f"faults_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis.log")
    server.start()
    yield server
    server.kill()


@pytest.fixture
def own_s3(tmp_path: Path) -> Iterator[WeedServer]:
    data = tmp_path / "weed"
    data.mkdir()
    server = WeedServer(data)
    server.start()
    yield server
    server.kill()


@pytest.fixture
def own_postgres() -> Iterator[PostgresCluster]:
    bindirs = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    found = shutil.which("initdb")
    initdb = Path(found) if found else (bindirs[-1] if bindirs else None)
    if initdb is None:
        pytest.skip("initdb (PostgreSQL server binaries) not found")
    root = Path(tempfile.mkdtemp(prefix="infoprune-faults-pg-"))  # outside root's 0700 pytest folder
    cluster = PostgresCluster(initdb.parent, root)
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


# -- pause points --------------------------------------------------------------------------------
PAUSE_SQL = """
CREATE TABLE IF NOT EXISTS fault_pauses (
    id serial PRIMARY KEY, kind text NOT NULL, stage text, status text, lock_key bigint NOT NULL
);
CREATE OR REPLACE FUNCTION fault_pause() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE k bigint;
BEGIN
    DELETE FROM fault_pauses WHERE id = (
        SELECT id FROM fault_pauses
        WHERE kind = NEW.kind AND coalesce(stage, NEW.stage) = NEW.stage AND coalesce(status, NEW.status) = NEW.status
        ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED
    ) RETURNING lock_key INTO k;
    IF k IS NOT NULL THEN
        PERFORM pg_advisory_xact_lock_shared(k);
    END IF;
    RETURN NEW;
END $$;
DROP TRIGGER IF EXISTS fault_pause ON job_events;
CREATE TRIGGER fault_pause AFTER INSERT ON job_events FOR EACH ROW EXECUTE FUNCTION fault_pause();
"""

_keys = itertools.count(7001)


def _psycopg_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


class Pause:
    """One armed pause point: the next job event matching it waits until :meth:`release`."""

    def __init__(self, url: str, kind: str, stage: str | None, status: str | None) -> None:
        import psycopg

        self.key = next(_keys)
        self._conn = psycopg.connect(_psycopg_url(url), autocommit=True)
        self._conn.execute("SELECT pg_advisory_lock(%s)", (self.key,))
        self._conn.execute(
            "INSERT INTO fault_pauses (kind, stage, status, lock_key) VALUES (%s, %s, %s, %s)",
            (kind, stage, status, self.key),
        )

    def _count(self, sql: str, *params: Any) -> int:
        row = self._conn.execute(sql, params).fetchone()
        return int(row[0]) if row else 0

    def wait_paused(self, timeout: float = 120) -> None:
        """Until a worker's transaction waits at this pause point."""
        sql = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND objid = %s"
        wait_until(lambda: self._count(sql, self.key), timeout, f"a worker to reach pause point {self.key}", 0.02)

    def wait_for_row_lock_waiter(self, timeout: float = 30) -> None:
        """Until another session (say, the API cancelling the job) waits for the row the paused worker holds."""
        sql = (
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            " AND wait_event IN ('transactionid', 'tuple') AND query ILIKE 'SELECT%%FOR UPDATE%%'"
        )
        wait_until(lambda: self._count(sql), timeout, "a session waiting for the paused job's row", 0.02)

    def release(self) -> None:
        if not self._conn.closed:
            self._conn.close()  # ends the session: its advisory lock goes with it


class PausePoints:
    def __init__(self, url: str) -> None:
        import psycopg

        self.url = url
        with psycopg.connect(_psycopg_url(url), autocommit=True) as conn:
            conn.execute(PAUSE_SQL)
        self._armed: list[Pause] = []

    def at(self, kind: str = "stage", *, stage: str | None = None, status: str | None = None) -> Pause:
        """Arm a pause at the next event of ``kind`` (and ``stage``/``status``) that any job writes."""
        pause = Pause(self.url, kind, stage, status)
        self._armed.append(pause)
        return pause

    def close(self) -> None:
        for pause in self._armed:
            with contextlib.suppress(Exception):
                pause.release()


# -- the stack -----------------------------------------------------------------------------------
@dataclass
class FaultStack:
    settings: Settings
    env: dict[str, str]
    headers: dict[str, str]
    logs: Path
    sessions: sessionmaker[Session]
    storage: ArtifactStorage
    tenant_id: str
    client: Any = None  # TestClient (in-process API) or httpx.Client (API process)
    workers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    api: subprocess.Popen[bytes] | None = None
    pauses: PausePoints | None = None

    @property
    def worker_tmp(self) -> Path:
        return Path(self.env["TMPDIR"])

    def worker(self, name: str) -> subprocess.Popen[bytes]:
        args = ["worker", "--device-class", "cpu", f"--hostname={name}-{RUN_ID}@%h"]
        self.workers[name] = start(args, self.env, self.logs / f"{name}.log")
        return self.workers[name]

    def wait_ready(self, name: str, timeout: float = 90) -> None:
        """Until the worker has connected to the broker and runs its reaper (its log says ``ready.``)."""
        wait_until(lambda: ' ready."' in self.log(name), timeout, f"worker {name} to be ready")

    def start_api(self, port: int) -> None:
        """``infoprune serve`` as a process (Celery mode), polled through a plain HTTP client."""
        self.api = start(["serve", "--port", str(port)], self.env, self.logs / "api.log")
        if self.client is None:
            self.client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
        wait_until(self.api_up, 60, "the API process")

    def api_up(self) -> bool:
        try:
            return bool(self.client.get("/healthz").status_code == 200)
        except httpx.TransportError:
            return False

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def post_job(self, **config: Any) -> Any:
        body = {"source": "tiny-bert", "config": {**FAST_CONFIG, **config}}
        return self.client.post("/v1/jobs", json=body, headers=self.headers)

    def submit(self, **config: Any) -> str:
        r = self.post_job(**config)
        assert r.status_code == 202, r.text
        return str(r.json()["id"])

    def submit_when_accepted(self, timeout: float = 30) -> str:
        """Submit until the API accepts (202) rather than refusing while a dependency is down (503)."""

        def attempt() -> str | None:
            r = self.post_job()
            assert r.status_code in (202, 503), r.text
            return str(r.json()["id"]) if r.status_code == 202 else None

        return str(wait_until(attempt, timeout, "the API to accept a job"))

    def cancel(self, job_id: str) -> Any:
        return self.client.post(f"/v1/jobs/{job_id}/cancel", headers=self.headers)

    def job(self, job_id: str) -> dict[str, Any]:
        r = self.client.get(f"/v1/jobs/{job_id}", headers=self.headers)
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    def events(self, job_id: str) -> list[dict[str, Any]]:
        r = self.client.get(f"/v1/jobs/{job_id}/events?limit=1000", headers=self.headers)
        assert r.status_code == 200, r.text
        return r.json()["data"]  # type: ignore[no-any-return]

    def wait(self, job_id: str, timeout: float = 120) -> dict[str, Any]:
        return wait_for_job(self.client, job_id, self.headers, timeout)

    def artifact_rows(self, job_id: str) -> list[Artifact]:
        with self.sessions() as session:
            return list(session.scalars(select(Artifact).where(Artifact.job_id == job_id).order_by(Artifact.name)))

    def stored_keys(self, job_id: str) -> list[str]:
        """Every object under the job's artifact prefix in the store."""
        return self.storage.list(f"tenants/{self.tenant_id}/jobs/{job_id}")

    def job_dirs_left(self) -> list[str]:
        """Work folders of jobs the workers left behind (each job's is removed when it ends), in the
        work root and, for anything written outside it, the workers' temporary folder."""
        left = [p.name for p in self.settings.work_root.glob("*")] if self.settings.work_root.is_dir() else []
        return sorted(left + [p.name for p in self.worker_tmp.glob("infoprune-*")])


def assert_finished_once(stack: FaultStack, job_id: str, status: str = "succeeded") -> list[dict[str, Any]]:
    """One terminal status event, equal to the job's status; for a success, every artifact row is in the
    store exactly once with its recorded digest, and nothing else lies under the job's prefix."""
    import hashlib

    job = stack.job(job_id)
    assert job["status"] == status, job
    events = stack.events(job_id)
    finals = [e for e in events if e["kind"] == "status" and e["status"] in TERMINAL]
    assert [e["status"] for e in finals] == [status], finals
    rows = stack.artifact_rows(job_id)
    keys = stack.stored_keys(job_id)
    if status == "succeeded":
        names = [a.name for a in rows]
        assert len(names) == len(set(names)) and {"config.json", "model.safetensors", "infoprune.json"} <= set(names)
        assert sorted(a.storage_key for a in rows) == keys  # no duplicate, no stray object
        for a in rows:
            assert hashlib.sha256(stack.storage.get_bytes(a.storage_key)).hexdigest() == a.sha256, a.name
    else:
        assert rows == [] and keys == [], (rows, keys)  # nothing half-written is reported or left
        r = stack.client.get(f"/v1/jobs/{job_id}/artifacts", headers=stack.headers)
        assert r.status_code == 409, r.text
    return events


MakeStack = Callable[..., FaultStack]


@pytest.fixture
def make_stack(tmp_path: Path, service_env: Path, tiny_model_dir: Path) -> Iterator[MakeStack]:
    """Build a stack on the given database, broker and S3 server; ``api="process"`` runs the API as a
    real ``infoprune serve`` process instead of in-process. Workers are killed at teardown."""
    cleanup = contextlib.ExitStack()

    def build(
        database_url: str,
        broker_url: str,
        s3: S3Server,
        *,
        bucket: str | None = None,
        api: str = "inprocess",
        pause_points: bool = False,
        **overrides: Any,
    ) -> FaultStack:
        if bucket is None:
            bucket = f"ipf-{RUN_ID}-{uuid.uuid4().hex[:8]}"
            s3.client().create_bucket(Bucket=bucket)
        values: dict[str, Any] = {
            "data_dir": tmp_path / "data",
            "database_url": database_url,
            "broker_url": broker_url,
            "storage_backend": "s3",
            "s3_bucket": bucket,
            "s3_endpoint_url": s3.endpoint,
            "s3_access_key_id": s3.access_key,
            "s3_secret_access_key": s3.secret_key,
            "queue_prefix": f"infoprune-test-{RUN_ID}-{uuid.uuid4().hex[:6]}.",
            "lease_ttl_s": 3,
            "reaper_interval_s": 1,
            "torch_threads": 1,
            **overrides,
        }
        migrate.upgrade(database_url)
        settings = Settings(**values)
        shutil.copytree(tiny_model_dir, settings.models_dir / "tiny-bert")
        worker_tmp = tmp_path / "worker-tmp"
        worker_tmp.mkdir(exist_ok=True)
        env = {**env_for(**values), "TMPDIR": str(worker_tmp)}
        ctx = build_context(settings)
        cleanup.callback(ctx.engine.dispose)
        with transaction(ctx.sessions) as session:
            admin = TenantAdmin(session)
            tenant = admin.get_or_create_tenant("acme")[0]
            key, tenant_id = admin.create_key(tenant), tenant.id
        headers = {"Authorization": f"Bearer {key}"}
        stack = FaultStack(settings, env, headers, tmp_path, ctx.sessions, ctx.storage, tenant_id)
        if pause_points:
            stack.pauses = PausePoints(database_url)
            cleanup.callback(stack.pauses.close)
        if api == "inprocess":
            stack.client = cleanup.enter_context(TestClient(create_app(ctx), raise_server_exceptions=False))
        cleanup.callback(_stop_processes, stack)
        return stack

    with cleanup:
        yield build


def _stop_processes(stack: FaultStack) -> None:
    if stack.pauses is not None:
        stack.pauses.close()  # a paused worker would hold its job row until killed
    for proc in [*stack.workers.values(), *([stack.api] if stack.api else [])]:
        kill_group(proc)
    if isinstance(stack.client, httpx.Client):
        stack.client.close()


def worker_of(stack: FaultStack, job_id: str) -> str:
    """Name of the worker whose process holds the job's lease (owner ``host:pid:nonce``)."""
    with stack.sessions() as session:
        job = session.get(Job, job_id)
        assert job is not None and job.lease_owner, job
        pid = int(job.lease_owner.split(":")[1])
    group = os.getpgid(pid)
    return next(name for name, proc in stack.workers.items() if proc.pid == group)
