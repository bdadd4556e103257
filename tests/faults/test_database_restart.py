"""PostgreSQL restarted (every connection cut) while a worker is in the middle of writing a job event."""

from __future__ import annotations

from tests.conftest import S3Server
from tests.faults.conftest import MakeStack, PostgresCluster, assert_finished_once


def test_postgres_restart_mid_job(
    make_stack: MakeStack, own_postgres: PostgresCluster, redis_url: str, s3_server: S3Server
) -> None:
    """The database restarts (fast shutdown: every connection and open transaction is cut) while the
    worker is inside the transaction that starts a job's ``compressing_ffn`` stage, and again while it
    is inside the transaction that records the next job's success (artifacts uploaded). The worker keeps
    computing through the first (the failed progress write is skipped and written later) and retries
    the second until the database answers; API and worker reconnect (pool pre-ping). Each job succeeds
    once, on its first attempt (the lease outlives the outage), with its artifacts once."""
    database = own_postgres.new_database()
    stack = make_stack(database, redis_url, s3_server, pause_points=True, lease_ttl_s=15, db_retry_s=60)
    assert stack.pauses is not None
    worker = stack.worker("w")
    for kind, point in (("stage", {"stage": "compressing_ffn"}), ("status", {"status": "succeeded"})):
        pause = stack.pauses.at(kind, **point)
        job_id = stack.submit()
        pause.wait_paused()
        own_postgres.restart()
        pause.release()  # its session died with the restart; this only closes the client

        job = stack.wait(job_id, timeout=120)
        assert job["status"] == "succeeded", (point, job, stack.log("w")[-3000:])
        assert job["attempts"] == 1, point
        assert_finished_once(stack, job_id)
        assert stack.client.get("/readyz").json()["checks"]["database"] == "ok"
    log = stack.log("w")
    assert "progress not recorded: database unreachable" in log and "database unreachable; retrying" in log
    assert worker.poll() is None
