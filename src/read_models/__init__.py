"""read_models."""
