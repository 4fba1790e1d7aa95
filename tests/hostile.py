"""Hostile files for the reader tests, and peak memory of a reader run in a fresh process."""

from __future__ import annotations

import io
import json
import os
import pathlib
import subprocess
import sys
import zipfile

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
PEAK_BOUND_MB = 200  # growth allowed while reading a bomb; every bomb declares more than this


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


def peak_runs(setup: str, calls: dict[str, str], timeout: float = 180) -> dict[str, dict]:
    """Each of `calls` run in one fresh Python process after `setup` (imports: not counted),
    with the worktree first on the path: {name: {'error': 'Type: message' or '', 'grown_mb':
    how far the peak resident size (ru_maxrss) grew during that call}}. A call is measured
    against the peak before it, so run the ones expected to stay small first."""
    wrapped = (
        "import json, resource, sys\n"
        "peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        f"{setup}\n"
        f"calls = {calls!r}\n"
        "for name, call in calls.items():\n"
        "    base, error = peak(), ''\n"
        "    try:\n"
        "        exec(call)\n"
        "    except BaseException as e:\n"
        "        error = f'{type(e).__name__}: {e}'\n"
        "    out = {'name': name, 'error': error, 'grown_mb': (peak() - base) / 1024}\n"
        "    print('RESULT', json.dumps(out), flush=True)\n"
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
    results = [
        json.loads(line[7:]) for line in proc.stdout.splitlines() if line.startswith("RESULT ")
    ]
    assert len(results) == len(calls), proc.stderr[-3000:]
    return {r.pop("name"): r for r in results}
