"""A job past ``job_time_limit_s`` on a Celery worker."""

from __future__ import annotations

import re

from tests.conftest import S3Server
from tests.faults.conftest import FaultStack, MakeStack, assert_finished_once
from tests.service.helpers import wait_until


def _worker_pid(stack: FaultStack, job_id: str) -> int:
    started = next(e["message"] for e in stack.events(job_id) if e["message"].startswith("started"))
    match = re.search(r"worker [^:]+:(\d+):", started)
    assert match, started
    return int(match.group(1))


def test_job_past_its_time_limit_fails_and_the_worker_goes_on(
    make_stack: MakeStack, pg_database: str, redis_url: str, s3_server: S3Server
) -> None:
    """With ``job_time_limit_s=10`` a job that would train gates for many minutes is stopped by the
    soft time limit (8 s; the hard limit at 10 s is not needed): it is ``failed`` with a reason that
    names the limit, once, with no artifact and no work folder left; the same worker process then
    runs the next job to success.

    A job that cannot notice the soft limit (its process hangs in a database call: held at a pause
    point) is killed by the pool at the hard limit; the worker's main process records the same reason,
    so the job fails once instead of being requeued as if its worker had died, and a fresh pool
    process takes the next job."""
    stack = make_stack(pg_database, redis_url, s3_server, job_time_limit_s=10, pause_points=True, lease_ttl_s=60)
    assert stack.pauses is not None
    worker = stack.worker("w")
    slow = stack.submit(heads="infoprune", gate_steps=100_000)
    job = stack.wait(slow, timeout=90)
    assert job["status"] == "failed", job
    assert job["error"] == "the job exceeded its time limit (10s)", job
    assert_finished_once(stack, slow, "failed")
    assert "Hard time limit" not in stack.log("w")

    quick = stack.submit()
    assert stack.wait(quick)["status"] == "succeeded"
    assert_finished_once(stack, quick)
    assert _worker_pid(stack, quick) == _worker_pid(stack, slow)  # the very process survived
    assert stack.job_dirs_left() == []

    pause = stack.pauses.at("stage", stage="pruning_heads")
    hung = stack.submit()
    pause.wait_paused()
    wait_until(lambda: "Hard time limit (10s) exceeded" in stack.log("w"), 60, "the hard time limit")
    pause.release()
    job = stack.wait(hung, timeout=60)
    assert (job["status"], job["attempts"]) == ("failed", 1), job
    assert job["error"] == "the job exceeded its time limit (10s)", job
    assert_finished_once(stack, hung, "failed")
    after = stack.submit()
    assert stack.wait(after)["status"] == "succeeded"
    assert _worker_pid(stack, after) != _worker_pid(stack, hung)  # the pool replaced the killed process
    assert worker.poll() is None
