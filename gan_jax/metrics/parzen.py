"""Gaussian Parzen-window log-likelihood (Breuleux et al. 2011; Goodfellow et al. 2014, Table 1).

log p(x) = logsumexp_i(−‖x − μ_i‖² / (2σ²)) − log N − (d/2) log(2πσ²), a kernel density with one
isotropic bandwidth σ around N centres μ_i (the generated samples), evaluated at test points x.

Goodfellow et al.'s protocol (goodfeli/adversarial `parzen_ll.py`):
- pixels in [0, 1] for both centres and points (real-valued MNIST, d = 784): σ depends on this scale,
  so map [-1, 1] images with `to_unit_interval` first;
- 10,000 generated samples as centres;
- σ chosen from `GOODFELLOW_SIGMAS` = logspace(−1, 0, 10) by the mean log-likelihood of the first 1,000
  images of the validation split MNIST train[50000:60000] (the script's options change the grid, the count
  of validation images and of samples: `sigma_grid`, `mnist_parzen_points`);
- reported: mean log-likelihood (nats) of the 10,000 test images ± std / √10000 (ddof = 0).
Adversarial nets score 225 ± 2; real training images train[0:10000] used as centres score about
241–243 (σ ≈ 0.167), so memorising the training set beats the paper's number.

`python -m gan_jax.metrics.parzen --data_dir DIR` computes that real-data ceiling.
"""
from __future__ import annotations

import argparse
import functools
import math
import time
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

SIGMA_GRID = (-1.0, 0.0, 10)  # parzen_ll.py's --sigma_start, --sigma_end, --cross_val
NUM_SAMPLES = 10_000        # generated samples used as centres (its --num_samples)
NUM_VALIDATION = 1_000      # first images of MNIST train[50000:60000] used to choose σ (its --limit_size)
VALIDATION_START = 50_000
MAX_VALIDATION = 60_000 - VALIDATION_START  # the whole validation split


def sigma_grid(start: float, end: float, count: int) -> tuple[float, ...]:
    """parzen_ll.py's σ candidates: logspace(start, end, count)."""
    if not (isinstance(count, int) and count >= 1 and start <= end):
        raise ValueError(f"a σ grid is (start, end, count) with start <= end and an integer count >= 1, got "
                         f"{(start, end, count)!r}")
    return tuple(float(s) for s in np.logspace(start, end, count))


GOODFELLOW_SIGMAS = sigma_grid(*SIGMA_GRID)


def to_unit_interval(images: jax.Array) -> jax.Array:
    """[-1, 1] images [N, ...] -> flat [N, d] pixels in [0, 1]: (x + 1) / 2, the paper's scale."""
    return ((images + 1.0) / 2.0).reshape(images.shape[0], -1)


def parzen_log_likelihoods(points: jax.Array, centres: jax.Array, sigmas: Sequence[float] | np.ndarray,
                           batch_size: int = 500) -> jax.Array:
    """log p(x) [S, M] of points [M, d] under the Parzen window of centres [N, d], for each of S sigmas.

    Points go through in batches of `batch_size` (distances [batch, N] in memory at a time); the squared
    distances of a batch, ‖x‖² − 2 xᵀμ + ‖μ‖² at full float32 precision, serve every σ.
    """
    points, centres = jnp.asarray(points, jnp.float32), jnp.asarray(centres, jnp.float32)
    sigmas = np.asarray(sigmas, np.float32).reshape(-1)
    if points.ndim != 2 or centres.ndim != 2 or points.shape[1] != centres.shape[1]:
        raise ValueError(f"points [M, d] and centres [N, d] must share d, got {points.shape} and {centres.shape}")
    if sigmas.size == 0 or np.any(sigmas <= 0):
        raise ValueError(f"sigmas must be one or more values > 0, got {sigmas}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return _parzen(points, centres, sigmas, min(batch_size, points.shape[0]))


@functools.partial(jax.jit, static_argnums=3)
def _parzen(points: jax.Array, centres: jax.Array, sigmas: jax.Array, batch_size: int) -> jax.Array:
    m, d = points.shape
    pad = -m % batch_size
    batches = jnp.pad(points, ((0, pad), (0, 0))).reshape(-1, batch_size, d)
    centre_sq = jnp.sum(centres ** 2, axis=1)
    log_norm = jnp.log(centres.shape[0]) + d * jnp.log(sigmas * math.sqrt(2 * math.pi))

    def one(x: jax.Array) -> jax.Array:
        cross = jnp.matmul(x, centres.T, precision=jax.lax.Precision.HIGHEST)
        sq = jnp.maximum(jnp.sum(x ** 2, axis=1, keepdims=True) - 2 * cross + centre_sq, 0.0)
        return logsumexp(-sq[None] / (2 * sigmas[:, None, None] ** 2), axis=-1) - log_norm[:, None]

    out = jax.lax.map(one, batches)  # [B, S, batch]
    return jnp.moveaxis(out, 1, 0).reshape(sigmas.shape[0], -1)[:, :m]


def parzen_evaluate(test_points: jax.Array, validation_points: jax.Array, centres: jax.Array,
                    sigmas: Sequence[float] = GOODFELLOW_SIGMAS, batch_size: int = 500) -> dict[str, object]:
    """Goodfellow et al.'s protocol: σ = argmax over `sigmas` of the mean validation log-likelihood, then
    {"sigma", "mean", "std_err" = std / √M (ddof 0), "validation_means" [S]} over the M test points."""
    validation_means = jnp.mean(parzen_log_likelihoods(validation_points, centres, sigmas, batch_size), axis=1)
    sigma = float(np.asarray(sigmas)[int(jnp.argmax(validation_means))])
    ll = parzen_log_likelihoods(test_points, centres, [sigma], batch_size)[0]
    return {"sigma": sigma, "mean": float(jnp.mean(ll)), "std_err": float(jnp.std(ll) / math.sqrt(ll.shape[0])),
            "validation_means": np.asarray(validation_means)}


def mnist_parzen_points(data_dir: str, manual_dir: str | None = None, num_validation: int = NUM_VALIDATION
                        ) -> tuple[np.ndarray, np.ndarray]:
    """(validation [num_validation, 784], test [10000, 784]) MNIST pixels in [0, 1], as in the paper."""
    if not 1 <= num_validation <= MAX_VALIDATION:
        raise ValueError(f"num_validation must be in 1..{MAX_VALIDATION} (MNIST train[50000:60000]), "
                         f"got {num_validation}")
    from gan_jax.data import make_image_source
    train = make_image_source("mnist", data_dir, "train", manual_dir=manual_dir)
    test = make_image_source("mnist", data_dir, "test", manual_dir=manual_dir)
    validation = train.__getitems__(np.arange(VALIDATION_START, VALIDATION_START + num_validation))["image"]
    test_images = test.__getitems__(np.arange(len(test)))["image"]
    return np.asarray(to_unit_interval(validation)), np.asarray(to_unit_interval(test_images))


def main(argv: Sequence[str] | None = None) -> None:
    """Real-data reference: MNIST train[start:start + 10000] as the "generated" centres."""
    parser = argparse.ArgumentParser(prog="python -m gan_jax.metrics.parzen", description=main.__doc__)
    parser.add_argument("--data_dir", default="", help="TFDS data dir (default: TFDS's own)")
    parser.add_argument("--manual_dir", default="", help="MNIST idx files (default: the data module's search)")
    parser.add_argument("--start", type=int, default=0, help="first training image used as a centre")
    args = parser.parse_args(argv)
    if not 0 <= args.start <= VALIDATION_START - NUM_SAMPLES:
        raise ValueError(f"--start must be in 0..{VALIDATION_START - NUM_SAMPLES} (centres stay out of the "
                         f"validation split), got {args.start}")
    from gan_jax.data import make_image_source
    validation, test = mnist_parzen_points(args.data_dir, args.manual_dir or None)
    train = make_image_source("mnist", args.data_dir, "train", manual_dir=args.manual_dir or None)
    centres = to_unit_interval(train.__getitems__(np.arange(args.start, args.start + NUM_SAMPLES))["image"])
    t0 = time.time()
    result = parzen_evaluate(test, validation, centres)
    print(f"Parzen log-likelihood of the {len(test)} MNIST test images, centres = train[{args.start}:"
          f"{args.start + NUM_SAMPLES}]: {result['mean']:.1f} ± {result['std_err']:.1f} nats "
          f"(σ = {result['sigma']:.4f}; {time.time() - t0:.1f} s)")


if __name__ == "__main__":
    main()
