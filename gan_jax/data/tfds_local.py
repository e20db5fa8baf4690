"""TFDS datasets built offline from local copies of the original files (no download, no TensorFlow).

TFDS can only prepare datasets here through a `GeneratorBasedBuilder` that reads `manual_dir` and
writes `array_record` files (ENVIRONMENT.md). Each builder below registers nothing globally
(`skip_registration=True`, so TFDS's own downloading builders keep their names) but carries the TFDS
name, so it writes `data_dir/<name>/<VERSION>/`. `VERSION` 1.0.0 is distinct from every version TFDS's
own builders use, so our builds never mix with theirs; read them back with this module or with
`tfds.builder_from_directory(data_dir/<name>/1.0.0)`.

Records keep the original order (`disable_shuffling=True`): example i of a split is example i of
the original files; pipelines shuffle at read time.
"""
from __future__ import annotations

import dataclasses
import gzip
import io
import os
import pickle
import struct
import tarfile
from pathlib import Path
from typing import Iterator

import numpy as np
import tensorflow_datasets as tfds

from gan_jax.data import DATASET_NAMES

DATA_VERSION = "1.0.0"
_IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
              "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
_CIFAR_BATCHES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}
_CIFAR_DIR, _CIFAR_TAR = "cifar-10-batches-py", "cifar-10-python.tar.gz"
_CELEBA_IMAGES, _CELEBA_PARTITION = "img_align_celeba", "list_eval_partition.txt"
_CELEBA_SPLITS = {"train": 0, "validation": 1, "test": 2}
# Where the project keeps the original MNIST / Fashion-MNIST files: ../shared/data next to the checkout,
# or $GAN_JAX_SHARED_DATA (a clone made elsewhere; .ci/run sets it from the repository it was cloned from).
PROJECT_MANUAL_ROOT = Path(os.environ.get("GAN_JAX_SHARED_DATA")
                           or Path(__file__).resolve().parents[2].parent / "shared" / "data")
FLAG_HINT = ("pass manual_dir= (flag --manual_dir of `python -m gan_jax.data`, config field "
             "data.manual_dir) pointing at the folder that holds them")


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

def _open_maybe_gz(directory: Path, stem: str) -> io.BufferedIOBase:
    gz = directory / f"{stem}.gz"
    return gzip.open(gz, "rb") if gz.exists() else open(directory / stem, "rb")


def read_idx(f: io.BufferedIOBase) -> np.ndarray:
    """An idx array (LeCun's MNIST format): magic 0x0000 08 <ndim>, big-endian int32 dims, ubyte data."""
    zero, dtype_code, ndim = struct.unpack(">HBB", f.read(4))
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"not an unsigned-byte idx file (magic bytes {zero:#06x} {dtype_code:#04x}); "
                         "allowed: 0x0000 0x08")
    dims = struct.unpack(f">{ndim}I", f.read(4 * ndim))
    data = np.frombuffer(f.read(), dtype=np.uint8)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"idx file holds {data.size} bytes of data, its header {dims} needs {int(np.prod(dims))}")
    return data.reshape(dims)


def _idx_split(directory: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    images_stem, labels_stem = _IDX_FILES[split]
    with _open_maybe_gz(directory, images_stem) as f:
        images = read_idx(f)
    with _open_maybe_gz(directory, labels_stem) as f:
        labels = read_idx(f)
    if images.ndim != 3 or labels.shape != images.shape[:1]:
        raise ValueError(f"{directory}: {split} images {images.shape} do not match labels {labels.shape}")
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


def _cifar_batch(raw: bytes) -> tuple[np.ndarray, np.ndarray]:
    d = _NumpyOnlyUnpickler(io.BytesIO(raw), encoding="bytes").load()
    images = np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # CHW rows -> HWC
    return images, np.asarray(d[b"labels"], dtype=np.int64)


def _cifar_split(directory: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    names = _CIFAR_BATCHES[split]
    if (directory / _CIFAR_TAR).exists():
        with tarfile.open(directory / _CIFAR_TAR, "r:gz") as tar:
            parts = [_cifar_batch(tar.extractfile(f"{_CIFAR_DIR}/{n}").read()) for n in names]
    else:
        folder = directory / _CIFAR_DIR if (directory / _CIFAR_DIR).is_dir() else directory
        parts = [_cifar_batch((folder / n).read_bytes()) for n in names]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _celeba_files(directory: Path, split: str) -> list[Path]:
    wanted = _CELEBA_SPLITS[split]
    rows = (line.split() for line in (directory / _CELEBA_PARTITION).read_text().splitlines())
    return [directory / _CELEBA_IMAGES / r[0] for r in rows if r and int(r[1]) == wanted]


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
    """Builds `name` from the original files in manual_dir; `max_examples` keeps each split's first ones."""

    VERSION = tfds.core.Version(DATA_VERSION)
    RELEASE_NOTES = {DATA_VERSION: "Built by gan_jax from a local copy of the original files."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = "Put the original files in manual_dir: see gan_jax.data.dataset_spec(name).files."

    def __init__(self, *, max_examples: int | None = None, **kwargs):
        self._max_examples = max_examples
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
            metadata=tfds.core.MetadataDict(max_examples=self._max_examples))

    def _split_generators(self, dl_manager) -> dict[str, Iterator]:
        directory = Path(dl_manager.manual_dir)
        return {split: self._generate_examples(directory, split) for split in _SPECS[self.name].splits}

    def _arrays(self, directory: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
        return _idx_split(directory, split)

    def _generate_examples(self, directory: Path, split: str) -> Iterator[tuple[int, dict]]:
        images, labels = self._arrays(directory, split)
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
    """Folders searched for the original files: manual_dir (and manual_dir/<name>) when given (not
    empty), else TFDS's default data_dir/downloads/manual[/<name>] and the project's ../shared/data/<name>."""
    name = tfds_name(name)
    if manual_dir:
        root = Path(manual_dir).expanduser()
        return [root, root / name]
    manual = resolve_data_dir(data_dir) / "downloads" / "manual"
    return [manual / name, manual, PROJECT_MANUAL_ROOT / name]


def find_manual_dir(name: str, data_dir: str | os.PathLike | None, manual_dir: str | os.PathLike | None) -> Path:
    """The first candidate folder holding all of `name`'s original files, else FileNotFoundError saying
    which files are needed, where it looked and what was missing there, and how to point elsewhere."""
    looked = []
    for d in candidate_manual_dirs(name, data_dir, manual_dir):
        lacking = missing_files(name, d) if d.is_dir() else None
        if lacking == []:
            return d
        looked.append(f"{d} ({'no such folder' if lacking is None else 'lacks ' + ', '.join(lacking)})")
    raise FileNotFoundError(
        f"dataset {name!r} is not built under data_dir '{resolve_data_dir(data_dir)}' (looked for "
        f"{resolve_data_dir(data_dir) / tfds_name(name) / DATA_VERSION}) and no local copy of its original files was found; "
        f"TFDS cannot download here. Files needed: {_SPECS[check_name(name)].files}. Looked in: "
        + "; ".join(looked) + f". To build it, {FLAG_HINT}.")


def local_builder(name: str, data_dir: str | os.PathLike | None, *, max_examples: int | None = None
                  ) -> tfds.core.GeneratorBasedBuilder:
    """The TFDS builder of `name` (of MNIST for stacked_mnist) over data_dir, array_record files."""
    return _BUILDERS[tfds_name(name)](data_dir=os.fspath(resolve_data_dir(data_dir)),
                                      file_format="array_record", max_examples=max_examples)


def prepare(name: str, data_dir: str | None, manual_dir: str | None = None, *, max_examples: int | None = None
            ) -> None:
    """Build `name` into data_dir from the original files (idempotent, never downloads).

    Empty data_dir / manual_dir mean the defaults (resolve_data_dir, candidate_manual_dirs).
    stacked_mnist builds MNIST (Stacked MNIST is derived from it at read time). `max_examples` keeps the
    first examples of each split (tiny test builds); a build with a different limit already in data_dir
    is a ValueError, so a tiny build is never mistaken for the full one.
    """
    if max_examples is not None and max_examples < 1:
        raise ValueError(f"max_examples must be None or >= 1, got {max_examples}")
    builder = local_builder(name, data_dir, max_examples=max_examples)
    if builder.is_prepared():
        built = builder.info.metadata.get("max_examples")
        if built != max_examples:
            raise ValueError(f"{builder.data_dir} holds a build with max_examples={built}, not the requested "
                             f"{max_examples}; delete that folder or use another data_dir")
        return
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=os.fspath(find_manual_dir(name, data_dir, manual_dir)), try_download_gcs=False))


def load_records(name: str, data_dir: str | None, split: str, manual_dir: str | None = None):
    """The TFDS random-access source of `name`'s split ({"image": uint8 [H, W, C], "label": int}),
    built first when data_dir lacks it and the original files are found (see find_manual_dir)."""
    spec = dataset_spec(name)
    allowed = spec.splits + ("+".join(spec.splits),)
    if split not in allowed:
        raise ValueError(f"unknown split {split!r} for {name}; allowed: {allowed}")
    builder = local_builder(name, data_dir)
    if not builder.is_prepared():
        prepare(name, data_dir, manual_dir)
        builder = local_builder(name, data_dir)
    return builder.as_data_source(split=split)
