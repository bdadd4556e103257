"""Model sources: local directories, a real S3-compatible server, and a local hub cache."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from infoprune_core.errors import SourceError
from infoprune_core.sources import parse_s3_uri, resolve_source


def test_local_directory(model_dirs, tmp_path: Path) -> None:
    assert resolve_source(str(model_dirs["bert"]), tmp_path) == model_dirs["bert"].resolve()


def test_missing_directory_and_garbage_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        resolve_source(str(tmp_path / "nope"), tmp_path)
    with pytest.raises(SourceError, match="is neither"):
        resolve_source("not a model source!", tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match=r"no config\.json"):
        resolve_source(str(tmp_path / "empty"), tmp_path)


def test_pickle_only_weights_are_refused(model_dirs, tmp_path: Path) -> None:
    target = tmp_path / "pickled"
    shutil.copytree(model_dirs["bert"], target)
    (target / "model.safetensors").unlink()
    torch.save({"w": torch.zeros(1)}, target / "pytorch_model.bin")
    with pytest.raises(SourceError, match="pickled weights"):
        resolve_source(str(target), tmp_path)


@pytest.mark.parametrize("uri", ["s3://Bad_Bucket/x", "s3://bucket/../etc", "s3://b"])
def test_bad_s3_uris(uri: str) -> None:
    with pytest.raises(SourceError):
        parse_s3_uri(uri)


def test_s3_prefix_download(model_dirs, s3_server, s3_bucket, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    client = s3_server.client()
    for path in model_dirs["llama"].iterdir():
        client.upload_file(str(path), s3_bucket, f"models/llama/{path.name}")
    client.put_object(Bucket=s3_bucket, Key="models/llama/evil.bin", Body=b"not fetched")
    client.put_object(Bucket=s3_bucket, Key="models/llama/sub/x.json", Body=b"{}")
    local = resolve_source(f"s3://{s3_bucket}/models/llama", tmp_path)
    assert (local / "model.safetensors").read_bytes() == (model_dirs["llama"] / "model.safetensors").read_bytes()
    assert not (local / "evil.bin").exists() and not (local / "sub").exists()
    with pytest.raises(SourceError, match="no model files"):
        resolve_source(f"s3://{s3_bucket}/models/absent", tmp_path)


def test_hub_id_from_local_cache(model_dirs, monkeypatch, tmp_path: Path) -> None:
    """A hub cache laid out as huggingface_hub writes it, read offline."""
    cache = tmp_path / "hub"
    revision = "0123456789abcdef0123456789abcdef01234567"
    snapshot = cache / "models--acme--tiny-bert" / "snapshots" / revision
    shutil.copytree(model_dirs["bert"], snapshot)
    (cache / "models--acme--tiny-bert" / "refs").mkdir()
    (cache / "models--acme--tiny-bert" / "refs" / "main").write_text(revision)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    local = resolve_source("acme/tiny-bert", tmp_path)
    assert (local / "config.json").is_file() and local.name == revision
    with pytest.raises(SourceError, match="cannot fetch hub model"):
        resolve_source("acme/absent", tmp_path)
