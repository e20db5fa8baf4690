"""Tiny datasets in the original formats, so that no test needs data outside the repository.

The files are LeCun's idx files, gzipped, under the original names (train-images-idx3-ubyte.gz, ...): the magic
number 0x00000803 (unsigned bytes, 3 dimensions) or 0x00000801, the dimensions as big-endian 32-bit integers, then
the bytes. Each class has its own template and every image carries its label learnably: MNIST's are pen strokes
(Lissajous curves, a different frequency ratio and phase per class, blurred), Fashion-MNIST's filled silhouettes
(a radius profile and a stripe texture per class); each example is its class's template with a random shift,
scale, phase and stroke width, and pixel noise. Pixels are uint8 on a 0 background with saturated 255 ink, as in
the originals. CIFAR-10 (pickled batches, in a folder or the tarball) and CelebA (aligned JPEGs and the partition
list) hold random pixels: the tests that read them check formats and shapes, not what a model learns.

The real files are read only by the tests of the real files, from $GAN_JAX_DATA as the caller's environment set it
(`REAL_ORIGINALS`, read at import); tests/conftest.py hides the variable while the tests run.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import struct
import tarfile
from pathlib import Path
from typing import Sequence

import numpy as np
import pytest
from PIL import Image

from gan_jax.data import DATA_ENV

REAL_ORIGINALS = Path(os.environ[DATA_ENV]) if os.environ.get(DATA_ENV) else None
NAMES = ("mnist", "fashion_mnist")
IDX_STEMS = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
SIZE = 28
# Per class: x and y frequencies and the phase of x (a circle, lines, figure eights, knots, ...).
_STROKES = ((1, 1, np.pi / 2), (1, 1, 0.0), (1, 2, 0.0), (2, 1, 0.0), (2, 1, np.pi / 2), (1, 3, np.pi / 2),
            (3, 1, np.pi / 2), (2, 3, np.pi / 2), (3, 2, np.pi / 2), (1, 1, np.pi / 4))


def idx_bytes(array: np.ndarray) -> bytes:
    """`array` (uint8) as an idx file: magic 0x0000 08 <ndim>, big-endian 32-bit dimensions, the bytes."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.asarray(array, np.uint8).tobytes()


def write_idx(path: Path, array: np.ndarray, compress: bool = True) -> None:
    """`array` as the idx file `path`, gzipped when `compress`."""
    raw = idx_bytes(array)
    Path(path).write_bytes(gzip.compress(raw, mtime=0) if compress else raw)


def _grid() -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    return x - (SIZE - 1) / 2, y - (SIZE - 1) / 2


def strokes(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """float32 [n, 28, 28] in [0, 1]: each label's Lissajous stroke, jittered, blurred with a Gaussian pen."""
    n = len(labels)
    fx, fy, phase = (np.array([_STROKES[k][i] for k in labels], np.float32)[:, None] for i in range(3))
    t = np.linspace(0, 2 * np.pi, 96, dtype=np.float32)[None]
    scale = rng.uniform(6.5, 9.0, (n, 2)).astype(np.float32)
    shift = rng.uniform(-2, 2, (n, 2)).astype(np.float32)
    px = scale[:, :1] * np.sin(fx * t + phase + rng.normal(0, 0.15, (n, 1))) + shift[:, :1]
    py = scale[:, 1:] * np.sin(fy * t) + shift[:, 1:]
    width = rng.uniform(0.7, 1.1, (n, 1, 1)).astype(np.float32)
    x, y = _grid()
    ink = np.zeros((n, SIZE, SIZE), np.float32)
    for j in range(t.shape[1]):
        d2 = (x - px[:, j, None, None]) ** 2 + (y - py[:, j, None, None]) ** 2
        ink = np.maximum(ink, np.exp(-d2 / (2 * width ** 2)))
    return ink


def silhouettes(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """float32 [n, 28, 28] in [0, 1]: each label's filled shape (radius profile r(θ) = R (1 + Σ_j c_j cos jθ)) with
    its stripe texture, scaled, shifted and noisy."""
    classes = np.random.default_rng(2017)  # the templates: fixed, whatever the examples' seed
    radius = classes.uniform(7.0, 11.0, 10)
    harmonics = classes.uniform(-0.25, 0.25, (10, 4))
    angle = np.pi * np.arange(10) / 10
    n = len(labels)
    x, y = _grid()
    shift = rng.uniform(-1.5, 1.5, (n, 2, 1, 1))
    xs, ys = x - shift[:, 0], y - shift[:, 1]
    theta, rho = np.arctan2(ys, xs), np.hypot(xs, ys)
    profile = 1 + sum(harmonics[labels, j - 1, None, None] * np.cos(j * theta) for j in range(1, 5))
    edge = radius[labels, None, None] * rng.uniform(0.85, 1.1, (n, 1, 1)) * profile
    inside = 1 / (1 + np.exp(-(edge - rho) / 0.6))
    along = xs * np.cos(angle[labels, None, None]) + ys * np.sin(angle[labels, None, None])
    texture = 0.65 + 0.35 * np.cos(along * (0.8 + 0.15 * (labels[:, None, None] % 4)))
    return (inside * texture).astype(np.float32)


def fake_split(name: str, num: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [num, 28, 28], labels uint8 [num]) of the fake `name`: classes balanced, shuffled."""
    if name not in NAMES:
        raise ValueError(f"unknown fake dataset {name!r}; allowed: {NAMES}")
    rng = np.random.default_rng((seed, NAMES.index(name)))
    labels = rng.permutation(np.arange(num) % 10)
    ink = (strokes if name == "mnist" else silhouettes)(labels, rng)
    pixels = 1.4 * ink * rng.uniform(0.8, 1.0, ink.shape) * 255  # ink saturates at 255 like the originals'
    return np.clip(np.floor(pixels), 0, 255).astype(np.uint8), labels.astype(np.uint8)


def write_originals(directory: Path, name: str, num_train: int, num_test: int, seed: int = 0,
                    compress: bool = True) -> dict[str, np.ndarray]:
    """The four original files of the fake `name` in `directory` (created); their arrays by file stem."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for offset, (split, num) in enumerate((("train", num_train), ("test", num_test))):
        images_stem, labels_stem = IDX_STEMS[split]
        arrays[images_stem], arrays[labels_stem] = fake_split(name, num, 2 * seed + offset)
    for stem, array in arrays.items():
        write_idx(directory / (stem + ".gz" if compress else stem), array, compress)
    return arrays


def cifar_batch(rng: np.random.Generator, num: int, labels: Sequence[int] | None = None) -> bytes:
    """A batch of CIFAR-10's Python version as its authors pickle it (protocol 2): {b"data": uint8 [num, 3072],
    channel-first rows, b"labels": [num], b"batch_label": ...}, random pixels (and labels unless given)."""
    labels = rng.integers(0, 10, num).tolist() if labels is None else list(labels)
    return pickle.dumps({b"data": rng.integers(0, 256, (num, 3072), dtype=np.uint8), b"labels": labels,
                         b"batch_label": b"fake"}, protocol=2)


def write_cifar(directory: Path, num_per_batch: int, num_test: int, tarball: bool = False, seed: int = 0
                ) -> dict[str, bytes]:
    """cifar-10-batches-py/ (data_batch_1..5 of num_per_batch images, test_batch of num_test) in `directory`, or
    with `tarball` the cifar-10-python.tar.gz holding it; the batches' bytes by name (the same for the same seed)."""
    rng = np.random.default_rng(seed)
    blobs = {f"data_batch_{i}": cifar_batch(rng, num_per_batch) for i in range(1, 6)}
    blobs["test_batch"] = cifar_batch(rng, num_test)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if tarball:
        with tarfile.open(directory / "cifar-10-python.tar.gz", "w:gz") as tar:
            for name, blob in blobs.items():
                info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
                info.size = len(blob)
                tar.addfile(info, io.BytesIO(blob))
    else:
        (directory / "cifar-10-batches-py").mkdir()
        for name, blob in blobs.items():
            (directory / "cifar-10-batches-py" / name).write_bytes(blob)
    return blobs


def write_celeba(directory: Path, partitions: Sequence[int], seed: int = 0) -> None:
    """Aligned CelebA in `directory`: img_align_celeba/000001.jpg, ... (178 wide, 218 high, random pixels) and
    list_eval_partition.txt giving image i the partition partitions[i - 1] (0 train, 1 validation, 2 test)."""
    rng = np.random.default_rng(seed)
    (Path(directory) / "img_align_celeba").mkdir(parents=True)
    for i in range(1, len(partitions) + 1):
        Image.fromarray(rng.integers(0, 256, (218, 178, 3), dtype=np.uint8)).save(
            Path(directory) / "img_align_celeba" / f"{i:06d}.jpg", quality=90)
    (Path(directory) / "list_eval_partition.txt").write_text(
        "".join(f"{i:06d}.jpg {p}\n" for i, p in enumerate(partitions, start=1)))


def build_tfds(root: Path, num_train: int, num_test: int, names: tuple[str, ...] = NAMES) -> str:
    """A TFDS data dir, root/tfds, holding the fake `names` built offline from their original files written to
    root/originals/<name> (not the published files: unverified)."""
    from gan_jax import data
    root = Path(root)
    for name in names:
        write_originals(root / "originals" / name, name, num_train, num_test)
        data.prepare(name, str(root / "tfds"), str(root / "originals" / name), verify=False)
    return str(root / "tfds")


def published_as(directory: Path, examples: dict[str, int]):
    """A `tfds_local.Originals` entry that publishes the files in `directory` (holding `examples` per split) as
    they are: their sizes and SHA-256, hashed here with hashlib, independently of the code under test."""
    from gan_jax.data import tfds_local
    files = {p.name: tfds_local.PublishedFile(p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest())
             for p in sorted(Path(directory).iterdir())}
    return tfds_local.Originals(f"the test's folder {directory}", files, examples)


def real_originals(name: str) -> Path:
    """The folder of `name`'s real original files, $GAN_JAX_DATA/<name>; skips the test where it is absent."""
    folder = REAL_ORIGINALS / name if REAL_ORIGINALS else None
    if folder is None or not folder.is_dir():
        pytest.skip(f"needs the real {name} files in ${DATA_ENV}/{name} (set {DATA_ENV} to the folder that holds "
                    f"them; {'unset' if REAL_ORIGINALS is None else f'it is {REAL_ORIGINALS}'})")
    return folder
