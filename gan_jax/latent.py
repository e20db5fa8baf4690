"""Latent-space tools of DCGAN (Radford et al. 2016, Sec. 6) and BigGAN (Brock et al. 2019, Sec. 3.1),
for any generator `generate(z) -> images [N, H, W, C] in [−1, 1]`:

- interpolation between two codes, linear or spherical (slerp, White 2016: the path keeps the norm
  typical of Gaussian codes, which a straight line through the origin's neighbourhood does not);
- vector arithmetic on averaged z (DCGAN Fig. 7): one exemplar's z is noisy, the mean of a few codes
  sharing a concept is stable; attribute vector v = z̄(with) − z̄(without), applied as z + s·v;
- the truncation trick: z ~ N(0, I) truncated to [−t, t] (values outside resampled), trading variety
  for fidelity as t shrinks.

`python -m gan_jax.latent --vae_workdir DIR --classifier_dir C --workdir OUT` runs all three on the
decoder of the VAE trained in DIR by `python launch.py --config experiments/vae_mnist.py --workdir DIR` (the
one generator in this repo whose codes we can also infer from real images, which the "thick stroke"
attribute needs) and writes a grid per tool plus latent.json with the measured effect of each.
"""
from __future__ import annotations

import argparse
import json
import os
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from gan_jax.prior import sample_latents

Array = jax.Array
METHODS = ("linear", "slerp")


def interpolate(z0: Array, z1: Array, num: int, method: str = "slerp") -> Array:
    """`num` codes [num, d] from z0 to z1 (both included).

    linear: (1 − t) z0 + t z1;  slerp: sin((1 − t) Ω)/sin Ω · z0 + sin(t Ω)/sin Ω · z1 with
    cos Ω = ⟨z0, z1⟩ / (‖z0‖ ‖z1‖) (linear where Ω ≈ 0).
    """
    if method not in METHODS:
        raise ValueError(f"unknown interpolation method {method!r}; allowed: {METHODS}")
    if num < 2:
        raise ValueError(f"num must be >= 2, got {num}")
    t = jnp.linspace(0.0, 1.0, num)[:, None]
    if method == "linear":
        return (1.0 - t) * z0 + t * z1
    cos = jnp.dot(z0, z1) / (jnp.linalg.norm(z0) * jnp.linalg.norm(z1))
    omega = jnp.arccos(jnp.clip(cos, -1.0, 1.0))
    small = omega < 1e-6
    so = jnp.where(small, 1.0, jnp.sin(omega))
    w0 = jnp.where(small, 1.0 - t, jnp.sin((1.0 - t) * omega) / so)
    w1 = jnp.where(small, t, jnp.sin(t * omega) / so)
    return w0 * z0 + w1 * z1


def attribute_vector(z_with: Array, z_without: Array) -> Array:
    """v = mean(z_with) − mean(z_without) over codes [N, d] sharing / lacking a concept (DCGAN Sec. 6.3)."""
    if z_with.ndim != 2 or z_without.ndim != 2 or z_with.shape[1] != z_without.shape[1] or \
            min(len(z_with), len(z_without)) == 0:
        raise ValueError(f"need non-empty code sets [N, d] with one d, got {z_with.shape} and {z_without.shape}")
    return jnp.mean(z_with, axis=0) - jnp.mean(z_without, axis=0)


def apply_attribute(z: Array, vector: Array, scales: Sequence[float]) -> Array:
    """Codes [N, d] -> [N, S, d]: z + s·v for each scale s."""
    return z[:, None, :] + jnp.asarray(scales)[None, :, None] * vector


def interpolation_grid(generate: Callable[[Array], Array], key: Array, latent_dim: int, rows: int = 6,
                       steps: int = 10, method: str = "slerp") -> np.ndarray:
    """One row per random pair of codes, `steps` images along the path: images [rows·steps, H, W, C]."""
    ends = jax.random.normal(key, (rows, 2, latent_dim))
    z = jnp.concatenate([interpolate(e[0], e[1], steps, method) for e in ends])
    return np.asarray(generate(z))


def truncation_grid(generate: Callable[[Array], Array], key: Array, latent_dim: int,
                    thresholds: Sequence[float | None], num: int = 10) -> np.ndarray:
    """One row per threshold (None: no truncation), the same `key` for every row: [len·num, H, W, C]."""
    return np.concatenate([np.asarray(generate(sample_latents(key, (num, latent_dim), t))) for t in thresholds])


def _ink(images: np.ndarray) -> np.ndarray:
    """Mean pixel intensity in [0, 1] per image: the stroke mass."""
    return ((np.asarray(images) + 1.0) / 2.0).reshape(len(images), -1).mean(axis=1)


def main(argv: Sequence[str] | None = None) -> dict:
    from gan_jax import visualize, vae
    from gan_jax.data import paired
    from gan_jax.metrics import features, fid
    from gan_jax.tasks import vae as vae_task
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--vae_workdir", required=True, help="the workdir of a VAE run (experiments/vae_mnist.py)")
    p.add_argument("--classifier_dir", required=True)
    p.add_argument("--workdir", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num_samples", type=int, default=10000, help="per truncation threshold, for FID")
    args = p.parse_args(argv)
    config, model, params = vae_task.restore(args.vae_workdir)
    generate = jax.jit(lambda z: vae.decode_images(model, params, z))
    d, key = model.latent_dim, jax.random.key(args.seed)
    net = features.lenet_features(args.classifier_dir)
    os.makedirs(args.workdir, exist_ok=True)
    save = lambda images, name, ncols: visualize.save_png(visualize.image_grid(images, ncols),
                                                          os.path.join(args.workdir, name))
    record: dict = {"generator": f"VAE decoder means, {os.path.abspath(args.vae_workdir)}",
                    "classifier_dir": os.path.abspath(args.classifier_dir), "seed": args.seed}

    # Interpolation: how often the classifier's reading changes along a path (a smooth path crosses few classes).
    for method in METHODS:
        images = interpolation_grid(generate, jax.random.fold_in(key, 0), d, method=method)
        save(images, f"interpolation_{method}.png", 10)
        labels = np.argmax(net.apply_fn(jnp.asarray(images))[1], axis=-1).reshape(6, 10)
        record[f"interpolation_{method}_class_changes_per_row"] = float(np.mean(np.sum(labels[:, 1:] != labels[:, :-1], 1)))

    # Arithmetic: "thick" = the top quarter of test digits of a class by ink, "thin" = the bottom quarter;
    # v = mean over classes of z̄(thick) − z̄(thin) (encoder means), added to thin digits of every class.
    test = paired.load_domain(config.data.name, "test", data_dir=config.data.data_dir,
                              manual_dir=config.data.manual_dir)
    mu = np.asarray(jax.jit(lambda x: model.apply({"params": params}, x, method=vae.VAE.encode)[0])(
        jnp.asarray((test["image"] + 1.0) / 2.0)))
    ink = _ink(test["image"])
    vectors, thin_rows = [], []
    for c in range(10):
        rows = np.flatnonzero(test["label"] == c)
        lo, hi = np.quantile(ink[rows], [0.25, 0.75])
        vectors.append(attribute_vector(jnp.asarray(mu[rows[ink[rows] >= hi]]), jnp.asarray(mu[rows[ink[rows] <= lo]])))
        thin_rows.append(rows[ink[rows] <= lo][:50])
    v = jnp.mean(jnp.stack(vectors), axis=0)
    scales = (0.0, 0.5, 1.0, 1.5, 2.0)
    thin = np.concatenate(thin_rows)
    shifted = np.asarray(generate(apply_attribute(jnp.asarray(mu[thin]), v, scales).reshape(-1, d)))
    shifted = shifted.reshape(len(thin), len(scales), *shifted.shape[1:])
    save(shifted[::50].reshape(-1, *shifted.shape[2:]), "arithmetic_thickness.png", len(scales))
    kept = [float(np.mean(np.argmax(net.apply_fn(jnp.asarray(shifted[:, i]))[1], -1) == test["label"][thin]))
            for i in range(len(scales))]
    record["arithmetic"] = {"scales": list(scales), "mean_ink": [float(_ink(shifted[:, i]).mean()) for i in range(len(scales))],
                            "class_kept": kept, "num_thin_digits": int(len(thin)),
                            "vector": "mean over classes of z̄(top-quartile ink) − z̄(bottom-quartile ink), encoder means"}

    # Truncation: fidelity (classifier confidence) against variety (FID vs test) per threshold.
    thresholds = (None, 2.0, 1.0, 0.5, 0.25)
    save(truncation_grid(generate, jax.random.fold_in(key, 1), d, thresholds), "truncation.png", 10)
    real_f = jnp.asarray(features.extract(net, test["image"][:args.num_samples])[0])
    record["truncation"] = {}
    for t in thresholds:
        z = sample_latents(jax.random.fold_in(key, 2), (args.num_samples, d), t)
        f, logits = features.extract(net, np.asarray(generate(z)))
        confidence = float(np.mean(np.max(jax.nn.softmax(jnp.asarray(logits)), axis=-1)))
        record["truncation"][str(t)] = {"fid": float(fid.fid(real_f, jnp.asarray(f))), "mean_confidence": confidence}
    with open(os.path.join(args.workdir, "latent.json"), "w") as fh:
        json.dump(record, fh, indent=1)
    print(json.dumps(record, indent=1))
    return record


if __name__ == "__main__":
    main()
