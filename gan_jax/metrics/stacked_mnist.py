"""Stacked-MNIST mode counting (Metz et al. 2016; Srivastava et al. 2017 (VEEGAN), Table 2; Lin et al.
2018 (PacGAN), Tables 2–3).

Each generated 28×28×3 image is read as three digits, one per channel (R, G, B), by an MNIST classifier
applied to each channel separately; the mode is the triple, id = 100 d_R + 10 d_G + d_B (the labels of
`gan_jax.data`'s stacked_mnist). Reported (PacGAN's code): **modes** = number of distinct triples among
the samples, out of 1000, and **KL** = KL(p̂ ‖ uniform) = Σ_t p̂_t log(1000 p̂_t), p̂ the histogram of
generated triples.

Protocol (Srivastava et al. 2017, Sec. 5.2; Lin et al. 2018, Sec. 5): `NUM_SAMPLES` = 26,000 samples in the VEEGAN setting (PacGAN Table 2),
`NUM_SAMPLES_METZ` = 25,600 in the Metz setting (PacGAN Table 3). Even a perfect sampler has a plug-in
KL of about 999 / (2N) = 0.0192 at N = 26,000, and real Stacked MNIST ~0.024 (MNIST's class imbalance);
compare with those floors, and use the same N as the table compared with (`reproduce` prints the floor
measured on real Stacked-MNIST images with each table).
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import xlogy

from gan_jax.metrics.batching import batched_apply

NUM_MODES = 1000
NUM_SAMPLES = 26_000
NUM_SAMPLES_METZ = 25_600
CONFIDENCE = 0.9


def mode_ids(digits: jax.Array) -> jax.Array:
    """Digits [N, 3] (R, G, B) -> mode ids [N] = 100 d_R + 10 d_G + d_B."""
    if digits.ndim != 2 or digits.shape[1] != 3:
        raise ValueError(f"digits must be [N, 3] (one per channel), got shape {digits.shape}")
    return digits[:, 0] * 100 + digits[:, 1] * 10 + digits[:, 2]


def mode_statistics(ids: jax.Array, num_modes: int = NUM_MODES) -> dict[str, jax.Array]:
    """{"modes": distinct ids hit, "kl": Σ_t p̂_t log(K p̂_t)} of mode ids [N] in 0..K−1 (jittable)."""
    counts = jnp.bincount(ids, length=num_modes)
    p = counts / ids.shape[0]
    return {"modes": jnp.sum(counts > 0), "kl": jnp.sum(xlogy(p, num_modes * p))}


def channel_images(images: np.ndarray | jax.Array) -> jax.Array:
    """Images [N, H, W, 3] -> [3N, H, W, 1]: each channel as its own grey image, in the order sample 0
    R, G, B, sample 1 R, ..."""
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"Stacked-MNIST images must be [N, H, W, 3], got shape {images.shape}")
    n, h, w, _ = images.shape
    return jnp.moveaxis(jnp.asarray(images), -1, 1).reshape(n * 3, h, w, 1)


def channel_logits(images: np.ndarray | jax.Array, classify_fn: Callable[[jax.Array], jax.Array],
                   batch_size: int = 1000) -> np.ndarray:
    """classify_fn's logits [N, 3, 10] of images [N, 28, 28, 3] in [−1, 1], each channel read as its
    own 28×28×1 image."""
    channels = channel_images(images)
    return np.asarray(batched_apply(classify_fn, channels, batch_size)).reshape(images.shape[0], 3, -1)


def channel_digits(images: np.ndarray | jax.Array, classify_fn: Callable[[jax.Array], jax.Array],
                   batch_size: int = 1000) -> np.ndarray:
    """Digits [N, 3] of images [N, 28, 28, 3]: the argmax of each channel's logits."""
    return np.argmax(channel_logits(images, classify_fn, batch_size), axis=-1)


def modes_of_logits(logits: np.ndarray | jax.Array) -> dict[str, float | int]:
    """{"modes", "kl", "confident", "num_samples"} of the channel logits [N, 3, 10] of N generated images
    (see `stacked_mnist_modes`)."""
    logits = jnp.asarray(logits)
    if logits.ndim != 3 or logits.shape[1] != 3:
        raise ValueError(f"channel logits must be [N, 3, num_classes], got shape {logits.shape}")
    stats = mode_statistics(mode_ids(jnp.argmax(logits, axis=-1)))
    sure = jnp.all(jnp.max(jax.nn.softmax(logits, axis=-1), axis=-1) >= CONFIDENCE, axis=-1)
    return {"modes": int(stats["modes"]), "kl": float(stats["kl"]), "confident": float(jnp.mean(sure)),
            "num_samples": int(logits.shape[0])}


def stacked_mnist_modes(images: np.ndarray | jax.Array, classify_fn: Callable[[jax.Array], jax.Array],
                        batch_size: int = 1000) -> dict[str, float | int]:
    """{"modes", "kl", "confident", "num_samples"} of generated images [N, 28, 28, 3] (N = `NUM_SAMPLES`
    in the papers' protocol), each channel classified by classify_fn (e.g. `lenet_features(dir).apply_fn`'s
    logits). The papers count a triple however unsure the classifier is, so blurred samples can hit
    many modes by chance; "confident" (not in the papers) is the fraction of samples whose three channels
    all get a class probability >= `CONFIDENCE`, to read beside the mode count (real data: 0.972)."""
    return modes_of_logits(channel_logits(images, classify_fn, batch_size))
