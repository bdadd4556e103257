"""What the export refuses (and says to set), the engines each artifact lists, and the CLI command."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from gguf import GGUFReader

from infoprune_core.cli import main
from infoprune_core.errors import ArtifactError
from infoprune_core.export.engines import FROM_PRETRAINED, LLAMA_CPP, LOAD_COMPRESSED
from infoprune_core.export.errors import ExportRefused
from infoprune_core.export.gguf import export_gguf
from infoprune_core.export.layout import plan_layout


@pytest.mark.parametrize(
    ("name", "engines"),
    [
        ("llama-free", [LOAD_COMPRESSED, LLAMA_CPP]),
        ("llama-uniform", [LOAD_COMPRESSED, *FROM_PRETRAINED, LLAMA_CPP]),
        ("qwen2-uniform", [LOAD_COMPRESSED, *FROM_PRETRAINED, LLAMA_CPP]),
        ("llama-lowrank", [LOAD_COMPRESSED]),
        ("qwen3-free", [LOAD_COMPRESSED]),
        ("qwen3-uniform", [LOAD_COMPRESSED, *FROM_PRETRAINED, LLAMA_CPP]),
        ("bert-free", [LOAD_COMPRESSED]),
    ],
)
def test_the_manifest_lists_the_engines_that_load_it(name: str, engines: list[str], artifacts) -> None:
    manifest = json.loads((artifacts[name] / "infoprune.json").read_text())
    assert manifest["engines"] == engines


def test_low_rank_ffns_are_refused_with_the_setting_to_use(artifacts, tmp_path: Path) -> None:
    with pytest.raises(ExportRefused, match=r"low-rank.*ffn=width \(or auto\)"):
        export_gguf(artifacts["llama-lowrank"], tmp_path / "model.gguf")
    assert not list(tmp_path.iterdir()), "nothing is left behind"


def test_non_uniform_qwen3_is_refused_with_the_setting_to_use(artifacts, tmp_path: Path) -> None:
    with pytest.raises(ExportRefused, match=r"qwen3 architecture reads one head count .*shape=uniform"):
        export_gguf(artifacts["qwen3-free"], tmp_path / "model.gguf")


def test_other_families_are_refused(artifacts, tmp_path: Path) -> None:
    with pytest.raises(ExportRefused, match=r"model_type 'bert'.*llama, mistral, qwen2, qwen3"):
        export_gguf(artifacts["bert-free"], tmp_path / "model.gguf")


def test_a_tokenizer_llama_cpp_would_not_reproduce_is_refused(artifacts, tmp_path: Path) -> None:
    artifact = Path(shutil.copytree(artifacts["llama-free"], tmp_path / "artifact"))
    document = json.loads((artifact / "tokenizer.json").read_text())
    document["normalizer"] = {"type": "Lowercase"}
    (artifact / "tokenizer.json").write_text(json.dumps(document))
    with pytest.raises(ExportRefused, match=r"tokenizer\.json .*Lowercase.*the GGUF export takes byte-level BPE"):
        export_gguf(artifact, tmp_path / "model.gguf")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"rope_parameters": {"rope_type": "yarn", "rope_theta": 1e4, "factor": 4.0}}, "rope type 'yarn'"),
        ({"hidden_act": "gelu"}, "hidden_act 'gelu'"),
        ({"partial_rotary_factor": 0.5}, "partial_rotary_factor must be 1"),
    ],
)
def test_configs_llama_cpp_reads_otherwise_are_refused(change: dict, message: str, artifacts) -> None:
    config = json.loads((artifacts["llama-free"] / "config.json").read_text())
    with pytest.raises(ExportRefused, match=message):
        plan_layout({**config, **change}, {})


def test_the_output_never_lands_in_the_artifact_nor_over_a_file(artifacts, tmp_path: Path) -> None:
    artifact = artifacts["llama-free"]
    before = sorted(p.name for p in artifact.iterdir())
    with pytest.raises(ArtifactError, match="inside the artifact"):
        export_gguf(artifact, artifact / "model.gguf")
    with pytest.raises(ArtifactError, match=r"must end in \.gguf"):
        export_gguf(artifact, tmp_path / "model.safetensors")
    (tmp_path / "taken.gguf").write_text("keep me")
    with pytest.raises(ArtifactError, match="already exists"):
        export_gguf(artifact, tmp_path / "taken.gguf")
    assert (tmp_path / "taken.gguf").read_text() == "keep me"
    assert sorted(p.name for p in artifact.iterdir()) == before


def test_the_cli_exports_and_reports_refusals(artifacts, tmp_path: Path, capsys) -> None:
    output = tmp_path / "model.gguf"
    assert main(["export-gguf", str(artifacts["llama-uniform"]), "--output", str(output), "--dtype", "f32"]) == 0
    assert f"wrote {output}" in capsys.readouterr().out
    assert GGUFReader(output).fields["general.file_type"].contents() == 0  # all f32
    assert main(["export-gguf", str(artifacts["llama-lowrank"]), "--output", str(tmp_path / "no.gguf")]) == 1
    assert "infoprune: " in (error := capsys.readouterr().err) and "compress with ffn=width" in error
    assert not (tmp_path / "no.gguf").exists()
