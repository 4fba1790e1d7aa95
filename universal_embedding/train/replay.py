"""After a resume, steps between the restored checkpoint and the interruption run again.

They give the same values (training is deterministic), so what was already written for them
is not written a second time: metrics.jsonl, TensorBoard and W&B keep one row per step.
"""

from __future__ import annotations

from universal_embedding import writers


def logged_after(workdir: str, step: int) -> set[tuple[int, str]]:
    """{(step, key)} already in workdir/metrics.jsonl for steps after `step`."""
    return {
        (row["step"], key)
        for row in writers.read_metrics(workdir)
        if row.get("step", 0) > step
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
    """`writer`, skipping what a previous run already wrote after step `start` (0: as is)."""
    logged = logged_after(workdir, start) if start else set()
    return SkipLogged(writer, logged) if logged else writer
