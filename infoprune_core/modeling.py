"""Loading a source model directory: config, adapter, model class, processor. Never remote code."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import transformers
from safetensors import SafetensorError, safe_open
from torch import nn

from infoprune_core.adapters import ModelAdapter, adapter_for_config
from infoprune_core.errors import SourceError


@dataclass
class LoadedModel:
    model: nn.Module
    adapter: ModelAdapter
    processor: Any  # a processor, image processor or tokenizer, by the adapter's modality
    config: dict[str, Any]
    directory: Path


def read_config(directory: Path) -> dict[str, Any]:
    try:
        config = json.loads((directory / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise SourceError(f"cannot read {directory / 'config.json'}: {error}") from error
    if not isinstance(config, dict) or not isinstance(config.get("model_type"), str):
        raise SourceError(f"{directory / 'config.json'} has no model_type")
    return config


def model_class(config: dict[str, Any]) -> type[transformers.PreTrainedModel]:
    """The transformers class named in `architectures`, checked against the config's model_type."""
    for name in config.get("architectures") or []:
        candidate = getattr(transformers, str(name), None)
        if (
            isinstance(candidate, type)
            and issubclass(candidate, transformers.PreTrainedModel)
            and getattr(candidate.config_class, "model_type", None) == config["model_type"]
        ):
            return candidate
    mapping: Any = transformers.AutoModel._model_mapping
    try:
        config_class = type(transformers.AutoConfig.for_model(config["model_type"]))
        found: type[transformers.PreTrainedModel] = mapping[config_class]
        return found
    except (KeyError, ValueError) as error:
        raise SourceError(f"no transformers class for model_type {config['model_type']!r}") from error


MAX_PARAMETERS_ENV = "INFOPRUNE_MAX_MODEL_PARAMETERS"


def check_model_size(config: dict[str, Any], cls: type[transformers.PreTrainedModel], limit: int | None = None) -> None:
    """Refuse a config that implies an absurd model (hidden_size 1e9, 1e6 layers, ...) before anything is
    allocated: 12 L h^2 + (vocab) h per part, with the class's defaults filled in. Limit from the environment."""
    limit = limit or int(os.environ.get(MAX_PARAMETERS_ENV, 20_000_000_000))
    try:
        parsed = (cls.config_class or transformers.PreTrainedConfig).from_dict(dict(config))
    except Exception as error:
        raise SourceError(f"invalid config.json: {error}") from error
    total = 0
    for part in [parsed, *(getattr(parsed, name, None) for name in getattr(parsed, "sub_configs", {}))]:
        dims = [getattr(part, f, 0) for f in ("hidden_size", "num_hidden_layers", "vocab_size")]
        hidden, layers, vocab = (int(v) if isinstance(v, int) else 0 for v in dims)
        total += 12 * layers * hidden * hidden + vocab * hidden
    if total > limit:
        raise SourceError(f"config.json implies about {total:.3g} parameters, above the limit {limit:.3g}")


def _tied(model: nn.Module, key: str) -> bool:
    """Whether a missing key is a weight tied to another one (e.g. an LM head tied to the embeddings)."""
    tied = getattr(model, "all_tied_weights_keys", None) or getattr(model, "_tied_weights_keys", None) or {}
    return key in tied


def load_processor(directory: Path, adapter: ModelAdapter) -> Any:
    try:
        return adapter.load_processor(directory)
    except (OSError, ValueError, KeyError, TypeError, ImportError, AttributeError) as error:
        raise SourceError(
            f"cannot load the {adapter.modality} processor/tokenizer from {directory.name}: {error}"
        ) from error


def read_weights(directory: Path) -> dict[str, torch.Tensor]:
    """Every tensor of the folder's safetensors files, read into memory.

    Read, not memory-mapped: a mapped checkpoint keeps every page it was read from resident for as
    long as any of its tensors lives, so the weights a cut replaces would never be given back.
    """
    files = sorted(directory.glob("*.safetensors"))
    if not files:
        raise SourceError(f"{directory} holds no .safetensors weights")
    weights: dict[str, torch.Tensor] = {}
    for path in files:
        try:
            with safe_open(str(path), framework="pt", backend="pread") as handle:
                for key in handle.keys():  # noqa: SIM118 (a safetensors handle is not a dict)
                    weights[key] = handle.get_tensor(key)
        except (OSError, SafetensorError) as error:
            raise SourceError(f"cannot read {path.name}: {error}") from error
    return weights


def load_model(directory: Path, device: str = "cpu") -> LoadedModel:
    config = read_config(directory)
    adapter = adapter_for_config(config)
    cls = model_class(config)
    check_model_size(config, cls)
    try:
        config_object = transformers.AutoConfig.from_pretrained(
            directory, local_files_only=True, trust_remote_code=False
        )
        loaded: Any = cls.from_pretrained(
            None,
            config=config_object,
            state_dict=read_weights(directory),
            dtype=torch.float32,
            output_loading_info=True,
        )
        model, info = loaded
    except (OSError, ValueError, RuntimeError) as error:
        raise SourceError(f"cannot load model weights from {directory}: {error}") from error
    missing = [key for key in info["missing_keys"] if not _tied(model, key)]
    if missing:
        raise SourceError(f"the weights in {directory} lack {len(missing)} tensors, e.g. {missing[:3]}")
    adapter.attach(model.eval().to(torch.device(device)))
    return LoadedModel(model, adapter, load_processor(directory, adapter), config, directory)
