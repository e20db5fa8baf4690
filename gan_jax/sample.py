"""Draw samples from a trained GAN or VAE run: python -m gan_jax.sample --workdir DIR --num 64 --out samples.png

`--out` ending in .png: an image grid, or for the 2-D mixtures a scatter plot of the points over the modes; in
.npz: the arrays `samples` [n, ...], their codes `z` [n, latent_dim], `labels` [n] for a conditional generator,
and the checkpoint's `step`. The same --seed gives the same samples. `--labels 0,1,2`: the classes of a
conditional generator, repeated to --num (default: balanced, example i of class i mod K); `--truncation t`: codes
truncated to [−t, t]. The workdir is only read (see gan_jax.api). A user error (a bad flag, a workdir without a
run) is reported in one line with exit code 2, as by launch.py.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
from typing import Sequence

import numpy as np

FORMATS = (".png", ".npz")


def parse_labels(text: str | None, n: int) -> np.ndarray | None:
    """"0,1,2" -> int32 [n], the classes repeated to n; None when not given."""
    if text is None:
        return None
    try:
        classes = [int(c) for c in text.split(",")]
    except ValueError:
        raise ValueError(f"--labels must be comma-separated integers, e.g. 0,1,2; got {text!r}") from None
    return np.resize(np.asarray(classes, np.int32), n)


def write_samples(workdir: str, out: str, num: int, seed: int = 0, labels: str | None = None,
                  truncation: float | None = None) -> np.ndarray:
    """Draw `num` samples of the run in `workdir` from `seed` and write them to `out` (.png or .npz); returns them."""
    ext = os.path.splitext(out)[1].lower()
    if ext not in FORMATS:
        raise ValueError(f"--out must end in one of {FORMATS}, got {out!r}")
    import jax
    from gan_jax import api, visualize
    from gan_jax.data import mixtures
    run = api.load(workdir)
    classes = parse_labels(labels, num)
    z = run.latents(jax.random.key(seed), num, truncation)
    samples = run.generate(z, classes)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    if ext == ".npz":
        extra = {"labels": np.asarray(run.class_labels(classes, num))} if run.num_classes else {}
        np.savez(out, samples=samples, z=z, step=run.step, **extra)
    elif samples.ndim == 2:
        means = mixtures.get_mixture(run.config.data.name).means
        visualize.save_png(visualize.scatter_png(samples, means, title=f"{run.config.name} step {run.step}"), out)
    else:
        visualize.save_png(visualize.image_grid(samples, ncols=math.ceil(math.sqrt(num))), out)
    return samples


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gan_jax.sample", description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", required=True, help="the workdir of a GAN or VAE run of launch.py")
    p.add_argument("--out", required=True, help="samples.png (a grid or scatter plot) or samples.npz (arrays)")
    p.add_argument("--num", type=int, default=64, help="number of samples")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--labels", help="classes of a conditional generator, e.g. 0,1,2 (repeated to --num)")
    p.add_argument("--truncation", type=float, help="truncate the codes to [−t, t] (BigGAN's truncation trick)")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="show the traceback of user errors too (also: GAN_JAX_VERBOSE=1)")
    args = p.parse_args(argv)
    from absl import logging
    logging.set_verbosity("error")   # orbax notes every read-only checkpoint folder at warning level
    from gan_jax.errors import call_reporting_user_errors
    ok, _ = call_reporting_user_errors(
        lambda: write_samples(args.workdir, args.out, args.num, args.seed, args.labels, args.truncation), args.verbose)
    if not ok:
        return 2
    print(f"wrote {args.num} samples to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
