"""The UDON train step: one compiled program for every domain (the domain index is traced).

The model computes the backbone feature, the student and every teacher and picks the batch's
domain teacher; `lax.switch` on the domain index then runs that domain's teacher and student
heads and the loss terms (train/udon_losses.py). Other domains' teachers and heads get zero
gradients (not missing ones), so AdamW's moments and weight decay still move them, as in the
original. Gradients are those of the mean loss over the global batch, never clipped unless
config.grad_clip_norm says so.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from universal_embedding.distributed.mesh import replicated
from universal_embedding.models import pixels, udon
from universal_embedding.train import udon_losses
from universal_embedding.train.steps import TrainState, apply_gradients

Step = Callable[[TrainState, dict[str, jax.Array]], tuple[TrainState, dict[str, jax.Array]]]


def make_loss_fn(
    model: udon.UdonModel, cfg: udon_losses.UdonLossConfig, train_backbone: bool = True
) -> Callable:
    """loss_fn(params, images, labels, domain) -> (loss, metrics); `domain` may be traced."""
    classes = tuple(model.classes)

    def loss_fn(params, images, labels, domain):
        used = params
        if not train_backbone:
            used = {**params, "backbone": jax.lax.stop_gradient(params["backbone"])}
        out = model.apply({"params": used}, images, train=True, domain=domain)
        teacher, student = out[udon.TEACHER], out[udon.STUDENT]
        student_distill = student
        if not cfg.distill_grads_to_backbone:
            f = jax.lax.stop_gradient(out["backbone_out"])
            student_distill = udon.student_projection(used, f, model.student_dim)

        def branch(d: int) -> Callable:
            def run(teacher, student, student_distill, labels):
                cos_t = udon.head_cosines(used, udon.teacher_head_name(d), classes[d], teacher)
                name_s = udon.student_head_name(d)
                cos_s = udon.head_cosines(used, name_s, classes[d], student)
                cos_sd = cos_s
                if not cfg.distill_grads_to_backbone:
                    cos_sd = udon.head_cosines(used, name_s, classes[d], student_distill)
                return udon_losses.loss_terms(
                    cos_t, cos_s, cos_sd, teacher, student_distill, labels, cfg
                )

            return run

        branches = [branch(d) for d in range(len(classes))]
        terms = jax.lax.switch(domain, branches, teacher, student, student_distill, labels)
        loss = udon_losses.total_loss(terms, cfg)
        return loss, {**terms, "precision_at_1": terms["universal_student_precision_at_1"]}

    return loss_fn


def make_udon_train_steps(
    model: udon.UdonModel,
    tx: optax.GradientTransformation,
    mesh: Mesh,
    cfg: udon_losses.UdonLossConfig,
    *,
    train_backbone: bool = True,
    pixel_stats: pixels.PixelStats | None = None,
) -> dict[str, Step]:
    """{domain: step(state, batch) -> (state, metrics)}: one jit program shared by all domains.

    Metrics: 'loss', every loss term, teacher / student precision@1 ('precision_at_1' is the
    student's) and 'grad_norm'; they stay on device. `state` is donated. uint8 batch images
    are normalised inside the step with `pixel_stats` (mean, std), float ones taken as they are.
    """
    rep = replicated(mesh)
    loss_fn = make_loss_fn(model, cfg, train_backbone)

    def step_fn(state: TrainState, batch: dict[str, jax.Array], domain: jax.Array):
        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        images = pixels.model_input(batch["images"], pixel_stats)
        (loss, metrics), grads = grad_fn(state.params, images, batch["labels"], domain)
        metrics = {"loss": loss, **metrics, "grad_norm": optax.global_norm(grads)}
        return apply_gradients(state, tx, grads), metrics

    jitted = jax.jit(step_fn, out_shardings=(rep, rep), donate_argnums=(0,))
    return {name: _bind(jitted, d) for d, name in enumerate(model.domains)}


def _bind(jitted: Callable, d: int) -> Step:
    domain = jnp.asarray(d, jnp.int32)

    def step(state: TrainState, batch: dict[str, jax.Array]):
        return jitted(state, batch, domain)

    return step
