"""BERT-class text encoders (BERT, RoBERTa-style layouts with attention.self / attention.output)."""

from __future__ import annotations

from torch import nn

from infoprune_core.adapters.base import (
    AttentionSite,
    FFNSite,
    ModelAdapter,
    Part,
    find_attention_sites,
    find_ffn_sites,
)

BERT_PROJECTIONS = ("self.query", "self.key", "self.value", "output.dense")


class BertAdapter(ModelAdapter):
    model_types = ("bert", "roberta")
    modality = "text"

    def part_prefixes(self, model: nn.Module) -> dict[str, Part]:
        return {"": "language"}

    def attention_sites(self, model: nn.Module) -> list[AttentionSite]:
        return find_attention_sites(model, "", "language", BERT_PROJECTIONS)

    def ffn_sites(self, model: nn.Module) -> list[FFNSite]:
        # The FFN of a BERT layer is the layer itself: intermediate.dense -> output.dense.
        return find_ffn_sites(model, "", "language", ("intermediate.dense",), "output.dense")
