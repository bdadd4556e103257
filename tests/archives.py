"""Archives built in memory for upload tests."""

from __future__ import annotations

import io
import tarfile


def tgz(members: dict[str, bytes]) -> bytes:
    """A .tar.gz holding `members` (name -> bytes) as regular files."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()
