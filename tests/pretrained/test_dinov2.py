"""DINOv2 weights load to the backbone_out of the reference implementations (within 1e-5).

References, with tiny random weights the tests write in each release format:
- Hugging Face safetensors: transformers `Dinov2Model` / `Dinov2WithRegistersModel` on the same
  images, resizing the checkpoint's 6x6 position grid to the model's 4x4 inside their forward
  (`interpolate_pos_encoding`).
- torch hub `.pth` (facebookresearch/dinov2 names, zip torch.save): timm's `checkpoint_filter_fn`
  path, which resizes the grid once with `resample_abs_pos_embed` (bicubic, antialias). timm
  needs torchvision, which does not import beside torch 2.13 here, so that resize is written
  below with `torch.nn.functional.interpolate` and the same arguments, and the transformers
  model (same architecture) runs the forward at the model's own grid.
- `pos_interpolation='meta'`: facebookresearch/dinov2's `interpolate_pos_encoding` arguments.
"""

import collections

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import transformers
from safetensors.numpy import load_file, save_file

from tests.pretrained.test_formats import fused_qkv, hf_embed, numpy_state, randomise
from universal_embedding import settings
from universal_embedding.configs.base import get_config
from universal_embedding.models import embedding_model as em
from universal_embedding.pretrained import CheckpointError, dinov2, load_pretrained

HIDDEN, HEADS, LAYERS, PATCH = 32, 2, 2, 14
CKPT_IMAGE, IMAGE = 84, 56  # checkpoint grid 6x6, model grid 4x4
TOL = 1e-5


def tiny_config(registers=None, pos_interpolation=""):
    c = get_config()
    c.model_class = "dinov2_vit_with_embedding"
    c.image_size = IMAGE
    c.model.hidden_size, c.model.num_heads, c.model.mlp_dim = HIDDEN, HEADS, 4 * HIDDEN
    c.model.num_layers, c.model.patch_size = LAYERS, PATCH
    c.model.num_registers = registers
    c.model.pos_interpolation = pos_interpolation
    return c


def ours(path, images, registers, pos_interpolation=""):
    c = tiny_config(registers, pos_interpolation)
    c.pretrained_ckpt = str(path)  # registers (when None) are counted in the file
    spec = settings.model_spec(c)
    model = em.build_model(spec, {"cars": 3})
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.asarray(images), head="*"))
    zeros = jax.tree_util.tree_map(lambda s: np.zeros(s.shape, s.dtype), shapes["params"])
    params = load_pretrained(zeros, str(path), spec)
    return np.asarray(model.apply({"params": params}, images)["backbone_out"])


def hf_model(registers, image_size=CKPT_IMAGE, seed=1):
    kw = dict(hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS)
    kw |= dict(image_size=image_size, patch_size=PATCH)
    if registers:
        cfg = transformers.Dinov2WithRegistersConfig(num_register_tokens=registers, **kw)
        return randomise(transformers.Dinov2WithRegistersModel(cfg), seed)
    return randomise(transformers.Dinov2Model(transformers.Dinov2Config(**kw)), seed)


def hf_to_hub(sd):
    """HF Dinov2 state -> facebookresearch/dinov2 torch hub names (q/k/v fused into qkv)."""
    o = {
        "cls_token": sd["embeddings.cls_token"],
        "pos_embed": sd["embeddings.position_embeddings"],
        "mask_token": sd["embeddings.mask_token"],
        "patch_embed.proj.weight": sd["embeddings.patch_embeddings.projection.weight"],
        "patch_embed.proj.bias": sd["embeddings.patch_embeddings.projection.bias"],
        "norm.weight": sd["layernorm.weight"],
        "norm.bias": sd["layernorm.bias"],
    }
    if "embeddings.register_tokens" in sd:
        o["register_tokens"] = sd["embeddings.register_tokens"]
    for i in range(LAYERS):
        h, t = f"encoder.layer.{i}.", f"blocks.{i}."
        for kind in ("weight", "bias"):
            o[f"{t}attn.qkv.{kind}"] = fused_qkv(sd, h + "attention.{}_proj." + kind)
            o[f"{t}attn.proj.{kind}"] = sd[f"{h}attention.o_proj.{kind}"]
            for n in ("norm1", "norm2", "mlp.fc1", "mlp.fc2"):
                o[f"{t}{n}.{kind}"] = sd[f"{h}{n}.{kind}"]
        o[f"{t}ls1.gamma"] = sd[f"{h}layer_scale1.lambda1"]
        o[f"{t}ls2.gamma"] = sd[f"{h}layer_scale2.lambda1"]
    return o


def write_pth(path, hub_state):
    state = collections.OrderedDict(
        (k, torch.from_numpy(np.array(v))) for k, v in hub_state.items()
    )
    torch.save(state, path)  # zip format, as the released .pth files


def resized_posemb(posemb, grid, **interpolate_args):
    """The class row kept, the grid resized by F.interpolate (bicubic, align_corners=False)."""
    pos = torch.from_numpy(posemb)
    m, d = round((pos.shape[1] - 1) ** 0.5), pos.shape[2]
    patch = pos[:, 1:].reshape(1, m, m, d).permute(0, 3, 1, 2)
    args = dict(mode="bicubic", align_corners=False) | interpolate_args
    if "scale_factor" not in args:
        args["size"] = (grid, grid)
    patch = F.interpolate(patch, **args).permute(0, 2, 3, 1).reshape(1, -1, d)
    return torch.cat([pos[:, :1], patch], dim=1).numpy()


def reference_at_grid(state, registers, posemb, images):
    """transformers' model at the model's own grid (no resize in its forward), given posemb."""
    model = hf_model(registers, image_size=IMAGE)
    sd = {k: torch.from_numpy(np.array(v)) for k, v in state.items()}
    sd["embeddings.position_embeddings"] = torch.from_numpy(posemb)
    model.load_state_dict(sd)
    return hf_embed(model.eval(), images, pooled=False)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).normal(size=(2, IMAGE, IMAGE, 3)).astype(np.float32)


@pytest.fixture(scope="module", params=[0, 4], ids=["plain", "reg4"])
def ref(request, images, tmp_path_factory):
    registers = request.param
    model = hf_model(registers)
    folder = tmp_path_factory.mktemp(f"hf_dinov2_{registers}")
    model.save_pretrained(folder)
    return {
        "registers": registers,
        "model": model,
        "want": hf_embed(model, images, pooled=False),
        "state": numpy_state(model),
        "dir": folder,
    }


def test_hf_safetensors_matches_transformers(ref, images):
    got = ours(ref["dir"] / "model.safetensors", images, None)
    np.testing.assert_allclose(got, ref["want"], atol=TOL)


def test_hf_classifier_layout_and_folder(ref, images, tmp_path):
    """Dinov2ForImageClassification files: 'dinov2.' prefix and a classifier, skipped."""
    hub_layout = load_file(str(ref["dir"] / "model.safetensors"))  # save_pretrained's names
    state = {f"dinov2.{k}": v for k, v in hub_layout.items()}
    state["classifier.weight"] = np.ones((3, 2 * HIDDEN), np.float32)
    state["classifier.bias"] = np.zeros(3, np.float32)
    save_file(state, str(tmp_path / "model.safetensors"))
    np.testing.assert_allclose(ours(tmp_path, images, None), ref["want"], atol=TOL)


def test_hub_pth_matches_timm_path(ref, images, tmp_path):
    hub = hf_to_hub(ref["state"])
    write_pth(tmp_path / "dinov2_tiny_pretrain.pth", hub)
    posemb = resized_posemb(hub["pos_embed"], IMAGE // PATCH, antialias=True)
    want = reference_at_grid(ref["state"], ref["registers"], posemb, images)
    got = ours(tmp_path / "dinov2_tiny_pretrain.pth", images, None)
    np.testing.assert_allclose(got, want, atol=TOL)


def test_meta_interpolation(ref, images, tmp_path):
    hub = hf_to_hub(ref["state"])
    write_pth(tmp_path / "w.pth", hub)
    grid, old = IMAGE // PATCH, CKPT_IMAGE // PATCH
    if ref["registers"]:  # the _reg hub models: interpolate_antialias=True, offset 0
        args = dict(antialias=True)
    else:  # interpolate_offset=0.1: scale factor (grid + 0.1) / M, no antialias
        args = dict(antialias=False, scale_factor=((grid + 0.1) / old,) * 2)
    posemb = resized_posemb(hub["pos_embed"], grid, **args)
    want = reference_at_grid(ref["state"], ref["registers"], posemb, images)
    got = ours(tmp_path / "w.pth", images, None, pos_interpolation="meta")
    np.testing.assert_allclose(got, want, atol=TOL)


def test_registers_detected_from_the_file(ref):
    c = tiny_config()
    c.pretrained_ckpt = str(ref["dir"] / "model.safetensors")
    assert settings.model_spec(c).num_registers == ref["registers"]


def swapped(target, swap):
    if isinstance(target, str) and target.removeprefix(dinov2._D) in swap:
        return dinov2._D + swap[target.removeprefix(dinov2._D)]
    return target


def test_swapped_mapping_fails(ref, images, tmp_path, monkeypatch):
    """Exchanging two same-shape targets in the rules (ls1 <-> ls2) changes backbone_out."""
    write_pth(tmp_path / "w.pth", hf_to_hub(ref["state"]))
    right = ours(tmp_path / "w.pth", images, None)
    swap = {"ls1/gamma": "ls2/gamma", "ls2/gamma": "ls1/gamma"}
    rules = [(p, swapped(t, swap), fn) for p, t, fn in dinov2.HUB_RULES]
    monkeypatch.setattr(dinov2, "HUB_RULES", rules)
    wrong = ours(tmp_path / "w.pth", images, None)
    assert np.abs(wrong - right).max() > 100 * TOL


def test_missing_and_extra_tensors_are_named(ref, tmp_path):
    hub = hf_to_hub(ref["state"])
    del hub["blocks.1.ls2.gamma"]
    hub["blocks.0.attn.extra"] = np.ones(3, np.float32)
    write_pth(tmp_path / "w.pth", hub)
    with pytest.raises(CheckpointError, match=r"blocks_1/ls2/gamma[\s\S]*blocks\.0\.attn\.extra"):
        ours(tmp_path / "w.pth", np.zeros((1, IMAGE, IMAGE, 3), np.float32), None)


def test_register_count_mismatch_is_reported(ref, tmp_path):
    write_pth(tmp_path / "w.pth", hf_to_hub(ref["state"]))
    wrong = 2 if ref["registers"] else 4
    with pytest.raises(CheckpointError, match="register_tokens"):
        ours(tmp_path / "w.pth", np.zeros((1, IMAGE, IMAGE, 3), np.float32), wrong)
