"""Parameters of the original UnED code mapped strictly onto this project's parameter tree.

Original names (Scenic's ViT / the original's CLIP-ViT, both with the original's projection
and cosine classifiers) and where they go here:

  Scenic ViT                                               here
  embedding, cls, Transformer/posembed_input,              backbone/<same>
    Transformer/encoder_norm
  Transformer/encoderblock_i/LayerNorm_0                   backbone/.../LayerNorm_0
  Transformer/encoderblock_i/MultiHeadDotProductAttention_0  .../MultiHeadDotProductAttention_1
  Transformer/encoderblock_i/LayerNorm_1                   .../LayerNorm_2
  Transformer/encoderblock_i/MlpBlock_0/Dense_{0,1}        .../MlpBlock_3/Dense_{0,1}
  CLIP-ViT: conv1, class_embedding, positional_embedding,  backbone/<same>
    ln_pre, ln_post
  transformer/resblocks.i/{ln_1,attn,ln_2,mlp}             backbone/transformer/resblocks_i/...
  projection (absent when output_dim <= 0)                 projection
  output_projection_i/kernel (domain i of dataset_name;    heads/<domain> (heads/joint)
    one output_projection_0 for the joint classifier)

Tensor layouts are the same (flax on both sides); only names move. Every tensor of the model
must come from the checkpoint with its shape, and every checkpoint tensor must have a place:
otherwise one line lists what is missing, unexpected and mis-shaped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np

from universal_embedding.original.checkpoint import OriginalCheckpointError
from universal_embedding.pretrained.common import flatten, unflatten

VIT, CLIP = "vit_with_embedding", "clip_vit_with_embedding"
_HEAD_RE = re.compile(r"output_projection_(\d+)/kernel")
_BLOCK, _OURS = r"Transformer/encoderblock_(\d+)/", r"backbone/Transformer/encoderblock_\1/"
_RESBLOCK = r"transformer/resblocks[._](\d+)/"  # 'resblocks.i' (or 'resblocks_i')
# (original name regex, our name template): names only; any leaf a rule catches that the
# model lacks is reported as unexpected by merge_strict.
RULES = {
    VIT: [
        (r"(embedding/.+|cls|Transformer/posembed_input/.+|Transformer/encoder_norm/.+)",
         r"backbone/\1"),
        (_BLOCK + r"LayerNorm_0/(.+)", _OURS + r"LayerNorm_0/\2"),
        (_BLOCK + r"MultiHeadDotProductAttention_0/(.+)",
         _OURS + r"MultiHeadDotProductAttention_1/\2"),
        (_BLOCK + r"LayerNorm_1/(.+)", _OURS + r"LayerNorm_2/\2"),
        (_BLOCK + r"MlpBlock_0/(.+)", _OURS + r"MlpBlock_3/\2"),
    ],
    CLIP: [
        (r"(conv1/.+|class_embedding|positional_embedding|ln_pre/.+|ln_post/.+)", r"backbone/\1"),
        (_RESBLOCK + r"(.+)", r"backbone/transformer/resblocks_\1/\2"),
    ],
}  # fmt: skip
_PROJECTION = (r"(projection/.+)", r"\1")
# Where each family keeps: hidden size, patch size, head count, mlp width; and its blocks.
_SIZES = {
    VIT: ("cls", "embedding/kernel", "MultiHeadDotProductAttention_0/query/kernel",
          "Dense_0/kernel", re.compile(_BLOCK)),
    CLIP: ("class_embedding", "conv1/kernel", "attn/query/kernel", "c_fc/kernel",
           re.compile(_RESBLOCK)),
}  # fmt: skip
# Our name -> the original's (for naming missing tensors), applied in order.
_BACK = {
    VIT: [(r"^backbone/", ""), (r"/LayerNorm_2/", "/LayerNorm_1/"),
          (r"/MlpBlock_3/", "/MlpBlock_0/"),
          (r"/MultiHeadDotProductAttention_1/", "/MultiHeadDotProductAttention_0/")],
    CLIP: [(r"^backbone/", ""), (r"/resblocks_(\d+)/", r"/resblocks.\1/")],
}  # fmt: skip
MAX_LISTED = 6


def family(flat: Mapping[str, object], path: str) -> str:
    """'vit_with_embedding' or 'clip_vit_with_embedding' from the checkpoint's tensor names."""
    if "cls" in flat or "embedding/kernel" in flat:
        return VIT
    if "class_embedding" in flat or "conv1/kernel" in flat:
        return CLIP
    sample = ", ".join(sorted(flat)[:6])
    raise OriginalCheckpointError(
        f"{path}: neither Scenic ViT nor CLIP-ViT parameters (e.g. {sample}); give a "
        "checkpoint of the original UnED trainer."
    )


def infer_model(flat: Mapping[str, np.ndarray], fam: str) -> dict:
    """{hidden_size, num_heads, mlp_dim, num_layers, patch_size, output_dim} from shapes."""
    hidden, patch, heads, mlp, block = _SIZES[fam]

    def shape(suffix: str) -> tuple:
        for name, value in flat.items():
            if name == suffix or name.endswith("/" + suffix):
                return np.shape(value)
        raise OriginalCheckpointError(f"The checkpoint has no {suffix} tensor.")

    proj = flat.get("projection/kernel")
    return {
        "hidden_size": int(shape(hidden)[-1]),
        "num_heads": int(shape(heads)[1]),
        "mlp_dim": int(shape(mlp)[-1]),
        "num_layers": len({m.group(1) for n in flat if (m := block.match(n))}),
        "patch_size": int(shape(patch)[0]),
        "output_dim": int(np.shape(proj)[-1]) if proj is not None else -1,
    }


def image_size(flat: Mapping[str, np.ndarray], fam: str) -> int:
    """The image side the model was trained at: its position embedding's grid times the patch."""
    pos, stem = {VIT: ("Transformer/posembed_input/pos_embedding", "embedding/kernel"),
                 CLIP: ("positional_embedding", "conv1/kernel")}[fam]  # fmt: skip
    if pos not in flat or stem not in flat:
        raise OriginalCheckpointError(f"The checkpoint has no {pos} or {stem} tensor.")
    tokens, patch = np.shape(flat[pos])[-2], np.shape(flat[stem])[0]
    return round((tokens - 1) ** 0.5) * int(patch)


def head_names(original_config: Mapping | None, ours: Sequence[str]) -> dict[int, str]:
    """{i: our head name} for output_projection_i: the original run's dataset_name order
    ('joint' classifier: {0: 'joint'}); without its config.json, the order of `ours`."""
    if original_config is None:
        return dict(enumerate(ours))
    if original_config.get("classifier") == "joint":
        return {0: "joint"}
    names = [d.strip() for d in str(original_config.get("dataset_name", "")).split(",")]
    return {i: d for i, d in enumerate(names) if d}


def rename(
    params: Mapping, fam: str, heads: Mapping[int, str] | None
) -> tuple[dict[str, np.ndarray], dict[str, str], list[str]]:
    """(our flat name -> array, our name -> original name, unknown original names).

    heads=None drops every output_projection_i (evaluation needs no classifier)."""
    rules = [(re.compile(p), t) for p, t in [*RULES[fam], _PROJECTION]]
    out, sources, unknown = {}, {}, []
    for name, value in flatten(params).items():
        head = _HEAD_RE.fullmatch(name)
        if head:
            if heads is not None:
                index = int(head.group(1))
                target = f"heads/{heads[index]}/kernel" if index in heads else f"heads/#{index}"
                out[target], sources[target] = value, name
            continue
        for pattern, template in rules:
            m = pattern.fullmatch(name)
            if m:
                out[m.expand(template)], sources[m.expand(template)] = value, name
                break
        else:
            unknown.append(name)
    return out, sources, unknown


def _listed(title: str, items: list[str]) -> str:
    more = f" and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else ""
    return f"{title} ({len(items)}): {', '.join(items[:MAX_LISTED])}{more}"


def merge_strict(template: Mapping, params: Mapping, fam: str, path: str, heads=None) -> dict:
    """Our params tree (numpy float32) from original `params`, shaped exactly like `template`."""
    got, sources, unknown = rename(params, fam, heads)
    want = {n: tuple(np.shape(v)) for n, v in flatten(template).items()}

    def named(n: str) -> str:
        return f"{sources[n]} (here {n})" if sources.get(n, n) != n else n

    def original_name(n: str) -> str:
        index = {name: i for i, name in (heads or {}).items()}
        if n.startswith("heads/") and n.split("/")[1] in index:
            return f"output_projection_{index[n.split('/')[1]]}/kernel (here {n})"
        name = n
        for pattern, replacement in _BACK[fam]:
            name = re.sub(pattern, replacement, name)
        return f"{name} (here {n})" if name != n else n

    missing = [f"{original_name(n)} {list(want[n])}" for n in sorted(set(want) - set(got))]
    unexpected = [f"{named(n)} {list(np.shape(got[n]))}" for n in sorted(set(got) - set(want))]
    unexpected += [f"{n} (no such parameter in the model)" for n in sorted(unknown)]
    misshaped = [
        f"{named(n)} {list(np.shape(got[n]))} vs model {list(want[n])}"
        for n in sorted(set(got) & set(want))
        if tuple(np.shape(got[n])) != want[n]
    ]
    if missing or unexpected or misshaped:
        parts = [
            _listed(t, xs)
            for t, xs in (
                ("missing", missing),
                ("unexpected", unexpected),
                ("mis-shaped", misshaped),
            )  # fmt: skip
            if xs
        ]
        raise OriginalCheckpointError(
            f"{path} does not fit the model: {'; '.join(parts)}. The model comes from the "
            "workdir's config.json (model_class, model_type, model.*), the heads from its "
            "dataset_name and classifier."
        )
    out = {n: np.asarray(got[n], np.float32) for n in want}
    nonfinite = [(n, int(v.size - np.isfinite(v).sum())) for n, v in out.items()]
    nonfinite = [f"{named(n)} {bad} non-finite value(s)" for n, bad in nonfinite if bad]
    if nonfinite:
        raise OriginalCheckpointError(
            f"{path} holds NaN or inf: {_listed('tensors', nonfinite)}; nothing was loaded. "
            "Use another checkpoint_<step> of the run."
        )
    return unflatten(out)
