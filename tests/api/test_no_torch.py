"""The API process never imports torch (nor the worker, nor the core pipeline): of the core it imports
the job configuration only (``infoprune_core.config``, which the job-config schema is derived from)."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import sys
from fastapi.testclient import TestClient
from api import build_context, create_app
from infoprune_jobs import migrate
from infoprune_jobs.settings import Settings
settings = Settings(data_dir=sys.argv[1])
migrate.upgrade(settings.sqlalchemy_url)
with TestClient(create_app(build_context(settings))) as client:
    assert client.get("/readyz").status_code == 200
    assert client.post("/v1/jobs", json={}).status_code == 401
banned = [m for m in sys.modules if m.split(".")[0] in ("torch", "transformers", "worker")]
core = {m for m in sys.modules if m.split(".")[0] == "infoprune_core"}
assert not banned and core == {"infoprune_core", "infoprune_core.config"}, (banned, core)
"""


def test_api_does_not_import_torch_or_the_worker(tmp_path: object) -> None:
    subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], check=True, timeout=120)
