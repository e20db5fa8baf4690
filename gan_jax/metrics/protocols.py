"""The evaluation protocols of the reproduced papers, as functions of a sampler and the data.

A *sampler* is `sampler(n, offset) -> np.ndarray` of n samples, deterministic for each (n, offset); the
protocols draw in chunks of `SAMPLE_CHUNK` (`draw`), so a sampler that seeds each chunk by its offset
gives the same samples in every protocol and on every run. What a caller keeps out of them: which
weights sample (EMA, recomputed batch statistics), the key of each offset, and loading the data.

- `mixture_scores`: mode-collapse statistics on 2-D Gaussian mixtures (VEEGAN Table 1, PacGAN Table 1).
- `image_scores`: FID (Heusel et al. 2017) and KID (Bińkowski et al. 2018) against real images and the
  Inception Score (Salimans et al. 2016) with a feature network: our LeNet classifier (classifier FID / KID /
  IS) or the FID InceptionV3 (`features.feature_network` picks it from `config.eval.features`).
- `stacked_mnist_scores`: modes of 1000 and KL of Stacked MNIST (VEEGAN Table 2, PacGAN Tables 2–3).
- `parzen_scores`: the Parzen-window log-likelihood of Goodfellow et al. 2014 (Table 1), and a
  memorisation check (`nearest_distance`).
The `*_protocol` functions give the line to record next to each number.
"""
from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from gan_jax.data.mixtures import Mixture
from gan_jax.metrics import features, fid, inception_score, kid, mixture, parzen, stacked_mnist

Sampler = Callable[[int, int], np.ndarray]
SAMPLE_CHUNK = 1000
KID_SUBSETS, KID_SUBSET_SIZE = 100, 1000  # Bińkowski et al. 2018's code: 100 subsets of min(1000, N_a, N_b)
NUM_NEAREST = 1000  # samples and test images whose nearest-training-image distances are compared
PRECISE_BN = "_precise_bn"  # suffix of mixture scores sampled with recomputed batch statistics


def draw(sampler: Sampler, num_samples: int, chunk: int = SAMPLE_CHUNK) -> np.ndarray:
    """sampler(min(chunk, n − i), i) for i = 0, chunk, 2 chunk, ... < n, concatenated: n samples."""
    if num_samples < 1 or chunk < 1:
        raise ValueError(f"num_samples and chunk must be >= 1, got {num_samples} and {chunk}")
    return np.concatenate([np.asarray(sampler(min(chunk, num_samples - i), i))
                           for i in range(0, num_samples, chunk)])


def array_sampler(images: np.ndarray) -> Sampler:
    """The sampler that returns images[offset:offset + n]: real data scored as if generated (the
    real-data floor of a protocol)."""
    def sample(n: int, offset: int) -> np.ndarray:
        if offset + n > images.shape[0]:
            raise ValueError(f"asked for samples {offset}..{offset + n} of {images.shape[0]} images")
        return np.asarray(images[offset:offset + n])
    return sample


def mixture_scores(sampler: Sampler, mix: Mixture, num_samples: int) -> dict[str, float | list[int]]:
    """PacGAN's mode statistics of `num_samples` samples drawn in one call, sampler(num_samples, 0):
    {"modes", "high_quality", "reverse_kl"} (`metrics.mixture.mode_statistics`), and the high- and
    low-quality counts of the samples nearest each mode centre, in the order of `mix.means`
    ({"high_quality_per_mode", "low_quality_per_mode"}), which those statistics summarise."""
    samples, means = jnp.asarray(sampler(num_samples, 0)), jnp.asarray(mix.means)
    stats = mixture.mode_statistics(samples, means, mix.std)
    high, low = mixture.mode_counts(samples, means, mix.std)
    return {**{k: float(v) for k, v in stats.items()},
            "high_quality_per_mode": [int(c) for c in high], "low_quality_per_mode": [int(c) for c in low]}


def image_scores(net: features.FeatureNetwork, real_images: np.ndarray, sampler: Sampler, num_samples: int,
                 batch_size: int = 500) -> dict[str, float | int | str]:
    """FID (Heusel et al. 2017), KID (Bińkowski et al. 2018) and the Inception Score (Salimans et al. 2016)
    of `num_samples` samples against `real_images`, all with `net`'s features / class probabilities, and what
    measured them: {"fid", "kid", "kid_std", net.score_name: IS over 10 splits, "features": net.name,
    "fid_num_samples", "fid_num_real": the two set sizes (KID's and the IS's too), "kid_subset_size",
    "kid_num_subsets"}. KID's subsets are drawn with a fixed key, so a set scores the same every time.

    Lucic et al. 2018's protocol is 10,000 samples against the 10,000 test images; the feature passes
    run over the local devices (`features.feature_pass`) and FID comes from the streamed moments."""
    num_real = real_images.shape[0]
    if num_samples < 2 or num_real < 2:
        raise ValueError(f"FID needs >= 2 samples and >= 2 real images, got {num_samples} and {num_real}")
    # Both passes keep the logits, so they share one compiled program (the real ones go unused).
    real, fake = (features.feature_pass(net, images, batch_size, keep_features=True, keep_logits=True)
                  for images in (real_images, draw(sampler, num_samples)))
    score, _ = inception_score.inception_score(jax.nn.softmax(jnp.asarray(fake.logits)))
    kid_mean, kid_std = kid.kid(jnp.asarray(real.features), jnp.asarray(fake.features), jax.random.key(0),
                                KID_SUBSETS, KID_SUBSET_SIZE)
    return {"fid": float(fid.fid_from_stats(real.stats, fake.stats)), "kid": float(kid_mean),
            "kid_std": float(kid_std), net.score_name: float(score), "features": net.name,
            "fid_num_samples": num_samples, "fid_num_real": num_real,
            "kid_subset_size": min(KID_SUBSET_SIZE, num_samples, num_real), "kid_num_subsets": KID_SUBSETS}


def stacked_mnist_scores(net: features.FeatureNetwork, sampler: Sampler, num_samples: int,
                         batch_size: int = 1000) -> dict[str, float]:
    """{"modes" of 1000, "kl": KL(generated digit triples ‖ uniform), "confident"} of `num_samples`
    Stacked-MNIST samples [N, 28, 28, 3], each channel read by `net`'s logits
    (`metrics.stacked_mnist`; VEEGAN / PacGAN: 26,000 samples, 25,600 in the Metz setting)."""
    samples = draw(sampler, num_samples)
    logits = features.feature_pass(net, stacked_mnist.channel_images(samples), batch_size, keep_logits=True).logits
    stats = stacked_mnist.modes_of_logits(logits.reshape(num_samples, 3, -1))
    return {"modes": float(stats["modes"]), "kl": stats["kl"], "confident": stats["confident"]}


def nearest_distance(points: np.ndarray, reference: np.ndarray, chunk: int = 10_000) -> float:
    """Median over points [M, d] of the Euclidean distance to the nearest row of reference [R, d], from
    ‖x‖² − 2 xᵀr + ‖r‖² over `chunk` reference rows at a time."""
    p = jnp.asarray(points)
    best = jnp.full(p.shape[0], jnp.inf)
    sq = jnp.sum(p * p, axis=1)
    for i in range(0, reference.shape[0], chunk):
        r = jnp.asarray(reference[i:i + chunk])
        d2 = sq[:, None] - 2 * p @ r.T + jnp.sum(r * r, axis=1)[None, :]
        best = jnp.minimum(best, jnp.min(d2, axis=1))
    return float(jnp.median(jnp.sqrt(jnp.maximum(best, 0.0))))


def parzen_scores(sampler: Sampler, validation: np.ndarray, test: np.ndarray, train_pixels: np.ndarray,
                  num_samples: int = parzen.NUM_SAMPLES, sigmas: Sequence[float] = parzen.GOODFELLOW_SIGMAS
                  ) -> dict[str, float]:
    """Goodfellow et al. 2014's Parzen-window log-likelihood of the test points under `num_samples`
    samples in [0, 1] pixels (σ chosen from `sigmas` on the validation points; `metrics.parzen.parzen_evaluate`), and
    a memorisation check: the median distance of 1,000 samples to their nearest training image over
    the same for 1,000 test images (≈ 1 for a generator that does not copy; → 0 for one that memorises).

    validation [V, d], test [M, d] and train_pixels [T, d] are flat pixels in [0, 1]
    (`parzen.mnist_parzen_points`, `parzen.to_unit_interval`); samples are [−1, 1] images.
    -> {"parzen_log_likelihood", "parzen_std_err", "parzen_sigma", "nn_distance_ratio"}."""
    centres = np.asarray(parzen.to_unit_interval(draw(sampler, num_samples)))
    ll = parzen.parzen_evaluate(jnp.asarray(test), jnp.asarray(validation), jnp.asarray(centres), sigmas)
    ratio = (nearest_distance(centres[:NUM_NEAREST], train_pixels)
             / nearest_distance(test[:NUM_NEAREST], train_pixels))
    return {"parzen_log_likelihood": ll["mean"], "parzen_std_err": ll["std_err"], "parzen_sigma": ll["sigma"],
            "nn_distance_ratio": ratio}


def mixture_protocol(num_samples: int, ema_decay: float = 0.0, precise_bn_batches: int = 0,
                     batch_size: int = 0) -> str:
    """The protocol line of `mixture_scores`; with `precise_bn_batches`, also that of the scores under the
    generator's batch statistics recomputed from that many batches of `batch_size` (keys ending in
    `PRECISE_BN`)."""
    generator = f"the EMA generator (decay {ema_decay})" if ema_decay else "the generator"
    precise = (f"; *{PRECISE_BN}: G's batch statistics recomputed from {precise_bn_batches} batches of "
               f"{batch_size}" if precise_bn_batches else "")
    return f"{num_samples} samples from {generator}; PacGAN's mode statistics{precise}"


def parzen_protocol(num_samples: int = parzen.NUM_SAMPLES, sigma_grid: Sequence = parzen.SIGMA_GRID,
                    num_validation: int = parzen.NUM_VALIDATION) -> str:
    """The protocol line of `parzen_scores` with `parzen.mnist_parzen_points` (defaults: the paper's)."""
    start, end, count = sigma_grid
    return (f"Goodfellow et al. 2014 Parzen protocol: {num_samples:,} samples, sigma from logspace({start:g}, {end:g}, "
            f"{count}) on MNIST train[50000:{50_000 + num_validation}], 10,000 test images, pixels in [0, 1]; "
            "memorisation: 1,000 samples' vs 1,000 test images' median nearest-training-image distance")


def stacked_mnist_protocol(num_samples: int, classifier_dir: str) -> str:
    """The protocol line of `stacked_mnist_scores` with the classifier saved in `classifier_dir`."""
    return (f"{num_samples} samples, each channel classified by {classifier_dir}; "
            "modes = distinct digit triples of 1000, KL(generated triples || uniform)")


def image_protocol(num_samples: int, dataset: str, network: str) -> str:
    """The protocol line of `image_scores` against the first `num_samples` test images of `dataset`, with the
    feature network described by `network` (`features.feature_description`)."""
    return (f"{num_samples} samples vs the first {num_samples} {dataset} test images; features and class "
            f"probabilities of {network}; KID over {KID_SUBSETS} subsets of "
            f"{min(KID_SUBSET_SIZE, num_samples)}, IS over 10 splits")
