"""The shipped text calibration set is the same whatever the process imported before."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import hashlib, sys
if sys.argv[1] == "after-imports":
    import email.mime.text, email.utils, logging.handlers, unittest.mock, http.server, json.decoder
from infoprune_core.calibration import default_text_samples
samples = default_text_samples()
print(len(samples), hashlib.sha256("\\x00".join(s.text or "" for s in samples).encode()).hexdigest())
"""


def _fingerprint(mode: str) -> str:
    done = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_default_text_samples_do_not_depend_on_import_history() -> None:
    plain, after_imports = _fingerprint("plain"), _fingerprint("after-imports")
    assert plain.startswith("256 ")
    assert plain == after_imports
