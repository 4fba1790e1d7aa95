"""The 8 UnED domains as plain, frozen data (docs/uned-benchmark.md §1, §2), plus user domains.

Everything that needs a domain fact (training, both evaluators, the converter)
reads it from here. The sizes are facts about the real benchmark; code that
works on whatever data is on disk (e.g. the synthetic mini-UnED) takes its
counts from the info files it reads, not from this table.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping
from types import MappingProxyType

# Keys of one tf.train.Example in the UnED TFRecords.
IMAGE_KEY = "image_bytes"
LABEL_KEY = "class_id"
PATH_KEY = "key"

KNN_NAMES = ("train_knn", "val_knn", "test_knn")
TRAIN_SPLITS = ("train", "small_train")  # shuffled and sharded when converted


@dataclasses.dataclass(frozen=True)
class KnnSetup:
    """One kNN evaluation: queries from `query` split searched in `index` split."""

    query: str
    index: str

    @property
    def self_search(self) -> bool:
        """True when the query split is its own index (exclude each query itself)."""
        return self.query == self.index


@dataclasses.dataclass(frozen=True)
class Domain:
    """Facts about one UnED domain."""

    name: str
    id: int
    num_train_classes: int
    split_sizes: Mapping[str, int | None]
    knn: Mapping[str, KnnSetup]
    train_shards: int

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(self.split_sizes)

    def split_size(self, split: str) -> int | None:
        """Number of images of `split` in the real benchmark (None where unpublished)."""
        _check_member(split, self.split_sizes, f"split of domain '{self.name}'")
        return self.split_sizes[split]

    def knn_setup(self, knn_name: str) -> KnnSetup:
        _check_member(knn_name, self.knn, f"kNN setup of domain '{self.name}'")
        return self.knn[knn_name]

    def num_shards(self, split: str) -> int:
        """Shard count the converter writes for `split` (evaluation splits: 1)."""
        _check_member(split, self.split_sizes, f"split of domain '{self.name}'")
        if split == "train":
            return self.train_shards
        if split == "small_train":
            return max(1, self.train_shards // 10)
        return 1


def _check_member(name: str, valid: Iterable[str], what: str) -> None:
    valid = tuple(valid)
    if name not in valid:
        raise ValueError(f"Unknown {what}: '{name}'. Valid names: {', '.join(valid)}.")


def _knn(val_index: str = "val", test_index: str = "test") -> Mapping[str, KnnSetup]:
    return MappingProxyType(
        {
            "train_knn": KnnSetup("train", "train"),
            "val_knn": KnnSetup("val", val_index),
            "test_knn": KnnSetup("test", test_index),
        }
    )


def _sizes(**sizes: int | None) -> Mapping[str, int | None]:
    return MappingProxyType(dict(sizes))


DOMAINS: tuple[Domain, ...] = (
    Domain("cars", 0, 78, _sizes(train=6346, val=1708, test=8131), _knn(), 1),
    Domain("sop", 1, 9054, _sizes(train=48942, val=10609, test=60502), _knn(), 5),
    Domain(
        "inshop",
        2,
        3198,
        _sizes(train=20897, val=4982, test=14218, index=12612),
        _knn(test_index="index"),
        2,
    ),
    Domain("inat", 3, 4552, _sizes(train=273929, val=51917, test=136093), _knn(), 30),
    Domain(
        "met",
        4,
        224408,
        _sizes(
            train=397121,
            val=129,
            test=1003,
            index=397121,
            small_train=38307,
            small_index=None,
        ),
        _knn(val_index="small_index", test_index="index"),
        40,
    ),
    Domain(
        "gldv2",
        5,
        73182,
        _sizes(train=1422914, val=157556, test=1129, index=761757),
        _knn(test_index="index"),
        150,
    ),
    Domain("food2k", 6, 900, _sizes(train=472349, val=49323, test=9979), _knn(), 50),
    Domain("rp2k", 7, 1074, _sizes(train=188724, val=17185, test=10931), _knn(), 20),
)

DOMAIN_NAMES: tuple[str, ...] = tuple(d.name for d in DOMAINS)
_BY_NAME = MappingProxyType({d.name: d for d in DOMAINS})
# Domains declared by users (data/custom_domains.py: a JSON file or config.domains_file).
_CUSTOM: dict[str, Domain] = {}


def register(domain: Domain) -> Domain:
    """Add a user domain; registering an equal one again is a no-op, a different one an error."""
    if domain.name in _BY_NAME:
        raise ValueError(f"Domain '{domain.name}' is built in; give your domain another name.")
    known = _CUSTOM.get(domain.name)
    if known is not None and known != domain:
        raise ValueError(f"Domain '{domain.name}' is already declared with other settings.")
    _CUSTOM[domain.name] = domain
    return domain


def domain_names() -> tuple[str, ...]:
    """The 8 UnED domains, then the user domains declared in this process."""
    return DOMAIN_NAMES + tuple(_CUSTOM)


def get_domain(name: str) -> Domain:
    """The domain called `name`; an unknown name raises listing the valid ones."""
    if name in _CUSTOM:
        return _CUSTOM[name]
    if name not in _BY_NAME:
        raise ValueError(
            f"Unknown UnED domain: '{name}'. Valid names: {', '.join(domain_names())}. Declare a "
            "domain of your own in a JSON file given as --config.domains_file (docs/data.md, "
            "'Your own domains')."
        )
    return _BY_NAME[name]


def parse_domains(spec: str | Iterable[str]) -> tuple[Domain, ...]:
    """Domains from a comma-separated string (or a list), in the order given."""
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    names = [n.strip() for n in names if n.strip()]
    if not names:
        raise ValueError(f"No domain given. Valid names: {', '.join(domain_names())}.")
    return tuple(get_domain(n) for n in names)


def parse_domain_names(spec: str | Iterable[str]) -> tuple[str, ...]:
    """The names of parse_domains(spec): checked against the registry, in the order given."""
    return tuple(d.name for d in parse_domains(spec))


def parse_knn_names(spec: str | Iterable[str]) -> tuple[str, ...]:
    """kNN setup names from a comma-separated string; '' gives none."""
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    names = tuple(n.strip() for n in names if n.strip())
    for n in names:
        _check_member(n, KNN_NAMES, "kNN setup")
    return names


def info_file_path(info_files_dir: str, domain: str, split: str) -> str:
    """`<info_files_dir>/<domain>/<split>.json`."""
    return os.path.join(info_files_dir, domain, f"{split}.json")


def tfrecord_prefix(tfds_dir: str, domain: str, split: str) -> str:
    """`<tfds_dir>/<domain>/<split>/<domain>.<split>.tfrecord` (shards append -NNNNN-of-NNNNN)."""
    return os.path.join(tfds_dir, domain, split, f"{domain}.{split}.tfrecord")


def shard_name(prefix: str, index: int, num_shards: int) -> str:
    """Shard file name: the prefix alone for one shard, else `-00000-of-00150` style."""
    if num_shards == 1:
        return prefix
    return f"{prefix}-{index:05d}-of-{num_shards:05d}"


def total_split_size(split: str, domains: Iterable[Domain] = DOMAINS) -> int:
    """Sum of a split's real sizes over `domains` (domains without it count 0)."""
    return sum(d.split_sizes.get(split) or 0 for d in domains)


def knn_index_size(knn_name: str, domains: Iterable[Domain] = DOMAINS) -> int:
    """Images in the index splits of one kNN setup (test_knn over UnED: 1,397,126)."""
    return sum(d.split_size(d.knn_setup(knn_name).index) or 0 for d in domains)
