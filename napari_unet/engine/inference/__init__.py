"""Inference stage: tiling, in-memory, blockwise and distributed prediction, post-processing."""
