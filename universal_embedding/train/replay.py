"""After a resume, steps between the restored checkpoint and the interruption run again.

They give the same values (training is deterministic), so what was already written for them
is not written a second time: metrics.jsonl, TensorBoard and W&B keep one row per step. The
same holds for a run killed before its first checkpoint (it restarts at step 0) and for one
killed during its final test (the test runs again at the last step).
"""

from __future__ import annotations

from universal_embedding import writers


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
