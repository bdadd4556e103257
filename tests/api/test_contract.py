"""The contract a third-party tool sees: readable operationIds, and a client generated from the
served /openapi.json by openapi-python-client 0.29.1 with named methods and a typed report."""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from infoprune_jobs.db import transaction
from infoprune_jobs.models import Job, utcnow
from infoprune_jobs.repository import TenantAdmin
from tests.api.conftest import JOB, Api
from tests.conftest import FAST_CONFIG

OPERATIONS = {
    "create_job", "list_jobs", "get_job", "cancel_job", "list_job_events", "get_job_report",
    "list_job_artifacts", "upload_model", "get_model", "rotate_key", "revoke_key", "download_file",
    "healthz", "readyz",
}  # fmt: skip


@pytest.fixture(scope="module")
def pipeline_report(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A report as the pipeline writes it (a real run on the tiny model)."""
    from infoprune_core import CompressionConfig, compress

    out = tmp_path_factory.mktemp("report") / "out"
    return compress(str(tiny_model_dir), out, CompressionConfig(**FAST_CONFIG)).report


def test_every_operation_has_a_readable_unique_operation_id(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    ids = [op["operationId"] for ops in spec["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids)) and set(ids) >= OPERATIONS
    assert all(re.fullmatch(r"[a-z]+(_[a-z]+)*", i) and not i.endswith(("_get", "_post")) for i in ids), ids


def test_a_generated_client_has_named_methods_and_a_typed_report(
    api: Api, tmp_path: Path, pipeline_report: dict[str, Any]
) -> None:
    (tmp_path / "openapi.json").write_text(json.dumps(api.client.get("/openapi.json").json()))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    subprocess.run(
        [Path(sys.executable).parent / "openapi-python-client", "generate", "--path", "openapi.json",
         "--meta", "none", "--output-path", "generated_infoprune"],
        cwd=tmp_path, env=env, check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    sys.path.insert(0, str(tmp_path))
    try:
        generated = importlib.import_module("generated_infoprune")
        jobs = {
            name: importlib.import_module(f"generated_infoprune.api.jobs.{name}")
            for name in OPERATIONS
            if "job" in name
        }
        models = importlib.import_module("generated_infoprune.models")
        job_id = _succeeded_job(api, pipeline_report)
        client = generated.AuthenticatedClient(base_url="http://testserver", token=api.key_a)
        client.set_httpx_client(api.client)
        api.client.headers["Authorization"] = f"Bearer {api.key_a}"

        created = jobs["create_job"].sync(client=client, body=models.JobCreate.from_dict(JOB))
        assert isinstance(created, models.JobOut) and created.source == "tiny"
        report = jobs["get_job_report"].sync(job_id, client=client)
        assert isinstance(report, models.JobReport)
        assert report.flops.scope_ratio == pipeline_report["flops"]["scope_ratio"]
        assert report.model.model_type == pipeline_report["model"]["model_type"]
        assert isinstance(report.stages_seconds, models.JobReportStagesSeconds)
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m.split(".")[0] == "generated_infoprune"]:
            del sys.modules[name]


def _succeeded_job(api: Api, report: dict[str, Any]) -> str:
    with transaction(api.ctx.sessions) as s:
        tenant_id = TenantAdmin(s).authenticate(api.key_a)
        job = Job(tenant_id=tenant_id, source="tiny", source_kind="local", config={}, device_class="cpu")
        job.status, job.stage, job.progress, job.finished_at, job.report = "succeeded", "done", 1.0, utcnow(), report
        s.add(job)
        s.flush()
        return job.id
