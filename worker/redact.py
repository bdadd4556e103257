"""Server paths never reach tenants: messages, errors and reports name the tenant's own sources only.

The pipeline names what it was given (absolute paths under the model root, the worker's work folder,
caches): the model root's prefix is dropped (leaving the name the tenant used), a materialised upload
becomes its ``upload:<id>``, the work folder ``<work>``, and any other server folder ``<server>``.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterable
from functools import partial
from pathlib import Path
from typing import Any


class PathRedactor:
    def __init__(self, labels: dict[Path, str]) -> None:
        """``labels``: server folder -> what tenants see instead ("" for the model root)."""
        variants: dict[str, str] = {}
        for folder, label in labels.items():
            for form in {str(folder), str(folder.resolve())}:
                if form not in ("", "/"):
                    variants.setdefault(form, label)
        # longest first, so a folder inside another is replaced by its own label
        self._rules = [
            (re.compile(re.escape(form) + r"(?:(/)|(?=[\s'\"),;:\]}]|$))"), label)
            for form, label in sorted(variants.items(), key=lambda item: -len(item[0]))
        ]

    @classmethod
    def for_job(
        cls, *, model_root: Path, work: Path, upload: tuple[Path, str] | None, others: Iterable[Path | None]
    ) -> PathRedactor:
        labels: dict[Path, str] = {Path(tempfile.gettempdir()): "<server>", Path.home(): "<server>"}
        labels.update({folder: "<server>" for folder in others if folder is not None})
        labels.update({model_root: "", work: "<work>"})
        if upload is not None:
            labels[upload[0]] = upload[1]
        return cls(labels)

    def text(self, value: str) -> str:
        for pattern, label in self._rules:
            value = pattern.sub(partial(_joined, label), value)
        return value

    def document(self, value: Any) -> Any:
        """Every string of a JSON-like document (dict keys included), redacted."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.text(str(k)): self.document(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.document(v) for v in value]
        return value


def _joined(label: str, match: re.Match[str]) -> str:
    """The label in place of a folder: followed by the slash that followed it ("" for the model root: the
    path that remains is relative to it, or "." for the root itself)."""
    slash = match.group(1) or ""
    if label:
        return label + slash
    return "" if slash else "."
