"""I/O stage: readers and writers of stacks, lazy volumes, frames, dataset layouts, exports."""
