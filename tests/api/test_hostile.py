"""A hostile user gets a 4xx problem+json for everything, never a 5xx, and never another tenant's data."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import JOB, Api
from tests.archives import tgz

PROBLEM = "application/problem+json"


def assert_problem(r: Any, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    body = r.json()
    assert body["status"] == status and body["title"] and body["detail"] and "type" in body
    return body


ENDPOINTS = [
    ("GET", "/v1/jobs"),
    ("POST", "/v1/jobs"),
    ("GET", "/v1/jobs/{id}"),
    ("POST", "/v1/jobs/{id}/cancel"),
    ("GET", "/v1/jobs/{id}/events"),
    ("GET", "/v1/jobs/{id}/report"),
    ("GET", "/v1/jobs/{id}/artifacts"),
    ("POST", "/v1/models"),
    ("GET", "/v1/models/{id}"),
]


@pytest.mark.parametrize(
    "auth",
    [
        None,
        "Bearer",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "Bearer ipk_nope",
        "Bearer " + "x" * 5000,
        "bearer ipk_" + "A" * 43,
    ],
)
def test_no_or_bad_key_is_401_everywhere(api: Api, auth: str | None) -> None:
    job_id = api.client.post("/v1/jobs", json=JOB, headers=api.headers()).json()["id"]
    headers = {"Authorization": auth} if auth is not None else {}
    for method, path in ENDPOINTS:
        r = api.client.request(method, path.format(id=job_id), headers=headers, json=JOB if method == "POST" else None)
        body = assert_problem(r, 401)
        assert job_id not in body["detail"] and "ipk_" not in body["detail"] and "source" not in body
        assert r.headers["www-authenticate"].startswith("Bearer")


def test_other_tenant_sees_nothing(api: Api) -> None:
    job = api.client.post("/v1/jobs", json=JOB, headers=api.headers()).json()
    other = api.headers(api.key_b)
    for method, path in ENDPOINTS[2:7]:
        r = api.client.request(method, path.format(id=job["id"]), headers=other)
        assert_problem(r, 404)
    r = api.client.get(f"/v1/jobs/{job['id']}/events", headers={**other, "Accept": "text/event-stream"})
    assert_problem(r, 404)
    assert api.client.get("/v1/jobs", headers=other).json()["data"] == []
    assert api.client.get(f"/v1/jobs/{job['id']}", headers=api.headers()).json()["status"] == "queued"


def test_unknown_ids_routes_and_methods(api: Api) -> None:
    for job_id in ("0" * 32, "nope", "..%2F..%2Fetc", "%00", "x" * 300):
        for method, path in ENDPOINTS[2:7]:
            assert_problem(api.client.request(method, path.format(id=job_id), headers=api.headers()), 404)
    assert_problem(api.client.get("/v1/models/" + "0" * 32, headers=api.headers()), 404)
    assert_problem(api.client.get("/v1/nothing", headers=api.headers()), 404)
    assert_problem(api.client.get("/../../etc/passwd"), 404)
    assert_problem(api.client.delete("/v1/jobs", headers=api.headers()), 405)
    assert_problem(api.client.put("/healthz"), 405)


BAD_CONFIGS = [
    {},
    {"target_flops_ratio": 0},
    {"target_flops_ratio": 1.5},
    {"target_flops_ratio": -0.1},
    {"target_flops_ratio": "0.5"},
    {"target_flops_ratio": True},
    {"target_flops_ratio": None},
    {"head_keep_ratio": 0.0},
    {"ffn_epsilon": 1.0},
    {"ffn_epsilon": -0.1},
    {"target_flops_ratio": 0.5, "head_keep_ratio": 0.5},
    {"target_flops_ratio": 0.5, "scope": []},
    {"target_flops_ratio": 0.5, "scope": ["vision", "vision"]},
    {"target_flops_ratio": 0.5, "scope": ["audio"]},
    {"target_flops_ratio": 0.5, "scope": "vision"},
    {"target_flops_ratio": 0.5, "heads": "magic"},
    {"target_flops_ratio": 0.5, "calibration_samples": 0},
    {"target_flops_ratio": 0.5, "gate_steps": 10**9},
    {"target_flops_ratio": 0.5, "device": "cuda"},
    {"target_flops_ratio": 0.5, "threads": 64},
    {"target_flops_ratio": 0.5, "unknown": 1},
    {"target_flops_ratio": 0.5, "calibration": "../../etc/passwd"},
    {"target_flops_ratio": 0.5, "calibration": "/etc/passwd"},
    {"target_flops_ratio": 0.5, "seed": 2**64},  # beyond JSON's portable integers
]


@pytest.mark.parametrize("config", BAD_CONFIGS)
def test_bad_budgets_and_options_are_422(api: Api, config: dict[str, Any]) -> None:
    assert_problem(api.client.post("/v1/jobs", json={"source": "tiny", "config": config}, headers=api.headers()), 422)


@pytest.mark.parametrize(
    "source",
    [
        "../../etc",
        "/etc",
        "/",
        "tiny/../../../etc",
        "~root",
        "tiny/../..",
        "file:///etc/passwd",
        "http://169.254.169.254/latest",
        "s3://infoprune/tenants",
        "s3://../x",
        "upload:" + "0" * 32,
        "nothere",
        "tiny\n",
        "",
        "x" * 5000,
        "\\\\server\\share",
        "C:\\Windows",
    ],
)
def test_path_traversal_and_bad_sources_are_422(api: Api, source: str) -> None:
    r = api.client.post("/v1/jobs", json={**JOB, "source": source}, headers=api.headers())
    body = assert_problem(r, 422)
    assert body["errors"][0]["loc"][-1] == "source"


def test_symlink_out_of_the_root_is_422(api: Api, tmp_path: Any) -> None:
    (api.root / "escape").symlink_to("/etc")
    assert_problem(api.client.post("/v1/jobs", json={**JOB, "source": "escape"}, headers=api.headers()), 422)


@pytest.mark.parametrize(
    "body",
    [
        {"config": {"target_flops_ratio": 0.5}},
        {**JOB, "extra": 1},
        {**JOB, "source": 5},
        [JOB],
        "job",
        None,
        {**JOB, "device_class": "tpu"},
        {**JOB, "webhook_url": "ftp://example.com/hook"},
        {**JOB, "webhook_url": "http://127.0.0.1:8080/hook"},
        {**JOB, "webhook_url": "http://169.254.169.254/x"},
        {**JOB, "webhook_url": "https://user:pw@example.com/x"},
        {**JOB, "webhook_url": "https://localhost/x"},
        {**JOB, "webhook_url": "not a url"},
    ],
)
def test_malformed_bodies_are_422(api: Api, body: Any) -> None:
    assert_problem(api.client.post("/v1/jobs", json=body, headers=api.headers()), 422)


def test_broken_json_oversized_bodies_and_headers(api: Api) -> None:
    h = {**api.headers(), "Content-Type": "application/json"}
    body = assert_problem(api.client.post("/v1/jobs", content=b"{not json", headers=h), 422)
    assert body["errors"]
    assert api.client.post("/v1/jobs", content=b"\xff\xfe\x00", headers=h).status_code in (400, 422)
    huge = b'{"source": "' + b"a" * 100_000 + b'"}'
    assert_problem(api.client.post("/v1/jobs", content=huge, headers=h), 413)

    def chunks():  # no Content-Length: counted while received
        for _ in range(100):
            yield b" " * 1024

    assert_problem(api.client.post("/v1/jobs", content=chunks(), headers=h), 413)
    assert_problem(api.client.post("/v1/jobs", json=JOB, headers={**api.headers(), "Idempotency-Key": "k" * 300}), 400)
    assert_problem(api.client.get("/v1/jobs?cursor=!!notbase64", headers=api.headers()), 400)
    assert_problem(api.client.get("/v1/jobs?cursor=YWJj", headers=api.headers()), 400)
    assert_problem(api.client.get("/v1/jobs?limit=0", headers=api.headers()), 422)
    assert_problem(api.client.get("/v1/jobs?limit=100000", headers=api.headers()), 422)
    assert_problem(api.client.get("/v1/jobs?status=weird", headers=api.headers()), 422)
    assert_problem(api.client.get("/v1/jobs/" + "0" * 32 + "/events?after=-1", headers=api.headers()), 422)
    job_id = api.client.post("/v1/jobs", json=JOB, headers=api.headers()).json()["id"]
    huge = f"/v1/jobs/{job_id}/events?after=99999999999999999999999"
    assert_problem(api.client.get(huge, headers=api.headers()), 422)
    sse = {**api.headers(), "Accept": "text/event-stream", "Last-Event-ID": "9" * 19}
    with api.client.stream("GET", f"/v1/jobs/{job_id}/events", headers=sse) as r:
        lines = r.iter_lines()
        assert r.status_code == 200 and next(lines).startswith("retry:")
        assert [next(lines) for _ in range(2)] == ["", ": keep-alive"]  # the poll ran fine


def test_signed_file_route_refuses_forgeries(api: Api) -> None:
    for url in (
        "/v1/files/tenants/x/jobs/y/model.safetensors?expires=99999999999&signature=AAAAAAAAAAAA",
        "/v1/files/../../etc/passwd?expires=99999999999&signature=AAAAAAAAAAAA",
        "/v1/files/a?expires=1&signature=AAAAAAAAAAAA",
    ):
        r = api.client.get(url)
        assert r.status_code in (403, 404) and r.headers["content-type"] == PROBLEM
    assert_problem(api.client.get("/v1/files/a"), 422)


def test_unhandled_errors_are_500_problems(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    from infoprune_jobs.repository import TenantRepository

    def boom(*_: Any, **__: Any) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(TenantRepository, "list_jobs", boom)
    body = assert_problem(api.client.get("/v1/jobs", headers=api.headers()), 500)
    assert "secret internals" not in body["detail"]


def test_model_upload_limits_and_tenancy(api: Api) -> None:
    good = tgz({"m/config.json": b"{}", "m/model.safetensors": b"\0" * 1000})
    h = {**api.headers(), "Content-Type": "application/gzip"}
    r = api.client.post("/v1/models?name=tiny", content=good, headers=h)
    assert r.status_code == 201, r.text
    model = r.json()
    assert model["source"] == f"upload:{model['id']}" and {f["name"] for f in model["files"]} == {
        "config.json",
        "model.safetensors",
    }
    assert api.client.get(f"/v1/models/{model['id']}", headers=api.headers()).status_code == 200
    # tenant B can neither see nor use it
    assert_problem(api.client.get(f"/v1/models/{model['id']}", headers=api.headers(api.key_b)), 404)
    job = {"source": model["source"], "config": {"target_flops_ratio": 0.5}}
    assert_problem(api.client.post("/v1/jobs", json=job, headers=api.headers(api.key_b)), 422)
    assert api.client.post("/v1/jobs", json=job, headers=api.headers()).status_code == 202

    assert_problem(api.client.post("/v1/models", content=b"\0" * 70_000, headers=h), 413)
    chunked = (b"\0" * 8192 for _ in range(20))  # no Content-Length: counted as it arrives
    assert_problem(api.client.post("/v1/models", content=chunked, headers=h), 413)
    assert_problem(api.client.post("/v1/models", content=b"", headers=h), 422)
    assert_problem(api.client.post("/v1/models", files={"file": ("m.tgz", good)}, headers=api.headers()), 415)
    assert_problem(api.client.post("/v1/models", content=b"garbage" * 10, headers=h), 422)
    for bad in (
        {"../x.json": b"{}", "model.safetensors": b"\0"},
        {"config.json": b"{}", "pytorch_model.bin": b"\0"},
        {"config.json": b"{}", "model.safetensors": b"\0" * 300_000},
    ):
        assert_problem(api.client.post("/v1/models", content=tgz(bad), headers=h), 422)
    assert_problem(api.client.post("/v1/models?name=../../x", content=good, headers=h), 422)


def test_s3_sources_only_from_listed_buckets_never_the_artifact_bucket(service_env: Any) -> None:
    from infoprune_jobs.settings import Settings
    from tests.api.conftest import make_api

    settings = Settings(
        source_s3_buckets=["models", "infoprune"],
        storage_backend="s3",
        s3_bucket="infoprune",
        s3_endpoint_url="http://127.0.0.1:9",
    )
    for api in make_api(settings):
        ok = api.client.post("/v1/jobs", json={**JOB, "source": "s3://models/tiny"}, headers=api.headers())
        assert ok.status_code == 202, ok.text
        for source in ("s3://infoprune/tenants/x/models/y", "s3://other/x"):
            r = api.client.post("/v1/jobs", json={**JOB, "source": source}, headers=api.headers())
            assert_problem(r, 422)
        # the store is down (nothing listens there): an upload is refused with 503, not a crash
        archive = tgz({"config.json": b"{}", "model.safetensors": b"\0"})
        r = api.client.post(
            "/v1/models", content=archive, headers={**api.headers(), "Content-Type": "application/gzip"}
        )
        assert_problem(r, 503)


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 30000 + b"]" * 30000,
        b'{"source": "tiny", "config": {"target_flops_ratio": NaN}}',
        b'{"source": "tiny", "config": {"target_flops_ratio": Infinity}}',
        b"null",
        b"12",
        b'"x"',
        b'{"source": "tiny", "config": {"target_flops_ratio": 1e400}}',
    ],
)
def test_pathological_json_is_4xx(api: Api, raw: bytes) -> None:
    r = api.client.post("/v1/jobs", content=raw, headers={**api.headers(), "Content-Type": "application/json"})
    assert 400 <= r.status_code < 500 and r.headers["content-type"] == PROBLEM
