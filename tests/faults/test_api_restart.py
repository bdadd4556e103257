"""The API process (Celery mode) SIGKILLed and restarted while a job runs."""

from __future__ import annotations

import threading

import httpx

from tests.conftest import S3Server, free_port
from tests.faults.conftest import FaultStack, MakeStack, assert_finished_once
from tests.service.helpers import TERMINAL, kill_group, wait_until


def _poll(stack: FaultStack, job_id: str, seen: list[str], stop: threading.Event) -> None:
    """A client polling the job, as a dashboard would, through the restart ('down' while refused)."""
    with httpx.Client(base_url=str(stack.client.base_url), timeout=10) as client:
        while not stop.is_set():
            try:
                r = client.get(f"/v1/jobs/{job_id}", headers=stack.headers)
                seen.append(r.json()["status"] if r.status_code == 200 else f"http {r.status_code}")
            except httpx.TransportError:
                seen.append("down")
            if seen[-1] in TERMINAL:
                return
            stop.wait(0.05)


def test_api_restart_while_a_job_runs(
    make_stack: MakeStack, pg_database: str, redis_url: str, s3_server: S3Server
) -> None:
    """While the worker is held mid-job, the ``infoprune serve`` process is SIGKILLed and a new one
    starts on the same port. A client polling throughout sees running, then connection refused, then
    running again and finally succeeded, never another state or an HTTP error; the new API shows the
    same job and events, the job succeeds once, a live event stream resumed after the last event seen
    (Last-Event-ID) delivers the rest, and a job submitted to the new API succeeds."""
    # the lease outlives the hold (a worker stuck past its lease is rightly taken for dead)
    stack = make_stack(pg_database, redis_url, s3_server, api="process", pause_points=True, lease_ttl_s=60)
    assert stack.pauses is not None
    port = free_port()
    stack.start_api(port)
    stack.worker("w")
    pause = stack.pauses.at("stage", stage="pruning_heads")
    job_id = stack.submit()
    pause.wait_paused()
    seen: list[str] = []
    stop = threading.Event()
    poller = threading.Thread(target=_poll, args=(stack, job_id, seen, stop))
    poller.start()
    try:
        wait_until(lambda: seen, 30, "the first poll")
        before = stack.events(job_id)
        assert stack.api is not None
        kill_group(stack.api)
        assert not stack.api_up()
        stack.start_api(port)
        assert stack.job(job_id)["status"] == "running"
        assert stack.events(job_id) == before
        pause.release()
        events = _stream(stack, job_id, before[-1]["id"])
        poller.join(120)
    finally:
        stop.set()
        poller.join(10)

    collapsed = [s for i, s in enumerate(seen) if i == 0 or s != seen[i - 1]]
    assert collapsed == ["running", "down", "running", "succeeded"], collapsed
    assert_finished_once(stack, job_id)
    assert stack.events(job_id) == before + events
    second = stack.submit()
    assert stack.wait(second)["status"] == "succeeded"


def _stream(stack: FaultStack, job_id: str, last_seen: int) -> list[dict]:
    """Server-sent events of the job after ``last_seen``, until the stream's end."""
    import json

    headers = {**stack.headers, "Accept": "text/event-stream", "Last-Event-ID": str(last_seen)}
    events = []
    with stack.client.stream("GET", f"/v1/jobs/{job_id}/events", headers=headers, timeout=120) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("data: ") and line != "data: {}":
                events.append(json.loads(line.removeprefix("data: ")))
    return events
