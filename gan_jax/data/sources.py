"""Random-access image sources: TFDS records -> float32 pixels in [-1, 1], resized or padded; Stacked MNIST.

A source has `len()`, `source[i]` -> {"image": float32 [H, W, C], "label": int32} and
`source.__getitems__(indices)` -> the same keys stacked over the indices (what `Pipeline` reads).
celeb_a has no class label, so its examples have no "label" key.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from PIL import Image

from gan_jax.data import tfds_local
from gan_jax.data.pipeline import hash_counters

FITS = ("auto", "pad", "resize")
# Stacked MNIST size of VEEGAN / PacGAN: 128,000 images of three digits (Srivastava et al. 2017, Sec. 5.2).
STACKED_MNIST_SIZE = 128_000


def scale_pixels(images: np.ndarray) -> np.ndarray:
    """uint8 -> float32 in [-1, 1]: x / 127.5 - 1, so 0 -> -1 and 255 -> 1 exactly."""
    return images.astype(np.float32) / np.float32(127.5) - np.float32(1.0)


def check_pixels(images: np.ndarray, name: str) -> None:
    """ValueError unless float images are finite and in [-1, 1], the range every model here expects."""
    finite = np.isfinite(images)
    if not finite.all():
        raise ValueError(f"{name} holds {int(images.size - finite.sum())} NaN or infinite pixels; images must be "
                         "finite and in [-1, 1]: fix the data that made them")
    if images.size and (images.min() < -1.0 or images.max() > 1.0):
        raise ValueError(f"{name} holds pixels in [{images.min():g}, {images.max():g}], outside [-1, 1]; scale uint8 "
                         "images with x / 127.5 - 1 (gan_jax.data.sources.scale_pixels)")


def _center_crop(image: np.ndarray, height: int, width: int) -> np.ndarray:
    top, left = (image.shape[0] - height) // 2, (image.shape[1] - width) // 2
    return image[top:top + height, left:left + width]


def resolve_fit(height: int, width: int, image_size: int, fit: str) -> str:
    """"none", "pad" or "resize". auto pads a square image when the canvas grows by at most a quarter
    (MNIST 28 -> 32, the DCGAN convention: digits keep their pixels) and resizes otherwise."""
    if fit not in FITS:
        raise ValueError(f"unknown fit {fit!r}; allowed: {FITS}")
    if fit == "auto":
        if (height, width) == (image_size, image_size):
            return "none"
        square_growth = height == width and height < image_size <= height + height // 4
        return "pad" if square_growth else "resize"
    if fit == "pad" and (height > image_size or width > image_size):
        raise ValueError(f"fit='pad' needs image_size >= the image's {height}x{width}, got {image_size}; "
                         "use fit='resize' or 'auto'")
    return fit


def fit_image(image: np.ndarray, image_size: int | None, fit: str = "auto", center_crop: int | None = None
              ) -> np.ndarray:
    """uint8 [H, W, C] -> uint8 [S, S, C] (S = image_size; None keeps the size).

    center_crop first takes the central crop x crop square (e.g. 108 for DCGAN's CelebA). "pad" adds
    zero pixels around the image, which become -1 (the background) after scale_pixels. "resize" crops
    the central square of a non-square image, then resizes bilinearly (PIL, antialiased when shrinking).
    """
    if center_crop is not None:
        if not 0 < center_crop <= min(image.shape[:2]):
            raise ValueError(f"center_crop must be in 1..{min(image.shape[:2])}, got {center_crop}")
        image = _center_crop(image, center_crop, center_crop)
    if image_size is None:
        return image
    h, w, c = image.shape
    mode = resolve_fit(h, w, image_size, fit)
    if mode == "none":
        return image
    if mode == "pad":
        top, left = (image_size - h) // 2, (image_size - w) // 2
        return np.pad(image, ((top, image_size - h - top), (left, image_size - w - left), (0, 0)))
    side = min(h, w)
    square = _center_crop(image, side, side)
    pil = Image.fromarray(square[..., 0] if c == 1 else square)
    return np.asarray(pil.resize((image_size, image_size), Image.BILINEAR)).reshape(image_size, image_size, c)


def stacked_digit_indices(seed: int, example_indices: Sequence[int] | np.ndarray, num_digits: int) -> np.ndarray:
    """int64 [k, 3]: the digits stacked as R, G, B in Stacked MNIST example i.

    digit_c(i) = hash_counters(seed, 3 i + c) mod num_digits (SplitMix64): uniform draws with
    replacement, as Metz et al. 2016 / VEEGAN / PacGAN draw them, and a pure function of (seed, i), so
    any example is computed on its own and the dataset needs no storage.
    """
    counters = np.asarray(example_indices, dtype=np.uint64)[:, None] * np.uint64(3) + np.arange(3, dtype=np.uint64)
    return (hash_counters(seed, counters) % np.uint64(num_digits)).astype(np.int64)


class StackedMnistRecords:
    """Stacked MNIST records from MNIST records: image uint8 [28, 28, 3] = three digits as R, G, B,
    label = 100 d_R + 10 d_G + d_B, one of 1000 modes.

    Derived at read time rather than stored as its own TFDS dataset: it is a pure function of MNIST
    and (seed, i), so storing 128,000 x 2,352 bytes again would only duplicate MNIST. Each digit is
    read from the records once and kept (decoded MNIST is 55 MB): a batch reads 3 digits per image,
    and reading them from the records every time cost ~40 ms per batch of 128.
    """

    def __init__(self, digits: Any, num_examples: int = STACKED_MNIST_SIZE, seed: int = 0):
        if num_examples < 1:
            raise ValueError(f"stacked_size must be >= 1, got {num_examples}")
        if seed < 0:
            raise ValueError(f"stacked_seed must be >= 0, got {seed}")
        self.digits, self.num_examples, self.seed = digits, num_examples, seed
        self._images: np.ndarray | None = None
        self._labels = np.full(len(digits), -1, dtype=np.int64)  # -1: not read yet

    def _read_digits(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(images uint8 [k, 28, 28, 1], labels [k]) of MNIST records idx, reading each record once."""
        missing = np.unique(idx[self._labels[idx] < 0])
        if missing.size:
            recs = self.digits.__getitems__([int(j) for j in missing])
            if self._images is None:
                self._images = np.zeros((len(self.digits), *np.shape(recs[0]["image"])), dtype=np.uint8)
            self._images[missing] = np.stack([r["image"] for r in recs])
            self._labels[missing] = [int(r["label"]) for r in recs]
        return self._images[idx], self._labels[idx]

    def __len__(self) -> int:
        return self.num_examples

    def digit_indices(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if indices.size and (indices.min() < 0 or indices.max() >= self.num_examples):
            raise IndexError(f"Stacked MNIST index out of range 0..{self.num_examples - 1}: {indices}")
        return stacked_digit_indices(self.seed, indices, len(self.digits))

    def __getitems__(self, indices: Sequence[int] | np.ndarray) -> list[dict[str, Any]]:
        digit_idx = self.digit_indices(indices)
        images, labels = self._read_digits(digit_idx.reshape(-1))
        images = images.reshape(len(digit_idx), 3, *images.shape[1:-1]).transpose(0, 2, 3, 1)
        labels = labels.reshape(-1, 3) @ np.array([100, 10, 1])
        return [{"image": images[k], "label": int(labels[k])} for k in range(len(digit_idx))]

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.__getitems__([i])[0]


class ImageSource:
    """Model-ready view of uint8 records: {"image": float32 [S, S, C] in [-1, 1], "label": int32}."""

    def __init__(self, records: Any, *, image_size: int | None = None, fit: str = "auto",
                 center_crop: int | None = None):
        if image_size is not None and image_size < 1:
            raise ValueError(f"image_size must be None or >= 1, got {image_size}")
        if fit not in FITS:
            raise ValueError(f"unknown fit {fit!r}; allowed: {FITS}")
        self.records, self.image_size, self.fit, self.center_crop = records, image_size, fit, center_crop

    def __len__(self) -> int:
        return len(self.records)

    def _examples(self, recs: list[dict[str, Any]]) -> dict[str, np.ndarray]:
        images = np.stack([fit_image(np.asarray(r["image"]), self.image_size, self.fit, self.center_crop)
                           for r in recs])
        out = {"image": scale_pixels(images)}
        if "label" in recs[0]:
            out["label"] = np.asarray([r["label"] for r in recs], dtype=np.int32)
        return out

    def __getitems__(self, indices: Sequence[int] | np.ndarray) -> dict[str, np.ndarray]:
        return self._examples(self.records.__getitems__([int(i) for i in np.asarray(indices).reshape(-1)]))

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        return {k: v[0] for k, v in self.__getitems__([i]).items()}


def make_image_source(name: str, data_dir: str, split: str, *, image_size: int | None = None,
                      manual_dir: str | None = None, fit: str = "auto", center_crop: int | None = None,
                      stacked_size: int | None = None, stacked_seed: int | None = None, verify: bool = True
                      ) -> ImageSource:
    """The random-access source of a split of one of DATASET_NAMES.

    Builds the TFDS dataset into data_dir on first use when the original files are found (in manual_dir,
    $GAN_JAX_DATA/<name> or data_dir/downloads/manual[/<name>], in that order); otherwise raises
    FileNotFoundError naming the files needed, the folders searched and the manual_dir flag / config
    field. image_size None or 0 keeps the native size (see fit_image for pad / resize / center_crop).
    Splits: "train", "test" (celeb_a also "validation") or all joined by "+". stacked_mnist draws the
    digits of its stacked_size examples (default 128,000) from that MNIST split with stacked_seed
    (default 0); the two options are rejected for the other datasets. A build checks the original files
    against their published checksums first; verify=False (or $GAN_JAX_UNVERIFIED_DATA=1) builds from files
    that are deliberately not the published ones (see tfds_local.prepare).
    """
    stacked_options = {"stacked_size": stacked_size, "stacked_seed": stacked_seed}
    if name != "stacked_mnist" and any(v is not None for v in stacked_options.values()):
        raise ValueError(f"{stacked_options} apply only to stacked_mnist, not to {name!r}")
    records = tfds_local.load_records(name, data_dir, split, manual_dir, verify=verify)
    if name == "stacked_mnist":
        records = StackedMnistRecords(records, STACKED_MNIST_SIZE if stacked_size is None else stacked_size,
                                      stacked_seed or 0)
    return ImageSource(records, image_size=image_size or None, fit=fit, center_crop=center_crop)


class InMemorySource:
    """A random-access source over equal-length arrays, read by `gan_jax.data.Pipeline`.

    Its floating-point arrays are images: they must be finite and in [-1, 1] (checked once, here), as the
    sources built from uint8 files always are.
    """

    def __init__(self, arrays: dict[str, np.ndarray]):
        lengths = {k: len(v) for k, v in arrays.items()}
        if not arrays or len(set(lengths.values())) != 1:
            raise ValueError(f"need one or more arrays of one length, got lengths {lengths}")
        for name, array in arrays.items():
            if np.issubdtype(array.dtype, np.floating):
                check_pixels(array, f"InMemorySource array {name!r}")
        self.arrays = arrays

    def __len__(self) -> int:
        return len(next(iter(self.arrays.values())))

    def __getitems__(self, rows) -> dict[str, np.ndarray]:
        return {k: v[np.asarray(rows)] for k, v in self.arrays.items()}
