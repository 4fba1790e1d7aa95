"""The light install (slow: a fresh venv from the package index): `pip install ".[serve]"`
embeds images without TensorFlow or JAX, in under 200 MB; its size and import time are
printed (docs/using-a-model.md#onnx records them)."""

from __future__ import annotations

import pathlib
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from universal_embedding.serve import embed_onnx

REPO = pathlib.Path(__file__).resolve().parents[2]
HEAVY = ("tensorflow", "tensorflow-cpu", "jax", "jaxlib", "flax", "torch")
IMPORT = "import time; t = time.perf_counter(); import {}; print(time.perf_counter() - t)"


def _size_mb(folder: pathlib.Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 1e6


@pytest.mark.slow
def test_serve_extra_in_a_fresh_venv(tmp_path, channel_means_model):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=600)
    empty = _size_mb(venv)
    python, pip = str(venv / "bin" / "python"), str(venv / "bin" / "pip")
    start = time.perf_counter()
    proc = subprocess.run([pip, "install", "-q", f"{REPO}[serve]"], capture_output=True,
                          text=True, timeout=3600)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    install_s = time.perf_counter() - start
    listed = subprocess.run([pip, "list", "--format=freeze"], capture_output=True, text=True)
    names = {line.split("==")[0].lower().replace("_", "-") for line in listed.stdout.split()}
    assert not names & set(HEAVY), names & set(HEAVY)
    assert {"onnxruntime", "simplejpeg", "numpy", "pillow", "universal-embedding"} <= names
    size = _size_mb(venv) - empty
    assert size < 200, size
    module = "universal_embedding.serve.embed_onnx"
    times = [float(subprocess.run([python, "-c", IMPORT.format(module)], capture_output=True,
                                  text=True, check=True, cwd=tmp_path).stdout)
             for _ in range(3)]  # fmt: skip

    model = channel_means_model(tmp_path / "model.onnx", 16)
    files = [str(tmp_path / "a.jpg"), str(tmp_path / "b.png")]
    image = np.random.default_rng(0).integers(0, 256, (40, 30, 3), dtype=np.uint8)
    Image.fromarray(image).save(files[0], quality=80)
    Image.fromarray(image).save(files[1])
    out = str(tmp_path / "v.npy")
    start = time.perf_counter()
    proc = subprocess.run([python, "-m", module, *files, "--model", model, "--out", out],
                          capture_output=True, text=True, cwd=tmp_path, timeout=600)  # fmt: skip
    run_s = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr[-3000:]
    np.testing.assert_allclose(np.load(out), embed_onnx.embed(files, model=model), rtol=1e-6)
    print(
        f"\nserve install: {size:.0f} MB over an empty venv ({len(names)} distributions, "
        f"{install_s:.0f} s); import embed_onnx {min(times):.2f} s (best of 3: {times}); "
        f"command on 2 images {run_s:.2f} s"
    )
