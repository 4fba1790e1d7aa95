"""After a resume, steps between the restored checkpoint and the interruption run again.

They give the same values (training is deterministic), so what was already written for them
is not written a second time: metrics.jsonl, TensorBoard and W&B keep one row per step. The
same holds for a run killed before its first checkpoint (it restarts at step 0) and for one
killed during its final test (the test runs again at the last step).
"""

from __future__ import annotations

import math
import os

from universal_embedding import writers
from universal_embedding.errors import limits

RESULTS_FILE = "results.json"  # report/results_files.py: written last, after the final test


def logged_from(workdir: str, step: int) -> set[tuple[int, str]]:
    """{(step, key)} already in workdir/metrics.jsonl for steps from `step` on."""
    return {
        (row["step"], key)
        for row in writers.read_metrics(workdir)
        if row.get("step", 0) >= step
        for key in row
        if key != "step"
    }


class SkipLogged:
    """Wraps a metric writer; write_scalars drops (step, key) pairs in `logged`."""

    def __init__(self, writer, logged: set[tuple[int, str]]):
        self._writer, self._logged = writer, logged

    def write_scalars(self, step: int, scalars) -> None:
        new = {k: v for k, v in scalars.items() if (int(step), k) not in self._logged}
        if new:
            self._writer.write_scalars(step, new)

    def __getattr__(self, name: str):
        return getattr(self._writer, name)


def skip_logged(writer, workdir: str, start: int):
    """`writer`, skipping what a previous run already wrote from step `start` on (rows of
    step `start` itself are those of the checkpoint resumed from, or step 0's of a restart)."""
    logged = logged_from(workdir, start)
    return SkipLogged(writer, logged) if logged else writer


def finished_results(workdir: str, final_test: bool) -> dict[str, float] | None:
    """A run whose last step is checkpointed: {} when it has no final test, the results of
    workdir/results.json when it has one (the test finished); None when that file is missing
    or unreadable (the test must run again)."""
    if not final_test:
        return {}
    path = os.path.join(workdir, RESULTS_FILE)
    if not os.path.isfile(path):
        return None
    try:
        saved = limits.read_json_object(path, "Results")
    except (OSError, ValueError):
        return None
    return {
        k: math.nan if v is None else float(v)
        for k, v in saved.items()
        if k != "provenance" and (v is None or isinstance(v, (int, float)))
    }


def finished_message(workdir: str, step: int, final_test: bool) -> str:
    """What a rerun of a finished run says."""
    tested = ", final test in results.json" if final_test else ""
    return (
        f"{workdir} already finished (step {step}{tested}): nothing to do; use another "
        "--workdir (or more steps) to train again."
    )
