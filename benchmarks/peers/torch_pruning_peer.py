"""Torch-Pruning (DepGraph, ``torch-pruning==1.6.1``) as a peer baseline at InfoPrune's FLOP budget.

Each try prunes a fresh deep copy with Torch-Pruning's own ``MetaPruner``: whole attention heads
(``num_heads``, ``prune_num_heads=True``, ``prune_head_dims=False``, ``head_pruning_ratio``) and the
FFN intermediate channels (``pruning_ratio``), ranked by ``MagnitudeImportance(p=2)`` or
``TaylorImportance()``, local (per-layer) ranking as in Torch-Pruning's ``examples/LLMs/prune_llm.py``.
Everything outside the scope, embeddings, output heads, poolers, projectors and the output projections
(o_proj / fc2 / down_proj, whose output is the hidden size) are ``ignored_layers``, so the hidden
size is kept, as InfoPrune keeps it. The pruning ratio is searched (interpolation safeguarded by
bisection, at most 8 tries) until the scope's FLOPs, counted by ``infoprune_core.plan.flops.count_flops``
on ``flop_input`` exactly as InfoPrune counts them, are within ``tolerance`` of the target.

Taylor importance needs gradients: for generative models (causal LMs, LLaVA) the next-token loss on
the calibration batches' ``input_ids`` (padding and image tokens masked); for encoders (BERT, vision
towers), which have no loss of their own, the mean squared last hidden state over valid tokens (a
distillation-free proxy: |w * dE/dw| for the output energy E). Gradients are summed over all batches.

Limits of Torch-Pruning 1.6.1 worked around here (the ratios used are in ``details``):

* Its dependency graph loops forever on rotary position embeddings (the rotate-half cat/slice couples
  indices without a fixed point; upstream issue VainF/Torch-Pruning#527). Heads are pruned whole and
  head dims are not pruned, so the rotary maps (which act within a head) do not change the grouping:
  the graph is traced with the attention module's ``apply_rotary_pos_emb`` replaced by the identity,
  restored before importance, pruning and every forward.
* GQA: it prunes the same number of query heads inside every KV group and keeps the KV heads (so
  ``num_key_value_groups`` stays consistent); but when that would leave one query head per KV head its
  post-update check sees equal head counts, maps query indices onto k/v and silently skips the layer.
  The head ratio is therefore capped at (g - 2) / g for a group size g (1/3 for 9 q / 3 kv heads), and
  for MHA at (H - 1) / H. After pruning, head counts are checked against what was asked.
* Under transformers' SDPA path with ``enable_gqa`` there is no explicit ``repeat_kv`` expand, and
  Torch-Pruning then maps query channels one to one onto the fewer key/value channels (its grouped
  importance fails with "shape '[6, -1]' is invalid"): the trace keeps SDPA on ``repeat_kv``.
* It prunes heads of a layer only when that layer's channel count to prune is positive, so the
  (channel) ``pruning_ratio`` is never 0 when heads are to go.
* Its global-ranking GQA branch offsets head indices by the KV head count instead of the group size,
  hence local ranking (as its own LLM example uses).

When the single ratio (heads and channels tied, as in Torch-Pruning's LLM example) jumps over the
tolerance window at a head-count step, the head ratio is held at the step below and the channel ratio
alone is searched further (``details["phase"] == "channels"``); ``pruning_ratio`` is the channel ratio
and ``details["head_pruning_ratio"]`` the head ratio.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import math
import sys
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from infoprune_core.adapters.base import AttentionSite, FFNSite, ModelAdapter
from infoprune_core.plan.flops import PARTS, count_flops
from infoprune_core.surgery import get_linear

Importance = Literal["magnitude", "taylor"]
TORCH_PRUNING_VERSION = "1.6.1"
MAX_TRIES = 8
MAX_RATIO = 0.95
Batch = Mapping[str, Tensor]


@dataclass
class PeerOutcome:
    model: nn.Module | None  # the pruned copy (closest try when unreachable), None on failure
    achieved_scope_flops_ratio: float | None  # scope FLOPs after / before, InfoPrune's counter
    pruning_ratio: float | None  # Torch-Pruning's (channel) pruning_ratio of that model
    status: str  # "ok" | "failed" | "unreachable"
    reason: str | None
    seconds: float
    details: dict[str, Any] = field(default_factory=dict)  # tries, head ratio, structure, workarounds


@dataclass
class _Try:
    ratio: float
    head_ratio: float
    achieved: float
    model: nn.Module

    def record(self) -> dict[str, Any]:
        return {"ratio": self.ratio, "head_ratio": self.head_ratio, "achieved": self.achieved}


class PeerFailure(RuntimeError):
    """Torch-Pruning raised, did not do what it was asked, or the pruned model does not run."""


def prune_with_torch_pruning(
    model: nn.Module,
    adapter: ModelAdapter,
    scope: Sequence[str],
    calibration_batches: Sequence[Batch],
    flop_input: Batch,
    importance: Importance,
    target_flops_ratio: float,
    tolerance: float = 0.02,
) -> PeerOutcome:
    """Prune a copy of `model` with Torch-Pruning to `target_flops_ratio` of the scope's FLOPs."""
    started = time.perf_counter()
    details: dict[str, Any] = {"torch_pruning": _torch_pruning_version(), "importance": importance}
    if details["torch_pruning"] != TORCH_PRUNING_VERSION:
        details["version_note"] = f"written and checked against torch-pruning {TORCH_PRUNING_VERSION}"

    def outcome(status: str, reason: str | None, best: _Try | None) -> PeerOutcome:
        if best is not None:
            details.update(_describe(best.model, model, adapter, scope))
            details["head_pruning_ratio"] = best.head_ratio
        return PeerOutcome(
            model=best.model if best is not None else None,
            achieved_scope_flops_ratio=best.achieved if best is not None else None,
            pruning_ratio=best.ratio if best is not None else None,
            status=status,
            reason=reason,
            seconds=time.perf_counter() - started,
            details=details,
        )

    try:
        unknown = [part for part in scope if part not in PARTS]
        if unknown or not scope:
            raise PeerFailure(f"scope must be a non-empty subset of {PARTS}, got {list(scope)}")
        if importance not in ("magnitude", "taylor"):
            raise PeerFailure(f"importance must be 'magnitude' or 'taylor', got {importance!r}")
        if importance == "taylor" and not calibration_batches:
            raise PeerFailure("Taylor importance needs calibration batches")
        attention = [s for s in adapter.attention_sites(model) if s.part in scope]
        ffns = [s for s in adapter.ffn_sites(model) if s.part in scope]
        if not attention and not ffns:
            raise PeerFailure(f"scope {', '.join(scope)} holds no attention or FFN block")
        reference = _run(model, flop_input)
        before = _scope_flops(model, adapter, scope, flop_input)
        details["scope_flops_before"] = before
        details["head_ratio_cap"] = {
            part: min(_head_cap(site) for site in attention if site.part == part)
            for part in sorted({site.part for site in attention})
        }
        ffn_widths = [get_linear(model, s.inputs[0]).out_features for s in ffns]
        ratio_cap = min([MAX_RATIO, *(1.0 - 1.0 / w for w in ffn_widths)])
        details["tries"] = tries = []
    except Exception as error:  # the benchmark reports any failure as it is
        return outcome("failed", _text(error), None)

    def attempt(ratio: float, head_ratio: float) -> _Try:
        pruned = _prune_copy(model, adapter, scope, calibration_batches, flop_input, importance, ratio, head_ratio)
        output = _run(pruned, flop_input)
        if output.shape != reference.shape or not bool(torch.isfinite(output).all()):
            raise PeerFailure(
                f"pruned model output {tuple(output.shape)} (finite: {bool(torch.isfinite(output).all())})"
            )
        achieved = _scope_flops(pruned, adapter, scope, flop_input) / before
        result = _Try(ratio, head_ratio, achieved, pruned)
        tries.append(result.record())
        return result

    if abs(1.0 - target_flops_ratio) <= tolerance:
        unpruned = _Try(0.0, 0.0, 1.0, copy.deepcopy(model))
        return outcome("ok", None, unpruned)

    def heads_at(head_ratio: float) -> tuple[int, ...]:
        return tuple(_expected_heads(site, min(head_ratio, _head_cap(site))) for site in attention)

    try:
        best = _search(attempt, heads_at, target_flops_ratio, tolerance, ratio_cap, details)
    except Exception as error:  # the benchmark reports any failure as it is
        return outcome("failed", _text(error), None)
    if abs(best.achieved - target_flops_ratio) <= tolerance:
        return outcome("ok", None, best)
    reason = (
        f"closest reachable scope FLOPs ratio is {best.achieved:.3f} (pruning_ratio {best.ratio:.3f}, "
        f"head ratio {best.head_ratio:.3f}) for target {target_flops_ratio:.3f} ± {tolerance:.3f}"
    )
    return outcome("unreachable", reason, best)


def _search(
    attempt: Any,
    heads_at: Any,
    target: float,
    tolerance: float,
    ratio_cap: float,
    details: dict[str, Any],
) -> _Try:
    """Find a ratio whose scope FLOPs ratio is within tolerance of the target; the closest try otherwise.

    FLOPs fall monotonically with the ratio, continuously in the FFN channels and in steps where the
    head count changes (Torch-Pruning's arithmetic, `heads_at`, tells where without pruning). `lo` is
    the most-pruned point above the window (first the unpruned model: ratio 0, FLOPs 1), `hi` the
    least-pruned try below it; the next ratio interpolates between them, with bisection as a safeguard,
    and stays on `lo`'s head plateau while `hi` has other heads. A step that jumps over the window
    switches to holding `lo`'s heads and pruning channels only.
    """
    details["phase"] = "tied"
    lo = _Point(0.0, 0.0, 1.0, heads_at(0.0))
    previous: _Point | None = None  # the lo before lo, on the same head plateau: its slope extrapolates
    hi: _Point | None = None
    best: _Try | None = None
    fixed: float | None = None  # the held head ratio once in the channels-only phase
    for _ in range(MAX_TRIES):
        if (hi is not None and hi.ratio - lo.ratio < 1e-4) or (hi is None and lo.ratio >= ratio_cap):
            break  # the bracket collapsed, or the ratio cap is reached
        ratio = _next_ratio(lo, previous, hi, target, ratio_cap)
        jump_probe = False
        if fixed is None and hi is not None and hi.heads != lo.heads:
            end = _plateau_end(heads_at, lo.ratio, hi.ratio)
            if end - lo.ratio > 1e-4:
                ratio = min(ratio, end)
            else:  # lo is at its plateau's end: look just past the step
                ratio, jump_probe = min(end + 1e-4, (end + hi.ratio) / 2), True
        head_ratio = ratio if fixed is None else fixed  # capped per site when pruning
        result = attempt(ratio, head_ratio)
        if best is None or abs(result.achieved - target) < abs(best.achieved - target):
            best = result
        if abs(result.achieved - target) <= tolerance / 4:
            return result  # close enough; otherwise keep refining while tries remain
        point = _Point(ratio, head_ratio, result.achieved, heads_at(head_ratio))
        if result.achieved > target:
            previous = lo if lo.heads == point.heads and lo.ratio > 0 else None
            lo = point
        elif jump_probe and result.achieved < target - tolerance:
            # The head step jumps over the window: hold lo's heads and prune channels further.
            fixed, hi = lo.head_ratio, None
            details["phase"] = "channels"
        else:
            hi = point
    if best is None:
        raise PeerFailure(f"no pruning ratio below the cap {ratio_cap:.3f} to try")
    return best


@dataclass(frozen=True)
class _Point:
    ratio: float
    head_ratio: float
    achieved: float
    heads: tuple[int, ...]


def _plateau_end(heads: Any, lo: float, hi: float) -> float:
    """The largest ratio in [lo, hi) with the head counts of `lo` (heads(ratio) is a monotone step function)."""
    base = heads(lo)
    for _ in range(40):
        middle = (lo + hi) / 2
        if heads(middle) == base:
            lo = middle
        else:
            hi = middle
    return lo


def _next_ratio(lo: _Point, previous: _Point | None, hi: _Point | None, target: float, cap: float) -> float:
    if hi is None:  # extrapolate: along lo's plateau when two points are on it, else from the unpruned model
        if previous is not None and previous.achieved > lo.achieved:
            slope = (previous.achieved - lo.achieved) / (lo.ratio - previous.ratio)
        elif lo.ratio > 0 and lo.achieved < 1.0:
            slope = (1.0 - lo.achieved) / lo.ratio
        else:
            slope = 1.0
        guess = lo.ratio + (lo.achieved - target) / slope
        return min(max(guess, lo.ratio + 1e-3), cap)
    width = hi.ratio - lo.ratio
    guess = lo.ratio + (lo.achieved - target) * width / max(lo.achieved - hi.achieved, 1e-12)
    if not lo.ratio + 0.05 * width <= guess <= hi.ratio - 0.05 * width:
        guess = lo.ratio + width / 2
    return guess


def _head_cap(site: AttentionSite) -> float:
    """The largest head ratio Torch-Pruning 1.6.1 carries out on this site (see the module docstring)."""
    if site.num_kv_heads < site.num_heads:
        group = site.num_heads // site.num_kv_heads
        return max(group - 2, 0) / group * (1 - 1e-6)
    return (site.num_heads - 1) / site.num_heads * (1 - 1e-6)


def _expected_heads(site: AttentionSite, head_ratio: float) -> int:
    """Query heads Torch-Pruning 1.6.1 leaves with local ranking at `head_ratio` (its own arithmetic)."""
    if head_ratio <= 0:
        return site.num_heads
    removed = math.ceil(head_ratio * site.num_heads)
    if site.num_kv_heads < site.num_heads:
        removed = math.ceil(removed / site.num_kv_heads) * site.num_kv_heads
    return site.num_heads - removed


def _prune_copy(
    model: nn.Module,
    adapter: ModelAdapter,
    scope: Sequence[str],
    batches: Sequence[Batch],
    flop_input: Batch,
    importance: Importance,
    ratio: float,
    head_ratio: float,
) -> nn.Module:
    import torch_pruning as tp

    pruned = copy.deepcopy(model)
    all_attention = adapter.attention_sites(pruned)
    attention = [s for s in all_attention if s.part in scope]
    ffns: list[FFNSite] = [s for s in adapter.ffn_sites(pruned) if s.part in scope]
    num_heads: dict[nn.Module, int] = {}
    head_ratios: dict[nn.Module, float] = {}
    roots: set[nn.Module] = set()
    for site in attention:
        site_ratio = min(head_ratio, _head_cap(site))
        for path, heads in ((site.q, site.num_heads), (site.k, site.num_kv_heads), (site.v, site.num_kv_heads)):
            module = pruned.get_submodule(path)
            num_heads[module] = heads
            head_ratios[module] = site_ratio
            roots.add(module)
    for ffn in ffns:
        roots.update(pruned.get_submodule(path) for path in ffn.inputs)
    # Every module owning parameters that is not a q/k/v or FFN input of the scope: out-of-scope parts,
    # embeddings, norms, heads, projectors and the output projections (so the hidden size stays).
    ignored = [m for m in pruned.modules() if m not in roots and next(m.parameters(recurse=False), None) is not None]
    scorer = tp.importance.TaylorImportance() if importance == "taylor" else tp.importance.MagnitudeImportance(p=2)
    try:
        with _tracing_patches(pruned, all_attention), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # unwrapped norm weights: they sit in ignored hidden-size groups
            pruner = tp.pruner.MetaPruner(
                pruned,
                example_inputs=dict(flop_input),
                importance=scorer,
                global_pruning=False,
                pruning_ratio=ratio,
                ignored_layers=ignored,
                num_heads=num_heads,
                prune_num_heads=True,
                prune_head_dims=False,
                head_pruning_ratio=head_ratio,
                head_pruning_ratio_dict=head_ratios,
                in_channel_groups={},  # fresh dicts: Torch-Pruning mutates its shared defaults
                out_channel_groups={},
                forward_fn=_trace_forward(pruned),
            )
        if importance == "taylor":
            _accumulate_gradients(pruned, batches)
        pruner.step()
    except PeerFailure:
        raise
    except Exception as error:
        raise PeerFailure(f"Torch-Pruning raised {_text(error)}") from error
    finally:
        for parameter in pruned.parameters():
            parameter.grad = None
    _fix_attributes(pruned, adapter, scope)
    for site in attention:
        expected, got = _expected_heads(site, min(head_ratio, _head_cap(site))), _heads_of(pruned, site)
        if got != expected:
            raise PeerFailure(f"Torch-Pruning left {got} heads in {site.name}, asked for {expected}")
    return pruned


@contextlib.contextmanager
def _tracing_patches(model: nn.Module, sites: Sequence[AttentionSite]) -> Iterator[None]:
    """Patches in force only while Torch-Pruning traces the graph, restored afterwards.

    The attention modules' ``apply_rotary_pos_emb`` becomes the identity (see the module docstring), and
    transformers' SDPA path is kept off ``enable_gqa`` so that GQA keys and values go through
    ``repeat_kv``: without the explicit expand, Torch-Pruning maps query channels one to one onto the
    (fewer) key/value channels and its grouped importance fails with a shape error.
    """
    patches: list[tuple[str, str, Any]] = [
        (name, "apply_rotary_pos_emb", _no_rotary)
        for name in {type(model.get_submodule(s.name)).__module__ for s in sites}
    ]
    patches.append(("transformers.integrations.sdpa_attention", "use_gqa_in_sdpa", _no_sdpa_gqa))
    saved = []
    for module_name, attribute, replacement in patches:
        source = sys.modules.get(module_name)
        if source is not None and callable(getattr(source, attribute, None)):
            saved.append((source, attribute, getattr(source, attribute)))
            setattr(source, attribute, replacement)
    try:
        yield
    finally:
        for source, attribute, original in saved:
            setattr(source, attribute, original)


def _no_sdpa_gqa(*args: Any, **kwargs: Any) -> bool:
    return False


def _no_rotary(q: Tensor, k: Tensor, *args: Any, **kwargs: Any) -> tuple[Tensor, Tensor]:
    return q, k


def _call(model: nn.Module, batch: Batch) -> Any:
    if "use_cache" in inspect.signature(model.forward).parameters or _is_generative(model):
        return model(**batch, use_cache=False)
    return model(**batch)


def _main_output(output: Any) -> Tensor:
    logits = getattr(output, "logits", None)
    return logits if logits is not None else output.last_hidden_state


def _trace_forward(model: nn.Module) -> Any:
    def forward(module: nn.Module, inputs: Batch) -> Tensor:
        return _main_output(_call(module, inputs))

    return forward


def _run(model: nn.Module, batch: Batch) -> Tensor:
    try:
        with torch.no_grad():
            return _main_output(_call(model, batch))
    except Exception as error:
        raise PeerFailure(f"the model does not run: {_text(error)}") from error


def _is_generative(model: nn.Module) -> bool:
    can_generate = getattr(model, "can_generate", None)
    return bool(can_generate()) if callable(can_generate) else False


def _accumulate_gradients(model: nn.Module, batches: Sequence[Batch]) -> None:
    """Sum the Taylor loss's gradients over the calibration batches (see the module docstring)."""
    generative = _is_generative(model)
    image_token = getattr(model.config, "image_token_id", getattr(model.config, "image_token_index", None))
    model.zero_grad(set_to_none=True)
    frozen = [parameter for parameter in model.parameters() if not parameter.requires_grad]
    for parameter in frozen:
        parameter.requires_grad_(True)
    try:
        _backward(model, batches, generative, image_token)
    finally:
        for parameter in frozen:
            parameter.requires_grad_(False)


def _backward(model: nn.Module, batches: Sequence[Batch], generative: bool, image_token: int | None) -> None:
    with torch.enable_grad():
        for batch in batches:
            output = _call(model, batch)
            mask = batch.get("attention_mask")
            ids = batch.get("input_ids")
            logits = getattr(output, "logits", None)
            if generative and logits is not None and ids is not None:
                labels = ids.clone()
                if mask is not None:
                    labels[mask == 0] = -100
                if image_token is not None:
                    labels[ids == image_token] = -100
                loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=-100)
            else:
                hidden = _main_output(output).float()
                weights = torch.ones(hidden.shape[:-1], device=hidden.device)
                if mask is not None and mask.shape == hidden.shape[:-1]:
                    weights = mask.to(hidden.dtype)
                loss = (hidden.pow(2).mean(-1) * weights).sum() / weights.sum().clamp_min(1)
            (loss / len(batches)).backward()


def _heads_of(model: nn.Module, site: AttentionSite) -> int:
    return get_linear(model, site.q).out_features // site.head_dim


def _fix_attributes(model: nn.Module, adapter: ModelAdapter, scope: Sequence[str]) -> None:
    """Set head counts and FFN widths the HF modules keep as attributes (as Torch-Pruning's LLM example does).

    transformers 5 forwards reshape with ``view(..., -1, head_dim)``; GQA needs ``num_key_value_groups``.
    The hidden size is not pruned, so configs stay as they are; the structure is in the outcome's details.
    """
    for site in adapter.attention_sites(model):
        if site.part not in scope:
            continue
        q, k = get_linear(model, site.q), get_linear(model, site.k)
        if q.out_features % site.head_dim or k.out_features % site.head_dim:
            raise PeerFailure(f"{site.name}: head dims were pruned ({q.out_features}, {k.out_features})")
        heads, kv_heads = q.out_features // site.head_dim, k.out_features // site.head_dim
        if kv_heads == 0 or heads % kv_heads:
            raise PeerFailure(f"{site.name}: {heads} query heads do not form groups over {kv_heads} KV heads")
        holder = model.get_submodule(site.q.rpartition(".")[0])
        values = {
            "num_heads": heads,
            "num_attention_heads": heads,
            "all_head_size": q.out_features,
            "num_key_value_heads": kv_heads,
            "num_key_value_groups": heads // kv_heads,
        }
        for name, value in values.items():
            if isinstance(getattr(holder, name, None), int):
                setattr(holder, name, value)
    for ffn in adapter.ffn_sites(model):
        block: Any = model.get_submodule(ffn.name)
        if ffn.part in scope and isinstance(getattr(block, "intermediate_size", None), int):
            block.intermediate_size = get_linear(model, ffn.inputs[0]).out_features


def _scope_flops(model: nn.Module, adapter: ModelAdapter, scope: Sequence[str], flop_input: Batch) -> float:
    try:
        by_part = count_flops(model, adapter.attention_sites(model), flop_input).by_part(adapter, model)
    except Exception as error:
        raise PeerFailure(f"FLOP count failed (the model does not run): {_text(error)}") from error
    return sum(by_part[part] for part in scope)


def _describe(pruned: nn.Module, original: nn.Module, adapter: ModelAdapter, scope: Sequence[str]) -> dict[str, Any]:
    return {
        "heads": {s.name: s.num_heads for s in adapter.attention_sites(pruned) if s.part in scope},
        "kv_heads": {s.name: s.num_kv_heads for s in adapter.attention_sites(pruned) if s.part in scope},
        "ffn_width": {
            s.name: get_linear(pruned, s.inputs[0]).out_features for s in adapter.ffn_sites(pruned) if s.part in scope
        },
        "params_before": sum(p.numel() for p in original.parameters()),
        "params_after": sum(p.numel() for p in pruned.parameters()),
    }


def _torch_pruning_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("torch-pruning")
    except PackageNotFoundError:
        return "not installed"


def _text(error: BaseException) -> str:
    return str(error) if isinstance(error, PeerFailure) else f"{type(error).__name__}: {error}"
