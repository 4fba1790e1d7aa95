"""Which domain each training step uses: fixed, seeded schedules (docs/uned-benchmark.md §5).

A schedule is a plain int array of domain positions (index into the trained domain list),
one entry per step, so resuming only needs the step number: `domain_positions` says how
many batches each domain's stream has already given out.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

import numpy as np

STRATEGIES = ("round_robin", "dataset_size", "balanced", "specialist_top_steps")


def largest_remainder(weights: Sequence[float | int | str], total: int) -> np.ndarray:
    """Split `total` into integer parts proportional to `weights` (Hamilton's method).

    Each part gets floor(total * w / sum(w)); the leftover units go one each to the parts
    with the largest fractional remainders, ties to the lower position. Exact arithmetic.
    """
    fracs = [Fraction(str(w)) if isinstance(w, float) else Fraction(w) for w in weights]
    if not fracs or any(f < 0 for f in fracs) or sum(fracs) == 0:
        raise ValueError(f"Shares must be non-negative with a positive sum; got {list(weights)}.")
    if total < 0:
        raise ValueError(f"Cannot split a negative number of steps ({total}).")
    denom = sum(fracs)
    quotas = [total * f / denom for f in fracs]
    counts = [q.numerator // q.denominator for q in quotas]
    leftover = total - sum(counts)
    order = sorted(range(len(quotas)), key=lambda i: (-(quotas[i] - counts[i]), i))
    for i in order[:leftover]:
        counts[i] += 1
    return np.asarray(counts, dtype=np.int64)


def parse_shares(spec: str | Sequence[float]) -> list[float]:
    """'0.5,0.25,0.25' (config.specialist_top_steps) -> [0.5, 0.25, 0.25]."""
    if isinstance(spec, str):
        items = [s.strip() for s in spec.split(",") if s.strip()]
        try:
            return [float(s) for s in items]
        except ValueError as e:
            raise ValueError(f"specialist_top_steps must be comma-separated numbers: {e}") from e
    return [float(s) for s in spec]


def step_counts(
    strategy: str,
    num_domains: int,
    train_sizes: Sequence[int],
    num_steps: int,
    shares: Sequence[float] | None = None,
) -> np.ndarray:
    """Exact number of steps each domain gets under `strategy` over `num_steps` steps."""
    if strategy == "round_robin":
        return np.asarray(
            [len(range(i, num_steps, num_domains)) for i in range(num_domains)], np.int64
        )
    if strategy == "dataset_size":
        return largest_remainder(list(train_sizes), num_steps)
    if strategy == "balanced":
        return largest_remainder([1] * num_domains, num_steps)
    if strategy == "specialist_top_steps":
        if shares is None or len(shares) != num_domains:
            raise ValueError(
                f"specialist_top_steps needs one share per trained domain ({num_domains}); "
                f"got {None if shares is None else list(shares)}. Set config.specialist_top_steps "
                "to a comma-separated list such as '1,0,0,...'."
            )
        return largest_remainder(list(shares), num_steps)
    raise ValueError(f"Unknown sampling strategy '{strategy}'. Valid: {', '.join(STRATEGIES)}.")


def domain_schedule(
    strategy: str,
    domains: Sequence[str],
    train_sizes: Sequence[int],
    num_steps: int,
    seed: int,
    shares: Sequence[float] | None = None,
) -> np.ndarray:
    """int64 [num_steps] of domain positions: round_robin cycles, the others are shuffled.

    dataset_size: shares proportional to `train_sizes`; balanced: equal shares;
    specialist_top_steps: `shares` (one per domain). Every domain gets exactly its
    largest-remainder share of steps; the order is a permutation seeded by `seed`.
    """
    num_domains = len(domains)
    if num_domains == 0:
        raise ValueError("No training domain given (config.dataset_name is empty).")
    if len(train_sizes) != num_domains:
        raise ValueError(f"Got {len(train_sizes)} train sizes for {num_domains} domains {domains}.")
    if strategy == "dataset_size" and any(s <= 0 for s in train_sizes):
        empty = [d for d, s in zip(domains, train_sizes, strict=True) if s <= 0]
        raise ValueError(f"dataset_size sampling: empty train split for domains {empty}.")
    counts = step_counts(strategy, num_domains, train_sizes, num_steps, shares)
    if strategy == "round_robin":
        return np.arange(num_steps, dtype=np.int64) % num_domains
    ordered = np.repeat(np.arange(num_domains, dtype=np.int64), counts)
    return np.random.default_rng(seed).permutation(ordered)


def domain_positions(schedule: np.ndarray, step: int, num_domains: int | None = None) -> np.ndarray:
    """int64 [num_domains]: batches each domain consumed in steps [0, step) (exact resume)."""
    schedule = np.asarray(schedule)
    if not 0 <= step <= len(schedule):
        raise ValueError(f"Step {step} is outside the schedule of {len(schedule)} steps.")
    if num_domains is None:
        num_domains = int(schedule.max()) + 1 if len(schedule) else 0
    return np.bincount(schedule[:step], minlength=num_domains).astype(np.int64)


class StaticSampler:
    """The trainer's sampler interface over a fixed schedule (dynamic_sampler.py: UDON's)."""

    def __init__(self, schedule: np.ndarray, num_domains: int) -> None:
        self.schedule = np.asarray(schedule)
        self.num_domains = num_domains

    def initial_scalars(self) -> dict[str, float]:
        return {}

    def domain_at(self, k: int) -> int:
        return int(self.schedule[k])

    def before_step(self, k: int) -> dict[str, float] | None:
        return None

    def record(self, domain: int, metrics) -> None:
        pass

    def positions_at(self, step: int) -> np.ndarray:
        return domain_positions(self.schedule, step, self.num_domains)

    def checkpoint_extra(self, done: int) -> dict:
        return {"domain_positions": self.positions_at(done)}

    def restore(self, extra, start: int, workdir: str) -> None:
        """Check that the checkpoint was written with this schedule."""
        expected = self.positions_at(start)
        saved = extra.get("domain_positions")
        if saved is not None and list(saved) != expected.tolist():
            raise ValueError(
                f"The checkpoint in {workdir} was written with another domain schedule "
                f"(stream positions {saved}, this config gives {expected.tolist()}). "
                "Use a new --workdir when changing the data, domains, sampling or steps."
            )
