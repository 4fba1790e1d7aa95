"""README pictures of neighbours.html and results.html from the demo, and the gallery's size.

    .venv/bin/python benchmarks/screenshots.py [--demo_dir=demo_work] [--queries=50]

Runs `make demo`'s pipeline when <demo_dir>/trained has no checkpoint yet (minutes), then
`knn_main` on the trained demo model with save_neighbors=True into <demo_dir>/screenshots,
prints the gallery's size per query row, and renders the first gallery page and
results.html with headless Chromium (Debian package `chromium`) into docs/*.png, desktop
width, plus the same pages 420 px wide under <demo_dir>/screenshots to look at. PNGs are
reduced to 256 colours so each stays small enough to commit.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile

from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars", "--virtual-time-budget=3000",
)  # fmt: skip
SHOTS = (  # (page, png, window width, height); docs/ ones are committed
    ("neighbours.html", "docs/neighbours.png", 1400, 1250),
    ("results.html", "docs/results.png", 1100, 1150),
    ("neighbours.html", "neighbours_420px.png", 420, 1600),
    ("results.html", "results_420px.png", 420, 1400),
)


def run(args: list[str]) -> None:
    print("+", " ".join(args), flush=True)
    subprocess.run(args, check=True, cwd=REPO)


def ensure_trained_demo(demo_dir: str) -> str:
    """<demo_dir>/trained with a best checkpoint (runs the demo when it is missing)."""
    trained = os.path.join(demo_dir, "trained")
    if not os.path.isdir(os.path.join(trained, "checkpoints", "best")):
        run([sys.executable, "-m", "universal_embedding.demo", f"--workdir={demo_dir}"])
    return trained


def evaluate_with_gallery(demo_dir: str, out: str, queries: int) -> None:
    data = os.path.join(demo_dir, "data")
    run([
        sys.executable, "-m", "universal_embedding.knn_main",
        "--config=universal_embedding/configs/config_knn_vit.py", f"--workdir={out}",
        f"--config.train_dir={os.path.join(demo_dir, 'trained')}",
        f"--config.info_files_dir={os.path.join(data, 'info_files')}",
        f"--config.eval_dataset_dir={os.path.join(data, 'tfds')}",
        "--config.save_neighbors=True", f"--config.neighbours_queries={queries}",
        "--config.save_descriptors=False",
    ])  # fmt: skip


def gallery_size(out: str) -> tuple[int, int, int]:
    """(total bytes of every gallery page, query rows, pages)."""
    pages = glob.glob(os.path.join(out, "neighbours*.html"))
    rows = 0
    for path in pages:
        with open(path, encoding="utf-8") as f:
            rows += f.read().count('<tr class="qrow')
    return sum(os.path.getsize(p) for p in pages), rows, len(pages)


def screenshot(chromium: str, page: str, png: str, width: int, height: int) -> int:
    """Render `page` at width x height into `png` (256 colours); returns the PNG's bytes."""
    profile = tempfile.mkdtemp(prefix="chromium-")
    try:
        subprocess.run(
            [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
             f"--screenshot={os.path.abspath(png)}", f"--window-size={width},{height}",
             "file://" + os.path.abspath(page)],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120,
        )  # fmt: skip
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    with Image.open(png) as im:
        small = im.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT)
    small.save(png, optimize=True)
    return os.path.getsize(png)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo_dir", default="demo_work")
    parser.add_argument("--queries", type=int, default=50, help="sampled queries per domain")
    parser.add_argument("--chromium", default="chromium")
    args = parser.parse_args()
    if shutil.which(args.chromium) is None:
        sys.exit(f"'{args.chromium}' not found: apt-get install chromium, or pass --chromium.")
    demo_dir = os.path.abspath(args.demo_dir)
    ensure_trained_demo(demo_dir)
    out = os.path.join(demo_dir, "screenshots")
    evaluate_with_gallery(demo_dir, out, args.queries)
    size, rows, n_pages = gallery_size(out)
    print(
        f"gallery: {rows} query rows (separate and common side by side, top-5 each) on "
        f"{n_pages} page(s), {size / 1e6:.2f} MB, {size / max(rows, 1) / 1e3:.1f} KB per row"
    )
    for page, png, width, height in SHOTS:
        target = os.path.join(REPO, png) if png.startswith("docs/") else os.path.join(out, png)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        n = screenshot(args.chromium, os.path.join(out, page), target, width, height)
        print(f"{target}: {width}x{height}, {n / 1e3:.0f} KB")


if __name__ == "__main__":
    main()
