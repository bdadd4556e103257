"""SIGKILL of a Celery worker at the worst moment: every artifact uploaded, the outcome not yet recorded.

tests/service/test_celery_e2e.py kills a worker in the middle of the pipeline; this one kills it inside
the transaction that records success, the one point where a second attempt could duplicate artifacts.
"""

from __future__ import annotations

from tests.conftest import S3Server
from tests.faults.conftest import MakeStack, assert_finished_once, worker_of
from tests.service.helpers import kill_group


def test_worker_killed_while_recording_success(
    make_stack: MakeStack, pg_database: str, redis_url: str, s3_server: S3Server
) -> None:
    """The first worker uploads every artifact and is SIGKILLed while its "succeeded" transaction is
    open; PostgreSQL rolls that transaction back, the lease expires, the other worker's reaper requeues
    the job and it finishes exactly once: attempts == 2, one terminal event, the first attempt's events
    intact, and each artifact once in the table and once in the store (the second upload overwrote the
    first one's objects under the same keys) with matching digests."""
    stack = make_stack(pg_database, redis_url, s3_server, pause_points=True)
    assert stack.pauses is not None
    for name in ("a", "b"):
        stack.worker(name)
    pause = stack.pauses.at("status", status="succeeded")
    job_id = stack.submit()
    pause.wait_paused()
    first = worker_of(stack, job_id)
    uploaded = stack.stored_keys(job_id)
    assert len(uploaded) >= 3 and stack.artifact_rows(job_id) == []  # all in the store, none recorded
    before = stack.events(job_id)
    kill_group(stack.workers[first])
    pause.release()  # the dead client's transaction now ends, rolled back

    job = stack.wait(job_id, timeout=120)
    other = "b" if first == "a" else "a"
    assert job["status"] == "succeeded", (job, stack.log(other)[-3000:])
    assert job["attempts"] == 2
    events = assert_finished_once(stack, job_id)
    assert events[: len(before)] == before
    assert any("requeued" in e["message"] for e in events)
    assert sorted(a.storage_key for a in stack.artifact_rows(job_id)) == uploaded
    assert stack.workers[other].poll() is None
