"""UDON's dynamic domain sampler (docs/udon-method.md §3): more batches for slower-learning domains.

Steps are numbered s = 1..total_steps here as in the original (the trainer's 0-based loop
index k is s - 1). The schedule starts as the configured one (round robin by default). Before
step s with s % every == 0 the sampler:
1. takes, per domain seen in the window, the mean classification loss L_d of
   `update_sampler_logit_type` ('teacher' or 'universal_student') over the window's images;
2. sets w_d = L_d / sum L (proportional: no softmax, temperature or floor); domains absent from
   the window keep their old weight, then all weights are renormalised;
3. redraws the whole schedule: floor(total_steps * w_d) steps per domain, the last domain the
   remainder, permuted with jax.random.PRNGKey(s).
The loss window (`window`): 'since_update' (default) is exactly the steps since the previous
update; 'original' is the original trainer's buffer, its training-summary buffer, emptied after
step 1 and after every step t with t % summary_every == 1 (`original_window_cleared`), so its
windows are uneven and may reach back before the previous update. The sampler reads the
classification loss without label smoothing (`<type>_classifier_loss_unsmoothed`, which the
step adds when smoothing is on), as the original logs it. `partitionable=False`
draws the permutation with JAX's `jax_threefry_partitionable=False` (the original's JAX
default: its exact order). Weights, the window's sums, the stream positions and both options
are checkpointed, and the schedule is a pure function of (weights, last update step), so a
resumed run draws the same domains as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax
import numpy as np

LOGIT_TYPES = ("teacher", "universal_student")
WINDOWS = ("since_update", "original")
UNSMOOTHED = "_unsmoothed"  # suffix of the step's classification losses without smoothing


def original_window_cleared(step: int, summary_every: int) -> bool:
    """Whether the original trainer empties its loss buffer after (1-based) step `step`: it
    writes its training summary, then clears the buffer, after step 1 (its timer's warm-up
    tick) and after every step t with t % log_summary_steps == 1 (docs/udon-method.md §3)."""
    return step == 1 or step % summary_every == 1


def updated_weights(old: np.ndarray, loss_sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """New domain weights from the window's per-domain loss sums and image counts."""
    old = np.asarray(old, np.float64)
    counts = np.asarray(counts)
    present = counts > 0
    if not present.any():
        return old.copy()
    means = np.asarray(loss_sums, np.float64)[present] / counts[present]
    if not np.all(np.isfinite(means)) or means.sum() <= 0:
        return old.copy()  # nothing usable to rank domains by
    new = old.copy()
    new[present] = means / means.sum()
    return new / new.sum()


def redraw_schedule(
    weights: np.ndarray, total_steps: int, seed: int, partitionable: bool = True
) -> np.ndarray:
    """int64 [total_steps]: floor(total * w_d) steps per domain (last: the rest), permuted
    with PRNGKey(seed) under jax_threefry_partitionable=`partitionable`."""
    weights = np.asarray(weights, np.float64)
    counts = np.floor(total_steps * weights[:-1]).astype(np.int64)
    counts = np.append(counts, total_steps - counts.sum())
    ordered = np.repeat(np.arange(len(weights), dtype=np.int64), counts)
    with jax.threefry_partitionable(partitionable):
        perm = np.asarray(jax.random.permutation(jax.random.PRNGKey(seed), total_steps))
    return ordered[perm]


class DynamicSampler:
    """The trainer's sampler interface (see samplers.StaticSampler) with loss-driven updates."""

    def __init__(
        self,
        domains: Sequence[str],
        initial_schedule: np.ndarray,
        initial_weights: Sequence[float],
        *,
        every: int,
        logit_type: str,
        batch_size: int,
        window: str = "since_update",
        summary_every: int = 1,
        partitionable: bool = True,
    ) -> None:
        if every < 1:
            raise ValueError(f"config.update_sampler_every_steps must be >= 1, got {every}.")
        if logit_type not in LOGIT_TYPES:
            raise ValueError(
                f"config.update_sampler_logit_type={logit_type!r}; valid: {', '.join(LOGIT_TYPES)}."
            )
        if window not in WINDOWS:
            raise ValueError(f"config.sampler_window={window!r}; valid: {', '.join(WINDOWS)}.")
        if summary_every < 1:
            raise ValueError(f"log_summary_steps must be >= 1, got {summary_every}.")
        self.domains = tuple(domains)
        self.every = int(every)
        self.metric = f"{logit_type}_classifier_loss"
        self.window = window
        self.summary_every = int(summary_every)
        self.partitionable = bool(partitionable)
        self.batch_size = int(batch_size)
        self._initial = np.asarray(initial_schedule, np.int64)
        self.total_steps = len(self._initial)
        n = len(self.domains)
        self.weights = np.asarray(initial_weights, np.float64)
        self.last_update = 0  # step s of the last update (0: none yet)
        self.loss_sums = np.zeros(n, np.float64)
        self.counts = np.zeros(n, np.int64)
        self.positions = np.zeros(n, np.int64)
        self.schedule = self._initial
        self._pending: list[tuple[int, object]] = []

    # ---- the trainer's interface ----
    def initial_scalars(self) -> dict[str, float]:
        """sampling_weights/<domain> at the start (logged at step 0)."""
        return self._scalars()

    def domain_at(self, k: int) -> int:
        """Domain position of loop step k (0-based; update first with before_step)."""
        return int(self.schedule[k])

    def before_step(self, k: int) -> dict[str, float] | None:
        """Update before step s = k + 1 when s is a multiple of `every`; logged scalars or None."""
        s = k + 1
        if s % self.every:
            return None
        self._flush()
        self.weights = updated_weights(self.weights, self.loss_sums, self.counts)
        self.last_update = s
        self.schedule = self._redraw()
        if self.window == "since_update":
            self._clear_window()
        return self._scalars()

    def record(self, domain: int, metrics: Mapping[str, object]) -> None:
        """Count a finished step of `domain`; its loss stays on device until needed."""
        self.positions[domain] += 1
        unsmoothed = metrics.get(self.metric + UNSMOOTHED)  # present under label smoothing
        self._pending.append((domain, metrics[self.metric] if unsmoothed is None else unsmoothed))
        done = int(self.positions.sum())  # the 1-based step just finished
        if self.window == "original" and original_window_cleared(done, self.summary_every):
            self._clear_window()

    def positions_at(self, step: int) -> np.ndarray:
        """Batches each domain's stream gave out (valid right after restore / at the loop's k)."""
        if int(self.positions.sum()) != step:
            raise RuntimeError(f"Sampler positions sum to {self.positions.sum()}, not {step}.")
        return self.positions.copy()

    def checkpoint_extra(self, done: int) -> dict:
        """What a checkpoint after `done` steps must hold to resume exactly."""
        self._flush()
        return {
            "domain_positions": self.positions_at(done).tolist(),
            "sampler": {
                "weights": self.weights.tolist(),
                "last_update": int(self.last_update),
                "window_loss_sums": self.loss_sums.tolist(),
                "window_counts": self.counts.tolist(),
                "window": self.window,
                "threefry_partitionable": self.partitionable,
            },
        }

    def restore(self, extra: Mapping, start: int, workdir: str) -> None:
        """Load the state checkpoint_extra wrote after `start` steps."""
        saved = extra.get("sampler")
        n = len(self.domains)
        if saved is None or len(saved.get("weights", ())) != n:
            raise ValueError(
                f"The checkpoint in {workdir} holds no dynamic-sampler state for {n} domains "
                "(written by another method or domain list). Use a new --workdir."
            )
        options = (saved.get("window", "since_update"), saved.get("threefry_partitionable", True))
        if options != (self.window, self.partitionable):
            raise ValueError(
                f"The checkpoint in {workdir} was trained with sampler_window={options[0]!r}, "
                f"sampler_threefry_partitionable={options[1]}: resume with those values (this "
                f"run has {self.window!r}, {self.partitionable}) or use a new --workdir."
            )
        self.weights = np.asarray(saved["weights"], np.float64)
        self.last_update = int(saved["last_update"])
        self.loss_sums = np.asarray(saved["window_loss_sums"], np.float64)
        self.counts = np.asarray(saved["window_counts"], np.int64)
        self.positions = np.asarray(extra["domain_positions"], np.int64)
        self.positions_at(start)
        self.schedule = self._redraw() if self.last_update else self._initial

    # ---- internals ----
    def _redraw(self) -> np.ndarray:
        return redraw_schedule(self.weights, self.total_steps, self.last_update, self.partitionable)

    def _clear_window(self) -> None:
        self._pending = []
        self.loss_sums[:] = 0.0
        self.counts[:] = 0

    def _flush(self) -> None:
        if not self._pending:
            return
        values = jax.device_get([v for _, v in self._pending])
        for (d, _), v in zip(self._pending, values, strict=True):
            self.loss_sums[d] += float(v) * self.batch_size
            self.counts[d] += self.batch_size
        self._pending = []

    def _scalars(self) -> dict[str, float]:
        return {
            f"sampling_weights/{d}": float(w)
            for d, w in zip(self.domains, self.weights, strict=True)
        }
