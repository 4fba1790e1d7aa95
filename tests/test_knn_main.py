"""knn_main end to end on a tiny random model over a tiny TFRecord UnED (cars + inshop)."""

import json
import os
import re
import subprocess

import numpy as np
import pytest
from PIL import Image

from tests.html_tree import parse_html
from universal_embedding import knn_main, loading, settings, writers
from universal_embedding.configs import config_knn_vit, tiny
from universal_embedding.data import info_files, registry, tfrecords
from universal_embedding.knn import descriptors as knn_descriptors

pytestmark = pytest.mark.usefixtures("reuse_random_init")

K = 3
# domain -> split -> labels (inshop test has a multi-label query and one without any match).
SPLITS = {
    "cars": {
        "val": [0, 0, 1, 1, 2],
        "test": [0, 0, 1, 1, 2, 3],
    },
    "inshop": {
        "val": [0, 1, 1, 2],
        "test": [0, [1, 2], 3, 9],
        "index": [0, 0, 1, 2, 3, 3],
    },
}
# Train splits: shuffled into 2 shards when converted (record order != info order).
TRAIN = {"cars": [0, 0, 1, 1, 2, 2, 3, 3, 0], "inshop": [0, 1, 1, 2, 2, 0, 3]}
COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30), (30, 200, 200)]


def _image(label, i, rng):
    """A class-coloured noisy image; varied sizes, some PNG, some grayscale."""
    size = (24 + 8 * (i % 3), 32 + 4 * (i % 2))
    base = np.array(COLOURS[label % len(COLOURS)], np.float32)
    pixels = np.clip(base + rng.normal(0, 40, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    im = Image.fromarray(pixels)
    if i % 4 == 3:
        return im.convert("L"), "png"
    return im, ("png" if i % 4 == 2 else "jpg")


def build_tiny_uned(data_dir):
    """images/, info_files/ and tfds/ for SPLITS (one shard, info order) and TRAIN (shuffled)."""
    rng = np.random.default_rng(0)
    all_splits = [(d, s, labels) for d, splits in SPLITS.items() for s, labels in splits.items()]
    for domain, split, labels in all_splits + [(d, "train", ls) for d, ls in TRAIN.items()]:
        entries = []
        for i, label in enumerate(labels):
            first = label[0] if isinstance(label, list) else label
            im, ext = _image(first, i, rng)
            rel = f"{domain}/{split}/img_{i}.{ext}"
            os.makedirs(os.path.dirname(os.path.join(data_dir, "images", rel)), exist_ok=True)
            im.save(os.path.join(data_dir, "images", rel))
            entries.append({"path": rel, "class_id": label})
        info = registry.info_file_path(os.path.join(data_dir, "info_files"), domain, split)
        os.makedirs(os.path.dirname(info), exist_ok=True)
        with open(info, "w") as f:
            json.dump(entries, f)
        prefix = registry.tfrecord_prefix(os.path.join(data_dir, "tfds"), domain, split)
        train = split == "train"
        tfrecords.convert(info, prefix, os.path.join(data_dir, "images"), 1 + train,
                          train=train, progress=False)  # fmt: skip


def knn_config(data_dir, **overrides):
    c = tiny.tiny_vit(config_knn_vit.get_config())
    c.info_files_dir = os.path.join(data_dir, "info_files")
    c.eval_dataset_dir = os.path.join(data_dir, "tfds")
    c.knn_eval_names = "cars,inshop"
    c.eval_knns = "val_knn,test_knn"
    c.disabled_separate_knns = "val_knn"
    c.disabled_merged_knns = ""
    c.top_k = K
    c.eval_batch_size = 4
    c.allow_random_init = True
    c.save_neighbors = True
    c.save_json_descriptors = True
    c.neighbours_queries = 10  # more than any split: every query is shown
    c.neighbours_thumb_size = 16
    for key, value in overrides.items():
        c[key] = value
    return c


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("uned"))
    build_tiny_uned(d)
    return d


@pytest.fixture(scope="module")
def run(data_dir, tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("knn"))
    config = knn_config(data_dir)
    results = knn_main.run_knn(config, workdir)
    return config, workdir, results


def test_outputs_and_results_match_saved_descriptors(data_dir, run):
    config, workdir, results = run
    for name in ("results.json", "results.csv", "results.md", "results.html", "knn_config.json",
                 "neighbours.html"):  # fmt: skip
        assert os.path.isfile(os.path.join(workdir, name)), name
    with open(os.path.join(workdir, "results.json")) as f:
        saved = json.load(f)
    assert set(saved.pop("provenance")) == {"versions", "git_commit", "devices"}
    assert saved == pytest.approx(results)
    for d in ("cars", "inshop", "average"):
        for key in ("common:val_knn", "common:test_knn", "separate:test_knn"):
            for metric in ("top_1", f"mp_{K}", f"map_{K}"):
                assert f"{d}:{key}:{metric}" in saved
    assert not any(":separate:val_knn:" in key for key in saved)
    assert saved["inshop:separate:test_knn:skipped_queries"] == 1  # label 9 is in no index image
    with open(os.path.join(workdir, "results_original.json")) as f:
        original = json.load(f)  # [top_1, mp_k, map_k], rounded to 3 decimals
    key = f"cars:common:test_knn:mp_{K}"
    assert original[1][key] == float(np.round(results[key], 3))
    assert sorted(original[0]) == sorted(k for k in saved if k.endswith(":top_1"))

    npz = knn_descriptors.load_descriptors(os.path.join(workdir, "descriptors.npz"))
    js = knn_descriptors.load_descriptors(os.path.join(workdir, "descriptors.json"))
    expected_keys = {f"{d}/{s}" for d, splits in SPLITS.items() for s in splits}
    assert set(npz) == set(js) == expected_keys
    for key, value in npz.items():
        d, s = key.split("/")
        assert value.shape == (len(SPLITS[d][s]), 8) and value.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(value, axis=1), 1.0, atol=1e-5)
        np.testing.assert_allclose(js[key], value, atol=1e-6)


def test_descr_eval_on_saved_descriptors_gives_the_same_numbers(run, tmp_path):
    from universal_embedding import descr_eval

    config, workdir, results = run
    for name in ("descriptors.npz", "descriptors.json"):
        c = config.copy_and_resolve_references()
        c.descr_path = os.path.join(workdir, name)
        again = descr_eval.descr_eval(c, str(tmp_path / name))
        assert again.keys() == results.keys()
        for key, value in results.items():
            assert again[key] == pytest.approx(value, abs=1e-6, nan_ok=True), key


def test_descriptor_rows_follow_info_order(data_dir, run, tmp_path):
    """Row i of cars/test == the same image embedded alone from its file (same random model)."""
    config, workdir, _ = run
    from universal_embedding.data import input_pipeline
    from universal_embedding.data.normalization import normalization_name

    npz = knn_descriptors.load_descriptors(os.path.join(workdir, "descriptors.npz"))
    loaded = loading.load_model(*settings.model_and_weights(config))
    model, params, mconfig = loaded.model, loaded.params, loaded.spec
    embed_fn = loading.make_embedder(model, params, "projected")
    paths = info_files.load_splits(config.info_files_dir, ["cars/test"])["cars/test"].paths
    for i in (0, 3):  # a JPEG and a grayscale PNG
        batches = input_pipeline.folder_batches(
            os.path.join(data_dir, "images"),
            [paths[i]],
            batch_size=config.eval_batch_size,  # same shape as the run: no new compilation
            image_size=32,
            normalization=normalization_name(mconfig.model_class),
        )
        alone = knn_descriptors.extract(embed_fn, batches, 1)
        np.testing.assert_allclose(alone[0], npz["cars/test"][i], atol=1e-5)


@pytest.fixture(scope="module")
def train_run(data_dir, tmp_path_factory):
    """knn_main with train_knn only (separate and merged) over the shuffled train splits."""
    workdir = str(tmp_path_factory.mktemp("knn_train"))
    config = knn_config(
        data_dir,
        eval_knns="train_knn",
        disabled_separate_knns="",
        save_neighbors=False,
        save_json_descriptors=False,
        descriptor_format="original",  # the original's file, read back by descr_eval below
        descr_save_path=os.path.join(workdir, "saved"),
    )
    return config, workdir, knn_main.run_knn(config, workdir)


def test_train_knn_results_match_descr_eval_on_saved_descriptors(train_run, tmp_path):
    from universal_embedding import descr_eval

    config, workdir, results = train_run
    with open(os.path.join(workdir, "results.json")) as f:
        saved = json.load(f)
    assert set(saved.pop("provenance")) == {"versions", "git_commit", "devices"}
    assert saved == pytest.approx(results)
    for d in ("cars", "inshop", "average"):
        for protocol in ("separate", "common"):
            for metric in ("top_1", f"mp_{K}", f"map_{K}"):
                assert f"{d}:{protocol}:train_knn:{metric}" in saved
    assert not os.path.exists(os.path.join(workdir, "descriptors.npz"))
    c = config.copy_and_resolve_references()
    # random weights, no train_dir: the original's step 0
    c.descr_path = os.path.join(workdir, "saved", "descriptors", "descriptors_step_0.pkl")
    with open(c.descr_path) as f:
        nested = json.load(f)
    assert sorted(nested) == ["cars", "inshop"]
    assert all(len(v) == 1 for splits in nested.values() for v in splits.values())  # wrapped
    again = descr_eval.descr_eval(c, str(tmp_path / "again"))
    assert again.keys() == results.keys()
    for key, value in results.items():
        assert again[key] == pytest.approx(value, abs=1e-6, nan_ok=True), key


def test_train_descriptor_rows_follow_info_order(data_dir, train_run):
    """Shuffled 2-shard train splits: row i == info-file image i embedded from its own file."""
    from universal_embedding.data import input_pipeline
    from universal_embedding.data.normalization import normalization_name

    config, workdir, _ = train_run
    saved = os.path.join(workdir, "saved", "descriptors", "descriptors_step_0.pkl")
    rows = knn_descriptors.load_descriptors(saved)  # the original's file (descriptor_format)
    assert set(rows) == {"cars/train", "inshop/train"}
    loaded = loading.load_model(*settings.model_and_weights(config))
    model, params, mconfig = loaded.model, loaded.params, loaded.spec
    embed_fn = loading.make_embedder(model, params, "projected")
    infos = info_files.load_splits(config.info_files_dir, sorted(rows))
    kw = dict(batch_size=config.eval_batch_size, image_size=32,
              normalization=normalization_name(mconfig.model_class))  # fmt: skip
    for key, info in infos.items():
        domain = key.split("/")[0]
        records = input_pipeline.eval_batches(
            config.eval_dataset_dir, domain, "train", with_keys=True, **kw
        )
        record_order = [k for b in records for k in b["keys"][b["mask"]].tolist()]
        assert sorted(record_order) == sorted(info.paths) and record_order != list(info.paths)
        batches = input_pipeline.folder_batches(os.path.join(data_dir, "images"), info.paths, **kw)
        by_file = knn_descriptors.extract(embed_fn, batches, len(info))
        assert rows[key].shape == (len(TRAIN[domain]), 8)
        np.testing.assert_allclose(rows[key], by_file, atol=1e-5)


def _protocol_cells(doc):
    """{(knn, protocol): {domain: [(query cell, protocol cell), ...]}} from neighbours.html."""
    out = {}
    for sec in doc.find_all("section", class_="domain"):
        knn, domain = sec.attrs["data-knn"], sec.attrs["data-domain"]
        assert sec.attrs["id"] == f"{knn}-{domain}"
        for row in sec.find_all("tr", class_="qrow"):
            assert (row.attrs["data-knn"], row.attrs["data-domain"]) == (knn, domain)
            query = row.find("th", scope="row")
            for td in row.find_all("td"):
                key = (knn, td.attrs["data-protocol"])
                out.setdefault(key, {}).setdefault(domain, []).append((query, td))
    return out


def test_neighbours_html_matches_metrics(run):
    _, workdir, results = run
    with open(os.path.join(workdir, "neighbours.html"), encoding="utf-8") as f:
        doc = parse_html(f.read())
    sections = _protocol_cells(doc)
    assert set(sections) == {
        ("val_knn", "common"),
        ("test_knn", "common"),
        ("test_knn", "separate"),
    }
    assert not doc.find_all(class_="missing")  # every image found
    # the originals are on disk: every thumbnail links to its file
    assert len(doc.find_all("a", title="open the original")) == len(doc.find_all("img"))
    for (knn, protocol), domains in sections.items():
        assert set(domains) == {"cars", "inshop"}
        for domain, rows in domains.items():
            query_split = registry.get_domain(domain).knn_setup(knn).query
            assert len(rows) == len(SPLITS[domain][query_split])
            top1, mp, skipped = [], [], 0
            for query, td in rows:
                cells = td.find_all("li", class_="nb")
                assert len(cells) == K and len(query.find_all("img")) == 1
                marks = [int(li.attrs["data-relevant"]) for li in cells]
                n_rel = int(re.search(r"(\d+) relevant in index", query.text()).group(1))
                if td.attrs["data-skipped"] == "1":
                    assert n_rel == 0 and sum(marks) == 0
                    skipped += 1
                    continue
                top1.append(marks[0])
                mp.append(sum(marks[: min(K, n_rel)]) / min(K, n_rel))
                assert td.attrs["data-failure"] == str(1 - marks[0])
            prefix = f"{domain}:{protocol}:{knn}"
            assert np.mean(top1) == pytest.approx(results[f"{prefix}:top_1"], abs=1e-6)
            assert np.mean(mp) == pytest.approx(results[f"{prefix}:mp_{K}"], abs=1e-6)
            assert skipped == results.get(f"{prefix}:skipped_queries", 0)


@pytest.mark.parametrize(
    "overrides, error, match",
    [
        (dict(allow_random_init=False), ValueError, "No weights given"),
        (dict(pretrained_ckpt="/no/such/weights.npz"), FileNotFoundError, "weights.npz"),
        (dict(train_dir="/no/such/train_dir"), FileNotFoundError, "config.json"),
    ],
)
def test_missing_weights_fail_before_writing(data_dir, tmp_path, overrides, error, match):
    workdir = tmp_path / "w"
    with pytest.raises(error, match=match):
        knn_main.run_knn(knn_config(data_dir, **overrides), str(workdir))
    assert not workdir.exists() or not os.listdir(workdir)


def test_train_dir_without_checkpoint_fails(data_dir, tmp_path):

    train_dir = str(tmp_path / "train")
    writers.write_config_json(
        tiny.tiny_vit(config_knn_vit.get_config()).to_dict(),
        os.path.join(train_dir, "config.json"),
    )
    for which, match in (("best", "best"), ("latest", "latest"), ("12", "latest")):
        config = knn_config(data_dir, train_dir=train_dir, checkpoint=which)
        with pytest.raises(FileNotFoundError, match=match):
            knn_main.run_knn(config, str(tmp_path / "w"))


def test_knn_main_refuses_a_workdir_a_training_holds(data_dir, tmp_path):
    # knn_main pointed at a training in progress used to replace its results.json
    from universal_embedding.checkpoint import lock

    holder = subprocess.Popen(["sleep", "60"])
    workdir = tmp_path / "w"
    try:
        workdir.mkdir()
        (workdir / "results.json").write_text("{}")
        with open(lock.lock_path(str(workdir)), "w") as f:
            json.dump({"pid": holder.pid, "host": os.uname().nodename, "started": 0}, f)
        with pytest.raises(lock.WorkdirLocked, match=f"in use by pid {holder.pid}"):
            knn_main.main(knn_config(data_dir), str(workdir))
    finally:
        holder.kill()
        holder.wait()
    assert sorted(os.listdir(workdir)) == ["results.json", lock.LOCK_FILE]
    assert (workdir / "results.json").read_text() == "{}"


def test_latest_after_a_fallback_names_the_step_it_read(data_dir, tmp_path):
    # the newest latest step is truncated: restore falls back to step 2, and results.json's
    # run label and the original-format descriptor file used to name step 4 all the same
    import jax

    from universal_embedding import checkpoint
    from universal_embedding.models import embedding_model

    train_dir = str(tmp_path / "train")
    train_config = tiny.tiny_vit(config_knn_vit.get_config())
    writers.write_config_json(train_config.to_dict(), os.path.join(train_dir, "config.json"))
    model = embedding_model.build_model(settings.model_spec(train_config), None)
    images = np.zeros((1, 32, 32, 3), np.float32)
    shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), images))["params"]
    rng = np.random.default_rng(0)  # random values without compiling an init
    ckpts = checkpoint.Checkpoints(train_dir, checkpoint_steps=1, max_to_keep=3, async_save=False)
    for step in (2, 4):
        params = jax.tree.map(lambda s: rng.normal(size=s.shape).astype(s.dtype), shapes)
        ckpts.save_latest(step, {"params": params}, {}, force=True)
    ckpts.close()
    newest = os.path.join(checkpoint.checkpoint_dir(train_dir), "4", "state")
    files = [os.path.join(d, n) for d, _, ns in os.walk(newest) for n in ns]
    biggest = max(files, key=os.path.getsize)
    with open(biggest, "r+b") as f:
        f.truncate(os.path.getsize(biggest) // 2)

    workdir = str(tmp_path / "w")
    config = knn_config(
        data_dir, train_dir=train_dir, checkpoint="latest", allow_random_init=False,
        knn_eval_names="cars", eval_knns="test_knn", disabled_separate_knns="",
        save_neighbors=False, save_json_descriptors=False, save_descriptors=True,
        descriptor_format="original", descr_save_path=os.path.join(workdir, "saved"),
    )  # fmt: skip
    knn_main.run_knn(config, workdir)
    with open(os.path.join(workdir, "results.html"), encoding="utf-8") as f:
        page = parse_html(f.read())
    assert page.find("p", class_="run").text().split(" · ")[1] == (
        "checkpoint: train latest checkpoint, step 2"
    )
    assert os.listdir(os.path.join(workdir, "saved", "descriptors")) == ["descriptors_step_2.pkl"]
