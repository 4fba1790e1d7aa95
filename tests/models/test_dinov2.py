"""The DINOv2 family: remat gradients, training on the synthetic mini-UnED, the Python API and
the export with it (tiny models, random or tiny written weights)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import PIL.Image
import pytest

from universal_embedding import Embedder, index, settings
from universal_embedding import main as train_main
from universal_embedding.configs import base, tiny
from universal_embedding.models import embedding_model as em
from universal_embedding.pretrained import dinov2

pytestmark = pytest.mark.usefixtures("compilation_cache")


def tiny_dinov2(c, registers=2, remat=False):
    """A 2-layer, 32-wide DINOv2 on 16x16 images with 4x4 patches and `registers` registers."""
    c.model_class = "dinov2_vit_with_embedding"
    c.model_type = "B/14"
    c.model.hidden_size, c.model.num_heads, c.model.mlp_dim = 32, 2, 64
    c.model.num_layers, c.model.patch_size, c.model.output_dim = 2, 4, 8
    c.model.num_registers, c.model.remat = registers, remat
    c.image_size = 16
    return c


def test_remat_gradients_equal_the_plain_step():
    def grads(remat):
        spec = settings.model_spec(tiny_dinov2(base.get_config(), remat=remat))
        model = em.build_model(spec, {"cars": 5})
        params = em.init_params(model, jax.random.PRNGKey(0), 16)
        images = jax.random.normal(jax.random.PRNGKey(1), (4, 16, 16, 3))

        labels = jnp.array([0, 1, 2, 3])

        def loss(p):  # the train step's loss: softmax cross-entropy of scaled cosines
            logits = 16.0 * model.apply({"params": p}, images, head="cars")["logits"]
            picked = jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=1)
            return -jnp.mean(picked)

        return params, jax.jit(jax.grad(loss))(params)

    (p0, g0), (p1, g1) = grads(False), grads(True)
    assert jax.tree_util.tree_structure(p0) == jax.tree_util.tree_structure(p1)
    flat0 = jax.tree_util.tree_leaves_with_path(g0)
    flat1 = jax.tree_util.tree_leaves(g1)
    assert len(flat0) == len(flat1) and any(float(jnp.abs(g).max()) > 0 for _, g in flat0)
    # Within 1e-6 of each tensor's largest gradient (at least 1): the recomputed forward is
    # fused differently by XLA, so float32 rounding differs by ~1e-7 relative.
    for (path, a), b in zip(flat0, flat1, strict=True):
        bound = 1e-6 * max(1.0, float(jnp.abs(a).max()))
        assert float(jnp.abs(a - b).max()) <= bound, jax.tree_util.keystr(path)


def test_registers_are_inserted_after_the_class_token():
    spec = settings.model_spec(tiny_dinov2(base.get_config(), registers=3))
    params = em.init_params(em.build_model(spec, None), jax.random.PRNGKey(0), 16)
    backbone = params["backbone"]
    assert backbone["register_tokens"].shape == (1, 3, 32)
    assert backbone["pos_embed"].shape == (1, 1 + 16, 32)  # class row + 4x4 grid, no registers
    assert backbone["blocks_1"]["ls2"]["gamma"].shape == (32,)


def test_tiny_dinov2_trains_and_improves_merged_mmp5(data_dir, tmp_path):
    """From random init on the synthetic mini-UnED (cars, sop): merged test mMP@5 rises."""
    from universal_embedding import demo

    c = tiny_dinov2(tiny.get_config(f"data_dir={data_dir}"), remat=True)
    c.resize_size = 20
    c.lr, c.frozen_epochs, c.num_training_steps, c.checkpoint_steps = 3e-3, 0.0, 60, 60
    c.do_final_testing = True
    before = demo.evaluate_untrained(c, str(tmp_path / "baseline"))
    after = train_main.main(c, str(tmp_path / "trained"))
    key = "average:common:test_knn:mp_5"
    assert after[key] >= before[key] + 0.05, (before[key], after[key])


def test_embedder_from_pretrained_detects_registers_and_exports(tmp_path):
    """A torch hub-named file with 2 registers: Embedder.from_pretrained builds the model with
    them; the export reloads to the same vectors."""
    spec = settings.model_spec(tiny_dinov2(base.get_config(), registers=2))
    params = em.init_params(em.build_model(spec, None), jax.random.PRNGKey(3), 16)["backbone"]
    torch = pytest.importorskip("torch")
    state = {}
    for path, value in _hub_names(jax.device_get(params)).items():
        state[path] = torch.from_numpy(np.array(value))
    torch.save(state, tmp_path / "tiny_reg2_pretrain.pth")
    assert dinov2.registers_in_file(str(tmp_path / "tiny_reg2_pretrain.pth")) == 2
    fields = dict(hidden_size=32, num_heads=2, mlp_dim=64, num_layers=2, patch_size=4)
    embedder = Embedder.from_pretrained(
        str(tmp_path / "tiny_reg2_pretrain.pth"), "dinov2_vit_with_embedding", "B/14",
        image_size=16, **fields,
    )  # fmt: skip
    pixels = np.random.default_rng(0).integers(0, 255, (3, 16, 16, 3), dtype=np.uint8)
    files = []
    for i, image in enumerate(pixels):
        files.append(str(tmp_path / f"{i}.png"))
        PIL.Image.fromarray(image).save(files[-1])
    vectors = embedder.embed(files)
    assert vectors.shape == (3, 32) and embedder.normalization == "imagenet_mean_std"
    again = Embedder.from_pretrained(embedder.save(str(tmp_path / "export")))
    assert again.spec.num_registers == 2
    np.testing.assert_allclose(again.embed(files), vectors, atol=1e-6)
    np.savez(tmp_path / "d.npz", descriptors=vectors, paths=np.array(files))
    index.build_from_file(str(tmp_path / "d.npz"), str(tmp_path / "index"))
    found = index.query(str(tmp_path / "index"), again, files, k=1)
    assert [r["neighbours"][0]["path"] for r in found] == files


def _hub_names(backbone: dict) -> dict[str, np.ndarray]:
    """Backbone params -> facebookresearch/dinov2 names (the inverse of dinov2.HUB_RULES)."""
    out = {
        "cls_token": backbone["cls_token"],
        "pos_embed": backbone["pos_embed"],
        "register_tokens": backbone["register_tokens"],
        "mask_token": np.zeros((1, 32), np.float32),
        "patch_embed.proj.weight": backbone["patch_embed"]["kernel"].transpose(3, 2, 0, 1),
        "patch_embed.proj.bias": backbone["patch_embed"]["bias"],
        "norm.weight": backbone["norm"]["scale"],
        "norm.bias": backbone["norm"]["bias"],
    }
    for i in range(2):
        b, t = backbone[f"blocks_{i}"], f"blocks.{i}."
        att = b["attn"]
        qkv = [att[n]["kernel"].reshape(32, -1).T for n in ("query", "key", "value")]
        out[t + "attn.qkv.weight"] = np.concatenate(qkv)
        out[t + "attn.qkv.bias"] = np.concatenate(
            [att[n]["bias"].reshape(-1) for n in ("query", "key", "value")]
        )
        out[t + "attn.proj.weight"] = att["out"]["kernel"].reshape(-1, 32).T
        out[t + "attn.proj.bias"] = att["out"]["bias"]
        for ours, theirs in (("norm1", "norm1"), ("norm2", "norm2")):
            out[f"{t}{theirs}.weight"], out[f"{t}{theirs}.bias"] = b[ours]["scale"], b[ours]["bias"]
        for ours, theirs in (("Dense_0", "fc1"), ("Dense_1", "fc2")):
            out[f"{t}mlp.{theirs}.weight"] = b["mlp"][ours]["kernel"].T
            out[f"{t}mlp.{theirs}.bias"] = b["mlp"][ours]["bias"]
        out[t + "ls1.gamma"], out[t + "ls2.gamma"] = b["ls1"]["gamma"], b["ls2"]["gamma"]
    return out
