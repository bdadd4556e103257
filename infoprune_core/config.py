"""What a compression job asks for: the one validated input of the pipeline."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Part = Literal["vision", "language"]
HeadMethod = Literal[
    "reconstruction", "infoprune", "infoprune_free", "random", "l1", "taylor", "entropy", "ablation", "none"
]
FFNMethod = Literal["auto", "whitened_svd", "svd", "uniform", "width", "none"]

HEAD_METHODS: tuple[str, ...] = HeadMethod.__args__  # type: ignore[attr-defined]
FFN_METHODS: tuple[str, ...] = FFNMethod.__args__  # type: ignore[attr-defined]


class CompressionConfig(BaseModel):
    """Budget, scope and method choices of one compression run.

    Either ``target_flops_ratio`` (fraction of the scope's FLOPs to keep) or the explicit knobs
    ``head_keep_ratio`` / ``ffn_epsilon`` are given, not both.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    target_flops_ratio: float | None = Field(default=None, gt=0.0, le=1.0)
    head_keep_ratio: float | None = Field(default=None, gt=0.0, le=1.0)
    ffn_epsilon: float | None = Field(default=None, ge=0.0, lt=1.0)
    scope: tuple[Part, ...] = ("vision", "language")
    heads: HeadMethod = "reconstruction"  # reconstruction: remove what the re-fit can best do without
    ffn: FFNMethod = "auto"  # auto: width pruning with a re-fit of the output projection
    calibration: str | None = None
    eval_set: str | None = None
    calibration_samples: int = Field(default=128, ge=1, le=100_000)
    # Share of the calibration samples drawn from the shipped broad set when a text model comes with a
    # calibration set of its own: a small, narrow set alone tunes the cut to that text only.
    shipped_share: float = Field(default=0.5, ge=0.0, le=1.0)
    held_out_samples: int = Field(default=16, ge=1, le=10_000)
    batch_size: int = Field(default=8, ge=1, le=1024)
    max_text_tokens: int = Field(default=64, ge=4, le=8192)
    gate_steps: int = Field(default=150, ge=0, le=100_000)
    recovery_steps: int = Field(default=32, ge=0, le=100_000)
    recovery_learning_rate: float = Field(default=1e-4, gt=0.0, le=1.0)
    recovery_hidden_weight: float = Field(default=1.0, ge=0.0, le=1000.0)  # block-output matching term
    recovery_parameters: Literal["all", "projector"] = "all"  # projector: a VLM's projector alone
    validate_scores: bool = False
    shape: Literal["free", "uniform"] = "free"  # uniform: the same heads, KV groups and FFN width in every
    # block of a part, so that the result is a stock config of the original class
    reconstruct: bool = True  # re-fit the output projections after every cut (ridge least squares)
    ridge: float = Field(default=0.1, gt=0.0, le=1000.0)  # re-fit ridge strength, relative to input energy
    relative_tokens: bool = True  # weigh re-fit errors relative to the residual stream of each token
    targets: Literal["compressed", "original"] = "compressed"  # re-fit toward the original block on the
    # compressed model's activations, or toward the original model's own activations
    activation_dtype: Literal["float32", "bfloat16"] = "float32"  # calibration activations between blocks
    latency_batch: int = Field(default=32, ge=1, le=1024)
    latency_repeats: int = Field(default=5, ge=1, le=1000)
    measure_latency: bool = True
    seed: int = Field(default=0, ge=0, le=2**32 - 1)
    threads: int = Field(default=1, ge=1, le=256)
    device: str = "cpu"
    # Keep the weights on the CPU; each block visits `device` only while it is measured and cut (a
    # model larger than the device's memory). Measurements then run on the CPU.
    offload: bool = False

    @model_validator(mode="after")
    def _one_budget(self) -> CompressionConfig:
        explicit = self.head_keep_ratio is not None or self.ffn_epsilon is not None
        if self.target_flops_ratio is not None and explicit:
            raise ValueError("give either target_flops_ratio or head_keep_ratio/ffn_epsilon, not both")
        if self.target_flops_ratio is None and not explicit:
            raise ValueError("a budget is required: target_flops_ratio, or head_keep_ratio and/or ffn_epsilon")
        if not self.scope:
            raise ValueError("scope must name at least one of: vision, language")
        if len(set(self.scope)) != len(self.scope):
            raise ValueError("scope lists a part twice")
        if self.offload and self.recovery_steps > 0:
            raise ValueError("offload keeps the model on the CPU and recovery needs it on the device: recovery_steps=0")
        if self.shape == "uniform" and self.target_flops_ratio is None:
            raise ValueError("shape=uniform needs target_flops_ratio (the explicit knobs describe per-block cuts)")
        if self.shape == "uniform" and self.ffn not in ("auto", "width", "none"):
            raise ValueError("shape=uniform keeps FFNs dense or width-pruned: use ffn=auto, width or none")
        return self
