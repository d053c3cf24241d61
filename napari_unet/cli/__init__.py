"""Command-line interface: one module per command over the engine's public functions."""
