"""Adversarial examples: the fast gradient sign method (FGSM) against our
MNIST classifier, and its accuracy as a function of ε.

FGSM (Goodfellow, Shlens & Szegedy 2015, Eq. 3):  x̃ = clip(x + ε · sign(∇ₓ J(θ, x, y)), lo, hi),
with J the classifier's cross-entropy at the true label. ε is measured in pixel units of [0, 1]
images (the paper's scale: ε = 0.25 fooled a shallow softmax MNIST model on 89.4 % of test images);
our images live in [−1, 1], so the step there is 2ε.

    python -m gan_jax.adversarial --classifier_dir /tmp/classifier_mnist --workdir DIR
writes DIR/fgsm.json (accuracy per ε), DIR/fgsm_accuracy.png (the curve) and DIR/fgsm_examples.png
(one row per ε of the same test images).
"""
from __future__ import annotations

import argparse
import json
import os
import time
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

Array = jax.Array
DEFAULT_EPSILONS = (0.0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3)


def fgsm(logits_fn: Callable[[Array], Array], images: Array, labels: Array, epsilon: float | Array,
         lo: float = -1.0, hi: float = 1.0) -> Array:
    """x̃ = clip(x + ε sign(∇ₓ CE(logits_fn(x), y)), lo, hi) (Goodfellow et al. 2015, Eq. 3).

    ε is in the units of `images` (for [−1, 1] images, twice the [0, 1]-pixel ε). Each example's
    gradient is that of its own loss term (the batch loss is a sum, so the sign is per example).
    """
    if not lo < hi:
        raise ValueError(f"need lo < hi, got lo={lo}, hi={hi}")

    def loss(x):
        return jnp.sum(optax.softmax_cross_entropy_with_integer_labels(logits_fn(x), labels))

    grad = jax.grad(loss)(images)
    return jnp.clip(images + epsilon * jnp.sign(grad), lo, hi)


def accuracy_under_attack(logits_fn: Callable[[Array], Array], images: np.ndarray, labels: np.ndarray,
                          epsilons: Sequence[float], batch_size: int = 1000) -> dict[float, float]:
    """{ε: accuracy on FGSM images} for ε in [0, 1]-pixel units on [−1, 1] images."""
    if any(e < 0 for e in epsilons):
        raise ValueError(f"epsilons must be >= 0, got {list(epsilons)}")

    @jax.jit
    def correct(x, y, eps):
        adv = fgsm(logits_fn, x, y, 2.0 * eps)
        return jnp.sum(jnp.argmax(logits_fn(adv), axis=-1) == y)

    out = {}
    for eps in epsilons:
        hits = sum(int(correct(images[i:i + batch_size], labels[i:i + batch_size], jnp.float32(eps)))
                   for i in range(0, len(labels), batch_size))
        out[float(eps)] = hits / len(labels)
    return out


def plot_accuracy(results: dict[float, float], path: str, title: str = "") -> None:
    """Accuracy versus ε as a PNG line plot."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    eps = sorted(results)
    fig, ax = plt.subplots(figsize=(4.5, 3.2), dpi=120)
    ax.plot(eps, [100 * results[e] for e in eps], "o-")
    ax.set(xlabel="ε (pixels in [0, 1])", ylabel="test accuracy (%)", ylim=(0, 100), title=title)
    ax.grid(alpha=0.3)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> dict:
    from gan_jax import visualize
    from gan_jax.data import paired
    from gan_jax.metrics import classifier
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--classifier_dir", required=True,
                   help="the workdir of a classifier run (python launch.py --config experiments/classifier_mnist.py)")
    p.add_argument("--workdir", required=True)
    p.add_argument("--data_dir", default="")
    p.add_argument("--epsilons", type=float, nargs="+", default=list(DEFAULT_EPSILONS))
    p.add_argument("--num_test", type=int, default=0, help="first N test images (0: all)")
    args = p.parse_args(argv)
    start = time.time()
    model, params, meta = classifier.load_classifier(args.classifier_dir)
    test = paired.load_domain(meta["dataset"], "test", data_dir=args.data_dir, limit=args.num_test)

    def logits_fn(x):
        return model.apply({"params": params}, x)[1]

    results = accuracy_under_attack(logits_fn, test["image"], test["label"], args.epsilons)
    os.makedirs(args.workdir, exist_ok=True)
    plot_accuracy(results, os.path.join(args.workdir, "fgsm_accuracy.png"),
                  f"FGSM vs our {meta['dataset']} LeNet")
    x, y = jnp.asarray(test["image"][:10]), jnp.asarray(test["label"][:10])
    rows = [np.asarray(fgsm(logits_fn, x, y, 2.0 * e)) for e in sorted(results)]
    visualize.save_png(visualize.image_grid(np.concatenate(rows), ncols=10),
                       os.path.join(args.workdir, "fgsm_examples.png"))
    record = {"accuracy": {str(k): v for k, v in results.items()}, "num_test": int(len(test["label"])),
              "classifier_dir": os.path.abspath(args.classifier_dir),
              "classifier_clean_accuracy": meta["test_accuracy"], "epsilon_units": "pixels in [0, 1]",
              "seconds": round(time.time() - start, 1)}
    with open(os.path.join(args.workdir, "fgsm.json"), "w") as f:
        json.dump(record, f, indent=1)
    print(json.dumps(record, indent=1))
    return record


if __name__ == "__main__":
    main()
