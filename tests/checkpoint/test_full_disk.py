"""A full disk during a checkpoint save ends in one line: orbax's background threads used to log
the failure with its traceback (four times) before our DiskFull line."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ERROR = (
    'RESOURCE_EXHAUSTED: Error writing "params.w/0": Failed to write 16 bytes to file 4: '
    "No space left on device [os_error_code='28']"
)  # what TensorStore raises (seen on a 300 KB tmpfs)
# A command that saves steps 2 and 4; the write of step 4 fails inside orbax's background
# serialisation (the same thread, futures and log records as a real full disk).
SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    from orbax.checkpoint._src.serialization import type_handlers
    from universal_embedding import checkpoint
    from universal_embedding.errors import command

    workdir, async_save = sys.argv[1], sys.argv[2] == "1"
    write = type_handlers.NumpyHandler._open_and_write

    async def full(self, value, tspec, context):
        if ".orbax-checkpoint-tmp" in str(tspec) and "/4." in str(tspec):
            raise ValueError(sys.argv[3])
        return await write(self, value, tspec, context)

    type_handlers.NumpyHandler._open_and_write = full

    def main(argv):
        ckpts = checkpoint.Checkpoints(workdir, checkpoint_steps=1, max_to_keep=3,
                                       async_save=async_save)
        try:
            for step in (2, 4, 6):
                state = {"params": {"w": np.arange(4, dtype=np.float32) + step}}
                ckpts.save_latest(step, state, {}, force=True)
                ckpts.wait()
        finally:
            ckpts.close()

    command.run(main, argv=sys.argv[:1])
    """
)


@pytest.mark.parametrize("async_save", [True, False])
def test_a_full_disk_during_a_save_is_one_line_without_tracebacks(tmp_path, async_save):
    workdir = str(tmp_path / "w")
    env = {k: v for k, v in os.environ.items() if k != "UE_VERBOSE"}
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, workdir, str(int(async_save)), ERROR],
        capture_output=True, text=True, cwd=ROOT, timeout=120, env=env,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    latest = os.path.join(workdir, "checkpoints", "latest")
    assert lines == [
        f"error (DiskFull): No space left on device while saving step 4 under "
        f"{os.path.dirname(latest)} (the partial save was removed; last intact checkpoint: "
        "step 2). Free space or lower config.max_checkpoints_to_keep, then rerun the same "
        "command. [--verbose for the traceback]"
    ]
    assert os.listdir(latest) == ["2"]


def test_verbose_keeps_orbax_s_records(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "w"), "0", ERROR],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
        env={**os.environ, "UE_VERBOSE": "1"},
    )  # fmt: skip
    assert proc.returncode == 1
    assert "_SignalingThread.run() raised an exception" in proc.stderr
    assert proc.stderr.count("Traceback") >= 2


# TensorStore finishing a write after orbax closed its asyncio loop: asyncio raises in
# call_soon_threadsafe and the C++ side reports it through sys.unraisablehook with no object,
# a bare traceback (six to sixteen of them before a checkpoint error).
CLOSED_LOOP = textwrap.dedent(
    """
    import asyncio, gc, sys

    kinds = []  # the type of the hook's argument, from one real unraisable
    sys.unraisablehook = lambda u: kinds.append(type(u))

    class Raises:
        def __del__(self):
            raise ValueError

    Raises()
    gc.collect()
    sys.unraisablehook = sys.__unraisablehook__
    import universal_embedding  # installs errors/quiet.py

    def report(error):  # what TensorStore's C++ side hands the hook: no object, no message
        sys.unraisablehook(kinds[0]((type(error), error, error.__traceback__, None, None)))

    loop = asyncio.new_event_loop()
    loop.close()
    try:
        loop.call_soon_threadsafe(print)
    except RuntimeError as e:
        report(e)
    try:
        raise RuntimeError("Event loop is closed")  # not raised by asyncio: kept
    except RuntimeError as e:
        report(e)
    """
)


@pytest.mark.parametrize("verbose, tracebacks", [("0", 1), ("1", 2)])
def test_closed_loop_tracebacks_are_dropped_unless_verbose(verbose, tracebacks):
    proc = subprocess.run(
        [sys.executable, "-c", CLOSED_LOOP], capture_output=True, text=True, cwd=ROOT,
        timeout=60, env={**os.environ, "UE_VERBOSE": verbose},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.count("Traceback (most recent call last)") == tracebacks, proc.stderr
    assert proc.stderr.count("RuntimeError: Event loop is closed") == tracebacks
    assert proc.stderr.count("in call_soon_threadsafe") == tracebacks - 1
