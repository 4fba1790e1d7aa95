"""Fetch the starting weights of the paper's runs (the files the original `download_models.sh`
fetches), into the same paths under --data_dir, and with `--weights=siglip2` (or
`--weights=original,siglip2`) big_vision's SigLIP 2 image-text checkpoints:

    python -m universal_embedding.download_models [--data_dir data] [--base_url URL]
        [--weights original,dinov2,siglip2]

    <data_dir>/models/clip/vit_b16.npy                     OpenAI CLIP ViT-B/16
    <data_dir>/models/imagenet/B_16-i21k-...-res_224.npz   AugReg ViT-B/16 (ImageNet-21k + 1k)
    <data_dir>/models/imagenet/S_16-i21k-...-res_224.npz   AugReg ViT-S/16
    <data_dir>/models/siglip2/siglip2_<variant>_<res>.npz  SigLIP 2 B/16 224 and 256, L/16 256,
                                                           So400m/14 224 (siglip2 set)

`--weights=dinov2` fetches the DINOv2 torch hub backbones B/14 and L/14, with and without
registers, from Meta's server (the addresses of facebookresearch/dinov2's README and
dinov2/hub/backbones.py) into `<data_dir>/models/dinov2/<arch>/<arch>[_reg4]_pretrain.pth`.

A file already in place is skipped. Each download goes to `<file>.part`, resumes from what is
there (HTTP Range) after a dropped connection or an interrupted run, is checked against the
size the server announced (and a SHA-256 when one is known) and only then renamed into place.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import urllib.error
import urllib.request
from collections.abc import Sequence

from absl import flags
from tqdm import tqdm

from universal_embedding.configs import config_train_siglip, config_train_vit
from universal_embedding.errors import command

BASE_URL = "https://cmp.felk.cvut.cz/univ_emb/checkpoints"
# Paths relative to <data_dir>/models/ and to BASE_URL (the same in both).
FILES = (
    "clip/vit_b16.npy",
    f"imagenet/{config_train_vit.AUGREG_CHECKPOINTS['B/16']}",
    f"imagenet/{config_train_vit.AUGREG_CHECKPOINTS['S/16']}",
)
DINOV2_BASE_URL = "https://dl.fbaipublicfiles.com/dinov2"
# Paths relative to <data_dir>/models/dinov2/ and to DINOV2_BASE_URL.
DINOV2_FILES = tuple(
    f"{arch}/{arch}{reg}_pretrain.pth"
    for arch in ("dinov2_vitb14", "dinov2_vitl14")
    for reg in ("", "_reg4")
)
# big_vision's public bucket gs://big_vision over HTTPS: its SigLIP 2 README links the demo colab,
# which copies gs://big_vision/siglip2/siglip2_<variant>_<res>.npz and fetches files of the same
# bucket from https://storage.googleapis.com/big_vision/...
SIGLIP2_URL = "https://storage.googleapis.com/big_vision"
SIGLIP2_FILES = tuple(f"siglip2/{f}" for f in config_train_siglip.SIGLIP2_CHECKPOINTS.values())
# --weights name -> (its publisher's base URL, files, folder under <data_dir>/models/); a file is
# fetched from <URL>/<file> into <data_dir>/models/[<folder>/]<file>.
WEIGHT_SETS = {
    "original": (BASE_URL, FILES, ""),
    "dinov2": (DINOV2_BASE_URL, DINOV2_FILES, "dinov2"),
    "siglip2": (SIGLIP2_URL, SIGLIP2_FILES, ""),
}
# SHA-256 of the files, where known: checked after download ('' = size check only).
SHA256: dict[str, str] = {}
CHUNK = 1 << 20
_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


def _open(url: str, offset: int, timeout: float):
    request = urllib.request.Request(url, headers={"User-Agent": "universal_embedding"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    return urllib.request.urlopen(request, timeout=timeout)


def _total(response, offset: int, url: str) -> tuple[int, int | None]:
    """(start offset the server sends from, total size or None) of a response."""
    if response.status == 206:
        m = _RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
        if not m or int(m.group(1)) != offset:
            raise OSError(
                f"{url}: unexpected Content-Range {response.headers.get('Content-Range')!r}"
            )
        return offset, None if m.group(3) == "*" else int(m.group(3))
    length = response.headers.get("Content-Length")
    return 0, int(length) if length is not None else None


def _fetch_once(url: str, part: str, timeout: float, name: str) -> int | None:
    """Append to `part` what the server sends (from its current size); the announced total."""
    offset = os.path.getsize(part) if os.path.exists(part) else 0
    try:
        response = _open(url, offset, timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:  # nothing left to send: the part is complete (or bigger)
            m = re.fullmatch(r"bytes \*/(\d+)", (e.headers.get("Content-Range") or "").strip())
            return int(m.group(1)) if m else None
        raise OSError(f"{url}: HTTP {e.code} {e.reason}") from None
    with response:
        start, total = _total(response, offset, url)
        with (
            open(part, "ab" if start else "wb") as out,
            tqdm(total=total, initial=start, unit="B", unit_scale=True, desc=name) as bar,
        ):
            while chunk := response.read(CHUNK):
                out.write(chunk)
                bar.update(len(chunk))
    got = os.path.getsize(part)
    if total is not None and got < total:  # closed early: the next try resumes from here
        raise ConnectionError(f"connection closed after {got} of {total} bytes")
    return total


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    return h.hexdigest()


def download_file(
    url: str,
    dest: str,
    *,
    expected_size: int | None = None,
    sha256: str = "",
    retries: int = 5,
    timeout: float = 60.0,
) -> bool:
    """Fetch `url` into `dest` (resuming `dest.part`); False when `dest` was already there.

    Raises OSError when the server cannot be reached after `retries` tries, ValueError when
    the file's size or SHA-256 is not the expected one (the partial file is then removed).
    """
    if os.path.exists(dest):
        return False
    os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
    part, name = dest + ".part", os.path.basename(dest)
    total, last_error = None, None
    for _ in range(retries):
        try:
            total = _fetch_once(url, part, timeout, name) or total
            last_error = None
            break
        except (
            http.client.HTTPException,
            urllib.error.URLError,
            ConnectionError,
            TimeoutError,
        ) as e:
            last_error = e  # dropped mid-way: the next try resumes from the part's size
    if last_error is not None:
        raise OSError(f"{url}: download failed after {retries} tries ({last_error}).")
    _verify(url, part, total, expected_size, sha256)
    os.replace(part, dest)
    return True


def _verify(url: str, part: str, total: int | None, expected: int | None, sha: str) -> None:
    size = os.path.getsize(part)
    for what, want in (("announced by the server", total), ("expected", expected)):
        if want is not None and size != want:
            os.remove(part)
            raise ValueError(
                f"{url}: got {size} bytes, {want} {what}; the partial file was removed, "
                "rerun to download it again."
            )
    if sha and _sha256(part) != sha:
        os.remove(part)
        raise ValueError(f"{url}: SHA-256 differs from {sha}; rerun to download it again.")


def download_all(
    data_dir: str, base_url: str = BASE_URL, files: Sequence[str] = FILES, folder: str = ""
) -> None:
    """Every starting-weight file into <data_dir>/models/[<folder>/]<file>, from
    <base_url>/<file>."""
    for rel in files:
        dest = os.path.join(data_dir, "models", *folder.split("/"), *rel.split("/"))
        url = f"{base_url.rstrip('/')}/{rel}"
        if download_file(url, dest, sha256=SHA256.get(rel, "")):
            print(f"downloaded {dest}", flush=True)
        else:
            print(f"already there: {dest}", flush=True)


def define_flags() -> None:
    flags.DEFINE_string("data_dir", "data", "Weights go to <data_dir>/models/<set folder>/.")
    flags.DEFINE_string("base_url", "", "A mirror holding the files ('' = each set's publisher).")
    flags.DEFINE_list("weights", ["original"], f"Weight sets: {', '.join(WEIGHT_SETS)}.")


def download_sets(data_dir: str, names: Sequence[str] | str, base_url: str = "") -> None:
    """The files of each named weight set (WEIGHT_SETS; a list or a comma-separated string),
    from its publisher's address or, given `base_url`, from that mirror (same relative paths)."""
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in names if n not in WEIGHT_SETS]
    if unknown or not names:
        raise ValueError(
            f"--weights={','.join(unknown or names)}: valid sets are {', '.join(WEIGHT_SETS)}."
        )
    for name in names:
        default_url, files, folder = WEIGHT_SETS[name]
        download_all(data_dir, base_url or default_url, files, folder)


def main(argv: Sequence[str]) -> None:
    """absl main: download the files with the parsed flags."""
    download_sets(flags.FLAGS.data_dir, flags.FLAGS.weights, flags.FLAGS.base_url)


def cli() -> None:
    """Entry point of `ue-download-models` and `python -m universal_embedding.download_models`."""
    define_flags()
    command.run(main)


if __name__ == "__main__":
    cli()
