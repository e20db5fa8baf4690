"""Image domains and paired image-to-image tasks made from local data (pix2pix, CycleGAN, ADDA).

Domains (`load_domain`): "mnist" and "fashion_mnist" through `make_image_source` (offline idx files),
and "digits", scikit-learn's 8×8 handwritten digits (Alpaydin & Kaynak 1998; 1,797 images shipped with
scikit-learn, no download) brought to MNIST's format: intensities 0..16 scaled to [−1, 1], bilinearly
resized to 20×20 and padded by 4 px to 28×28, the way MNIST centres its 20×20 digits in a 28×28 frame.
It is a real second digit domain: other writers (UCI), 4×4-block-counted scans, a blockier stroke.
Its "train"/"test" splits are rows i mod 5 != 0 / i mod 5 == 0 (1,437 / 360 images).

Paired tasks (`make_pairs`), a pure function of the target images:
- "inpainting": the central `INPAINT_SIZE`² square set to 0 (mid-grey, distinct from the −1 background);
- "superres7" / "superres14": 4×4 / 2×2 block means (28 → 7 or 14 px), shown to the generator
  nearest-neighbour upsampled back to 28×28.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

DOMAINS = ("mnist", "fashion_mnist", "digits")
TASKS = ("inpainting", "superres7", "superres14")
SPLITS = ("train", "test")
INPAINT_SIZE = 14
DIGITS_BOX, SIZE = 20, 28


def _check(value: str, allowed: tuple[str, ...], what: str) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {what} {value!r}; allowed: {allowed}")


def sklearn_digits(split: str) -> dict[str, np.ndarray]:
    """scikit-learn's digits in MNIST's format: {"image": float32 [N, 28, 28, 1] in [−1, 1], "label": int32 [N]}."""
    from sklearn.datasets import load_digits
    _check(split, SPLITS, "split")
    digits = load_digits()
    rows = np.arange(len(digits.target))
    rows = rows[(rows % 5 == 0) == (split == "test")]
    small = jnp.asarray(digits.images[rows, :, :, None] / 8.0 - 1.0, jnp.float32)
    big = jax.image.resize(small, (len(rows), DIGITS_BOX, DIGITS_BOX, 1), "bilinear")
    pad = (SIZE - DIGITS_BOX) // 2
    image = jnp.pad(big, ((0, 0), (pad, pad), (pad, pad), (0, 0)), constant_values=-1.0)
    return {"image": np.asarray(jnp.clip(image, -1.0, 1.0)), "label": digits.target[rows].astype(np.int32)}


def load_domain(name: str, split: str, *, data_dir: str = "", manual_dir: str = "", limit: int = 0,
                verify: bool = True) -> dict[str, np.ndarray]:
    """{"image": [N, 28, 28, 1] in [−1, 1], "label": [N]} of a domain's split (the first `limit` if > 0).

    `verify`: whether a build of mnist / fashion_mnist checks the original files against their published
    checksums (see gan_jax.data.tfds_local.prepare); scikit-learn's digits ship with scikit-learn.
    """
    _check(name, DOMAINS, "domain")
    _check(split, SPLITS, "split")
    if name == "digits":
        data = sklearn_digits(split)
    else:
        from gan_jax.data import make_image_source
        source = make_image_source(name, data_dir, split, manual_dir=manual_dir or None, verify=verify)
        n = len(source) if limit <= 0 else min(limit, len(source))
        return source.__getitems__(np.arange(n))
    return data if limit <= 0 else {k: v[:limit] for k, v in data.items()}


def _block_mean_upsampled(images: jax.Array, factor: int) -> jax.Array:
    b, h, w, c = images.shape
    small = images.reshape(b, h // factor, factor, w // factor, factor, c).mean(axis=(2, 4))
    return jnp.repeat(jnp.repeat(small, factor, axis=1), factor, axis=2)


def make_pairs(task: str, images: jax.Array) -> jax.Array:
    """The generator input x for targets y = images [B, 28, 28, C] (see the module docstring)."""
    _check(task, TASKS, "task")
    if images.ndim != 4 or images.shape[1:3] != (SIZE, SIZE):
        raise ValueError(f"make_pairs takes images [B, {SIZE}, {SIZE}, C], got shape {images.shape}")
    if task == "inpainting":
        lo = (SIZE - INPAINT_SIZE) // 2
        return images.at[:, lo:lo + INPAINT_SIZE, lo:lo + INPAINT_SIZE, :].set(0.0)
    return _block_mean_upsampled(images, SIZE // int(task.removeprefix("superres")))


