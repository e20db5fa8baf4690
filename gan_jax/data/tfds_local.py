"""TFDS datasets built offline from local copies of the original files (no download, no TensorFlow).

TFDS can only prepare datasets here through a `GeneratorBasedBuilder` that reads `manual_dir` and
writes `array_record` files (ENVIRONMENT.md). Each builder below registers nothing globally
(`skip_registration=True`, so TFDS's own downloading builders keep their names) but carries the TFDS
name, so it writes `data_dir/<name>/<VERSION>/`. `VERSION` 1.0.0 is distinct from every version TFDS's
own builders use, so our builds never mix with theirs; read them back with this module or with
`tfds.builder_from_directory(data_dir/<name>/1.0.0)`.

Records keep the original order (`disable_shuffling=True`): example i of a split is example i of
the original files; pipelines shuffle at read time.

Before a build reads them, the original files are checked against what their authors published
(`PUBLISHED`): each file with a published checksum must have its size and SHA-256, and each split
its published number of examples. Files that are deliberately not the published ones (a subset of
one's own, the tests' tiny files) build with `verify=False` or the environment variable
GAN_JAX_UNVERIFIED_DATA=1. Whatever is read is value-checked either way: idx headers against the
bytes that follow, labels in 0..9, image shapes.
"""
from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import os
import pickle
import struct
import tarfile
import zlib
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np
import tensorflow_datasets as tfds

from gan_jax.data import DATA_ENV, DATASET_NAMES

DATA_VERSION = "1.0.0"
_IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
              "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
_CIFAR_BATCHES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}
_CIFAR_DIR, _CIFAR_TAR = "cifar-10-batches-py", "cifar-10-python.tar.gz"
_CELEBA_IMAGES, _CELEBA_PARTITION = "img_align_celeba", "list_eval_partition.txt"
_CELEBA_SPLITS = {"train": 0, "validation": 1, "test": 2}
UNVERIFIED_ENV = "GAN_JAX_UNVERIFIED_DATA"
OPT_OUT_HINT = (f"if the files are deliberately not the published ones (a subset of your own), build without "
                f"verification: verify=False (flag --no_verify of `python -m gan_jax.data`) or the environment "
                f"variable {UNVERIFIED_ENV}=1")
_REPLACE = "replace it with an intact copy"


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """What a dataset is: native image shape, classes (None: no class label), splits, original files."""

    name: str
    shape: tuple[int, int, int]
    num_classes: int | None
    splits: tuple[str, ...]
    files: str  # the original files a local build needs, in words


_SPECS = {
    "mnist": DatasetSpec("mnist", (28, 28, 1), 10, ("train", "test"),
                         ", ".join(f + ".gz" for pair in _IDX_FILES.values() for f in pair)
                         + " (or the same names un-gzipped)"),
    "cifar10": DatasetSpec("cifar10", (32, 32, 3), 10, ("train", "test"),
                           f"{_CIFAR_TAR}, or its extracted {_CIFAR_DIR}/ holding "
                           + ", ".join(_CIFAR_BATCHES["train"] + _CIFAR_BATCHES["test"])),
    "celeb_a": DatasetSpec("celeb_a", (218, 178, 3), None, tuple(_CELEBA_SPLITS),
                           f"{_CELEBA_IMAGES}/ (the aligned JPEGs 000001.jpg, ...) and {_CELEBA_PARTITION}"),
}
_SPECS["fashion_mnist"] = dataclasses.replace(_SPECS["mnist"], name="fashion_mnist")
_SPECS["stacked_mnist"] = DatasetSpec("stacked_mnist", (28, 28, 3), 1000, ("train", "test"),
                                      "MNIST's " + _SPECS["mnist"].files)


@dataclasses.dataclass(frozen=True)
class PublishedFile:
    """An original file as its authors publish it: size in bytes and SHA-256 (hex)."""

    size: int
    sha256: str


@dataclasses.dataclass(frozen=True)
class Originals:
    """A dataset's original files as published: where to get them, the files with a published checksum
    (by name), and the number of examples in each split (None: not checked, see PUBLISHED)."""

    source: str  # where its authors publish it
    files: dict[str, PublishedFile]
    examples: dict[str, int] | None


_MNIST_EXAMPLES = {"train": 60_000, "test": 10_000}
# Sizes and SHA-256 of the files the builders read, as their authors publish them; the MNIST, Fashion-MNIST and
# CelebA values are those of TFDS's checksum files (tensorflow/datasets, tensorflow_datasets/url_checksums/
# mnist.txt, fashion_mnist.txt, celeb_a.txt). Un-gzipped idx files and an extracted cifar-10-batches-py/ have no
# published checksum: they are checked against the published number of examples of each split (with the idx
# headers and byte counts, that fixes their size), not byte for byte. CelebA's JPEGs have none either (TFDS's is
# the zip's): only list_eval_partition.txt, which fixes the splits, is checked.
PUBLISHED: dict[str, Originals] = {
    "mnist": Originals("yann.lecun.com/exdb/mnist or its mirror storage.googleapis.com/cvdf-datasets/mnist", {
        "train-images-idx3-ubyte.gz": PublishedFile(
            9_912_422, "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
        "train-labels-idx1-ubyte.gz": PublishedFile(
            28_881, "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
        "t10k-images-idx3-ubyte.gz": PublishedFile(
            1_648_877, "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
        "t10k-labels-idx1-ubyte.gz": PublishedFile(
            4_542, "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
    }, _MNIST_EXAMPLES),
    "fashion_mnist": Originals("github.com/zalandoresearch/fashion-mnist", {
        "train-images-idx3-ubyte.gz": PublishedFile(
            26_421_880, "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"),
        "train-labels-idx1-ubyte.gz": PublishedFile(
            29_515, "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"),
        "t10k-images-idx3-ubyte.gz": PublishedFile(
            4_422_102, "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"),
        "t10k-labels-idx1-ubyte.gz": PublishedFile(
            5_148, "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"),
    }, _MNIST_EXAMPLES),
    # TFDS's checksum file lists only the binary version (cifar-10-binary.tar.gz). The SHA-256 of the Python
    # version is the file_hash of Keras's CIFAR-10 loader (tensorflow/tensorflow,
    # tensorflow/python/keras/datasets/cifar10.py); its size is the length the authors' server sends, also
    # recorded in Nervana's CIFAR10 loader (`self.size = 170498071`).
    "cifar10": Originals("www.cs.toronto.edu/~kriz/cifar.html", {
        _CIFAR_TAR: PublishedFile(170_498_071, "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"),
    }, {"train": 50_000, "test": 10_000}),
    # TFDS's celeb_a.txt entry of list_eval_partition.txt (Google Drive id 0B7EVK8r0v71pY0NSMzRuSXJEVkk, the
    # EVAL_LIST of TFDS's CelebA builder), one line per image.
    "celeb_a": Originals("mmlab.ie.cuhk.edu.hk/projects/CelebA.html", {
        _CELEBA_PARTITION: PublishedFile(2_836_386, "fc955bcb3ef8fbdf7d5640d9a8693a8431b5f2ee291a5c1449a1549e7e073fe7"),
    }, None),
}


def check_name(name: str) -> str:
    if name not in DATASET_NAMES:
        raise ValueError(f"unknown dataset {name!r}; allowed: {DATASET_NAMES}")
    return name


def dataset_spec(name: str) -> DatasetSpec:
    """The DatasetSpec of one of DATASET_NAMES."""
    return _SPECS[check_name(name)]


def tfds_name(name: str) -> str:
    """The TFDS dataset that holds `name`'s records (Stacked MNIST is derived from MNIST's)."""
    return "mnist" if check_name(name) == "stacked_mnist" else name


# ----------------------------------------------------------------------------- original file readers

def verification_on(verify: bool) -> bool:
    """Whether a build checks its original files: `verify`, unless $GAN_JAX_UNVERIFIED_DATA is 1 (the switch
    for runs launched from a config, whose data options cannot carry it)."""
    value = os.environ.get(UNVERIFIED_ENV, "")
    if value not in ("", "0", "1"):
        raise ValueError(f"environment variable {UNVERIFIED_ENV} must be 1 (build from files that are not the "
                         f"published ones), 0 or unset, got {value!r}")
    return verify and value != "1"


def sha256_of(path: Path) -> str:
    """The SHA-256 (hex) of a file's bytes."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def check_published(path: Path, published: PublishedFile, source: str) -> None:
    """ValueError unless the file at `path` has the published size and SHA-256."""
    size, sha256 = path.stat().st_size, sha256_of(path)
    if (size, sha256) != (published.size, published.sha256):
        raise ValueError(
            f"{path} is not the published file: {size} bytes, SHA-256 {sha256}; expected {published.size} bytes, "
            f"SHA-256 {published.sha256}. Re-download it from {source}; {OPT_OUT_HINT}")


def _idx_path(directory: Path, stem: str) -> Path:
    """The idx file a build reads: <stem>.gz when present, else the un-gzipped <stem>."""
    gz = directory / f"{stem}.gz"
    return gz if gz.exists() else directory / stem


def _read_paths(name: str, directory: Path) -> list[Path]:
    """The files a build of `name` reads from `directory` that may have a published checksum."""
    if name in ("mnist", "fashion_mnist"):
        return [_idx_path(directory, stem) for pair in _IDX_FILES.values() for stem in pair]
    if name == "cifar10":
        return [directory / _CIFAR_TAR] if (directory / _CIFAR_TAR).exists() else []
    return [directory / _CELEBA_PARTITION]


def verify_originals(name: str, directory: Path) -> None:
    """ValueError naming the first file of `name` read from `directory` that has a published checksum it
    does not match (see PUBLISHED for the files that have none)."""
    name = tfds_name(name)
    originals = PUBLISHED[name]
    for path in _read_paths(name, directory):
        if path.name in originals.files:
            check_published(path, originals.files[path.name], originals.source)


def read_idx(f: BinaryIO, name: str = "idx file") -> np.ndarray:
    """An idx array (LeCun's MNIST format): magic 0x0000 08 <ndim>, big-endian int32 dims, ubyte data.

    ValueError, naming the file as `name`, for a bad magic number or a byte count other than the header's.
    """
    head = f.read(4)
    if len(head) < 4:
        raise ValueError(f"{name} is truncated: {len(head)} bytes, less than an idx header; {_REPLACE}")
    zero, dtype_code, ndim = struct.unpack(">HBB", head)
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{name} is not an unsigned-byte idx file (magic bytes {zero:#06x} {dtype_code:#04x}); "
                         "allowed: 0x0000 0x08")
    raw_dims = f.read(4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise ValueError(f"{name} is truncated: {4 + len(raw_dims)} bytes, less than its {4 + 4 * ndim}-byte idx "
                         f"header; {_REPLACE}")
    dims = struct.unpack(f">{ndim}I", raw_dims)
    data = np.frombuffer(f.read(), dtype=np.uint8)
    expected, actual = 4 + 4 * ndim + int(np.prod(dims)), 4 + 4 * ndim + data.size
    if actual != expected:
        raise ValueError(f"{name} is {'truncated' if actual < expected else 'too long'}: its idx header (shape "
                         f"{dims}) makes {expected} bytes, it holds {actual}; {_REPLACE}")
    return data.reshape(dims)


def _read_idx_file(path: Path) -> np.ndarray:
    what = f"{path} (decompressed)" if path.suffix == ".gz" else str(path)
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as f:
            return read_idx(f, what)
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise ValueError(f"{path} is a damaged gzip file ({e}); {_REPLACE}") from None


def _check_labels(labels: np.ndarray, num_classes: int, name: str) -> None:
    bad = labels[(labels < 0) | (labels >= num_classes)]
    if bad.size:
        raise ValueError(f"{name} holds {bad.size} labels outside 0..{num_classes - 1} (e.g. {int(bad[0])}); "
                         f"{_REPLACE}")


def _idx_split(directory: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    images_path, labels_path = (_idx_path(directory, stem) for stem in _IDX_FILES[split])
    images, labels = _read_idx_file(images_path), _read_idx_file(labels_path)
    if images.shape[1:] != (28, 28) or labels.shape != images.shape[:1]:
        raise ValueError(f"{directory}: {split} images {images.shape} and labels {labels.shape} do not make "
                         "[N, 28, 28] images with N labels")
    _check_labels(labels, 10, str(labels_path))
    return images[..., None], labels


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """CIFAR's batches are pickles: allow only the numpy classes they contain, not arbitrary code.

    (_codecs.encode is how protocol-2 pickles written by Python 3 store bytes.)
    """

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"CIFAR batch refers to {module}.{name}; allowed: {sorted(self._ALLOWED)}")
        return super().find_class(module, name)


def _cifar_batch(raw: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    d = _NumpyOnlyUnpickler(io.BytesIO(raw), encoding="bytes").load()
    data, labels = np.asarray(d[b"data"], dtype=np.uint8), np.asarray(d[b"labels"], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or labels.shape != data.shape[:1]:
        raise ValueError(f"{name}: data {data.shape} and labels {labels.shape} do not make N rows of 3,072 pixels "
                         f"with N labels; {_REPLACE}")
    _check_labels(labels, 10, name)
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels  # channel-first rows -> HWC


def _cifar_split(directory: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    names = _CIFAR_BATCHES[split]
    if (directory / _CIFAR_TAR).exists():
        with tarfile.open(directory / _CIFAR_TAR, "r:gz") as tar:
            parts = [_cifar_batch(tar.extractfile(f"{_CIFAR_DIR}/{n}").read(), f"{directory / _CIFAR_TAR}:{n}")
                     for n in names]
    else:
        folder = directory / _CIFAR_DIR if (directory / _CIFAR_DIR).is_dir() else directory
        parts = [_cifar_batch((folder / n).read_bytes(), str(folder / n)) for n in names]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _celeba_files(directory: Path, split: str) -> list[Path]:
    path = directory / _CELEBA_PARTITION
    rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
    bad = [r for r in rows if len(r) != 2 or r[1] not in ("0", "1", "2")]
    if bad:
        raise ValueError(f"{path}: {len(bad)} lines are not '<image file> <0, 1 or 2>' (e.g. {' '.join(bad[0])!r}); "
                         f"{_REPLACE}")
    wanted = str(_CELEBA_SPLITS[split])
    return [directory / _CELEBA_IMAGES / r[0] for r in rows if r[1] == wanted]


def missing_files(name: str, directory: Path) -> list[str]:
    """The original files of `name` that `directory` lacks (empty: a build can start)."""
    name = tfds_name(name)
    if name in ("mnist", "fashion_mnist"):
        return [s + ".gz" for pair in _IDX_FILES.values() for s in pair
                if not ((directory / (s + ".gz")).is_file() or (directory / s).is_file())]
    if name == "cifar10":
        if (directory / _CIFAR_TAR).is_file():
            return []
        folder = directory / _CIFAR_DIR if (directory / _CIFAR_DIR).is_dir() else directory
        lacking = [n for n in _CIFAR_BATCHES["train"] + _CIFAR_BATCHES["test"] if not (folder / n).is_file()]
        return [_CIFAR_TAR + " or " + ", ".join(f"{_CIFAR_DIR}/{n}" for n in lacking)] if lacking else []
    return [f for f, ok in ((_CELEBA_IMAGES + "/", (directory / _CELEBA_IMAGES).is_dir()),
                            (_CELEBA_PARTITION, (directory / _CELEBA_PARTITION).is_file())) if not ok]


# ----------------------------------------------------------------------------- TFDS builders

class _LocalBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Builds `name` from the original files in manual_dir; `max_examples` keeps each split's first ones.

    With `verify` (and $GAN_JAX_UNVERIFIED_DATA not 1, see verification_on) the files are checked against
    PUBLISHED first; the build records whether they were (metadata "verified").
    """

    VERSION = tfds.core.Version(DATA_VERSION)
    RELEASE_NOTES = {DATA_VERSION: "Built by gan_jax from a local copy of the original files."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = "Put the original files in manual_dir: see gan_jax.data.dataset_spec(name).files."

    def __init__(self, *, max_examples: int | None = None, verify: bool = True, **kwargs):
        self._max_examples, self._verify = max_examples, verification_on(verify)
        super().__init__(**kwargs)

    def _features(self) -> tfds.features.FeaturesDict:
        spec = _SPECS[self.name]
        return tfds.features.FeaturesDict({
            "image": tfds.features.Tensor(shape=spec.shape, dtype=np.uint8),
            "label": tfds.features.ClassLabel(num_classes=spec.num_classes)})

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self, description=f"{self.name}, {_SPECS[self.name].files}",
            features=self._features(), disable_shuffling=True,
            metadata=tfds.core.MetadataDict(max_examples=self._max_examples, verified=self._verify))

    def _split_generators(self, dl_manager) -> dict[str, Iterator]:
        directory = Path(dl_manager.manual_dir)
        if self._verify:
            verify_originals(self.name, directory)  # before any split is read: each file is hashed once
        return {split: self._generate_examples(directory, split) for split in _SPECS[self.name].splits}

    def _arrays(self, directory: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
        return _idx_split(directory, split)

    def _generate_examples(self, directory: Path, split: str) -> Iterator[tuple[int, dict]]:
        images, labels = self._arrays(directory, split)
        originals = PUBLISHED[self.name]
        if self._verify and len(images) != originals.examples[split]:
            raise ValueError(
                f"{directory}: the {split} split read from these files holds {len(images)} examples, the published "
                f"{self.name} {originals.examples[split]}. Re-download the original files from {originals.source}; "
                + OPT_OUT_HINT)
        for i in range(len(images))[:self._max_examples]:
            yield i, {"image": images[i], "label": int(labels[i])}


class LocalMnist(_LocalBuilder, skip_registration=True):
    name = "mnist"


class LocalFashionMnist(_LocalBuilder, skip_registration=True):
    name = "fashion_mnist"


class LocalCifar10(_LocalBuilder, skip_registration=True):
    name = "cifar10"

    def _arrays(self, directory: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
        return _cifar_split(directory, split)


class LocalCelebA(_LocalBuilder, skip_registration=True):
    """Aligned CelebA; the JPEG bytes are stored as they are and decoded (Pillow) at read time."""

    name = "celeb_a"

    def _features(self) -> tfds.features.FeaturesDict:
        return tfds.features.FeaturesDict(
            {"image": tfds.features.Image(shape=_SPECS["celeb_a"].shape, encoding_format="jpeg")})

    def _generate_examples(self, directory: Path, split: str) -> Iterator[tuple[int, dict]]:
        for i, path in enumerate(_celeba_files(directory, split)[:self._max_examples]):
            yield i, {"image": path.read_bytes()}


_BUILDERS = {b.name: b for b in (LocalMnist, LocalFashionMnist, LocalCifar10, LocalCelebA)}


# ----------------------------------------------------------------------------- prepare / load

def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path:
    """data_dir with ~ expanded; empty or None (the config's default "") means TFDS's default:
    $TFDS_DATA_DIR, else ~/tensorflow_datasets."""
    return Path(data_dir or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets").expanduser()


def candidate_manual_dirs(name: str, data_dir: str | os.PathLike | None, manual_dir: str | os.PathLike | None
                          ) -> list[Path]:
    """Folders searched for the original files, in order: manual_dir and manual_dir/<name> when given (not
    empty), $GAN_JAX_DATA/<name> when that is set, then TFDS's data_dir/downloads/manual/<name> and
    data_dir/downloads/manual."""
    name = tfds_name(name)
    given = [Path(manual_dir).expanduser(), Path(manual_dir).expanduser() / name] if manual_dir else []
    from_env = [Path(os.environ[DATA_ENV]).expanduser() / name] if os.environ.get(DATA_ENV) else []
    manual = resolve_data_dir(data_dir) / "downloads" / "manual"
    return given + from_env + [manual / name, manual]


def find_manual_dir(name: str, data_dir: str | os.PathLike | None, manual_dir: str | os.PathLike | None) -> Path:
    """The first candidate folder holding all of `name`'s original files, else FileNotFoundError saying
    which files are needed, where it looked and what was missing there, and how to point elsewhere."""
    looked = []
    for d in candidate_manual_dirs(name, data_dir, manual_dir):
        lacking = missing_files(name, d) if d.is_dir() else None
        if lacking == []:
            return d
        looked.append(f"{d} ({'no such folder' if lacking is None else 'lacks ' + ', '.join(lacking)})")
    folder = tfds_name(name)
    raise FileNotFoundError(
        f"dataset {name!r} is not built under data_dir '{resolve_data_dir(data_dir)}' (looked for "
        f"{resolve_data_dir(data_dir) / folder / DATA_VERSION}) and no local copy of its original files was found; "
        f"TFDS cannot download here. Files needed: {_SPECS[check_name(name)].files}. Looked in: "
        + "; ".join(looked) + f". To build it, put them in ${DATA_ENV}/{folder}/ (set {DATA_ENV} to your folder of "
        "original files, one subfolder per dataset) or pass manual_dir= (flag --manual_dir of `python -m "
        "gan_jax.data`, config field data.manual_dir) pointing at the folder that holds them."
        + (f" Get the files from {PUBLISHED[folder].source}." if folder in PUBLISHED else ""))


def local_builder(name: str, data_dir: str | os.PathLike | None, *, max_examples: int | None = None,
                  verify: bool = True) -> tfds.core.GeneratorBasedBuilder:
    """The TFDS builder of `name` (of MNIST for stacked_mnist) over data_dir, array_record files (`verify`:
    whether a build checks the original files, see prepare)."""
    return _BUILDERS[tfds_name(name)](data_dir=os.fspath(resolve_data_dir(data_dir)),
                                      file_format="array_record", max_examples=max_examples, verify=verify)


def prepare(name: str, data_dir: str | None, manual_dir: str | None = None, *, max_examples: int | None = None,
            verify: bool = True) -> None:
    """Build `name` into data_dir from the original files (idempotent, never downloads).

    Empty data_dir / manual_dir mean the defaults (resolve_data_dir, candidate_manual_dirs).
    stacked_mnist builds MNIST (Stacked MNIST is derived from it at read time). `max_examples` keeps the
    first examples of each split (tiny test builds); a build with a different limit already in data_dir
    is a ValueError, so a tiny build is never mistaken for the full one. A build first checks the original
    files against their published checksums and example counts (ValueError naming the file that differs);
    verify=False, or $GAN_JAX_UNVERIFIED_DATA=1, builds from files that are deliberately not the published
    ones. Value checks (idx headers, labels, shapes) apply either way.
    """
    if max_examples is not None and max_examples < 1:
        raise ValueError(f"max_examples must be None or >= 1, got {max_examples}")
    builder = local_builder(name, data_dir, max_examples=max_examples, verify=verify)
    if builder.is_prepared():
        built = builder.info.metadata.get("max_examples")
        if built != max_examples:
            raise ValueError(f"{builder.data_dir} holds a build with max_examples={built}, not the requested "
                             f"{max_examples}; delete that folder or use another data_dir")
        return
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=os.fspath(find_manual_dir(name, data_dir, manual_dir)), try_download_gcs=False))


def load_records(name: str, data_dir: str | None, split: str, manual_dir: str | None = None, *, verify: bool = True):
    """The TFDS random-access source of `name`'s split ({"image": uint8 [H, W, C], "label": int}),
    built first when data_dir lacks it and the original files are found (see find_manual_dir; `verify`:
    see prepare)."""
    spec = dataset_spec(name)
    allowed = spec.splits + ("+".join(spec.splits),)
    if split not in allowed:
        raise ValueError(f"unknown split {split!r} for {name}; allowed: {allowed}")
    builder = local_builder(name, data_dir)
    if not builder.is_prepared():
        prepare(name, data_dir, manual_dir, verify=verify)
        builder = local_builder(name, data_dir)
    return builder.as_data_source(split=split)
