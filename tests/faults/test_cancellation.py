"""Cancellation through the API at every stage of a real job, on one Celery worker."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.conftest import S3Server
from tests.faults.conftest import FaultStack, MakeStack, assert_finished_once

# every pipeline stage (infoprune_core.progress.STAGES); recovery runs only when it has steps
STAGES = ("loading", "profiling", "pruning_heads", "compressing_ffn", "recovering", "evaluating", "saving")
WITH_RECOVERY = {"recovery_steps": 2}


def _cancel_at(stack: FaultStack, stage: str) -> str:
    """Submit a job; when its worker writes the event that starts ``stage``, hold it there, send the
    cancellation to the API, and let the worker go on once the API's request waits for the job row."""
    assert stack.pauses is not None
    pause = stack.pauses.at("stage", stage=stage)
    job_id = stack.submit(**WITH_RECOVERY)
    pause.wait_paused()
    with ThreadPoolExecutor(1) as pool:
        cancel = pool.submit(stack.cancel, job_id)
        pause.wait_for_row_lock_waiter()
        pause.release()
        assert cancel.result(timeout=30).status_code == 202
    return job_id


def test_cancel_at_every_stage(
    make_stack: MakeStack, pg_database: str, redis_url: str, s3_server: S3Server, tmp_path: Path
) -> None:
    """A cancellation requested while the job is queued, or while its worker is in any pipeline stage
    (loading ... saving), ends the job ``cancelled``: one terminal event, no artifact row, no object in
    the store, no work folder left; and the same worker takes the next job, which succeeds."""
    stack = make_stack(pg_database, redis_url, s3_server, pause_points=True, lease_ttl_s=10)
    assert stack.pauses is not None
    worker = stack.worker("w")

    # queued: the only worker is held inside another job, so this one waits in the broker queue
    busy = stack.pauses.at("stage", stage="profiling")
    first = stack.submit()
    busy.wait_paused()
    queued = stack.submit()
    assert stack.cancel(queued).status_code == 202
    busy.release()
    assert stack.wait(first)["status"] == "succeeded"
    assert_finished_once(stack, first)
    assert_finished_once(stack, queued, "cancelled")
    assert stack.job(queued)["attempts"] == 0  # its message, delivered later, claimed nothing

    for stage in STAGES:
        job_id = _cancel_at(stack, stage)
        job = stack.wait(job_id)
        assert job["status"] == "cancelled", (stage, job, stack.log("w")[-3000:])
        events = assert_finished_once(stack, job_id, "cancelled")
        at = next(i for i, e in enumerate(events) if e["kind"] == "stage" and e["stage"] == stage)
        # the cancellation landed right at the start of that stage, before the worker wrote anything else
        assert (events[at + 1]["message"], events[at + 1]["status"]) == ("cancellation requested", "cancelling")
        assert events[at + 1]["stage"] == stage, (stage, events[at:])
        assert job["attempts"] == 1 and job["error"] is None, (stage, job)
        assert stack.job_dirs_left() == [], stage

    last = stack.submit(**WITH_RECOVERY)
    assert stack.wait(last)["status"] == "succeeded"
    assert_finished_once(stack, last)
    assert worker.poll() is None
