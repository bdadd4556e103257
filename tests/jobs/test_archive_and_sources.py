"""Upload extraction refuses hostile archives; model sources stay inside what the server allows."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from infoprune_jobs.archive import ArchiveRejected, extract_model_archive
from infoprune_jobs.sources import SourceRejected, parse_source, resolve_local

LIMITS = {"max_bytes": 10_000, "max_members": 20}


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


GOOD = [_file("m/config.json", b"{}"), _file("m/model.safetensors", b"\0" * 100), _file("m/tok.json", b"{}")]


def test_good_tar_and_zip_extract_with_top_folder_stripped(tmp_path: Path) -> None:
    files = extract_model_archive(_tar(tmp_path / "a.tgz", GOOD), tmp_path / "out", **LIMITS)
    assert sorted(n for n, _ in files) == ["config.json", "model.safetensors", "tok.json"]
    assert (tmp_path / "out" / "model.safetensors").stat().st_size == 100
    zpath = tmp_path / "a.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("config.json", "{}")
        zf.writestr("model.safetensors", b"\0" * 10)
    assert len(extract_model_archive(zpath, tmp_path / "zout", **LIMITS)) == 2


@pytest.mark.parametrize(
    ("members", "reason"),
    [
        ([*GOOD, _file("../evil.json", b"x")], "unsafe path"),
        ([*GOOD, _file("/etc/evil.json", b"x")], "unsafe path"),
        ([*GOOD, _file("m/pytorch_model.bin", b"x")], "safetensors"),
        ([_file("config.json", b"{}")], "no .safetensors"),
        ([_file("model.safetensors", b"x")], "config.json"),
        ([*GOOD, _file("m/big.safetensors", b"\0" * 20_000)], "size limit"),
        ([_file(f"f{i}.json", b"") for i in range(30)], "more than"),
        ([*GOOD, _file("m/config.json", b"{}")], "conflicting"),
        ([*GOOD, _file("m/config.json/x.json", b"{}")], "conflicting"),
        ([*GOOD, _file("m/\u00e9t\u00e9.json", b"{}")], "file name"),
    ],
)
def test_hostile_tars_are_refused(tmp_path: Path, members: list, reason: str) -> None:
    with pytest.raises(ArchiveRejected, match=reason):
        extract_model_archive(_tar(tmp_path / "a.tgz", members), tmp_path / "out", **LIMITS)
    assert not (tmp_path / "evil.json").exists()


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE, tarfile.FIFOTYPE])
def test_links_and_special_files_are_refused(tmp_path: Path, kind: bytes) -> None:
    link = tarfile.TarInfo("m/link.json")
    link.type, link.linkname = kind, "/etc/passwd"
    with pytest.raises(ArchiveRejected, match="link or special"):
        extract_model_archive(_tar(tmp_path / "a.tar", [*GOOD, (link, None)], "w"), tmp_path / "out", **LIMITS)


def test_zip_symlink_traversal_bomb_and_garbage(tmp_path: Path) -> None:
    zpath = tmp_path / "s.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        info = zipfile.ZipInfo("link")
        info.external_attr = 0o120777 << 16
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(ArchiveRejected, match="link"):
        extract_model_archive(zpath, tmp_path / "o1", **LIMITS)
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("../../x.json", "{}")
    with pytest.raises(ArchiveRejected, match="unsafe"):
        extract_model_archive(zpath, tmp_path / "o2", **LIMITS)
    with zipfile.ZipFile(zpath, "w", compression=zipfile.ZIP_DEFLATED) as zf:  # 1 MB of zeros compresses tiny
        zf.writestr("config.json", "{}")
        zf.writestr("model.safetensors", b"\0" * 1_000_000)
    assert zpath.stat().st_size < 10_000
    with pytest.raises(ArchiveRejected, match="size limit"):
        extract_model_archive(zpath, tmp_path / "o3", **LIMITS)
    (tmp_path / "junk").write_bytes(b"not an archive")
    with pytest.raises(ArchiveRejected, match="tar"):
        extract_model_archive(tmp_path / "junk", tmp_path / "o4", **LIMITS)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "root" / "mine").mkdir(parents=True)
    (tmp_path / "root" / "owner" / "name").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (tmp_path / "root" / "escape").symlink_to(tmp_path / "outside")
    return tmp_path / "root"


def _parse(raw: str, root: Path, buckets: list[str] | None = None):
    return parse_source(raw, model_root=root, s3_buckets=buckets or [], allow_hub=True)


def test_sources_accepted(root: Path) -> None:
    assert _parse("mine", root).value == "mine"  # kept relative to the root: the tenant's own name
    assert _parse(str(root / "mine"), root) == _parse("./mine", root) == _parse("mine", root)
    assert _parse("owner/name", root).kind == "local"  # a folder in the root wins over a hub id
    assert _parse("openai/clip-vit", root).kind == "hub"
    assert _parse("s3://models/tiny/v1/", root, ["models"]).value == "s3://models/tiny/v1"
    assert _parse("upload:" + "a" * 32, root).kind == "upload"


@pytest.mark.parametrize(
    "raw",
    [
        "../outside",
        "mine/../../outside",
        "/etc",
        "/etc/passwd",
        "escape",
        "~/x",
        "nothere",
        "s3://models/../x",
        "s3://other/x",
        "s3://Bad_Bucket/x",
        "http://evil/x",
        "file:///etc",
        "mine\x00",
        "",
        "a" * 2000,
        "upload:xyz",
    ],
)
def test_sources_refused(root: Path, raw: str) -> None:
    with pytest.raises(SourceRejected):
        _parse(raw, root, ["models"])


def test_hub_can_be_disabled_and_calibration_paths_stay_inside(root: Path) -> None:
    with pytest.raises(SourceRejected, match="disabled"):
        parse_source("openai/clip", model_root=root, s3_buckets=[], allow_hub=False)
    (root / "calib.jsonl").write_text("")
    assert resolve_local("calib.jsonl", root) == "calib.jsonl"
    with pytest.raises(SourceRejected):
        resolve_local("../outside", root)


@pytest.mark.parametrize("raw", ["/etc", "escape", "nothere", "../outside"])
def test_refusals_never_name_the_model_root(root: Path, raw: str) -> None:
    with pytest.raises(SourceRejected) as refused:
        _parse(raw, root)
    assert str(root.parent) not in str(refused.value)
