"""SigLIP / SigLIP 2 weights through our loader against transformers, at a real size.

    .venv/bin/python benchmarks/siglip_reference.py [--variant B/16] [--res 224] [--batch 2]

Builds transformers' `SiglipVisionModel` and `Siglip2VisionModel` of that size with random
weights (LayerNorm scales around 1), saves them as Hugging Face safetensors, loads each with
`load_pretrained` into `siglip_vit_with_embedding` and prints the max abs difference of the
L2-normalised `backbone_out` to transformers' pooled output on random images. The SigLIP file is
also written in big_vision's `.npz` layout (params/img/, blocks stacked by layer, a text tower
beside it) and read back: its difference to the Hugging Face path is printed too. Finally the
exact (erf) GELU (`model.gelu_approximate=False`, timm's SigLIP default) against the tanh
reference shows how far that choice moves the embedding.
"""

from __future__ import annotations

import argparse
import os
import tempfile

import jax
import numpy as np
import torch
import transformers

from universal_embedding import settings
from universal_embedding.configs.base import get_config
from universal_embedding.models import embedding_model as em
from universal_embedding.pretrained import load_pretrained
from universal_embedding.pretrained.common import flatten

FAMILY = "siglip_vit_with_embedding"
_BIG_VISION = {
    "LayerNorm_2": "LayerNorm_1",
    "MultiHeadDotProductAttention_1": "MultiHeadDotProductAttention_0",
    "MlpBlock_3": "MlpBlock_0",
}


def randomise(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.02)
            if "norm" in name and name.endswith("weight"):
                p.add_(1.0)
    return model.eval()


def normalised(x: torch.Tensor) -> np.ndarray:
    x = x.detach().numpy()
    return x / np.linalg.norm(x, axis=1, keepdims=True)


class Ours:
    def __init__(self, variant: str, res: int, gelu_approximate: bool = True):
        c = get_config()
        c.model_class, c.model_type, c.image_size = FAMILY, variant, res
        c.model.gelu_approximate = gelu_approximate
        self.spec = settings.model_spec(c)
        model = em.build_model(self.spec, None)
        shapes = jax.eval_shape(
            lambda: model.init(jax.random.key(0), np.zeros((1, res, res, 3), np.float32))
        )["params"]
        self.params = jax.tree_util.tree_map(lambda s: np.zeros(s.shape, s.dtype), shapes)
        self.apply = jax.jit(lambda p, x: model.apply({"params": p}, x)["backbone_out"])

    def embed(self, path: str, images: np.ndarray) -> tuple[np.ndarray, dict]:
        params = load_pretrained(self.params, path, self.spec)
        return np.asarray(self.apply(params, images)), params


def write_big_vision(backbone: dict, path: str) -> None:
    """Our backbone tree in big_vision's released layout (params/img/, scanned blocks)."""
    out, blocks = {}, {}
    for name, value in flatten(backbone).items():
        parts = name.split("/")
        if name.startswith("Transformer/encoderblock_"):
            rest = "/".join([_BIG_VISION.get(parts[2], parts[2]), *parts[3:]])
            blocks.setdefault(rest, []).append((int(parts[1].split("_")[1]), np.asarray(value)))
        else:
            out[f"params/img/{name}"] = np.asarray(value)
    for rest, layers in blocks.items():
        out[f"params/img/Transformer/encoderblock/{rest}"] = np.stack(
            [v for _, v in sorted(layers)]
        )
    out["params/txt/Embed_0/embedding"] = np.zeros((8, 4), np.float32)
    out["params/t"] = out["params/b"] = np.zeros(1, np.float32)
    np.savez(path, **out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--variant", default="B/16")
    parser.add_argument("--res", type=int, default=224)
    parser.add_argument("--batch", type=int, default=2)
    args = parser.parse_args()
    hidden, heads, mlp, layers = em.VARIANTS[args.variant.split("/")[0]]
    patch = int(args.variant.split("/")[1])
    sizes = dict(
        hidden_size=hidden,
        intermediate_size=mlp,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        patch_size=patch,
    )
    grid = args.res // patch
    images = np.random.default_rng(0).uniform(-1, 1, (args.batch, args.res, args.res, 3))
    images = images.astype(np.float32)
    nchw = torch.from_numpy(images.transpose(0, 3, 1, 2).copy())
    ours = Ours(args.variant, args.res)
    rows = []
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
        siglip = randomise(
            transformers.SiglipVisionModel(
                transformers.SiglipVisionConfig(image_size=args.res, **sizes)
            ),
            seed=1,
        )
        siglip.save_pretrained(os.path.join(tmp, "siglip"))
        want = normalised(siglip(pixel_values=nchw).pooler_output)
        got, params = ours.embed(os.path.join(tmp, "siglip"), images)
        rows.append(("HF SiglipVisionModel safetensors", np.abs(got - want).max()))
        write_big_vision(params["backbone"], os.path.join(tmp, "bv.npz"))
        got_bv, _ = ours.embed(os.path.join(tmp, "bv.npz"), images)
        rows.append(("big_vision .npz vs transformers", np.abs(got_bv - want).max()))
        rows.append(("big_vision .npz vs HF path", np.abs(got_bv - got).max()))
        exact = Ours(args.variant, args.res, gelu_approximate=False)
        got_exact, _ = exact.embed(os.path.join(tmp, "siglip"), images)
        rows.append(("exact GELU vs transformers (tanh)", np.abs(got_exact - want).max()))

        siglip2 = randomise(
            transformers.Siglip2VisionModel(
                transformers.Siglip2VisionConfig(num_patches=grid * grid, **sizes)
            ),
            seed=2,
        )
        siglip2.save_pretrained(os.path.join(tmp, "siglip2"))
        patches = images.reshape(args.batch, grid, patch, grid, patch, 3)
        patches = patches.transpose(0, 1, 3, 2, 4, 5).reshape(args.batch, grid * grid, -1)
        want2 = normalised(
            siglip2(
                pixel_values=torch.from_numpy(patches.copy()),
                pixel_attention_mask=torch.ones(args.batch, grid * grid, dtype=torch.long),
                spatial_shapes=torch.tensor([[grid, grid]] * args.batch),
            ).pooler_output
        )
        got2, _ = ours.embed(os.path.join(tmp, "siglip2"), images)
        rows.append(("HF Siglip2VisionModel safetensors", np.abs(got2 - want2).max()))
    print(f"SigLIP {args.variant} at {args.res} px, batch {args.batch}, random weights, float32")
    for name, diff in rows:
        print(f"{name:<36} max |diff| of backbone_out: {diff:.2e}")


if __name__ == "__main__":
    main()
