"""UDON's loss terms (docs/udon-method.md §2): pure functions of cosines and embeddings.

Each batch comes from one domain. With teacher cosines cos_T (teacher embedding t on its
domain's teacher head) and student cosines cos_S (universal student s on its student head):

- classification: mean_i CE(softmax(scale * cos_i), y_i) for teacher and student (losses.py);
- logit distillation: mean_i KL(p_T || p_S), p_T = softmax(sg(cos_T) / tau_T),
  p_S = softmax(cos_S / tau_S) (raw cosines, no tau^2 factor);
- batch-similarity distillation: (B / 4) * mean over groups of mean_ij (S_ij - T_ij)^2 with
  S = s s^T and T = sg(t t^T) inside each of `groups` equal slices of the global batch.
  The original computes (D/4) * (1/n) sum_ij per device (D devices, n = B/D images each), which
  is (B/4) * mean_ij per device; slicing the global batch into a fixed number of groups instead
  of per device makes the value independent of the device count, and with groups = 4 (default,
  the original's 4 devices) it equals the original's loss exactly;
- total: sum_k w_k L_k / sum_k w_k over the enabled terms.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from universal_embedding.train import losses

TERMS = (
    "teacher_classifier_loss",
    "universal_student_classifier_loss",
    "distill_logits_loss",
    "distill_simils_loss",
)
CLASSIF_ON = ("teacher", "universal_student")


@dataclasses.dataclass(frozen=True)
class UdonLossConfig:
    """The UDON fields of config.loss (original names) and the classification settings; the
    entry point builds it (universal_embedding/train_settings.py:udon_loss)."""

    classif_losses_on: tuple[str, ...] = CLASSIF_ON
    distill_udon_logits: bool = True
    temperature_teacher: float = 0.1  # distill_udon_logits_temperature.teacher
    temperature_student: float = 0.1  # distill_udon_logits_temperature.universal_student
    distill_udon_batch_simils: bool = True
    distill_udon_simils_groups: int = 4
    classif_udon_teacher_weight: float = 1.0
    classif_udon_universal_student_weight: float = 1.0
    distill_udon_logits_weight: float = 1.0
    distill_udon_simils_weight: float = 1.0
    distill_grads_to_backbone: bool = True  # original: distillation also trains the backbone
    loss_type: str = "normface"
    scale: float = 16.0
    margin: float = 0.0
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        bad = [x for x in self.classif_losses_on if x not in CLASSIF_ON]
        if bad:
            raise ValueError(
                f"config.loss.classif_losses_on={','.join(self.classif_losses_on)!r}: unknown "
                f"{bad}; valid: {', '.join(CLASSIF_ON)}."
            )
        if not any(self.weights().values()):
            raise ValueError("UDON: every loss term is off or has weight 0 (config.loss).")

    def weights(self) -> dict[str, float]:
        """{term: weight} of the enabled terms."""
        enabled = {
            "teacher_classifier_loss": (
                "teacher" in self.classif_losses_on,
                self.classif_udon_teacher_weight,
            ),
            "universal_student_classifier_loss": (
                "universal_student" in self.classif_losses_on,
                self.classif_udon_universal_student_weight,
            ),
            "distill_logits_loss": (self.distill_udon_logits, self.distill_udon_logits_weight),
            "distill_simils_loss": (
                self.distill_udon_batch_simils,
                self.distill_udon_simils_weight,
            ),
        }
        return {k: w for k, (on, w) in enabled.items() if on}


def classification(cos: jax.Array, labels: jax.Array, cfg: UdonLossConfig) -> jax.Array:
    """Mean normalised-softmax CE of scale * cos (normface by default)."""
    return losses.classification_loss(
        cos,
        labels,
        loss_type=cfg.loss_type,
        scale=cfg.scale,
        margin=cfg.margin,
        label_smoothing=cfg.label_smoothing,
    )


def logit_distillation(
    cos_teacher: jax.Array, cos_student: jax.Array, tau_teacher: float, tau_student: float
) -> jax.Array:
    """mean_i KL(softmax(sg(cos_T)/tau_T) || softmax(cos_S/tau_S)); no tau^2 factor."""
    log_pt = jax.nn.log_softmax(jax.lax.stop_gradient(cos_teacher) / tau_teacher, axis=-1)
    log_ps = jax.nn.log_softmax(cos_student / tau_student, axis=-1)
    return jnp.mean(jnp.sum(jnp.exp(log_pt) * (log_pt - log_ps), axis=-1))


def similarity_distillation(student: jax.Array, teacher: jax.Array, groups: int) -> jax.Array:
    """(B/4) * mean_g mean_ij (S_ij - T_ij)^2, S = s s^T, T = sg(t t^T) within each group.

    student [B, ds], teacher [B, dt] (unit rows); B must be a multiple of `groups`.
    """
    b = student.shape[0]
    if groups < 1 or b % groups:
        raise ValueError(
            f"config.loss.distill_udon_simils_groups={groups} must divide the global batch ({b})."
        )
    s = student.reshape(groups, b // groups, -1)
    t = jax.lax.stop_gradient(teacher).reshape(groups, b // groups, -1)
    sim_s = jnp.einsum("gid,gjd->gij", s, s)
    sim_t = jnp.einsum("gid,gjd->gij", t, t)
    return (b / 4.0) * jnp.mean(jnp.square(sim_s - sim_t))


def loss_terms(
    cos_teacher: jax.Array,
    cos_student: jax.Array,
    cos_student_distill: jax.Array,
    teacher: jax.Array,
    student_distill: jax.Array,
    labels: jax.Array,
    cfg: UdonLossConfig,
) -> dict[str, jax.Array]:
    """Every term (computed even when its weight is 0, for logging) plus both precisions@1;
    under label smoothing also both classification losses without it (`<term>_unsmoothed`,
    what the original logs and its sampler reads: train/dynamic_sampler.py).

    `cos_student_distill` / `student_distill` are the student quantities the distillation
    terms see (the same arrays unless distillation must not reach the backbone).
    """
    terms = {
        "teacher_classifier_loss": classification(cos_teacher, labels, cfg),
        "universal_student_classifier_loss": classification(cos_student, labels, cfg),
        "distill_logits_loss": logit_distillation(
            cos_teacher, cos_student_distill, cfg.temperature_teacher, cfg.temperature_student
        ),
        "distill_simils_loss": similarity_distillation(
            student_distill, teacher, cfg.distill_udon_simils_groups
        ),
        "teacher_precision_at_1": losses.precision_at_1(cos_teacher, labels),
        "universal_student_precision_at_1": losses.precision_at_1(cos_student, labels),
    }
    if cfg.label_smoothing:
        plain = dataclasses.replace(cfg, label_smoothing=0.0)
        terms["teacher_classifier_loss_unsmoothed"] = classification(cos_teacher, labels, plain)
        terms["universal_student_classifier_loss_unsmoothed"] = classification(
            cos_student, labels, plain
        )
    return terms


def total_loss(terms: dict[str, jax.Array], cfg: UdonLossConfig) -> jax.Array:
    """sum_k w_k L_k / sum_k w_k over the enabled terms."""
    weights = cfg.weights()
    return sum(w * terms[k] for k, w in weights.items()) / sum(weights.values())
