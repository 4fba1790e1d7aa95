"""Per-image CPU cost of JPEG decoding with every libjpeg-turbo binding that imports here.

    python benchmarks/decoders.py [--data_dir DIR] [--images 24] [--sets 1024x768,2048x1536]

On the photo-like sets of jpeg_sets.py (made in --data_dir when missing), one thread each: TF
(the project's decoder) at DCT scalings 1, 2, 4, 8, and where installed Pillow (draft mode),
OpenCV (IMREAD_REDUCED_COLOR_*) and simplejpeg (min_height / min_width) at full size and at
their smallest scaling. Median ms per image (CPU time of this process), and the speed relative to
TF's full decode, which every full-resolution pipeline (the reference's too) pays. The smallest
decode is the floor of any CPU stream over the same files: no binding skips the entropy
(Huffman) decoding, which scales with the file's bytes. Pipeline rates, the reference's
included, come from input_pipeline.py (its "decode only" rows).
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import tempfile

import jpeg_sets
import numpy as np


def ms_per_call(fn, data: list[bytes], repeats: int = 3) -> float:
    """Median over repeats of CPU ms per image for fn over all of data."""
    fn(data[0])
    runs = []
    for _ in range(repeats):
        start = jpeg_sets.cpu_seconds()
        for raw in data:
            fn(raw)
        runs.append((jpeg_sets.cpu_seconds() - start) * 1e3 / len(data))
    return statistics.median(runs)


def tf_decoders() -> dict:
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    out = {}
    for r in (1, 2, 4, 8):
        out[f"TF ratio {r}"] = lambda raw, r=r: tf.io.decode_jpeg(raw, channels=3, ratio=r)
    return out


def other_decoders() -> dict:
    """Full and smallest-scale decode of each other binding that imports."""
    out = {}
    try:
        from PIL import Image

        def pil(raw, draft):
            image = Image.open(io.BytesIO(raw))
            if draft:
                image.draft("RGB", (1, 1))
            return np.asarray(image.convert("RGB"))

        out["Pillow full"] = lambda raw: pil(raw, False)
        out["Pillow draft 1/8"] = lambda raw: pil(raw, True)
    except ImportError:
        pass
    try:
        import cv2

        cv2.setNumThreads(1)
        buf = lambda raw: np.frombuffer(raw, np.uint8)  # noqa: E731
        out["OpenCV full"] = lambda raw: cv2.imdecode(buf(raw), cv2.IMREAD_COLOR)
        out["OpenCV 1/8"] = lambda raw: cv2.imdecode(buf(raw), cv2.IMREAD_REDUCED_COLOR_8)
    except ImportError:
        pass
    try:
        import simplejpeg

        out["simplejpeg full"] = lambda raw: simplejpeg.decode_jpeg(raw, fastdct=True)
        out["simplejpeg 1/8"] = lambda raw: simplejpeg.decode_jpeg(
            raw, fastdct=True, fastupsample=True, min_height=1, min_width=1
        )
    except ImportError:
        pass
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data_dir", default="")
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--sets", default=",".join(jpeg_sets.SIZES))
    args = parser.parse_args()
    decoders = {**tf_decoders(), **other_decoders()}
    with tempfile.TemporaryDirectory() as tmp:
        root = args.data_dir or tmp
        for name in args.sets.split(","):
            jpeg_sets.make_set(root, name, max(args.images, 200))
            folder = os.path.join(root, name, "images")
            data = []
            for f in sorted(os.listdir(folder))[: args.images]:
                with open(os.path.join(folder, f), "rb") as fh:
                    data.append(fh.read())
            kb = np.mean([len(d) for d in data]) / 1e3
            print(f"{name} ({len(data)} JPEGs, mean {kb:.0f} kB), load {os.getloadavg()[0]:.1f}:")
            ref = None
            for label, fn in decoders.items():
                ms = ms_per_call(fn, data)
                ref = ref or ms
                print(f"  {label:20s} {ms:6.2f} ms/image  (x{ref / ms:4.2f} TF full decode)")


if __name__ == "__main__":
    main()
