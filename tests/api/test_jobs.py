"""The happy paths of /v1/jobs: create (idempotent), get, list with cursor, cancel, events, SSE."""

from __future__ import annotations

import json

from infoprune_jobs import workers
from infoprune_jobs.db import transaction
from tests.api.conftest import JOB, Api


def test_create_get_and_location(api: Api) -> None:
    r = api.client.post("/v1/jobs", json=JOB, headers=api.headers())
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["status"] == "queued" and job["stage"] == "queued" and job["progress"] == 0.0
    assert job["source"] == "tiny"  # the tenant's own name, never the server's path
    assert job["attempt_history"] == [] and job["started_at"] is None
    assert job["config"] == {"target_flops_ratio": 0.5} and job["device_class"] == "cpu"
    assert r.headers["location"] == f"/v1/jobs/{job['id']}"
    got = api.client.get(job["links"]["self"], headers=api.headers()).json()
    assert got["id"] == job["id"]


def test_idempotency_key_replays_and_refuses_other_bodies(api: Api) -> None:
    h = {**api.headers(), "Idempotency-Key": "order-42"}
    first = api.client.post("/v1/jobs", json=JOB, headers=h)
    again = api.client.post("/v1/jobs", json=JOB, headers=h)
    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"] and again.headers["idempotent-replayed"] == "true"
    other = api.client.post("/v1/jobs", json={**JOB, "config": {"target_flops_ratio": 0.4}}, headers=h)
    assert other.status_code == 422 and other.headers["content-type"] == "application/problem+json"
    # the same key of another tenant is another key
    b = api.client.post("/v1/jobs", json=JOB, headers={**api.headers(api.key_b), "Idempotency-Key": "order-42"})
    assert b.status_code == 202 and b.json()["id"] != first.json()["id"]
    assert len(api.client.get("/v1/jobs", headers=api.headers()).json()["data"]) == 1


def test_list_pagination_and_filter(api: Api) -> None:
    ids = [api.client.post("/v1/jobs", json=JOB, headers=api.headers()).json()["id"] for _ in range(5)]
    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = api.client.get("/v1/jobs", params=params, headers=api.headers()).json()
        seen += [j["id"] for j in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids[::-1]
    assert api.client.get("/v1/jobs?status=running", headers=api.headers()).json()["data"] == []
    assert len(api.client.get("/v1/jobs?status=queued", headers=api.headers()).json()["data"]) == 5


def test_cancel_queued_job_and_events(api: Api) -> None:
    job = api.client.post("/v1/jobs", json=JOB, headers=api.headers()).json()
    r = api.client.post(f"/v1/jobs/{job['id']}/cancel", headers=api.headers())
    assert r.status_code == 202 and r.json()["status"] == "cancelled"
    again = api.client.post(f"/v1/jobs/{job['id']}/cancel", headers=api.headers())
    assert again.status_code == 409 and again.json()["status"] == 409
    events = api.client.get(f"/v1/jobs/{job['id']}/events", headers=api.headers()).json()
    assert [e["status"] for e in events["data"]] == ["queued", "cancelled"]
    later = api.client.get(f"/v1/jobs/{job['id']}/events?after={events['next_after']}", headers=api.headers())
    assert later.json()["data"] == []
    for path in ("report", "artifacts"):
        r = api.client.get(f"/v1/jobs/{job['id']}/{path}", headers=api.headers())
        assert r.status_code == 409 and r.headers["content-type"] == "application/problem+json"


def test_sse_stream_replays_events_and_ends_for_finished_jobs(api: Api) -> None:
    job = api.client.post("/v1/jobs", json=JOB, headers=api.headers()).json()
    api.client.post(f"/v1/jobs/{job['id']}/cancel", headers=api.headers())
    h = {**api.headers(), "Accept": "text/event-stream"}
    with api.client.stream("GET", f"/v1/jobs/{job['id']}/events", headers=h) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        text = "".join(r.iter_text())
    data = [json.loads(line[5:]) for line in text.splitlines() if line.startswith("data:") and line != "data: {}"]
    assert [d["status"] for d in data] == ["queued", "cancelled"]
    assert text.rstrip().endswith("data: {}") and "event: end" in text
    with api.client.stream(
        "GET", f"/v1/jobs/{job['id']}/events", headers={**h, "Last-Event-ID": str(data[0]["id"])}
    ) as r:
        resumed = "".join(r.iter_text())
    assert f"id: {data[0]['id']}\n" not in resumed and f"id: {data[1]['id']}\n" in resumed


def test_health_ready_metrics_openapi(api: Api) -> None:
    assert api.client.get("/healthz").json() == {"status": "ok"}
    ready = api.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"database": "ok", "broker": "ok", "storage": "ok"}
    api.client.post("/v1/jobs", json=JOB, headers=api.headers())
    metrics = api.client.get("/metrics").text
    assert 'infoprune_jobs{status="queued"} 1.0' in metrics and "infoprune_http_requests_total" in metrics
    assert 'infoprune_jobs_by_device_class{device_class="cpu",status="queued"} 1.0' in metrics
    assert 'infoprune_workers{device_class="cpu"} 0.0' in metrics
    spec = api.client.get("/openapi.json").json()
    assert {
        "/v1/jobs",
        "/v1/jobs/{job_id}",
        "/v1/jobs/{job_id}/cancel",
        "/v1/jobs/{job_id}/events",
        "/v1/jobs/{job_id}/report",
        "/v1/jobs/{job_id}/artifacts",
        "/v1/models",
    } <= set(spec["paths"])


def test_concurrent_requests_with_one_idempotency_key_create_one_job(api: Api) -> None:
    from concurrent.futures import ThreadPoolExecutor

    h = {**api.headers(), "Idempotency-Key": "race"}
    with ThreadPoolExecutor(4) as pool:
        responses = list(pool.map(lambda _: api.client.post("/v1/jobs", json=JOB, headers=h), range(8)))
    assert {r.status_code for r in responses} == {202}
    assert len({r.json()["id"] for r in responses}) == 1
    assert len(api.client.get("/v1/jobs", headers=api.headers()).json()["data"]) == 1
    assert api.ctx.dispatcher.queue.qsize() == 1  # type: ignore[attr-defined]


def test_a_queue_nobody_consumes_is_reported_and_unconfigured_classes_are_refused(api: Api) -> None:
    ready = api.client.get("/readyz").json()
    assert ready["status"] == "degraded" and ready["workers"] == {"cpu": 0}
    assert "infoprune.cpu" in ready["warnings"][0] and "infoprune worker --device-class cpu" in ready["warnings"][0]
    job = api.client.post("/v1/jobs", json=JOB, headers=api.headers()).json()
    first = api.client.get(f"/v1/jobs/{job['id']}/events", headers=api.headers()).json()["data"][0]
    assert "no worker consumes queue infoprune.cpu" in first["message"]

    with transaction(api.ctx.sessions) as s:
        workers.announce(s, "w1@host", ["cpu"], every_s=15)
    ready = api.client.get("/readyz").json()
    assert ready == {**ready, "status": "ok", "workers": {"cpu": 1}, "warnings": []}
    job = api.client.post("/v1/jobs", json=JOB, headers=api.headers()).json()
    first = api.client.get(f"/v1/jobs/{job['id']}/events", headers=api.headers()).json()["data"][0]
    assert first["message"] == "job created"
    with transaction(api.ctx.sessions) as s:
        workers.leave(s, "w1@host")
    assert api.client.get("/readyz").json()["workers"] == {"cpu": 0}

    gpu = api.client.post("/v1/jobs", json={**JOB, "device_class": "gpu"}, headers=api.headers())
    assert gpu.status_code == 422 and "not configured" in gpu.json()["detail"] and "['cpu']" in gpu.json()["detail"]


def test_refusals_name_no_server_path(api: Api) -> None:
    for source in ("/etc", "../outside", "nothere"):
        r = api.client.post("/v1/jobs", json={**JOB, "source": source}, headers=api.headers())
        assert r.status_code == 422 and str(api.root) not in r.text and str(api.ctx.settings.data_dir) not in r.text
