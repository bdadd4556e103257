"""Sustained load on the scaled-out service shape, started here on loopback, then an audit of the jobs.

    python -m benchmarks.load_service [--duration 60] [--clients 32] [--api-procs 1] [--workers 1]

Starts: a fresh PostgreSQL database (on the server at --pg), ``infoprune serve`` API process(es) (uvicorn)
on free ports with Redis (--redis) as broker and shared rate limiter, and ``infoprune worker`` Celery
process(es). Then ``--clients`` asyncio clients (httpx), spread over ``--tenants`` tenants and over the API
processes, send for ``--duration`` seconds a mix of: job submissions with a fresh Idempotency-Key (some as
two concurrent requests with the same key), replays of an earlier key (must answer the same job), status
polls of their jobs, job lists and event lists.

What the workers do: they run the real job task (claim the lease, materialise the source, call the core
pipeline). The jobs name a model folder whose config is valid but whose weights are missing, so each job
fails fast in the core loader (``cannot load model weights``) instead of compressing for seconds: the
workers drain the queue through the whole job life cycle while the API is measured, and the audit sees
jobs in every state. They share the machine's CPUs with the API and the clients.

Recorded: throughput (requests/s), p50/p95/p99 latency per endpoint, errors by status, and an audit:
every accepted job is in the database exactly once (no loss, no duplicate), every replayed or concurrent
Idempotency-Key answered the one job, no idempotency key is stored twice, and after the workers are
stopped every job still queued in the database has its message in the broker. Prints a table and writes
benchmarks/results/load_service.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

RESULTS = Path(__file__).parent / "results"
ROOT = Path(__file__).resolve().parents[1]
_SCRIPT = Path(sys.executable).parent / "infoprune"
INFOPRUNE = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "infoprune_core.cli"]
CONFIG = {"target_flops_ratio": 0.5, "scope": ["language"], "calibration_samples": 4, "measure_latency": False}
# endpoint -> weight in the request mix
MIX = {"submit": 20, "replay": 5, "get": 50, "list": 15, "events": 10}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


@dataclass
class Tally:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: dict[str, Counter[int | str]] = field(default_factory=lambda: defaultdict(Counter))
    accepted: dict[str, dict[str, str]] = field(default_factory=lambda: defaultdict(dict))  # tenant -> key -> job
    idempotency_mismatches: list[str] = field(default_factory=list)

    def record(self, endpoint: str, seconds: float, status: int | str) -> None:
        self.latencies[endpoint].append(seconds)
        self.statuses[endpoint][status] += 1


@dataclass
class Client:
    tally: Tally
    http: httpx.AsyncClient
    tenant: str
    key: str
    rng: random.Random

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    async def call(self, endpoint: str, method: str, url: str, **kwargs: Any) -> httpx.Response | None:
        start = time.perf_counter()
        try:
            r = await self.http.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            self.tally.record(endpoint, time.perf_counter() - start, type(exc).__name__)
            return None
        self.tally.record(endpoint, time.perf_counter() - start, r.status_code)
        return r

    async def submit(self, key: str, endpoint: str = "submit") -> str | None:
        h = {**self.headers, "Idempotency-Key": key}
        r = await self.call(endpoint, "POST", "/v1/jobs", json={"source": "fastfail", "config": CONFIG}, headers=h)
        if r is None or r.status_code != 202:
            return None
        return str(r.json()["id"])

    def remember(self, key: str, job_id: str | None) -> None:
        if job_id is None:
            return
        mine = self.tally.accepted[self.tenant]
        if mine.setdefault(key, job_id) != job_id:
            self.tally.idempotency_mismatches.append(f"{self.tenant}/{key}: {mine[key]} != {job_id}")

    async def step(self) -> None:
        mine = self.tally.accepted[self.tenant]
        op = self.rng.choices(list(MIX), weights=list(MIX.values()))[0]
        if op in ("get", "events", "replay") and not mine:
            op = "submit"
        if op == "submit":
            key = uuid.uuid4().hex
            if self.rng.random() < 0.1:  # the same key twice at once: one job
                ids = await asyncio.gather(self.submit(key), self.submit(key))
                for job_id in ids:
                    self.remember(key, job_id)
            else:
                self.remember(key, await self.submit(key))
        elif op == "replay":
            key = self.rng.choice(list(mine))
            self.remember(key, await self.submit(key, "replay"))
        elif op == "get":
            await self.call("get", "GET", f"/v1/jobs/{self.rng.choice(list(mine.values()))}", headers=self.headers)
        elif op == "list":
            await self.call("list", "GET", "/v1/jobs?limit=20", headers=self.headers)
        else:
            job_id = self.rng.choice(list(mine.values()))
            await self.call("events", "GET", f"/v1/jobs/{job_id}/events", headers=self.headers)


async def drive(urls: list[str], keys: dict[str, str], clients: int, duration: float, tally: Tally) -> float:
    tenants = list(keys)
    limits = httpx.Limits(max_connections=4, max_keepalive_connections=4)
    # client i talks to API process i % len(urls)
    https = [httpx.AsyncClient(base_url=urls[i % len(urls)], timeout=30, limits=limits) for i in range(clients)]
    deadline = time.perf_counter() + duration

    async def run(i: int) -> None:
        tenant = tenants[i % len(tenants)]
        client = Client(tally, https[i], tenant, keys[tenant], random.Random(i))
        while time.perf_counter() < deadline:
            await client.step()

    start = time.perf_counter()
    await asyncio.gather(*(run(i) for i in range(clients)))
    elapsed = time.perf_counter() - start
    for http in https:
        await http.aclose()
    return elapsed


def _stop(proc: subprocess.Popen[bytes], timeout: float = 20, group: bool = True) -> None:
    """SIGTERM (to the process only: a Celery worker then finishes its current job), SIGKILL after ``timeout``."""
    if proc.poll() is None:
        if group:
            os.killpg(proc.pid, signal.SIGTERM)
        else:
            proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def _wait_ready(url: str, procs: list[subprocess.Popen[bytes]], log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            raise RuntimeError(f"a service process exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} not ready in {timeout}s:\n{log.read_text()[-3000:]}")


def audit(db_url: str, redis_url: str, queue: str, tally: Tally) -> dict[str, Any]:
    """Every accepted job once in the DB; idempotency keys unique; queued jobs all in the broker."""
    import redis
    from sqlalchemy import create_engine, text

    engine = create_engine(db_url)
    with engine.connect() as conn:
        names: dict[str, str] = {i: n for i, n in conn.execute(text("SELECT id, name FROM tenants")).all()}
        rows = conn.execute(text("SELECT id, tenant_id, idempotency_key, status FROM jobs")).all()
        dup_keys = conn.execute(
            text(
                "SELECT count(*) FROM (SELECT tenant_id, idempotency_key FROM jobs WHERE idempotency_key IS NOT NULL"
                " GROUP BY tenant_id, idempotency_key HAVING count(*) > 1) d"
            )
        ).scalar_one()
    engine.dispose()
    db_jobs = {(names[t], k): i for i, t, k, _ in rows}
    accepted = {(t, k): i for t, keys in tally.accepted.items() for k, i in keys.items()}
    lost = [f"{t}/{k}" for (t, k), i in accepted.items() if db_jobs.get((t, k)) != i]
    unacknowledged = [f"{t}/{k}" for (t, k) in db_jobs if (t, k) not in accepted]  # e.g. a client timeout
    statuses = Counter(s for *_, s in rows)
    waiting = statuses.get("queued", 0) + statuses.get("running", 0)
    r = redis.Redis.from_url(redis_url)
    in_broker = int(r.llen(queue)) + sum(queue.encode() in payload for payload in r.hvals("unacked"))
    return {
        "accepted_jobs": len(accepted),
        "jobs_in_db": len(rows),
        "lost": len(lost),
        "lost_examples": lost[:5],
        "in_db_not_acknowledged_to_a_client": len(unacknowledged),
        "duplicate_idempotency_keys_in_db": int(dup_keys),
        "idempotency_mismatches": len(tally.idempotency_mismatches),
        "idempotency_mismatch_examples": tally.idempotency_mismatches[:5],
        "statuses_in_db": dict(statuses),
        "queued_or_running_in_db": waiting,
        "messages_in_broker": in_broker,
        "ok": not lost
        and not dup_keys
        and not tally.idempotency_mismatches
        and len(rows) == len(accepted)
        and waiting == in_broker,
    }


def summarise(tally: Tally, elapsed: float) -> dict[str, Any]:
    endpoints: dict[str, dict[str, Any]] = {}
    for name, values in sorted(tally.latencies.items()):
        endpoints[name] = {
            "requests": len(values),
            "req_per_s": round(len(values) / elapsed, 1),
            "p50_ms": round(percentile(values, 50) * 1000, 1),
            "p95_ms": round(percentile(values, 95) * 1000, 1),
            "p99_ms": round(percentile(values, 99) * 1000, 1),
            "statuses": {str(k): v for k, v in sorted(tally.statuses[name].items(), key=str)},
        }
    total = sum(e["requests"] for e in endpoints.values())
    errors: Counter[str] = Counter()
    for name, counts in tally.statuses.items():
        for status, n in counts.items():
            expected = {"submit": (202,), "replay": (202,)}.get(name, (200,))
            if status not in expected:
                errors[str(status)] += n
    return {"requests": total, "req_per_s": round(total / elapsed, 1), "errors": dict(errors), "endpoints": endpoints}


def print_table(summary: dict[str, Any], accounting: dict[str, Any]) -> None:
    print(f"\n{'endpoint':<8} {'requests':>9} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}  statuses")
    for name, e in summary["endpoints"].items():
        print(
            f"{name:<8} {e['requests']:>9} {e['req_per_s']:>8} {e['p50_ms']:>8} {e['p95_ms']:>8} {e['p99_ms']:>8}"
            f"  {e['statuses']}"
        )
    print(f"{'total':<8} {summary['requests']:>9} {summary['req_per_s']:>8}   errors: {summary['errors'] or 'none'}")
    print(
        f"jobs: accepted {accounting['accepted_jobs']}, in DB {accounting['jobs_in_db']}, lost {accounting['lost']},"
        f" duplicate keys {accounting['duplicate_idempotency_keys_in_db']}, idempotency mismatches"
        f" {accounting['idempotency_mismatches']}; queued/running in DB {accounting['queued_or_running_in_db']} vs"
        f" messages in broker"
        f" {accounting['messages_in_broker']}; statuses {accounting['statuses_in_db']} -> "
        f"{'OK' if accounting['ok'] else 'FAILED'}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=60)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--tenants", type=int, default=4)
    parser.add_argument("--api-procs", type=int, default=1, help="API processes (clients are spread over them)")
    parser.add_argument("--workers", type=int, default=1, help="Celery worker processes (concurrency 1 each)")
    parser.add_argument(
        "--pg", default=os.environ.get("INFOPRUNE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
    )
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--out", type=Path, default=RESULTS / "load_service.json")
    args = parser.parse_args(argv)

    import psycopg

    from infoprune_jobs import migrate
    from infoprune_jobs.db import make_engine, make_sessionmaker, transaction
    from infoprune_jobs.repository import TenantAdmin

    run = uuid.uuid4().hex[:8]
    db_name = f"infoprune_load_{run}"
    with psycopg.connect(args.pg, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db_name}"')
    db_url = f"{args.pg.rsplit('/', 1)[0].replace('postgresql://', 'postgresql+psycopg://', 1)}/{db_name}"
    work = Path(tempfile.mkdtemp(prefix="infoprune-load-"))
    prefix = f"infoprune-load-{run}."
    values = {
        "data_dir": work / "data",
        "database_url": db_url,
        "broker_url": args.redis,
        "queue_prefix": prefix,
        "log_level": "WARNING",
        "rate_limit_per_s": 100_000,  # exercised (Redis, every request) but never the bottleneck here
        "rate_limit_burst": 100_000,
        "max_active_jobs_per_tenant": 1_000_000,  # likewise: the quota check runs on every submission
        "worker_max_tasks_per_child": 100_000,
        "torch_threads": 1,
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFOPRUNE_")}
    env.update({f"INFOPRUNE_{k.upper()}": str(v) for k, v in values.items()})
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    fastfail = work / "data" / "models" / "fastfail"  # valid config, no weights: the loader fails fast
    fastfail.mkdir(parents=True)
    (fastfail / "config.json").write_text(
        json.dumps({"model_type": "bert", "architectures": ["BertModel"], "hidden_size": 32, "num_attention_heads": 4})
    )
    migrate.upgrade(db_url)
    engine = make_engine(db_url)
    with transaction(make_sessionmaker(engine)) as s:
        admin = TenantAdmin(s)
        keys = {
            f"tenant-{i}": admin.create_key(admin.get_or_create_tenant(f"tenant-{i}")[0]) for i in range(args.tenants)
        }
    engine.dispose()

    log = work / "service.log"
    procs: list[subprocess.Popen[bytes]] = []

    def spawn(cmd: list[str]) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [*INFOPRUNE, *cmd],
            env=env,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,
        )
        procs.append(proc)
        return proc

    ports = [free_port() for _ in range(args.api_procs)]
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    for port in ports:
        spawn(["serve", "--port", str(port)])
    workers = [spawn(["worker", "--device-class", "cpu", f"--hostname=load{i}-{run}@%h"]) for i in range(args.workers)]
    tally = Tally()
    try:
        for url in urls:
            _wait_ready(url, procs, log)
        load_before = os.getloadavg()
        print(
            f"load: {args.clients} clients, {args.tenants} tenants, {args.duration:.0f}s, {len(urls)} API proc(s),"
            f" {args.workers} worker(s); load average before {load_before[0]:.2f}",
            flush=True,
        )
        elapsed = asyncio.run(drive(urls, keys, args.clients, args.duration, tally))
        for worker in workers:  # stop consuming, so the queue and the DB can be compared at rest
            _stop(worker, timeout=60, group=False)
        time.sleep(1.0)
        accounting = audit(db_url.replace("+psycopg", ""), args.redis, f"{prefix}cpu", tally)
    finally:
        for proc in procs:
            _stop(proc)
        import redis

        client = redis.Redis.from_url(args.redis)
        for key in client.scan_iter(f"*{prefix}*"):
            client.delete(key)
        with psycopg.connect(args.pg, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
    summary = summarise(tally, elapsed)
    print_table(summary, accounting)
    result = {
        "command": "python -m benchmarks.load_service " + " ".join(sys.argv[1:] if argv is None else argv),
        "duration_s": round(elapsed, 1),
        "clients": args.clients,
        "tenants": args.tenants,
        "api_processes": args.api_procs,
        "celery_workers": args.workers,
        "workers_do": "run the real job task; each job names a model without weights and fails fast in the core loader",
        "request_mix_weights": MIX,
        "machine": {"cpus": os.cpu_count(), "load_average_before": load_before, "python": platform.python_version()},
        "database": "PostgreSQL (loopback)",
        "broker": "Redis (loopback), also the rate limiter's store",
        **summary,
        "accounting": accounting,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0 if accounting["ok"] and not any(str(k).startswith("5") for k in summary["errors"]) else 1


if __name__ == "__main__":
    sys.exit(main())
