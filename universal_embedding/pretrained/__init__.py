"""Pretrained backbone weights: AugReg .npz, OpenAI CLIP .npy/.pt/.bin, Hugging Face safetensors
(the loader is in load.py)."""

from universal_embedding.pretrained.common import CheckpointError
from universal_embedding.pretrained.load import detect_format, load_pretrained

__all__ = ["CheckpointError", "load_pretrained", "detect_format"]
