"""Evaluation stage: segmentation metrics and slice ranking."""
