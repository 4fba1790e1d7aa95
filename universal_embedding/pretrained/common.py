"""Renaming checkpoint tensors by rules, and the strict merge into the model's backbone."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Mapping

import numpy as np
from flax import traverse_util

MAX_LISTED = 50  # names listed per category in a strict-loading error


class CheckpointError(ValueError):
    """A checkpoint that does not fit the model (names, shapes or sizes)."""


# ----------------------------------------------------------------------------- renaming


def conv_kernel(a: np.ndarray, heads: int) -> np.ndarray:
    """PyTorch conv weight [out, in, h, w] -> flax kernel [h, w, in, out]."""
    return a.transpose(2, 3, 1, 0)


def linear_kernel(a: np.ndarray, heads: int) -> np.ndarray:
    """PyTorch Linear weight [out, in] -> flax kernel [in, out]."""
    return a.T


def copy(a: np.ndarray, heads: int) -> np.ndarray:
    return a


def heads_kernel(a: np.ndarray, heads: int) -> np.ndarray:
    """Linear weight [heads*hd, D] -> query/key/value kernel [D, heads, hd]."""
    k = a.T
    return k.reshape(k.shape[0], heads, -1) if k.shape[1] % heads == 0 else k


def heads_bias(a: np.ndarray, heads: int) -> np.ndarray:
    """Bias [heads*hd] -> [heads, hd]."""
    return a.reshape(heads, -1) if a.shape[0] % heads == 0 else a


def heads_out_kernel(a: np.ndarray, heads: int) -> np.ndarray:
    """Linear weight [D, heads*hd] -> out kernel [heads, hd, D]."""
    k = a.T
    return k.reshape(heads, -1, k.shape[1]) if k.shape[0] % heads == 0 else k


def fused(fn: Callable[[np.ndarray, int], np.ndarray]) -> Callable:
    """Applies `fn` to each third of a fused q/k/v tensor (split along axis 0)."""

    def split(a: np.ndarray, heads: int) -> tuple[np.ndarray, ...]:
        if a.shape[0] % 3:
            return (a, a, a)  # cannot split: shapes will not match and get reported
        return tuple(fn(part, heads) for part in np.split(a, 3, axis=0))

    return split


Rule = tuple[str, str | tuple[str, ...], Callable]


def layer_norm_rules(src: str, dst: str) -> list[Rule]:
    """PyTorch LayerNorm weight/bias -> flax scale/bias (regex src, template dst)."""
    return [(src + r"\.weight", dst + "/scale", copy), (src + r"\.bias", dst + "/bias", copy)]


def dense_rules(src: str, dst: str) -> list[Rule]:
    """PyTorch Linear weight/bias -> flax kernel/bias."""
    return [
        (src + r"\.weight", dst + "/kernel", linear_kernel),
        (src + r"\.bias", dst + "/bias", copy),
    ]


QKV = ("query", "key", "value")  # the attention projections of models/attention.py


def attention_out_rules(src: str, dst: str) -> list[Rule]:
    """PyTorch attention output Linear -> flax `dst/out` kernel [heads, hd, D] and bias."""
    return [
        (src + r"\.weight", dst + "/out/kernel", heads_out_kernel),
        (src + r"\.bias", dst + "/out/bias", copy),
    ]


def split_attention_rules(
    qkv: str, out: str, dst: str, names: tuple[str, str, str] = QKV
) -> list[Rule]:
    """Separate PyTorch query/key/value Linears and the output Linear -> flax `dst/{query,
    key,value,out}` with a heads axis. `qkv` holds `{}`, replaced by each of `names` (the
    checkpoint's words for query, key, value)."""
    rules: list[Rule] = []
    for name, d in zip(names, QKV, strict=True):
        src = qkv.replace("{}", name)
        rules += [
            (src + r"\.weight", f"{dst}/{d}/kernel", heads_kernel),
            (src + r"\.bias", f"{dst}/{d}/bias", heads_bias),
        ]
    return rules + attention_out_rules(out, dst)


def fused_attention_rules(weight: str, bias: str, out: str, dst: str) -> list[Rule]:
    """A fused q/k/v in-projection (`weight` [3D, D], `bias` [3D], split in thirds) and the
    output Linear `out` -> flax `dst/{query,key,value,out}` with a heads axis."""
    targets = tuple(f"{dst}/{d}" for d in QKV)
    return [
        (weight, tuple(t + "/kernel" for t in targets), fused(heads_kernel)),
        (bias, tuple(t + "/bias" for t in targets), fused(heads_bias)),
        *attention_out_rules(out, dst),
    ]


def hf_vit_embedding_rules(cls: str, posemb: str, patch: str) -> list[Rule]:
    """transformers' ViT-style embeddings (`ViTModel`, `Dinov2Model`): `embeddings.cls_token`,
    `embeddings.position_embeddings` and the conv `embeddings.patch_embeddings.projection` ->
    the backbone's `cls`, `posemb` and `patch/{kernel,bias}`."""
    conv = r"embeddings\.patch_embeddings\.projection"
    return [
        (r"embeddings\.cls_token", cls, copy),
        (r"embeddings\.position_embeddings", posemb, copy),
        (conv + r"\.weight", patch + "/kernel", conv_kernel),
        (conv + r"\.bias", patch + "/bias", copy),
    ]


@dataclasses.dataclass
class Converted:
    """Tensors renamed to backbone paths, plus what the rules did not know or skipped."""

    params: dict[str, np.ndarray]
    sources: dict[str, str]  # backbone path -> checkpoint name
    unrecognised: list[str]
    ignored: list[str]


def apply_rules(
    arrays: Mapping[str, np.ndarray], rules: Iterable[Rule], ignore: Iterable[str], heads: int
) -> Converted:
    """Renames each checkpoint tensor by the first matching regex rule (fullmatch)."""
    compiled = [(re.compile(p), t, fn) for p, t, fn in rules]
    ignore_re = [re.compile(p) for p in ignore]
    out = Converted({}, {}, [], [])
    for name, arr in arrays.items():
        if any(r.fullmatch(name) for r in ignore_re):
            out.ignored.append(name)
            continue
        for pattern, target, fn in compiled:
            m = pattern.fullmatch(name)
            if m:
                targets = (target,) if isinstance(target, str) else target
                values = fn(arr, heads)
                values = values if isinstance(values, tuple) else (values,)
                for t, v in zip(targets, values, strict=True):
                    out.params[m.expand(t)] = v
                    out.sources[m.expand(t)] = name
                break
        else:
            out.unrecognised.append(name)
    return out


# ----------------------------------------------------------------------------- merging


def flatten(tree: Mapping) -> dict[str, object]:
    """{'a': {'b': x}} -> {'a/b': x}: tensor names as checkpoints and error messages write
    them ('/'-joined). Empty subtrees drop out."""
    return traverse_util.flatten_dict(tree, sep="/")


def unflatten(flat: Mapping[str, object]) -> dict:
    """{'a/b': x} -> {'a': {'b': x}}: the inverse of flatten."""
    return traverse_util.unflatten_dict(dict(flat), sep="/")


def resize_bilinear(grid: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Bilinear resize of [h, w, c] with half-pixel centres (torch align_corners=False)."""

    def coords(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        lo = np.floor(x).astype(np.int64)
        return lo, np.minimum(lo + 1, n_in - 1), (x - lo)[:, None]

    y0, y1, wy = coords(grid.shape[0], out_h)
    x0, x1, wx = coords(grid.shape[1], out_w)
    rows = grid[y0] * (1 - wy[:, :, None]) + grid[y1] * wy[:, :, None]
    return rows[:, x0] * (1 - wx[None]) + rows[:, x1] * wx[None]


def _is_square(n: int) -> bool:
    return n > 0 and round(n**0.5) ** 2 == n


def resize_position_embedding(posemb: np.ndarray, num_tokens: int) -> np.ndarray:
    """[..., 1 + g*g, D] -> [..., num_tokens, D]: class row kept, square grid resized; a bare
    g*g grid (SigLIP: no class token) to a bare grid is resized whole."""
    lead, (n, d) = posemb.shape[:-2], posemb.shape[-2:]
    cls = 0 if _is_square(n) and _is_square(num_tokens) else 1
    old, new = round((n - cls) ** 0.5), round((num_tokens - cls) ** 0.5)
    if old * old != n - cls or new * new != num_tokens - cls:
        raise CheckpointError(
            f"Cannot resize a position embedding of {n} tokens to {num_tokens}: "
            "both must be 1 class token + a square grid, or both a square grid."
        )
    flat = posemb.reshape(n, d)
    grid = resize_bilinear(flat[cls:].reshape(old, old, d), new, new).reshape(new * new, d)
    return np.concatenate([flat[:cls], grid], axis=0).reshape(*lead, num_tokens, d)


def _listing(title: str, lines: list[str]) -> str:
    shown = lines[:MAX_LISTED]
    more = f"\n    ... and {len(lines) - len(shown)} more" if len(lines) > len(shown) else ""
    return f"  {title} ({len(lines)}):\n" + "\n".join(f"    {s}" for s in shown) + more


def merge_strict(
    backbone: Mapping,
    conv: Converted,
    source: str,
    posemb_path: str,
    headline: str = "",
    resize: Callable[[np.ndarray, int], np.ndarray] = resize_position_embedding,
) -> dict:
    """Backbone params from the checkpoint; any missing/unexpected/mis-shaped tensor raises.
    A position embedding of another grid is resized by `resize(posemb, num_tokens)`."""
    expected = {p: tuple(np.shape(v)) for p, v in flatten(backbone).items()}  # arrays or abstract
    got = dict(conv.params)
    pos = got.get(posemb_path)
    if pos is not None and posemb_path in expected and pos.shape != expected[posemb_path]:
        want = expected[posemb_path]
        if pos.shape[:-2] == want[:-2] and pos.shape[-1] == want[-1]:
            got[posemb_path] = resize(pos, want[-2])

    def named(p: str) -> str:
        src = conv.sources.get(p)
        return f"{p} (checkpoint: {src})" if src and src != p else p

    missing = [f"{p} {expected[p]}" for p in sorted(set(expected) - set(got))]
    unexpected = [f"{named(p)} {got[p].shape}" for p in sorted(set(got) - set(expected))]
    unexpected += [f"{n} (not a known tensor name)" for n in conv.unrecognised]
    misshaped = [
        f"{named(p)}: checkpoint {got[p].shape}, model {expected[p]}"
        for p in sorted(set(got) & set(expected))
        if tuple(got[p].shape) != expected[p]
    ]
    if missing or unexpected or misshaped:
        parts = [f"Checkpoint {source} does not fit the model's backbone."]
        parts += [headline] if headline else []
        for title, lines in (
            ("missing in checkpoint", missing),
            ("unexpected in checkpoint", unexpected),
            ("mis-shaped", misshaped),
        ):
            if lines:
                parts.append(_listing(title, lines))
        parts.append("Nothing was loaded; fix config.model_class/model_type or the checkpoint.")
        raise CheckpointError("\n".join(parts))
    return unflatten({p: np.asarray(got[p], np.float32) for p in expected})
