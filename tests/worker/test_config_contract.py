"""The API's CompressionOptions mirror infoprune_core.CompressionConfig (the API may not import the
core: it pulls in torch). This test catches any drift in fields, choices and ranges."""

from __future__ import annotations

import typing
from typing import Any

from api.schemas import CompressionOptions
from infoprune_core import CompressionConfig

SERVICE_CONTROLLED = {"device", "threads"}


def _literals(annotation: Any) -> set[Any]:
    found: set[Any] = set()
    for arg in typing.get_args(annotation) or ():
        found |= _literals(arg)
    if typing.get_origin(annotation) is typing.Literal:
        found |= set(typing.get_args(annotation))
    return found


def _bounds(field: Any) -> dict[str, Any]:
    out = {}
    for meta in field.metadata:
        for name in ("gt", "ge", "lt", "le"):
            if getattr(meta, name, None) is not None:
                out[name] = getattr(meta, name)
    return out


def test_fields_choices_and_ranges_match_the_core() -> None:
    api, core = CompressionOptions.model_fields, CompressionConfig.model_fields
    assert set(core) - set(api) == SERVICE_CONTROLLED
    assert set(api) <= set(core)
    for name, field in api.items():
        assert _literals(field.annotation) == _literals(core[name].annotation), name
        core_bounds, api_bounds = _bounds(core[name]), _bounds(field)
        for key, value in core_bounds.items():  # the API may add bounds, never loosen the core's
            assert api_bounds.get(key) == value, (name, key, api_bounds, core_bounds)


def test_every_api_config_is_a_valid_core_config() -> None:
    for body in (
        {"target_flops_ratio": 0.3},
        {"head_keep_ratio": 0.5, "ffn_epsilon": 0.1, "scope": ["vision"]},
        {"target_flops_ratio": 1.0, "heads": "l1", "ffn": "width", "seed": 3},
    ):
        options = CompressionOptions.model_validate(body).model_dump(mode="json", exclude_unset=True)
        CompressionConfig(**options, device="cpu", threads=1)
