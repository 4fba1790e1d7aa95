"""The original UnED README's commands, as written, on the synthetic mini-UnED.

Run from a folder holding `data/` (so `data/tfds`, `data/info_files`, `data/images` are the
README's own paths); only the placeholders ([YOUR_WORKDIR], ...) are filled in. Training adds
`--config.num_training_epochs=1` and the overrides of SMALL (a 1-layer ViT on 16-pixel crops
from random init: the README's B/16 at 224 pixels takes minutes per step on 2 CPU cores).
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import shlex
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The original prepare_data.sh: (dataset, split, --num_shards, --train).
PREPARE = [
    ("cars", "train", 1, True), ("cars", "val", 1, False), ("cars", "test", 1, False),
    ("food2k", "train", 50, True), ("food2k", "val", 1, False), ("food2k", "test", 1, False),
    ("gldv2", "train", 150, True), ("gldv2", "val", 1, False), ("gldv2", "test", 1, False),
    ("gldv2", "index", 1, False),
    ("inat", "train", 30, True), ("inat", "val", 1, False), ("inat", "test", 1, False),
    ("inshop", "train", 2, True), ("inshop", "val", 1, False), ("inshop", "test", 1, False),
    ("inshop", "index", 1, False),
    ("met", "train", 40, True), ("met", "val", 1, False), ("met", "small_index", 1, False),
    ("met", "test", 1, False), ("met", "index", 1, False),
    ("rp2k", "train", 20, True), ("rp2k", "val", 1, False), ("rp2k", "test", 1, False),
    ("sop", "train", 5, True), ("sop", "val", 1, False), ("sop", "test", 1, False),
]  # fmt: skip
CONVERT = (
    "python convert_to_tfrecord_from_file.py --info_file data/info_files/{d}/{s}.json "
    "--output_file data/tfds/{d}/{s}/{d}.{s}.tfrecord --files_dir data/images --num_shards {n}"
)
TRAIN = (
    "python -m universal_embedding.main --config=universal_embedding/configs/config_train_vit.py "
    "--workdir=train_run --config.eval_dataset_dir=data/tfds --config.train_dataset_dir=data/tfds "
    "--config.info_files_dir=data/info_files --wandb_project p --wandb_group g --wandb_entity e "
    "--wandb_name n"  # README's --use_wandb left out: it needs the wandb package and an account
)
KNN = (
    "python -m universal_embedding.knn_main --config=universal_embedding/configs/config_knn_vit.py "
    "--workdir=knn_run --config.eval_dataset_dir=data/tfds --config.train_dataset_dir=data/tfds "
    "--config.info_files_dir=data/info_files --config.train_dir=train_run"
)
DESCR_EVAL = (
    "python -m universal_embedding.descr_eval "
    "--config=universal_embedding/configs/config_descr_eval.py --workdir=descr_run "
    "--config.eval_dataset_dir=data/tfds --config.train_dataset_dir=data/tfds "
    "--config.info_files_dir=data/info_files --config.descr_path=descriptors.json"
)
EXTRACT = (
    "python -m universal_embedding.extract_dir_descriptors "
    "--config=universal_embedding/configs/config_extract_dir_descriptors.py "
    "--workdir=extract_run --config.train_dir=train_run --config.base_dir=data/images/cars"
)
SMALL = (
    "--config.num_training_epochs=1 --config.pretrained_ckpt= --config.model.hidden_size=16 "
    "--config.model.num_heads=2 --config.model.mlp_dim=32 --config.model.num_layers=1 "
    "--config.model.patch_size=4 --config.model.output_dim=8 --config.image_size=16 "
    "--config.resize_size=20 --config.batch_size=16 --config.eval_batch_size=32 "
    "--config.shuffle_buffer_size=64"
)


def _run(command: str, cwd: str) -> subprocess.CompletedProcess:
    """`command` with `python` this interpreter and the converter script the repository's."""
    args = shlex.split(command)
    args[0] = sys.executable
    if args[1] == "convert_to_tfrecord_from_file.py":
        args[1] = os.path.join(REPO, args[1])
    env = {**os.environ, "PYTHONPATH": REPO, "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("XLA_FLAGS", None)
    out = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, f"{command}\n{out.stderr[-3000:]}"
    return out


@pytest.mark.slow  # 28 conversions, a training epoch and three evaluations: minutes on 2 cores
def test_the_original_readme_commands_run_unchanged(tmp_path):
    cwd = str(tmp_path)
    _run("python -m universal_embedding.data.synthetic --data_dir data --scale 0.1", cwd)
    commands = [CONVERT.format(d=d, s=s, n=n) + (" --train" if t else "") for d, s, n, t in PREPARE]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda c: _run(c, cwd), commands))
    assert os.path.isfile(tmp_path / "data/tfds/gldv2/train/gldv2.train.tfrecord-00149-of-00150")

    train = _run(f"{TRAIN} {SMALL}", cwd)
    assert "num_training_epochs -> num_epochs" in train.stderr
    assert json.loads((tmp_path / "train_run/config.json").read_text())["num_epochs"] == 1.0

    _run(KNN, cwd)
    knn = json.loads((tmp_path / "knn_run/results.json").read_text())
    # descr_eval with config_descr_eval.py on the knn descriptors, in the README's JSON layout
    with np.load(tmp_path / "knn_run/descriptors.npz") as z:
        layout: dict = {}
        for key in z.files:
            domain, split = key.split("/")
            layout.setdefault(domain, {})[split] = z[key].tolist()
    (tmp_path / "descriptors.json").write_text(json.dumps(layout))
    _run(DESCR_EVAL, cwd)
    descr = json.loads((tmp_path / "descr_run/results.json").read_text())
    scored = [k for k in knn if k.endswith(("top_1", "mp_5", "map_5"))]
    assert len(scored) >= 16
    for key in scored:
        assert descr[key] == pytest.approx(knn[key], abs=1e-6), key

    _run(EXTRACT, cwd)
    with np.load(tmp_path / "extract_run/descriptors.npz") as z:
        n_cars = sum(len(files) for _, _, files in os.walk(tmp_path / "data/images/cars"))
        assert z["descriptors"].shape == (n_cars, 8)  # our default: projected
