"""Calibration: the samples, how they become model inputs, the statistics, and the sequential walk."""

from infoprune_core.calibration.encoding import Encoder, batched
from infoprune_core.calibration.samples import Sample, default_samples, default_text_samples, read_samples

__all__ = ["Encoder", "Sample", "batched", "default_samples", "default_text_samples", "read_samples"]
