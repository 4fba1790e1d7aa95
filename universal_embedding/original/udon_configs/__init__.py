"""The original UDON code's config files (its `universal_embedding/udon_configs/`), by path."""
