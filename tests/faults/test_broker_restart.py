"""Redis (the Celery broker) killed and restarted empty while a job runs and another one waits."""

from __future__ import annotations

from tests.conftest import S3Server
from tests.faults.conftest import MakeStack, RedisServer, assert_finished_once


def test_redis_restart_loses_nothing(
    make_stack: MakeStack, pg_database: str, own_redis: RedisServer, s3_server: S3Server
) -> None:
    """Redis is SIGKILLed and restarted without its data while job A runs on the only worker and job B
    waits in the broker queue. A runs on (the job row, not the broker, is the truth) and succeeds once;
    B's message is gone with Redis, so the reaper's sweeper finds B queued for longer than
    ``queued_redispatch_after_s`` with an empty broker queue and sends it again: B succeeds once. The
    worker and the API reconnect by themselves: a job submitted after the restart succeeds too."""
    # the lease outlives the hold, so A stays with its worker (a worker stuck past its lease is taken for dead)
    stack = make_stack(
        pg_database, own_redis.url, s3_server, pause_points=True, queued_redispatch_after_s=2, lease_ttl_s=30
    )
    assert stack.pauses is not None
    worker = stack.worker("w")
    stack.wait_ready("w")  # else the reaper's first pass may catch A fetched but not yet claimed
    pause = stack.pauses.at("stage", stage="pruning_heads")
    job_a = stack.submit()
    pause.wait_paused()
    job_b = stack.submit()
    queue = stack.settings.queue_for("cpu")
    assert own_redis.client().llen(queue) == 1  # B waits in Redis, not in the worker

    own_redis.restart()  # SIGKILL, then a fresh, empty server on the same port
    assert own_redis.client().llen(queue) == 0
    pause.release()

    for job_id in (job_a, job_b):
        job = stack.wait(job_id, timeout=120)
        assert job["status"] == "succeeded", (job, stack.log("w")[-3000:])
        assert job["attempts"] == 1
        assert_finished_once(stack, job_id)
    assert any("dispatched again" in e["message"] for e in stack.events(job_b))
    assert not any("dispatched again" in e["message"] for e in stack.events(job_a))

    job_c = stack.submit_when_accepted()
    assert stack.wait(job_c)["status"] == "succeeded"
    assert_finished_once(stack, job_c)
    assert worker.poll() is None
