"""knn/extract.py: rows of shuffled splits put back in info-file order by record key."""

from __future__ import annotations

import numpy as np
import pytest

from universal_embedding.knn import extract


def _keyed_batches(keys, batch=2):
    """Fake eval batches: images [B, 1] = the number in each key's name, last batch padded."""
    keys = list(keys) + [""] * (-len(keys) % batch)
    for i in range(0, len(keys), batch):
        part = np.array(keys[i : i + batch])
        values = [float(k.split("_")[-1].split(".")[0]) if k else 0.0 for k in part]
        yield {"images": np.array(values, np.float32)[:, None], "mask": part != "", "keys": part}


# Info paths (one listed twice: same file, same descriptor) and a shuffled record order;
# one rp2k-style record key spells its non-ASCII name escaped.
PATHS = ["d/a_0.jpg", "d/\u4e2d_1.jpg", "d/a_2.jpg", "d/dup_3.jpg", "d/dup_3.jpg"]
RECORDS = ["d/a_2.jpg", "d/dup_3.jpg", "d/#U4e2d_1.jpg", "d/a_0.jpg", "d/dup_3.jpg"]


def _extract(records, info_paths=None, key="rp2k/train"):
    return extract.extract_splits(
        lambda images: images,
        [key],
        lambda domain, split: _keyed_batches(records),
        {key: len(records)},
        {key: PATHS} if info_paths is None else info_paths,
    )[key]


def test_extract_splits_orders_rows_by_record_key():
    assert extract.is_shuffled("cars/train") and extract.is_shuffled("met/small_train")
    assert not extract.is_shuffled("cars/val") and not extract.is_shuffled("gldv2/index")
    np.testing.assert_array_equal(_extract(RECORDS)[:, 0], [0, 1, 2, 3, 3])
    # Splits not named in info_paths keep their batch order (keys ignored).
    np.testing.assert_array_equal(_extract(RECORDS, info_paths={})[:, 0], [2, 3, 1, 0, 3])


@pytest.mark.parametrize(
    "records, match",
    [
        (RECORDS[:4] + ["d/zzz_9.jpg"], r"Domain 'rp2k', split 'train': 1 TFRecord key.*zzz_9"),
        (
            RECORDS[:4] + ["d/a_0.jpg"],
            r"split 'train'.*extra records e\.g\. \[0\].*record e\.g\. \[3\]",
        ),
    ],
)
def test_extract_splits_key_errors_name_the_split(records, match):
    with pytest.raises(ValueError, match=match):
        _extract(records)


def test_extract_splits_needs_keys_for_shuffled_splits():
    def no_keys(domain, split):
        for b in _keyed_batches(RECORDS):
            yield {k: v for k, v in b.items() if k != "keys"}

    with pytest.raises(ValueError, match=r"rp2k/train.*with_keys=True"):
        extract.extract_splits(lambda x: x, ["rp2k/train"], no_keys, {"rp2k/train": 5},
                               {"rp2k/train": PATHS})  # fmt: skip
