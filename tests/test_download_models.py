"""download_models: the original's three files and paths, resumed downloads (HTTP Range) after a
dropped connection, size and checksum checks, atomic rename; a local server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import http.server
import os
import threading

import pytest

from universal_embedding import download_models as dm

# The three files the original download_models.sh fetches (URL path == path under data/models).
ORIGINAL_FILES = (
    "clip/vit_b16.npy",
    "imagenet/B_16-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.0-sd_0.0"
    "--imagenet2012-steps_20k-lr_0.01-res_224.npz",
    "imagenet/S_16-i21k-300ep-lr_0.001-aug_light1-wd_0.03-do_0.0-sd_0.0"
    "--imagenet2012-steps_20k-lr_0.03-res_224.npz",
)


class _Server:
    """Serves `files` {url path: bytes} with Range support; `drop` {path: n}: the first GET of
    that path announces the full length but closes the connection after n bytes."""

    def __init__(self, files: dict[str, bytes], drop: dict[str, int] | None = None):
        self.files, self.drop, self.requests = files, dict(drop or {}), []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                path = self.path.lstrip("/")
                rng = self.headers.get("Range")
                server.requests.append((path, rng))
                if path not in server.files:
                    self.send_error(404)
                    return
                data = server.files[path]
                start = int(rng.split("=")[1].rstrip("-")) if rng else 0
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.end_headers()
                    return
                self.send_response(206 if rng else 200)
                if rng:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                body = data[start:]
                cut = server.drop.pop(path, None)
                self.wfile.write(body if cut is None else body[:cut])
                self.wfile.flush()
                if cut is not None:
                    self.close_connection = True

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def _payloads() -> dict[str, bytes]:
    return {rel: os.urandom(50_000 + 1000 * i) for i, rel in enumerate(ORIGINAL_FILES)}


def test_the_original_files_and_the_config_defaults():
    assert dm.FILES == ORIGINAL_FILES
    assert dm.BASE_URL == "https://cmp.felk.cvut.cz/univ_emb/checkpoints"
    from universal_embedding.configs import config_train_clip_vit, config_train_vit

    defaults = {
        config_train_vit.get_config("variant=B/16").pretrained_ckpt,
        config_train_vit.get_config("variant=S/16").pretrained_ckpt,
        config_train_clip_vit.get_config().pretrained_ckpt,
    }
    assert defaults == {f"data/models/{rel}" for rel in ORIGINAL_FILES}


def test_downloads_all_three_resuming_a_connection_dropped_half_way(tmp_path):
    files = _payloads()
    half = len(files[ORIGINAL_FILES[1]]) // 2
    with _Server(files, drop={ORIGINAL_FILES[1]: half}) as server:
        dm.download_all(str(tmp_path / "data"), server.url)
    for rel, data in files.items():
        assert (tmp_path / "data" / "models" / rel).read_bytes() == data
    assert not list((tmp_path / "data").rglob("*.part"))
    # the dropped file: a full GET, then one Range request from where it stopped
    gets = [rng for path, rng in server.requests if path == ORIGINAL_FILES[1]]
    assert gets == [None, f"bytes={half}-"]
    assert len(server.requests) == 4


def test_resumes_a_part_file_left_by_an_interrupted_run(tmp_path):
    data = os.urandom(30_000)
    dest = tmp_path / "w.npz"
    (tmp_path / "w.npz.part").write_bytes(data[:12_345])
    with _Server({"w.npz": data}) as server:
        sha = hashlib.sha256(data).hexdigest()
        assert dm.download_file(f"{server.url}/w.npz", str(dest), sha256=sha) is True
    assert dest.read_bytes() == data
    assert server.requests == [("w.npz", "bytes=12345-")]


def test_a_complete_file_is_skipped_without_a_request(tmp_path):
    files = _payloads()
    done = tmp_path / "data" / "models" / ORIGINAL_FILES[0]
    done.parent.mkdir(parents=True)
    done.write_bytes(b"already here")
    with _Server(files) as server:
        dm.download_all(str(tmp_path / "data"), server.url)
    assert done.read_bytes() == b"already here"
    assert sorted(p for p, _ in server.requests) == sorted(ORIGINAL_FILES[1:])


def test_a_size_or_checksum_mismatch_fails_and_leaves_no_file(tmp_path):
    data = os.urandom(20_000)
    with _Server({"w.npz": data}) as server:
        url = f"{server.url}/w.npz"
        with pytest.raises(ValueError, match=r"got 20000 bytes, 19999 expected.*rerun"):
            dm.download_file(url, str(tmp_path / "a.npz"), expected_size=19_999)
        with pytest.raises(ValueError, match="SHA-256 differs"):
            dm.download_file(url, str(tmp_path / "b.npz"), sha256="0" * 64)
        # a part longer than the file: the server answers 416, the size check catches it
        (tmp_path / "c.npz.part").write_bytes(data + b"extra")
        with pytest.raises(ValueError, match="got 20005 bytes, 20000 announced by the server"):
            dm.download_file(url, str(tmp_path / "c.npz"))
    assert sorted(os.listdir(tmp_path)) == []


def test_an_unreachable_server_fails_in_one_line_keeping_the_part(tmp_path):
    with _Server({}) as server:
        url = f"{server.url}/missing.npz"
        with pytest.raises(OSError, match="missing.npz: HTTP 404"):
            dm.download_file(url, str(tmp_path / "m.npz"))
    (tmp_path / "x.npz.part").write_bytes(b"abc")
    with pytest.raises(OSError, match="download failed after 2 tries"):
        dm.download_file("http://127.0.0.1:9/x.npz", str(tmp_path / "x.npz"), retries=2)
    assert (tmp_path / "x.npz.part").read_bytes() == b"abc"


# The DINOv2 backbones of facebookresearch/dinov2's README (B/14 and L/14, with registers too).
DINOV2_URLS = (
    "https://dl.fbaipublicfiles.com/dinov2/dinov2_vitb14/dinov2_vitb14_pretrain.pth",
    "https://dl.fbaipublicfiles.com/dinov2/dinov2_vitb14/dinov2_vitb14_reg4_pretrain.pth",
    "https://dl.fbaipublicfiles.com/dinov2/dinov2_vitl14/dinov2_vitl14_pretrain.pth",
    "https://dl.fbaipublicfiles.com/dinov2/dinov2_vitl14/dinov2_vitl14_reg4_pretrain.pth",
)


def test_dinov2_addresses_and_config_defaults():
    from universal_embedding.configs import config_train_dinov2

    assert {f"{dm.DINOV2_BASE_URL}/{rel}" for rel in dm.DINOV2_FILES} == set(DINOV2_URLS)
    defaults = {
        config_train_dinov2.get_config(f"variant={v},registers={r}").pretrained_ckpt
        for v in ("B/14", "L/14")
        for r in ("false", "true")
    }
    assert defaults == {f"data/models/dinov2/{rel}" for rel in dm.DINOV2_FILES}


def test_dinov2_set_downloads_into_its_folder(tmp_path):
    files = {rel: os.urandom(20_000 + i) for i, rel in enumerate(dm.DINOV2_FILES)}
    with _Server(files) as server:
        dm.download_sets(str(tmp_path / "data"), ["dinov2"], server.url)
    for rel, data in files.items():
        assert (tmp_path / "data" / "models" / "dinov2" / rel).read_bytes() == data
    assert len(server.requests) == 4
    with pytest.raises(ValueError, match="--weights=siglip9: valid sets are original, dinov2, sig"):
        dm.download_sets(str(tmp_path / "data"), ["siglip9"])


# SigLIP 2: big_vision's bucket (its SigLIP 2 demo colab: gs://big_vision/siglip2/<file>).
SIGLIP2_FILES = (
    "siglip2/siglip2_b16_224.npz",
    "siglip2/siglip2_b16_256.npz",
    "siglip2/siglip2_l16_256.npz",
    "siglip2/siglip2_so400m14_224.npz",
)


def test_the_siglip2_set_its_address_and_the_config_defaults():
    assert dm.WEIGHT_SETS["siglip2"] == (
        "https://storage.googleapis.com/big_vision",
        SIGLIP2_FILES,
        "",
    )
    assert dm.WEIGHT_SETS["original"] == (dm.BASE_URL, ORIGINAL_FILES, "")
    from universal_embedding.configs import config_train_siglip

    defaults = {
        config_train_siglip.get_config(f"variant={v},res={r}").pretrained_ckpt
        for v, r in (("B/16", 224), ("B/16", 256), ("L/16", 256), ("So400m/14", 224))
    }
    assert defaults == {f"data/models/{rel}" for rel in SIGLIP2_FILES}


def test_download_sets_fetches_the_siglip2_files_from_a_mirror(tmp_path):
    files = {rel: os.urandom(10_000 + i) for i, rel in enumerate(SIGLIP2_FILES)}
    with _Server(files) as server:
        dm.download_sets(str(tmp_path), "siglip2", base_url=server.url)
    for rel, data in files.items():
        assert (tmp_path / "models" / rel).read_bytes() == data
    assert sorted(p for p, _ in server.requests) == sorted(SIGLIP2_FILES)  # nothing else
    with pytest.raises(ValueError, match=r"--weights=siglip3: valid sets are original, dinov2"):
        dm.download_sets(str(tmp_path), "siglip3")
