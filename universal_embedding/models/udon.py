"""The UDON model (docs/udon-method.md §1): a backbone, per-domain teachers, a universal student.

backbone -> f = L2norm(class token) -> per domain d a teacher `Mlp(teacher_dim)` -> t_d and one
student `Mlp(universal_student_dim)` -> s, both L2-normalised; per domain a teacher cosine head
on t_d and a student cosine head on s. Param tree (original names):
`{'backbone', 'projections': {teacher_projection_domain_{d}, universal_student_projection_domain_0},
'heads': {teacher_output_projection_{d}, universal_student_output_projection_{d}}}` where d is the
domain's position in the training domain list (config.dataset_name).

Outputs (float32): `backbone_out`, `universal_student_embedd` (also as `projected`, so every
single-embedding tool evaluates the universal student) and, given `domain` (a Python int or a
traced int32 scalar), `teacher_embedd` of that domain's teacher. All teachers are computed and
one is selected, so a traced domain index needs one compiled program for every domain.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from universal_embedding.models.heads import CosineHead, l2_normalize

# UDON model class -> the backbone family (and pretrained loader) it shares.
BACKBONE_FAMILY = {
    "udon_vit_with_embedding": "vit_with_embedding",
    "udon_clip_vit_with_embedding": "clip_vit_with_embedding",
    "udon_dinov2_vit_with_embedding": "dinov2_vit_with_embedding",
    "udon_siglip_vit_with_embedding": "siglip_vit_with_embedding",
}
EMBEDDINGS = ("universal_student_embedd", "teacher_embedd", "backbone_out", "projected")
STUDENT = "universal_student_embedd"
TEACHER = "teacher_embedd"


def is_udon(model_class: str) -> bool:
    """Whether config.model_class names a UDON model."""
    return model_class in BACKBONE_FAMILY


def backbone_family(model_class: str) -> str:
    """'udon_clip_vit_with_embedding' -> 'clip_vit_with_embedding'; other names unchanged."""
    return BACKBONE_FAMILY.get(model_class, model_class)


def teacher_name(d: int) -> str:
    return f"teacher_projection_domain_{d}"


STUDENT_NAME = "universal_student_projection_domain_0"


def teacher_head_name(d: int) -> str:
    return f"teacher_output_projection_{d}"


def student_head_name(d: int) -> str:
    return f"universal_student_output_projection_{d}"


class Mlp(nn.Module):
    """One Dense (with bias) per width; LayerNorm -> GELU between layers, not after the last."""

    widths: Sequence[int]

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for i, width in enumerate(self.widths):
            if i:
                x = nn.gelu(nn.LayerNorm(dtype=jnp.float32, name=f"LayerNorm_{i - 1}")(x))
            x = nn.Dense(int(width), dtype=jnp.float32, name=f"Dense_{i}")(x)
        return x


class UdonProjections(nn.Module):
    """Every domain's teacher Mlp and the one student Mlp on the normalised backbone feature."""

    num_domains: int
    teacher_dim: Sequence[int]
    student_dim: Sequence[int]

    @nn.compact
    def __call__(self, f: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(s [B, ds], teachers [num_domains, B, dt]), all L2-normalised."""
        s = l2_normalize(Mlp(tuple(self.student_dim), name=STUDENT_NAME)(f))
        teachers = [
            l2_normalize(Mlp(tuple(self.teacher_dim), name=teacher_name(d))(f))
            for d in range(self.num_domains)
        ]
        return s, jnp.stack(teachers)


def student_projection(params: dict, f: jax.Array, student_dim: Sequence[int]) -> jax.Array:
    """L2norm(student Mlp(f)) from params['projections'] (e.g. on a stop-gradiented f)."""
    mlp = Mlp(tuple(student_dim))
    return l2_normalize(mlp.apply({"params": params["projections"][STUDENT_NAME]}, f))


def head_cosines(params: dict, name: str, num_classes: int, x: jax.Array) -> jax.Array:
    """[B, num_classes] cosines of the cosine head params['heads'][name] on x."""
    return CosineHead(num_classes).apply({"params": params["heads"][name]}, x)


class UdonHeads(nn.Module):
    """Teacher and student cosine heads of every domain (bias-free, lecun_uniform init)."""

    classes: Sequence[int]

    @nn.compact
    def __call__(self, teachers: jax.Array, s: jax.Array) -> dict[str, jax.Array]:
        out = {}
        for d, c in enumerate(self.classes):
            for name, x in ((teacher_head_name(d), teachers[d]), (student_head_name(d), s)):
                out[name] = _UdonHead(c, name=name)(x)
        return out


class _UdonHead(nn.Module):
    num_classes: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param(
            "kernel", nn.initializers.lecun_uniform(), (x.shape[-1], self.num_classes), jnp.float32
        )
        return l2_normalize(x) @ l2_normalize(kernel, axis=0)


class UdonModel(nn.Module):
    """Backbone + teachers + student (+ heads when `classes` is given); see module docstring."""

    backbone: nn.Module
    domains: Sequence[str]  # training domains, in config.dataset_name order
    classes: Sequence[int] = ()  # classes per domain; () = no heads (evaluation)
    teacher_dim: Sequence[int] = (256,)
    student_dim: Sequence[int] = (64,)

    @nn.compact
    def __call__(
        self,
        images: jax.Array,
        train: bool = False,
        head: str | None = None,
        domain: int | jax.Array | None = None,
    ) -> dict[str, jax.Array]:
        """Embeddings; `head='*'` (init) also runs every head ('all_logits')."""
        del train  # no dropout
        f = l2_normalize(self.backbone(images))
        proj = UdonProjections(
            len(self.domains), self.teacher_dim, self.student_dim, name="projections"
        )
        s, teachers = proj(f)
        out = {"backbone_out": f, STUDENT: s, "projected": s}
        if domain is not None:
            out[TEACHER] = teachers[domain]
        if head is not None:
            if not self.classes:
                raise ValueError("head asked for, but the UDON model was built without heads.")
            out["all_logits"] = UdonHeads(tuple(self.classes), name="heads")(teachers, s)
        return out


def build_udon_model(spec, classes_per_head, backbone: nn.Module) -> UdonModel:
    """UdonModel for a ModelSpec (teachers for spec.domains, the training domains in
    config.dataset_name order; heads when classes are given)."""
    domains = tuple(spec.domains)
    if not domains:
        raise ValueError("A UDON model needs its training domains: config.dataset_name is empty.")
    classes: tuple[int, ...] = ()
    if classes_per_head:
        if list(classes_per_head) != list(domains):
            raise ValueError(
                f"UDON needs one head per training domain ({list(domains)}; "
                f"config.classifier='separate'); got heads {list(classes_per_head)}."
            )
        classes = tuple(int(classes_per_head[d]) for d in domains)
    return UdonModel(
        backbone,
        domains,
        classes,
        teacher_dim=_widths(spec.teacher_dim or (), "teacher_dim"),
        student_dim=_widths(spec.universal_student_dim or (), "universal_student_dim"),
    )


def _widths(value: Sequence[int], name: str) -> tuple[int, ...]:
    """(256,) (a list when read back from config.json) -> (256,), checked."""
    widths = tuple(value)
    if not widths or any(w <= 0 for w in widths):
        raise ValueError(f"config.model.{name} must list positive widths, got {value!r}.")
    return widths
