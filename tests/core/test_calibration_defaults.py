"""The shipped text calibration set: the same whatever the process imported, and mixed into a text
model's own narrow set."""

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


def test_a_text_models_own_set_is_mixed_with_the_shipped_one(model_dirs, tmp_path) -> None:
    import json

    from infoprune_core.calibration import default_text_samples
    from infoprune_core.config import CompressionConfig
    from infoprune_core.modeling import load_model
    from infoprune_core.run import prepare_samples

    own = [f"the shape is red and the answer is {i} ." for i in range(20)]
    path = tmp_path / "own.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in own))
    loaded = load_model(model_dirs["bert"])
    shipped = {s.text for s in default_text_samples()}
    config = CompressionConfig(target_flops_ratio=0.5, calibration=str(path), calibration_samples=8, held_out_samples=4)
    calibration, held_out = prepare_samples(config, loaded)
    assert [s.text for s in calibration[:4]] == own[:4]
    assert len(calibration) == 8 and all(s.text in shipped for s in calibration[4:])
    assert [s.text for s in held_out] == own[-4:], "held-out samples stay the user's"
    alone = prepare_samples(config.model_copy(update={"shipped_share": 0.0}), loaded)[0]
    assert [s.text for s in alone] == own[:8]
