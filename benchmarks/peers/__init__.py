"""Peer pruning tools run at the same FLOP budget as InfoPrune, measured with InfoPrune's own counter."""

from __future__ import annotations

from benchmarks.peers.torch_pruning_peer import PeerOutcome, prune_with_torch_pruning

__all__ = ["PeerOutcome", "prune_with_torch_pruning"]
