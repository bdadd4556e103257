"""The S3 server killed while a worker uploads artifacts: retried with backoff, then a clear failure;
back within the retry window: success."""

from __future__ import annotations

import re

from tests.faults.conftest import FaultStack, MakeStack, WeedServer, assert_finished_once
from tests.service.helpers import wait_until

ATTEMPTS, BACKOFF, BACKOFF_MAX = 6, 0.25, 2.0  # waits 0.25, 0.5, 1, 2, 2 s: a 5.75 s retry window


def _retries(stack: FaultStack) -> list[str]:
    return re.findall(r"failed \(try (\d) of 6: \w+\); retrying in ([\d.]+)s", stack.log("w"))


def test_s3_down_during_upload(make_stack: MakeStack, pg_database: str, redis_url: str, own_s3: WeedServer) -> None:
    """The worker is held at the start of its ``uploading`` stage while the S3 server is SIGKILLed.
    (1) The server stays down: every store call is tried ``storage_attempts`` times with exponential
    backoff (0.25, 0.5, 1, 2, 2 s), then the job is ``failed`` with a readable reason; no artifact row,
    the artifacts endpoint answers 409 and, once S3 is back, nothing lies under the job's prefix.
    (2) The server comes back during the retries: the upload goes on and the job succeeds, each
    artifact once. The same worker serves both jobs."""
    stack = make_stack(
        pg_database,
        redis_url,
        own_s3.s3,
        pause_points=True,
        storage_attempts=ATTEMPTS,
        storage_backoff_s=BACKOFF,
        storage_backoff_max_s=BACKOFF_MAX,
        lease_ttl_s=30,
    )
    assert stack.pauses is not None
    worker = stack.worker("w")

    pause = stack.pauses.at("stage", stage="uploading")
    failing = stack.submit()
    pause.wait_paused()
    own_s3.kill()
    pause.release()
    job = stack.wait(failing, timeout=90)
    assert job["status"] == "failed", job
    assert job["error"].startswith("could not store the artifacts: artifact store unavailable: upload of"), job
    assert f"failed after {ATTEMPTS} tries" in job["error"] and "secret" not in job["error"]
    assert [float(wait) for _, wait in _retries(stack)] == [0.2, 0.5, 1.0, 2.0, 2.0]  # %.1f of 0.25 is 0.2
    own_s3.start()
    assert_finished_once(stack, failing, "failed")

    pause = stack.pauses.at("stage", stage="uploading")
    recovering = stack.submit()
    pause.wait_paused()
    own_s3.kill()
    pause.release()
    wait_until(lambda: len(_retries(stack)) > ATTEMPTS - 1, 30, "the upload to be retried")
    own_s3.start()
    job = stack.wait(recovering, timeout=90)
    assert job["status"] == "succeeded", (job, stack.log("w")[-3000:])
    assert job["attempts"] == 1
    assert_finished_once(stack, recovering)
    assert worker.poll() is None
