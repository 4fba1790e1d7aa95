"""Stopping cleanly on SIGTERM / SIGINT (what SLURM, Kubernetes and spot preemption send first).

One process: `SignalWatch` turns the first SIGTERM or SIGINT into a flag; the trainer finishes
the step it is in, saves a checkpoint of that step, waits for the save and raises `Preempted`
(exit status 1 with one line). A second signal acts as usual (a second Ctrl-C interrupts).
Several processes: JAX's preemption service receives SIGTERM and all processes agree on the
step to stop at; Orbax's CheckpointManager saves there (`Checkpoints.reached_preemption`).
"""

from __future__ import annotations

import signal
import threading

import jax
from absl import logging

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Preempted(SystemExit):
    """Training stopped on a signal after checkpointing; rerun the same command to resume."""


class SignalWatch:
    """`with SignalWatch() as watch:` records the first SIGTERM/SIGINT in `watch.received`.

    Installs handlers only in the main thread of a one-process run; restores the previous
    handlers on `disarm()` or when the block ends.
    """

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, object] = {}
        self._stage = ""  # set by raise_at_once: a signal then raises Preempted at once

    def __enter__(self) -> SignalWatch:
        main_thread = threading.current_thread() is threading.main_thread()
        if main_thread and jax.process_count() == 1:
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame) -> None:
        del frame
        if self.received is None:
            self.received = signum
            logging.warning("%s received: stopping after this step.", signal.Signals(signum).name)
        signal.signal(signum, self._previous.pop(signum, signal.SIG_DFL))
        if self._stage:
            self.check()

    def raise_at_once(self, stage: str) -> None:
        """From now on a signal raises Preempted at once (`stage`, e.g. 'the final test', has
        no checkpoint to save); one received earlier raises now. Call `check()` again when the
        stage ends: a Preempted swallowed by a library still ends the run non-zero."""
        self._stage = stage
        self.check()

    def check(self) -> None:
        """Raise Preempted when a signal was received during the stage of `raise_at_once`."""
        if self.received is not None and self._stage:
            name = signal.Signals(self.received).name
            raise Preempted(
                f"{name} received during {self._stage}: stopped; rerun the same command to "
                "finish (it resumes from the last checkpoint)"
            )

    def disarm(self) -> None:
        """Restore the previous handlers (signals act as usual again)."""
        while self._previous:
            sig, handler = self._previous.popitem()
            signal.signal(sig, handler)

    def __exit__(self, *exc) -> None:
        self.disarm()


def stop(step: int, ckpts) -> None:
    """Wait for the checkpoint of `step`, close the series and raise Preempted."""
    ckpts.wait()
    saved = ckpts.latest_step()
    ckpts.close()
    if saved != step:
        raise Preempted(f"preempted at step {step}: no checkpoint of it (latest: {saved})")
    logging.info("preempted at step %d: checkpoint saved", step)
    raise Preempted(f"preempted at step {step}: checkpoint saved")
