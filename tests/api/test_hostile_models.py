"""More hostile submissions: models whose config implies an absurd size are refused when uploaded or named
(before any worker allocates them), truncated uploads, and webhook names that resolve inside the network."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest

from tests.api.conftest import JOB, Api
from tests.api.test_hostile import assert_problem
from tests.archives import tgz
from tests.jobs.test_hostile_inputs import ABSURD_CONFIGS

GZIP = {"Content-Type": "application/gzip"}


@pytest.mark.parametrize("config", ABSURD_CONFIGS[:3])
def test_absurd_configs_are_refused_at_upload_and_as_local_sources(api: Api, config: dict[str, Any]) -> None:
    archive = tgz({"m/config.json": json.dumps(config).encode(), "m/model.safetensors": b"\0" * 64})
    body = assert_problem(api.client.post("/v1/models", content=archive, headers={**api.headers(), **GZIP}), 422)
    assert "parameters" in body["detail"]
    (api.root / "huge").mkdir()
    (api.root / "huge" / "config.json").write_text(json.dumps(config))
    body = assert_problem(api.client.post("/v1/jobs", json={**JOB, "source": "huge"}, headers=api.headers()), 422)
    assert body["errors"][0]["loc"][-1] == "source" and "parameters" in body["detail"]


def test_a_sane_config_passes_and_a_truncated_upload_is_refused(api: Api) -> None:
    config = {"model_type": "bert", "hidden_size": 32, "num_hidden_layers": 2, "vocab_size": 100}
    archive = tgz({"config.json": json.dumps(config).encode(), "model.safetensors": bytes(range(256)) * 40})
    assert api.client.post("/v1/models", content=archive, headers={**api.headers(), **GZIP}).status_code == 201
    for cut in (10, len(archive) // 2):
        r = api.client.post("/v1/models", content=archive[:cut], headers={**api.headers(), **GZIP})
        assert_problem(r, 422)


def test_webhook_names_resolving_inside_are_refused_at_submission(api: Api) -> None:
    for url in ("http://localhost./h", "http://2130706433/h", "http://0x7f.1/h", "http://[::ffff:10.0.0.1]/h"):
        r = api.client.post("/v1/jobs", json={**JOB, "webhook_url": url}, headers=api.headers())
        assert assert_problem(r, 422)["errors"][0]["loc"][-1] == "webhook_url"
    host = socket.gethostname()  # resolves through /etc/hosts, no DNS needed
    if socket.getaddrinfo(host, 80)[0][4][0].startswith("127."):
        r = api.client.post("/v1/jobs", json={**JOB, "webhook_url": f"https://{host}/hook"}, headers=api.headers())
        assert_problem(r, 422)
    ok = api.client.post("/v1/jobs", json={**JOB, "webhook_url": "https://hooks.example/x"}, headers=api.headers())
    assert ok.status_code == 202  # not resolvable here: accepted, delivery checks it again
