"""What the algorithm needs to know about a model family, and nothing more.

An adapter says where attention blocks and FFNs are, how heads and KV groups are laid out,
which part (vision / projector / language) each module belongs to, and how to read a model's
output for distillation. The pruning code only talks to adapters.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import transformers
from torch import nn

from infoprune_core.objectives import READER, logits_or_hidden

Part = Literal["vision", "projector", "language"]
Modality = Literal["text", "vision", "vision_text"]


@dataclass(frozen=True)
class AttentionSite:
    """One multi-head attention block: its projections by module path, and its head layout."""

    name: str  # module path of the attention module
    part: Part
    q: str
    k: str
    v: str
    o: str
    num_heads: int
    num_kv_heads: int
    head_dim: int
    config_head_counts: bool = False  # the module reads its head counts from its config (Phi-3)

    @property
    def group_size(self) -> int:
        return self.num_heads // self.num_kv_heads

    @property
    def fused(self) -> bool:
        """q, k and v are row blocks of one linear (q rows, then k rows, then v rows)."""
        return self.q == self.k == self.v


@dataclass(frozen=True)
class FFNSite:
    """One feed-forward block: linears reading the block input, then the linear writing its output."""

    name: str
    part: Part
    inputs: tuple[str, ...]  # fc1, or gate_proj + up_proj, or a fused gate_up_proj
    output: str  # fc2 / down_proj
    gated: bool
    stacked: int = 1  # how many width-sized row blocks each input linear holds (2 for a fused gate_up)

    @property
    def matrices(self) -> int:
        """Linears of width x hidden the FFN computes (a fused gate_up counts as two)."""
        return len(self.inputs) * self.stacked + 1


@dataclass(frozen=True)
class Block:
    """One layer of a stack: the attention and FFN sites it holds (either may be absent)."""

    name: str  # module path of the layer
    part: Part
    attention: AttentionSite | None
    ffn: FFNSite | None


@dataclass(frozen=True)
class Stack:
    """A list of layers run one after another (a vision tower's encoder, a language model's decoder)."""

    name: str  # module path of the nn.ModuleList
    part: Part
    blocks: tuple[Block, ...]
    masked: bool = False  # its tokens carry a padding mask (text), which statistics respect


class ModelAdapter(ABC):
    """Base of the per-family adapters. Subclasses list the `model_types` they handle.

    Everything specific to a family lives in its adapter: where blocks, heads, KV groups and FFNs
    are (`attention_sites`, `ffn_sites`, `stacks`), which module is the projector, how to check a
    config (`check`), how to load the processor that turns samples into inputs (`load_processor`),
    which text stands for an image in a prompt (`image_placeholder`), how to read the model's output
    (`read_output`), and how to write a stock config for uniform results (`plain_config`).
    """

    model_types: tuple[str, ...] = ()
    modality: Modality = "text"
    images_per_prompt: bool = False  # the processor takes one list of images per prompt
    masked_parts: tuple[Part, ...] = ("language",)  # parts whose tokens carry a padding mask

    @classmethod  # noqa: B027 (most families have nothing to check)
    def check(cls, config: Mapping[str, Any]) -> None:
        """Raise UnsupportedModelError when this family's config holds parts the adapter cannot handle."""

    def load_processor(self, directory: Path) -> Any:
        """The processor, image processor or tokenizer that turns this family's samples into inputs."""
        loaders: dict[str, Any] = {
            "text": transformers.AutoTokenizer,
            "vision": transformers.AutoImageProcessor,
            "vision_text": transformers.AutoProcessor,
        }
        return loaders[self.modality].from_pretrained(directory, local_files_only=True, trust_remote_code=False)

    def image_placeholder(self, processor: Any) -> str | None:
        """The text a prompt's image token becomes (None: the text has no image token)."""
        return getattr(processor, "image_token", None)

    def read_output(self, output: Any) -> tuple[torch.Tensor, bool]:
        """(logits, True) when the model has a head, else (last hidden state, False)."""
        return logits_or_hidden(output)

    def attach(self, model: nn.Module) -> nn.Module:
        """Give a loaded model this family's output reader (what distillation and fidelity compare)."""
        setattr(model, READER, self.read_output)
        return model

    def plain_config(self, config: dict[str, Any], structure: dict[str, Any], layers: int) -> dict[str, Any] | None:
        """The source config rewritten for uniformly compressed shapes, or None (load_compressed only)."""
        return None

    @abstractmethod
    def part_prefixes(self, model: nn.Module) -> dict[str, Part]:
        """Module-path prefixes mapped to the part they belong to ("" matches everything)."""

    @abstractmethod
    def attention_sites(self, model: nn.Module) -> list[AttentionSite]: ...

    @abstractmethod
    def ffn_sites(self, model: nn.Module) -> list[FFNSite]: ...

    def projector(self, model: nn.Module) -> str | None:
        """Module path of the projector between a vision tower and a language model (None: there is none)."""
        return None

    def stacks(self, model: nn.Module) -> list[Stack]:
        """The model's layer stacks in the order a forward pass runs them, each with its blocks.

        A block is the element of an ``nn.ModuleList`` that holds a site; stacks come in the order of
        their first site in `attention_sites` then `ffn_sites` (a VLM lists its vision tower first).
        """
        layers: dict[str, dict[str, Any]] = {}
        sites: list[AttentionSite | FFNSite] = [*self.attention_sites(model), *self.ffn_sites(model)]
        for site in sites:
            name = layer_of(model, site.name)
            entry = layers.setdefault(name, {"part": site.part, "attention": None, "ffn": None})
            entry["attention" if isinstance(site, AttentionSite) else "ffn"] = site
        stacks: dict[str, list[Block]] = {}
        for name, entry in layers.items():
            stacks.setdefault(name.rpartition(".")[0], []).append(Block(name=name, **entry))
        return [
            Stack(
                name=path,
                part=blocks[0].part,
                blocks=tuple(sorted(blocks, key=_layer_index)),
                masked=blocks[0].part in self.masked_parts,
            )
            for path, blocks in stacks.items()
        ]

    def part_of(self, model: nn.Module, module_name: str) -> Part:
        """The part a module belongs to: longest matching prefix wins."""
        best: tuple[int, Part] | None = None
        for prefix, part in self.part_prefixes(model).items():
            if (module_name == prefix or module_name.startswith(prefix + ".") or prefix == "") and (
                best is None or len(prefix) > best[0]
            ):
                best = (len(prefix), part)
        if best is None:
            raise KeyError(f"module {module_name!r} belongs to no known part")
        return best[1]


class StackAdapter(ModelAdapter):
    """An adapter for a model that is one stack of layers, described by the names of its projections.

    Subclasses set `part`, `projections` (q, k, v, o paths relative to the attention module; the same
    name three times for a fused qkv linear) and the FFN's input and output linears (`ffn_stacked` 2
    for a fused gate_up linear); `stack_root` narrows the search (e.g. to a vision encoder);
    `config_head_counts` says the attention module reads its head counts from its config.
    """

    part: Part = "language"
    projections: tuple[str, str, str, str] = ("q_proj", "k_proj", "v_proj", "o_proj")
    ffn_inputs: tuple[str, ...] = ()
    ffn_output: str = ""
    ffn_stacked: int = 1
    config_head_counts: bool = False

    def stack_root(self, model: nn.Module, root: str) -> str:
        return root

    def sites_under(self, model: nn.Module, root: str, part: Part) -> tuple[list[AttentionSite], list[FFNSite]]:
        """Attention and FFN sites of this family found under the module path `root`."""
        stack = self.stack_root(model, root)
        return (
            find_attention_sites(model, stack, part, self.projections, config_head_counts=self.config_head_counts),
            find_ffn_sites(model, stack, part, self.ffn_inputs, self.ffn_output, self.ffn_stacked),
        )

    def part_prefixes(self, model: nn.Module) -> dict[str, Part]:
        return {"": self.part}

    def attention_sites(self, model: nn.Module) -> list[AttentionSite]:
        return self.sites_under(model, "", self.part)[0]

    def ffn_sites(self, model: nn.Module) -> list[FFNSite]:
        return self.sites_under(model, "", self.part)[1]


def layer_of(model: nn.Module, path: str) -> str:
    """The longest prefix of `path` that is an element of an ``nn.ModuleList`` (its layer)."""
    parts = path.split(".")
    for end in range(len(parts), 0, -1):
        parent = ".".join(parts[: end - 1])
        if parts[end - 1].isdigit() and isinstance(model.get_submodule(parent), nn.ModuleList):
            return ".".join(parts[:end])
    raise ValueError(f"{path} is not inside a list of layers")


def _layer_index(block: Block) -> int:
    return int(block.name.rpartition(".")[2])


def iter_named(model: nn.Module, root: str) -> Iterator[tuple[str, nn.Module]]:
    """Named submodules under `root` (a module path, "" for the model), with full paths."""
    base = model.get_submodule(root) if root else model
    for name, module in base.named_modules():
        yield (f"{root}.{name}" if root and name else root or name), module


def find_attention_sites(
    model: nn.Module,
    root: str,
    part: Part,
    projections: tuple[str, str, str, str],
    layout: type[nn.Module] | tuple[type[nn.Module], ...] | None = None,
    config_head_counts: bool = False,
) -> list[AttentionSite]:
    """Find attention modules under `root` by structure: a module owning the four named projections.

    ``projections`` are (q, k, v, o) attribute paths relative to the attention module (q = k = v for a
    fused qkv linear); the head layout is read from the q and k output sizes (fused: from the module's
    ``num_key_value_heads``, else q, k and v are the same size) and the module's ``head_dim``.
    """
    q_name, k_name, v_name, o_name = projections
    sites = []
    for name, module in iter_named(model, root):
        if layout is not None and not isinstance(module, layout):
            continue
        try:
            q, k = module.get_submodule(q_name), module.get_submodule(k_name)
            module.get_submodule(v_name)
            module.get_submodule(o_name)
        except AttributeError:
            continue
        if not isinstance(q, nn.Linear) or not isinstance(k, nn.Linear):
            continue
        holder = module.get_submodule(q_name.rpartition(".")[0]) if "." in q_name else module
        head_dim = int(getattr(holder, "head_dim", 0) or getattr(holder, "attention_head_size", 0))
        if head_dim <= 0:
            raise ValueError(f"cannot read head_dim of attention module {name}")
        num_heads, num_kv = q.out_features // head_dim, k.out_features // head_dim
        if q_name == k_name == v_name:
            num_kv = int(getattr(holder, "num_key_value_heads", 0)) or q.out_features // (3 * head_dim)
            num_heads = q.out_features // head_dim - 2 * num_kv
        sites.append(
            AttentionSite(
                name=name,
                part=part,
                q=f"{name}.{q_name}",
                k=f"{name}.{k_name}",
                v=f"{name}.{v_name}",
                o=f"{name}.{o_name}",
                num_heads=num_heads,
                num_kv_heads=num_kv,
                head_dim=head_dim,
                config_head_counts=config_head_counts,
            )
        )
    return sites


def find_ffn_sites(
    model: nn.Module, root: str, part: Part, inputs: tuple[str, ...], output: str, stacked: int = 1
) -> list[FFNSite]:
    """Find FFN blocks under `root` by structure: a module owning the named input and output linears
    (`stacked` width-sized row blocks per input linear: 2 for a fused gate_up)."""
    sites = []
    for name, module in iter_named(model, root):
        try:
            linears = [module.get_submodule(path) for path in (*inputs, output)]
        except AttributeError:
            continue
        if not all(isinstance(linear, nn.Linear) for linear in linears):
            continue
        sites.append(
            FFNSite(
                name=name,
                part=part,
                inputs=tuple(f"{name}.{path}" for path in inputs),
                output=f"{name}.{output}",
                gated=len(inputs) * stacked > 1,
                stacked=stacked,
            )
        )
    return sites
