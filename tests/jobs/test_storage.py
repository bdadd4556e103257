"""Both storage backends behind one interface: local folder and S3 (a real SeaweedFS server)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from infoprune_jobs.storage import ArtifactStorage, LocalStorage, S3Storage, StorageError, get_tree, put_tree
from tests.conftest import S3Server


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStorage:
    if request.param == "local":
        return LocalStorage(tmp_path / "store", b"k" * 32)
    server: S3Server = request.getfixturevalue("s3_server")
    bucket = request.getfixturevalue("s3_bucket")
    return S3Storage(
        bucket,
        prefix="pre",
        endpoint_url=server.endpoint,
        access_key_id=server.access_key,
        secret_access_key=server.secret_key,
    )


def test_roundtrip_tree_and_listing(storage: ArtifactStorage, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "config.json").write_text("{}")
    (src / "sub" / "w.safetensors").write_bytes(b"\x00" * 1000)
    storage.check()
    put_tree(storage, "t/1", src)
    storage.put_bytes("t/2/x.txt", b"other")
    assert storage.list("t/1") == ["t/1/config.json", "t/1/sub/w.safetensors"]
    got = get_tree(storage, "t/1", tmp_path / "dst")
    assert sorted(got) == ["config.json", "sub/w.safetensors"]
    assert (tmp_path / "dst" / "sub" / "w.safetensors").read_bytes() == b"\x00" * 1000
    assert storage.get_bytes("t/2/x.txt") == b"other"
    with pytest.raises(KeyError):
        storage.get_bytes("t/2/missing")
    storage.delete_prefix("t/1")
    assert storage.list("t/1") == []


@pytest.mark.parametrize("key", ["../x", "a/../b", "/abs", "a//b", "a/./b", "a b", ""])
def test_unsafe_keys_are_refused(storage: ArtifactStorage, key: str) -> None:
    with pytest.raises(ValueError):
        storage.put_bytes(key, b"x")


def test_download_urls_work_and_expire(storage: ArtifactStorage, tmp_path: Path) -> None:
    storage.put_bytes("t/f.bin", b"payload")
    if isinstance(storage, S3Storage):
        url = storage.download_url("t/f.bin", 60, "")
        # SigV4 (SigV2 URLs carry AWSAccessKeyId= and Signature= instead)
        assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in url and "X-Amz-Signature=" in url and "AWSAccessKeyId" not in url
        assert httpx.get(url).content == b"payload"
        assert httpx.get(url.split("?")[0]).status_code == 403  # unsigned access is refused
        return
    assert isinstance(storage, LocalStorage)
    url = storage.download_url("t/f.bin", 60, "http://h")
    query = dict(p.split("=", 1) for p in url.split("?", 1)[1].split("&"))
    assert storage.verify("t/f.bin", int(query["expires"]), query["signature"])
    assert not storage.verify("t/g.bin", int(query["expires"]), query["signature"])
    assert not storage.verify("t/f.bin", int(query["expires"]) + 1, query["signature"])
    assert not storage.verify("t/f.bin", 1, storage.download_url("t/f.bin", -(10**10), "").split("signature=")[1])


def test_unreachable_s3_is_not_ready() -> None:
    store = S3Storage("nope-bucket", endpoint_url="http://127.0.0.1:9", access_key_id="a", secret_access_key="b")
    with pytest.raises(StorageError):
        store.check()


def test_presigned_urls_can_name_a_public_endpoint(s3_server: S3Server, s3_bucket: str) -> None:
    public = s3_server.endpoint.replace("127.0.0.1", "localhost")
    store = S3Storage(
        s3_bucket,
        endpoint_url=s3_server.endpoint,
        access_key_id=s3_server.access_key,
        secret_access_key=s3_server.secret_key,
        public_endpoint_url=public,
    )
    store.put_bytes("p/x.bin", b"public")
    url = store.download_url("p/x.bin", 60, "")
    assert url.startswith(public) and httpx.get(url).content == b"public"
