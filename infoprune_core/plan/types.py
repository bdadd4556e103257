"""The typed plan the stages pass along: what each block keeps, and what that was expected to cost."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class AttentionShape:
    """A grouped-query head layout: KV groups kept and query heads kept in each (MHA: groups of one)."""

    kv_groups: int
    heads_per_group: int

    @property
    def query_heads(self) -> int:
        return self.kv_groups * self.heads_per_group


@dataclass(frozen=True)
class LowRankShape:
    """The rank of each factorised FFN linear, found at one share of (whitened) energy lost."""

    energy_loss: float
    ranks: tuple[tuple[str, int], ...]  # (linear path, rank); linears not listed stay dense


@dataclass(frozen=True)
class PathPoint:
    """One step of a block's removal path: FLOPs removed so far, the re-fit error, the shape reached."""

    flops_removed: float
    error: float
    shape: AttentionShape | int | LowRankShape | UniformShape  # what the point keeps
    core_removed: float = 0.0  # of flops_removed, attention products (QK^T, AV) rather than linears


@dataclass(frozen=True)
class UniformShape:
    """One layout for every block of a stack (None: that half stays as it is)."""

    attention: AttentionShape | None
    ffn_width: int | None


@dataclass(frozen=True)
class BlockPlan:
    """What one block keeps; None leaves that half of the block as it is."""

    name: str
    attention: AttentionShape | None = None
    ffn_width: int | None = None
    ffn_low_rank: LowRankShape | None = None


@dataclass
class CompressionPlan:
    """The budget spread over blocks, with the FLOPs it will remove and the error it expects."""

    blocks: dict[str, BlockPlan] = field(default_factory=dict)
    flops_removed: float = 0.0
    core_removed: float = 0.0  # of flops_removed, attention products
    expected_error: float = 0.0
