"""Hostile files for the reader tests, and peak memory of a reader run in a fresh process."""

from __future__ import annotations

import io
import os
import pathlib
import subprocess
import sys
import zipfile

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
PEAK_BOUND_MB = 300  # "a few hundred MB": every bomb below declares more than this


def npy_header(shape: tuple[int, ...], descr: str = "<f4") -> bytes:
    """The .npy header (magic, version 1.0) of an array of `shape`."""
    out = io.BytesIO()
    header = {"descr": descr, "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(out, header)
    return out.getvalue()


def zero_bomb_member(z: zipfile.ZipFile, name: str, shape: tuple[int, ...]) -> None:
    """A deflated .npy member of zeros with `shape` (float32), written without ever holding it
    in memory: a few MB on disk, shape's bytes inflated."""
    with z.open(name, "w", force_zip64=True) as f:
        f.write(npy_header(shape))
        left = int(np.prod(shape)) * 4
        chunk = bytes(1 << 22)
        while left:
            n = min(left, len(chunk))
            f.write(chunk[:n])
            left -= n


def zero_bomb_npz(path: str, members: dict[str, tuple[int, ...]], level: int = 9) -> str:
    """A .npz whose members are zero bombs (deflate level `level`)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=level) as z:
        for name, shape in members.items():
            zero_bomb_member(z, name + ".npy", shape)
    return path


def peak_run(code: str, timeout: float = 120) -> tuple[int, str, float]:
    """(exit code, stderr, peak resident MB) of `python -c code` with the worktree first on the
    path; the peak is the child's ru_maxrss, printed by the child itself at exit."""
    wrapped = (
        "import atexit, resource, sys\n"
        "atexit.register(lambda: print('PEAK_KB', resource.getrusage(resource.RUSAGE_SELF)"
        ".ru_maxrss, file=sys.stderr))\n" + code
    )
    env = {k: v for k, v in os.environ.items() if k != "UE_VERBOSE"}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("JAX_PLATFORMS", "cpu")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    proc = subprocess.run(
        [sys.executable, "-c", wrapped],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
    )
    lines = proc.stderr.splitlines()
    peak = next((int(line.split()[1]) for line in lines if line.startswith("PEAK_KB")), -1)
    err = "\n".join(line for line in lines if not line.startswith("PEAK_KB"))
    return proc.returncode, err, peak / 1024
