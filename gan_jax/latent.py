"""Latent-space tools of DCGAN (Radford et al. 2016, Sec. 6) and BigGAN (Brock et al. 2019, Sec. 3.1),
for any generator of codes z ~ N(0, I): a run loaded with `gan_jax.load` (GAN or VAE), or a bare function
`generate(z) -> images [N, H, W, C] in [−1, 1]` with its code size:

- interpolation between two codes, linear or spherical (slerp, White 2016: the path keeps the norm
  typical of Gaussian codes, which a straight line through the origin's neighbourhood does not);
- vector arithmetic on averaged z (DCGAN Fig. 7): one exemplar's z is noisy, the mean of a few codes
  sharing a concept is stable; attribute vector v = z̄(with) − z̄(without), applied as z + s·v;
- the truncation trick: z ~ N(0, I) truncated to [−t, t] (values outside resampled), trading variety
  for fidelity as t shrinks.

The code-space parts (sampling, truncation, interpolation paths) live in `gan_jax.prior`.

`python -m gan_jax.latent --run DIR --classifier_dir C --workdir OUT` runs them on the unconditional GAN or VAE
trained in DIR on 28×28 grey images (e.g. `python launch.py --config experiments/vae_mnist.py --workdir DIR`) and
writes a grid per tool plus latent.json with the measured effect of each, read by the classifier in C. The
"thick stroke" attribute needs the codes of real images, which only the VAE can infer (its encoder): on a GAN the
arithmetic is skipped. (`--vae_workdir` is the flag's older name.)
"""
from __future__ import annotations

import argparse
import json
import os
from typing import Any, Callable, Protocol, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from gan_jax.prior import METHODS, interpolate, sample_latents

Array = jax.Array


class LatentGenerator(Protocol):
    """What the tools draw with: a run of `gan_jax.load` with latents (GAN or VAE), or any object alike."""

    latent_dim: int

    def latents(self, key: Any, n: int, truncation: float | None = None) -> np.ndarray: ...

    def generate(self, z: Any) -> np.ndarray: ...


# A loaded run, or a bare function `generate(z) -> images` (then with the grids' latent_dim).
Generator = LatentGenerator | Callable[[Array], Array]
__all__ = ["METHODS", "apply_attribute", "attribute_vector", "interpolate", "interpolation_grid", "sample_latents",
           "truncation_grid"]


def attribute_vector(z_with: Array, z_without: Array) -> Array:
    """v = mean(z_with) − mean(z_without) over codes [N, d] sharing / lacking a concept (DCGAN Sec. 6.3)."""
    if z_with.ndim != 2 or z_without.ndim != 2 or z_with.shape[1] != z_without.shape[1] or \
            min(len(z_with), len(z_without)) == 0:
        raise ValueError(f"need non-empty code sets [N, d] with one d, got {z_with.shape} and {z_without.shape}")
    return jnp.mean(z_with, axis=0) - jnp.mean(z_without, axis=0)


def apply_attribute(z: Array, vector: Array, scales: Sequence[float]) -> Array:
    """Codes [N, d] -> [N, S, d]: z + s·v for each scale s."""
    return z[:, None, :] + jnp.asarray(scales)[None, :, None] * vector


def _generator(generator: Generator, latent_dim: int | None
               ) -> tuple[Callable[[Array], Array], Callable[[Array, int, float | None], Array]]:
    """(generate function, codes(key, n, truncation)) of a loaded run (`gan_jax.load`: its own prior) or of a bare
    function and `latent_dim` (codes z ~ N(0, I))."""
    if callable(generator):
        if latent_dim is None:
            raise ValueError("a bare generate function needs latent_dim")
        return generator, lambda key, n, t: sample_latents(key, (n, latent_dim), t)
    return generator.generate, lambda key, n, t: jnp.asarray(generator.latents(key, n, t))


def interpolation_grid(generator: Generator, key: Array, rows: int = 6, steps: int = 10, method: str = "slerp", *,
                       latent_dim: int | None = None) -> np.ndarray:
    """One row per random pair of codes, `steps` images along the path: images [rows·steps, H, W, C]."""
    generate, codes = _generator(generator, latent_dim)
    ends = codes(key, 2 * rows, None)
    z = jnp.concatenate([interpolate(ends[2 * i], ends[2 * i + 1], steps, method) for i in range(rows)])
    return np.asarray(generate(z))


def truncation_grid(generator: Generator, key: Array, thresholds: Sequence[float | None], num: int = 10, *,
                    latent_dim: int | None = None) -> np.ndarray:
    """One row per threshold (None: no truncation), the same `key` for every row: [len·num, H, W, C]."""
    generate, codes = _generator(generator, latent_dim)
    return np.concatenate([np.asarray(generate(codes(key, num, t))) for t in thresholds])


def _ink(images: np.ndarray) -> np.ndarray:
    """Mean pixel intensity in [0, 1] per image: the stroke mass."""
    return ((np.asarray(images) + 1.0) / 2.0).reshape(len(images), -1).mean(axis=1)


def main(argv: Sequence[str] | None = None) -> dict:
    from gan_jax import api, visualize
    from gan_jax.data import paired
    from gan_jax.metrics import classifier, features, fid
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", "--vae_workdir", dest="run", required=True,
                   help="the workdir of an unconditional GAN or VAE run on 28×28 grey images")
    p.add_argument("--classifier_dir", required=True)
    p.add_argument("--workdir", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num_samples", type=int, default=10000, help="per truncation threshold, for FID")
    args = p.parse_args(argv)
    run = api.load(args.run)
    if not isinstance(run, api.LatentRun) or run.num_classes:
        raise ValueError(f"{args.run} holds a {run.config.task} run: the latent tools measure unconditional GAN "
                         "and VAE runs (for a conditional one: gan_jax.load(DIR).interpolate(..., labels=CLASS))")
    config, d, key = run.config, run.latent_dim, jax.random.key(args.seed)
    net = features.lenet_features(args.classifier_dir)
    os.makedirs(args.workdir, exist_ok=True)
    save = lambda images, name, ncols: visualize.save_png(visualize.image_grid(images, ncols),
                                                          os.path.join(args.workdir, name))
    record: dict = {"generator": f"{'VAE decoder means' if isinstance(run, api.VAERun) else 'GAN generator (EMA)'}, "
                                 f"step {run.step}, {os.path.abspath(args.run)}",
                    "classifier_dir": os.path.abspath(args.classifier_dir), "seed": args.seed}

    # Interpolation: how often the classifier's reading changes along a path (a smooth path crosses few classes).
    for method in METHODS:
        images = interpolation_grid(run, jax.random.fold_in(key, 0), method=method)
        if images.shape[1:] != classifier.IMAGE_SHAPE:
            raise ValueError(f"{args.run} draws images of shape {images.shape[1:]}; the classifier reads "
                             f"{classifier.IMAGE_SHAPE}")
        save(images, f"interpolation_{method}.png", 10)
        labels = np.argmax(net.apply_fn(jnp.asarray(images))[1], axis=-1).reshape(6, 10)
        changes = np.sum(labels[:, 1:] != labels[:, :-1], axis=1)
        record[f"interpolation_{method}_class_changes_per_row"] = float(np.mean(changes))

    test = paired.load_domain(config.data.name, "test", data_dir=config.data.data_dir,
                              manual_dir=config.data.manual_dir)
    # Arithmetic, where codes can be inferred from real images (the VAE's encoder): "thick" = the top quarter of
    # test digits of a class by ink, "thin" = the bottom quarter; v = mean over classes of z̄(thick) − z̄(thin)
    # (encoder means), added to thin digits of every class.
    if isinstance(run, api.VAERun):
        mu = run.encode(test["image"])
        ink = _ink(test["image"])
        vectors, thin_rows = [], []
        for c in range(10):
            rows = np.flatnonzero(test["label"] == c)
            lo, hi = np.quantile(ink[rows], [0.25, 0.75])
            vectors.append(attribute_vector(jnp.asarray(mu[rows[ink[rows] >= hi]]),
                                            jnp.asarray(mu[rows[ink[rows] <= lo]])))
            thin_rows.append(rows[ink[rows] <= lo][:50])
        v = jnp.mean(jnp.stack(vectors), axis=0)
        scales = (0.0, 0.5, 1.0, 1.5, 2.0)
        thin = np.concatenate(thin_rows)
        shifted = run.generate(apply_attribute(jnp.asarray(mu[thin]), v, scales).reshape(-1, d))
        shifted = shifted.reshape(len(thin), len(scales), *shifted.shape[1:])
        save(shifted[::50].reshape(-1, *shifted.shape[2:]), "arithmetic_thickness.png", len(scales))
        kept = [float(np.mean(np.argmax(net.apply_fn(jnp.asarray(shifted[:, i]))[1], -1) == test["label"][thin]))
                for i in range(len(scales))]
        record["arithmetic"] = {"scales": list(scales),
                                "mean_ink": [float(_ink(shifted[:, i]).mean()) for i in range(len(scales))],
                                "class_kept": kept, "num_thin_digits": len(thin),
                                "vector": "mean over classes of z̄(top-quartile ink) − z̄(bottom-quartile ink), "
                                          "encoder means"}
    else:
        record["arithmetic"] = "not run: a GAN has no encoder to infer the codes of real thick and thin digits"

    # Truncation: fidelity (classifier confidence) against variety (FID vs test) per threshold.
    thresholds = (None, 2.0, 1.0, 0.5, 0.25)
    save(truncation_grid(run, jax.random.fold_in(key, 1), thresholds), "truncation.png", 10)
    real_f = jnp.asarray(features.extract(net, test["image"][:args.num_samples])[0])
    record["truncation"] = {}
    for t in thresholds:
        f, logits = features.extract(net, run.sample(jax.random.fold_in(key, 2), args.num_samples, truncation=t))
        confidence = float(np.mean(np.max(jax.nn.softmax(jnp.asarray(logits)), axis=-1)))
        record["truncation"][str(t)] = {"fid": float(fid.fid(real_f, jnp.asarray(f))), "mean_confidence": confidence}
    with open(os.path.join(args.workdir, "latent.json"), "w") as fh:
        json.dump(record, fh, indent=1)
    print(json.dumps(record, indent=1))
    return record


if __name__ == "__main__":
    main()
