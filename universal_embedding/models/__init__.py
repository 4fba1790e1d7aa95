"""The embedding models (ViT, CLIP ViT, UDON) and `ModelSpec`, the value that describes one."""

from universal_embedding.models.spec import ModelSpec

__all__ = ["ModelSpec"]
