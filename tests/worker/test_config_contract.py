"""One job contract: what the API publishes as ``CompressionOptions`` (fields, choices, bounds,
defaults in the served OpenAPI document) is exactly what the worker applies (``CompressionConfig``,
built by the worker's own ``job_config``)."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

import pytest

from api import build_context, create_app
from infoprune_client.schemas import JSON_INTEGERS, PATH_FIELDS, SERVICE_FIELDS, CompressionOptions
from infoprune_core.config import CompressionConfig
from infoprune_jobs.settings import Settings
from worker.runner import job_config

_BOUNDS = {"gt": "exclusiveMinimum", "ge": "minimum", "lt": "exclusiveMaximum", "le": "maximum"}


@pytest.fixture
def published(service_env: Path) -> dict[str, Any]:
    spec = create_app(build_context(Settings())).openapi()
    schema: dict[str, Any] = spec["components"]["schemas"]["CompressionOptions"]
    assert schema["additionalProperties"] is False
    return schema["properties"]  # type: ignore[no-any-return]


def _flat(prop: dict[str, Any]) -> dict[str, Any]:
    """Constraints of a property, merging the branches of an optional (anyOf [X, null])."""
    out = {k: v for k, v in prop.items() if k not in ("anyOf", "title", "description")}
    for branch in prop.get("anyOf", []):
        out.update({k: v for k, v in branch.items() if k != "type" or v != "null"})
    if "items" in out:
        out["enum"] = out["items"].get("enum")
    return out


def _core_bounds(name: str) -> dict[str, Any]:
    """The core's bounds of a field; the wire's I-JSON range for an integer the core leaves unbounded."""
    field = CompressionConfig.model_fields[name]
    metadata = field.metadata or (JSON_INTEGERS if field.annotation is int else ())
    return {_BOUNDS[attr]: getattr(m, attr) for m in metadata for attr in _BOUNDS if getattr(m, attr, None) is not None}


def _choices(annotation: Any) -> set[Any]:
    found = set(typing.get_args(annotation)) if typing.get_origin(annotation) is typing.Literal else set()
    for arg in typing.get_args(annotation):
        found |= _choices(arg)
    return found


def test_published_fields_bounds_and_defaults_are_the_cores(published: dict[str, Any]) -> None:
    assert set(published) == set(CompressionConfig.model_fields) - SERVICE_FIELDS
    for name, prop in published.items():
        core, flat = CompressionConfig.model_fields[name], _flat(prop)
        default = list(core.default) if isinstance(core.default, tuple) else core.default
        assert prop.get("default") == default, name  # FastAPI leaves out "default": null
        assert {k: flat[k] for k in _BOUNDS.values() if k in flat} == _core_bounds(name), name
        assert set(flat.get("enum") or ()) == _choices(core.annotation), name


def test_the_worker_applies_what_is_published(published: dict[str, Any], service_env: Path) -> None:
    settings = Settings(torch_threads=2)
    applied = job_config({"target_flops_ratio": 0.5}, settings, "cpu").model_dump(mode="json")
    assert applied.pop("device") == "cpu" and applied.pop("threads") == 2
    for name, value in applied.items():
        if name != "target_flops_ratio":
            assert value == published[name].get("default"), name


def test_options_take_the_cores_rules_and_refuse_the_services_fields() -> None:
    for body in (
        {"target_flops_ratio": 0.3},
        {"head_keep_ratio": 0.5, "ffn_epsilon": 0.1, "scope": ["vision"]},
        {"target_flops_ratio": 1.0, "heads": "l1", "ffn": "width", "seed": 3},
    ):
        options = CompressionOptions.model_validate(body).model_dump(mode="json", exclude_unset=True)
        assert options == body
        CompressionConfig(**options)
    for bad in (
        {},  # no budget
        {"target_flops_ratio": 0.5, "head_keep_ratio": 0.5},
        {"target_flops_ratio": 0.5, "scope": []},
        {"target_flops_ratio": 0.5, "device": "cuda"},
        {"target_flops_ratio": 0.5, "threads": 64},
        {"target_flops_ratio": "0.5"},  # strict: no strings for numbers
        {"target_flops_ratio": 0.5, "calibration": ""},
    ):
        with pytest.raises(ValueError):
            CompressionOptions.model_validate(bad)
    assert set(CompressionConfig.model_fields) >= PATH_FIELDS
