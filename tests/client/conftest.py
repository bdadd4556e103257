"""A real `infoprune serve` (embedded mode: SQLite, local artifacts, in-process worker) for the client
and CLI tests, with the tiny model in its model root and a tenant's key."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import free_port
from tests.service.helpers import INFOPRUNE, create_key, env_for, kill_group, start, stop, wait_until


@dataclass
class Server:
    url: str
    key: str
    data: Path
    env: dict[str, str]
    log: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = start(["serve", "--port", str(self.port)], self.env, self.log)
        wait_until(self.up, 120, "the server")

    def kill(self) -> None:
        if self.proc is not None:
            kill_group(self.proc)

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)

    def up(self) -> bool:
        try:
            return httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """The `infoprune` command as a pipeline step runs it: configured by the environment only."""
        env = {**self.env, "INFOPRUNE_API_URL": self.url, "INFOPRUNE_API_KEY": self.key}
        return subprocess.run([*INFOPRUNE, *args], env=env, capture_output=True, text=True, timeout=timeout)


def make_server(root: Path, tiny_model_dir: Path, **settings: Any) -> Server:
    data = root / "data"
    shutil.copytree(tiny_model_dir, data / "models" / "tiny-bert")
    env = env_for(data_dir=data, **settings)
    port = free_port()
    return Server(f"http://127.0.0.1:{port}", create_key(env, "pipeline"), data, env, root / "serve.log", port)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[Server]:
    srv = make_server(tmp_path_factory.mktemp("client-server"), tiny_model_dir)
    srv.start()
    yield srv
    srv.stop()
