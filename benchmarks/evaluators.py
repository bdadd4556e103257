"""How each benchmark target's quality is measured: one function per kind, the same for every method.

Text evaluation uses the Python Language Reference that ships inside CPython (``pydoc_data.topics``,
`reference_paragraphs`): real English prose, and a different source from the stdlib docstrings the
text models calibrate on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from infoprune_core.calibration import Encoder, Sample, batched
from infoprune_core.evaluation import accuracy

Metrics = dict[str, float]


def answer_accuracy(model: nn.Module, encoder: Encoder, samples: Sequence[Sample], batch_size: int) -> Metrics:
    """Exact-match answer accuracy on a VQA evaluation split."""
    return {"accuracy": accuracy(model, encoder, samples, batch_size)}


def sentence_embeddings(model: nn.Module, encoder: Encoder, texts: Sequence[str], batch_size: int) -> torch.Tensor:
    """Mean-pooled, L2-normalised sentence embeddings (how all-MiniLM-L6-v2 is used)."""
    rows = []
    with torch.no_grad():
        for chunk in batched([Sample(text=t) for t in texts], batch_size):
            inputs = {k: v.to(_device(model)) for k, v in encoder.encode(chunk).items()}
            hidden = model(**inputs).last_hidden_state.float()
            mask = inputs["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            rows.append(F.normalize((hidden * mask).sum(1) / mask.sum(1).clamp_min(1), dim=-1).cpu())
    return torch.cat(rows)


def _ranks(values: torch.Tensor) -> torch.Tensor:
    return values.argsort().argsort().double()


def embedding_quality(
    model: nn.Module, reference: torch.Tensor, encoder: Encoder, texts: Sequence[str], batch_size: int
) -> Metrics:
    """Fidelity of sentence embeddings to the original's, and how well the similarity ranking survives.

    ``similarity_spearman``: Spearman correlation between the pairwise cosine similarities of the
    compressed and the original embeddings; ``neighbour_agreement``: how often a sentence's nearest
    neighbour is the same under both.
    """
    embeddings = sentence_embeddings(model, encoder, texts, batch_size)
    upper = torch.triu_indices(len(texts), len(texts), offset=1)
    ours, theirs = embeddings @ embeddings.T, reference @ reference.T
    a, b = _ranks(ours[upper[0], upper[1]]), _ranks(theirs[upper[0], upper[1]])
    spearman = float(torch.corrcoef(torch.stack([a, b]))[0, 1])
    eye = torch.eye(len(texts), dtype=torch.bool)
    same_neighbour = ours.masked_fill(eye, -2).argmax(1) == theirs.masked_fill(eye, -2).argmax(1)
    return {
        "similarity_spearman": spearman,
        "embedding_cosine": float((embeddings * reference).sum(-1).mean()),
        "neighbour_agreement": float(same_neighbour.double().mean()),
    }


def perplexity(model: nn.Module, token_ids: torch.Tensor, batch_size: int) -> Metrics:
    """Token-level perplexity of a causal LM over fixed-length windows of `token_ids` ([windows, length])."""
    total_loss, total_tokens = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(token_ids), batch_size):
            window = token_ids[start : start + batch_size].to(_device(model))
            logits = model(input_ids=window).logits.float()
            loss = F.cross_entropy(logits[:, :-1].flatten(0, 1), window[:, 1:].flatten(), reduction="sum")
            total_loss += float(loss)
            total_tokens += window[:, 1:].numel()
    return {"perplexity": float(torch.tensor(total_loss / total_tokens).exp())}


def perplexity_windows(tokenizer: Any, texts: Sequence[str], windows: int, length: int) -> torch.Tensor:
    """`windows` consecutive windows of `length` tokens from the concatenated texts."""
    ids: list[int] = []
    for text in texts:
        ids.extend(tokenizer(text, add_special_tokens=False)["input_ids"])
        if len(ids) >= windows * length:
            break
    if len(ids) < windows * length:
        raise ValueError(f"the texts hold {len(ids)} tokens, fewer than {windows} x {length}")
    return torch.tensor(ids[: windows * length]).view(windows, length)


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device
