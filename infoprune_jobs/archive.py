"""Safe extraction of uploaded model archives (tar, tar.gz, zip).

Refuses absolute paths, '..', links and special files, more than ``max_members`` entries or
``max_bytes`` of content (counted while writing, so lying headers do not help), and any weights
but safetensors.
"""

from __future__ import annotations

import lzma
import shutil
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import IO

from infoprune_jobs.sources import ModelConfigRejected, check_model_config
from infoprune_jobs.storage.base import check_key

PICKLE_SUFFIXES = (
    ".bin",
    ".pt",
    ".pth",
    ".ckpt",
    ".pkl",
    ".pickle",
    ".joblib",
    ".npy",
    ".npz",
    ".h5",
    ".msgpack",
)
_CHUNK = 1 << 20


class ArchiveRejected(ValueError):
    """The archive is unsafe, too large or not a model; the message says why."""


def extract_model_archive(
    archive: Path, dest: Path, *, max_bytes: int, max_members: int, max_parameters: int | None = None
) -> list[tuple[str, int]]:
    """Extract into ``dest``; returns (relative name, size). The model must hold config.json + safetensors
    and, with ``max_parameters``, a config that implies no more parameters than that."""
    dest.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        files = _extract_zip(archive, dest, max_bytes, max_members)
    elif _is_tar(archive):
        files = _extract_tar(archive, dest, max_bytes, max_members)
    else:
        raise ArchiveRejected("upload must be a .tar, .tar.gz or .zip archive")
    files = _strip_common_root(dest, files)
    names = {n for n, _ in files}
    if "config.json" not in names:
        raise ArchiveRejected("archive holds no config.json at its top level")
    if not any(n.endswith(".safetensors") for n in names):
        raise ArchiveRejected("archive holds no .safetensors weights")
    if max_parameters is not None:
        try:
            check_model_config(dest / "config.json", max_parameters)
        except ModelConfigRejected as exc:
            raise ArchiveRejected(str(exc)) from exc
    return files


def _safe_name(name: str) -> str:
    pure = PurePosixPath(name.replace("\\", "/"))
    if pure.is_absolute() or ".." in pure.parts or not pure.parts:
        raise ArchiveRejected(f"unsafe path in archive: {name!r}")
    clean = "/".join(p for p in pure.parts if p != ".")
    try:
        check_key(clean)
    except ValueError as exc:
        raise ArchiveRejected(f"unsupported file name in archive: {name!r}") from exc
    if clean.lower().endswith(PICKLE_SUFFIXES):
        raise ArchiveRejected(f"{name!r}: only safetensors weights are accepted (no pickle formats)")
    return clean


def _copy_limited(src: IO[bytes], target: Path, budget: int) -> int:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        out_file = target.open("xb")
    except OSError as exc:  # a duplicate name, or a file where a folder should be
        raise ArchiveRejected(f"archive has conflicting entries at {target.name!r}") from exc
    written = 0
    with out_file as out:
        while chunk := src.read(_CHUNK):
            written += len(chunk)
            if written > budget:
                raise ArchiveRejected("archive content exceeds the size limit")
            out.write(chunk)
    return written


def _extract_tar(archive: Path, dest: Path, max_bytes: int, max_members: int) -> list[tuple[str, int]]:
    files: list[tuple[str, int]] = []
    total = 0
    with _open_tar(archive) as tar:
        for count, member in enumerate(tar, start=1):
            if count > max_members:
                raise ArchiveRejected(f"archive has more than {max_members} entries")
            name = _safe_name(member.name) if member.name not in (".", "./") else None
            if member.isdir() or name is None:
                continue
            if not member.isfile():
                raise ArchiveRejected(f"archive entry {member.name!r} is a link or special file")
            src = tar.extractfile(member)
            if src is None:
                raise ArchiveRejected(f"cannot read archive entry {member.name!r}")
            size = _copy_limited(src, dest / name, max_bytes - total)
            total += size
            files.append((name, size))
    return files


# what a truncated, corrupt, encrypted or oddly compressed archive raises while being read
_CORRUPT = (
    tarfile.TarError,
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    EOFError,
    OSError,
    zlib.error,
    lzma.LZMAError,
    ValueError,
    RuntimeError,  # an encrypted zip member
    NotImplementedError,  # a zip compression method Python lacks
)


def _is_tar(archive: Path) -> bool:
    try:
        return tarfile.is_tarfile(archive)
    except _CORRUPT as exc:  # is_tarfile itself raises on a truncated gzip stream
        raise ArchiveRejected(f"corrupt archive: {type(exc).__name__}") from exc


@contextmanager
def _open_tar(archive: Path) -> Iterator[tarfile.TarFile]:
    try:
        with tarfile.open(archive, mode="r:*") as tar:
            yield tar
    except ArchiveRejected:
        raise
    except _CORRUPT as exc:
        raise ArchiveRejected(f"corrupt archive: {type(exc).__name__}") from exc


def _extract_zip(archive: Path, dest: Path, max_bytes: int, max_members: int) -> list[tuple[str, int]]:
    files: list[tuple[str, int]] = []
    total = 0
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            if len(infos) > max_members:
                raise ArchiveRejected(f"archive has more than {max_members} entries")
            for info in infos:
                if info.is_dir():
                    continue
                mode = (info.external_attr >> 16) & 0o170000
                if mode and mode != 0o100000:
                    raise ArchiveRejected(f"archive entry {info.filename!r} is a link or special file")
                name = _safe_name(info.filename)
                with zf.open(info) as src:
                    size = _copy_limited(src, dest / name, max_bytes - total)
                total += size
                files.append((name, size))
    except ArchiveRejected:
        raise
    except _CORRUPT as exc:
        raise ArchiveRejected(f"corrupt archive: {type(exc).__name__}") from exc
    return files


def _strip_common_root(dest: Path, files: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """``model/config.json`` ... -> ``config.json`` when everything sits in one top folder."""
    tops = {n.split("/", 1)[0] for n, _ in files}
    if len(tops) != 1 or all("/" not in n for n, _ in files) or any("/" not in n for n, _ in files):
        return files
    (top,) = tops
    inner = dest / top
    staging = dest.parent / f".{dest.name}.strip"
    inner.rename(staging)
    shutil.rmtree(dest)
    staging.rename(dest)
    return [(n.split("/", 1)[1], s) for n, s in files]
