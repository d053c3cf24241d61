"""Training stage: the training loop, fine-tuning, LR finder, schedules and TensorBoard logging."""
