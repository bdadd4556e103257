"""BERT-class text encoders (BERT, RoBERTa-style layouts with attention.self / attention.output)."""

from __future__ import annotations

from infoprune_core.adapters.base import StackAdapter


class BertAdapter(StackAdapter):
    model_types = ("bert", "roberta")
    modality = "text"
    part = "language"
    projections = ("self.query", "self.key", "self.value", "output.dense")
    # The FFN of a BERT layer is the layer itself: intermediate.dense -> output.dense.
    ffn_inputs = ("intermediate.dense",)
    ffn_output = "output.dense"
