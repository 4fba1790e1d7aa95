"""model.onnx from a JAX embedding function, converted by jax2onnx (docs/using-a-model.md#onnx).

The graph takes `pixels`, float32 [B, S, S, 3] in 0..255 (the evaluation transform before
normalisation: embed_onnx.eval_pixels), and returns `embeddings`, float32 [B, d]; B is dynamic.
jax2onnx traces the JAX function itself (no TensorFlow in between); tf2onnx cannot read the
`XlaCallModule` op that jax2tf writes into the SavedModel.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Callable, Iterator, Mapping

import numpy as np

INPUT, OUTPUT = "pixels", "embeddings"
STANDALONE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "embed_onnx.py")
INSTALL_HINT = (
    "pip install -r requirements-onnx.txt && pip install --no-deps jax2onnx==0.17.1 "
    "(see docs/using-a-model.md#onnx)"
)
# jax2onnx logs every optional plugin it cannot import (with a traceback) and onnx_ir warns
# about untyped shape constants: noise, not problems of the exported model.
_CHATTY_LOGGERS = ("jax2onnx", "onnx_ir")


@contextlib.contextmanager
def quiet_loggers(names=_CHATTY_LOGGERS, level: int = logging.ERROR) -> Iterator[None]:
    """Raise the level of the named loggers for the duration (restored afterwards)."""
    loggers = [logging.getLogger(n) for n in names]
    old = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(level)
    try:
        yield
    finally:
        for lg, lvl in zip(loggers, old, strict=True):
            lg.setLevel(lvl)


def _converter():
    try:
        import jax2onnx
        import onnx
    except ImportError as e:
        raise RuntimeError(f"ONNX export needs {e.name}: {INSTALL_HINT}.") from None
    return jax2onnx, onnx


def convert(
    pixels_fn: Callable, path: str, *, image_size: int, metadata: Mapping[str, str], verbose=False
) -> str:
    """Write `pixels_fn(pixels [B, S, S, 3]) -> [B, d]` to `path` as ONNX with `metadata`."""
    jax2onnx, onnx = _converter()
    with contextlib.nullcontext() if verbose else quiet_loggers():
        model = jax2onnx.to_onnx(
            pixels_fn,
            [("B", image_size, image_size, 3)],
            model_name="universal_embedding",
            input_names=[INPUT],
            output_names=[OUTPUT],
        )
    onnx.helper.set_model_props(model, {k: str(v) for k, v in metadata.items()})
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    onnx.save(model, path)
    return path


def max_difference(path: str, pixels_fn: Callable, image_size: int, n: int = 2) -> float:
    """max |onnxruntime - JAX| over `n` random images: the conversion checked on CPU."""
    import onnxruntime as ort

    pixels = np.random.default_rng(0).uniform(0, 255, (n, image_size, image_size, 3))
    pixels = pixels.astype(np.float32)
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    got = session.run(None, {INPUT: pixels})[0]
    return float(np.abs(got - np.asarray(pixels_fn(pixels), np.float32)).max())


def write_standalone(out_dir: str) -> str:
    """Copy embed_onnx.py (numpy, Pillow, onnxruntime, simplejpeg only) into out_dir."""
    dest = os.path.join(out_dir, "embed_onnx.py")
    shutil.copyfile(STANDALONE, dest)
    return dest
