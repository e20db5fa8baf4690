"""The CycleGAN task (Zhu et al. 2017): unpaired translation between image domains X and Y.

    L(G, F, D_X, D_Y) = L_GAN(G, D_Y, X, Y) + L_GAN(F, D_X, Y, X) + λ L_cyc(G, F),  λ = 10   (Eq. 3)
    L_GAN(G, D_Y, X, Y) = E log D_Y(y) + E log(1 − D_Y(G(x)))                              (Eq. 1)
    L_cyc(G, F) = E ‖F(G(x)) − x‖₁ + E ‖G(F(y)) − y‖₁                                       (Eq. 2)

As in the paper's training details (Sec. 4): L_GAN in its least-squares form (LSGAN, Mao et al. 2017: G
minimises ½E(D_Y(G(x)) − 1)², D_Y minimises ½E(D_Y(y) − 1)² + ½E D_Y(G(x))²), the discriminators' objective
halved, and the discriminators shown a history of generated images rather than only the latest ones (an
`ImagePool` of `loss.pool_size` images per domain, after Shrivastava et al. 2017, Sec. 2.3). Optional
identity term λ_id (E‖G(y) − y‖₁ + E‖F(x) − x‖₁) (Sec. 5.2). G and F form one `TrainState`, D_X and D_Y
another; each step updates G and F against the current discriminators, then D_X and D_Y on the pools' images.

The pools act on the global batch: every device gathers all generated images, updates identical copies
of the pools with keys of the run, and takes its own examples' part, so the run does not depend on the
device count. Losses are averaged per device over examples and patches, then over devices.

Evaluation on the test splits: the cycle L1 of both directions and, with a classifier of digits
(`eval.classifier_dir`), how often it reads the source image's class in the translation.
"""
from __future__ import annotations

import functools
import itertools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import struct
from jax import lax

from gan_jax import losses, parallel, visualize
from gan_jax.state import TrainState
from gan_jax.tasks import base, translation
from gan_jax.tasks.translation import TranslationState

Array = jax.Array
Metrics = dict[str, Array]
DOMAINS = ("x", "y")
NUM_VISUALS = 10  # test images per domain in the sample grid


def schema() -> ml_collections.ConfigDict:
    """Every field of a CycleGAN experiment, with defaults."""
    c = translation.schema("cyclegan")
    c.data.x, c.data.y = "mnist", "digits"
    c.model.dropout = 0.0  # CycleGAN's generators are deterministic
    # pool_size: generated images per domain the discriminators are shown from (0: only the latest batch).
    c.loss = ml_collections.ConfigDict(dict(cycle_weight=10.0, identity_weight=0.0, pool_size=50))
    return c


def validate(config: ml_collections.ConfigDict, num_devices: int) -> None:
    """Raise ValueError for a bad value, naming it and the allowed ones."""
    translation.validate(config, num_devices)
    for d in DOMAINS:
        translation.check_domain(config.data[d], f"data.{d}")
    translation.check_weights(config, ("cycle_weight", "identity_weight"))
    base.check_ints(config, ("loss.pool_size",), 0)


@struct.dataclass
class ImagePool:
    """A history of generated images (Shrivastava et al. 2017, Sec. 2.3; CycleGAN keeps 50, Zhu et al. 2017,
    Sec. 4): `images` [size, H, W, C], of which the first `count` are filled."""

    images: Array
    count: Array

    @classmethod
    def empty(cls, size: int, image_shape: tuple[int, ...]) -> ImagePool:
        return cls(jnp.zeros((size, *image_shape), jnp.float32), jnp.zeros((), jnp.int32))


def query_pool(pool: ImagePool, images: Array, key: Array) -> tuple[ImagePool, Array]:
    """(updated pool, the images to show D) for generated `images` [B, ...], taken in order: while the pool is
    not full, each image is stored and shown; once it is, with probability ½ a uniformly drawn stored image is
    shown and replaced by the new one, else the new one is shown. Image i draws from fold_in(key, i)."""
    size = pool.images.shape[0]

    def one(carry: tuple[Array, Array], inputs: tuple[Array, Array]) -> tuple[tuple[Array, Array], Array]:
        stored, count = carry
        image, k = inputs
        k_swap, k_slot = jax.random.split(k)
        full = count >= size
        swap = full & jax.random.bernoulli(k_swap)
        slot = jnp.where(full, jax.random.randint(k_slot, (), 0, size), count)
        old = stored[slot]
        stored = stored.at[slot].set(jnp.where(full & ~swap, old, image))
        return (stored, jnp.minimum(count + 1, size)), jnp.where(swap, old, image)
    keys = base.example_keys(key, jnp.arange(images.shape[0]))
    (stored, count), shown = lax.scan(one, (pool.images, pool.count), (images, keys))
    return ImagePool(stored, count), shown


def query_pools(pools: dict[str, ImagePool], fakes: dict[str, Array], key: Array
                ) -> tuple[dict[str, ImagePool], dict[str, Array]]:
    """`query_pool` on the global batch, inside a step over `parallel.AXIS`: each domain's generated images
    of every device, in global example order, go through that domain's pool (the same on every device);
    returns the pools and this device's part of the shown images. No pools (pool_size 0): the fakes."""
    if not pools:
        return pools, fakes
    new, shown = {}, {}
    for i, d in enumerate(sorted(pools)):
        b = fakes[d].shape[0]
        everyone = lax.all_gather(fakes[d], parallel.AXIS, tiled=True)
        new[d], all_shown = query_pool(pools[d], everyone, jax.random.fold_in(key, i))
        shown[d] = lax.dynamic_slice_in_dim(all_shown, lax.axis_index(parallel.AXIS) * b, b)
    return new, shown


def generator_loss(g: Callable[[Array], Array], f: Callable[[Array], Array], d_x: Callable[[Array], Array],
                   d_y: Callable[[Array], Array], x: Array, y: Array, cycle_weight: float,
                   identity_weight: float = 0.0) -> tuple[Array, dict[str, Array]]:
    """L_G = ½E(D_Y(G(x)) − 1)² + ½E(D_X(F(y)) − 1)² + λ (E|F(G(x)) − x| + E|G(F(y)) − y|)
    + λ_id (E|G(y) − y| + E|F(x) − x|) (Eqs. 2–3 with LSGAN), and its terms plus G(x), F(y)."""
    fake_y, fake_x = g(x), f(y)
    adv = (losses.least_squares_generator_loss(d_y(fake_y).reshape(-1))
           + losses.least_squares_generator_loss(d_x(fake_x).reshape(-1)))
    cycle = losses.cycle_consistency_loss(x, f(fake_y)) + losses.cycle_consistency_loss(y, g(fake_x))
    identity = (losses.l1_reconstruction_loss(y, g(y)) + losses.l1_reconstruction_loss(x, f(x))
                if identity_weight > 0 else jnp.zeros(()))
    return adv + cycle_weight * cycle + identity_weight * identity, {
        "g_adv": adv, "cycle": cycle, "identity": identity, "fake_x": fake_x, "fake_y": fake_y}


class Task:
    """CycleGAN between `config.data.x` and `config.data.y` (see the module docstring)."""

    batch_axis = 0

    def __init__(self, config: ml_collections.ConfigDict):
        self.config = config
        self.generator, self.discriminator = translation.networks(config)
        self.g_tx, self.d_tx = translation.optimizers(config)

    def batches(self, process_index: int, process_count: int) -> Callable[[int], dict[str, np.ndarray]]:
        # Unpaired domains: independent orders (seeds s and s + 1).
        c = self.config
        pipes = [translation.pipeline(translation.domain_images(c, c.data[d], "train")["image"], d, c, c.seed + i,
                                      process_index, process_count) for i, d in enumerate(DOMAINS)]
        return lambda step: {k: v for p in pipes for k, v in p.batch(step).items()}

    def init(self, key: jax.Array, example_batch: dict[str, Any]) -> TranslationState:
        kg, kf, kx, ky, run = jax.random.split(key, 5)
        shape = tuple(np.shape(example_batch["x"])[1:])
        image = jnp.zeros((1, *shape), jnp.float32)
        g = {"g": translation.init_generator(self.generator, kg, image)["params"],
             "f": translation.init_generator(self.generator, kf, image)["params"]}
        d = {"x": self.discriminator.init(kx, image)["params"], "y": self.discriminator.init(ky, image)["params"]}
        size = self.config.loss.pool_size
        return TranslationState(step=jnp.zeros((), jnp.int32), key=run,
                                generator=TrainState.create({"params": g}, self.g_tx),
                                discriminator=TrainState.create({"params": d}, self.d_tx),
                                pools={dom: ImagePool.empty(size, shape) for dom in DOMAINS} if size else {})

    def train_step(self, state: TranslationState, batch: dict[str, Array]) -> tuple[TranslationState, Metrics]:
        lam, lam_id = float(self.config.loss.cycle_weight), float(self.config.loss.identity_weight)
        x, y = batch["x"], batch["y"]
        index = parallel.example_index(x.shape[0])
        g_key, pool_key = jax.random.split(jax.random.fold_in(state.key, state.step))
        dp = state.discriminator.params
        critic = lambda p: lambda image: self.discriminator.apply({"params": p}, image)

        def g_loss_fn(gp: Any) -> tuple[Array, dict[str, Array]]:
            sites = itertools.count()  # one dropout key per call of a generator

            def gen(p: Any) -> Callable[[Array], Array]:
                return lambda image: translation.translate(self.generator, p, image,
                                                           jax.random.fold_in(g_key, next(sites)), index)
            return generator_loss(gen(gp["g"]), gen(gp["f"]), critic(dp["x"]), critic(dp["y"]), x, y, lam, lam_id)
        (g_loss, terms), g_grads = jax.value_and_grad(g_loss_fn, has_aux=True)(state.generator.params)
        fakes = {d: lax.stop_gradient(terms.pop(f"fake_{d}")) for d in DOMAINS}
        pools, shown = query_pools(state.pools, fakes, pool_key)

        def d_loss_fn(p: Any) -> Array:
            real = {"x": x, "y": y}
            return 0.5 * sum(losses.least_squares_discriminator_loss(critic(p[d])(real[d]).reshape(-1),
                                                                     critic(p[d])(shown[d]).reshape(-1))
                             for d in DOMAINS)
        d_loss, d_grads = jax.value_and_grad(d_loss_fn)(dp)
        metrics = lax.pmean({"g_loss": g_loss, **terms, "d_loss": d_loss}, parallel.AXIS)
        return state.replace(
            step=state.step + 1, pools=pools,
            generator=state.generator.apply_gradients(self.g_tx, lax.pmean(g_grads, parallel.AXIS)),
            discriminator=state.discriminator.apply_gradients(self.d_tx, lax.pmean(d_grads, parallel.AXIS))), metrics

    @functools.cached_property
    def _test(self) -> dict[str, dict[str, np.ndarray]]:
        return {d: translation.domain_images(self.config, self.config.data[d], "test") for d in DOMAINS}

    def _translators(self, state: TranslationState) -> tuple[Callable[..., np.ndarray], Callable[..., np.ndarray]]:
        """(G, F) on numpy images, call site `site` under its own fixed dropout keys."""
        params = jax.device_get(state.generator.params)
        c = self.config
        run = lambda net: lambda images, site: translation.translate_all(
            self.generator, params[net], images, translation.eval_key(c, site), c.eval.batch_size)
        return run("g"), run("f")

    def evaluate(self, state: TranslationState) -> dict[str, Any]:
        """Cycle L1 ‖F(G(x)) − x‖₁, ‖G(F(y)) − y‖₁ on the test splits and, with a classifier, how often the
        digit class survives translation (the classifier reads G(x) / F(y) as the label of x / y), next to
        its accuracy on the untranslated images."""
        c = self.config
        tx, ty = self._test["x"], self._test["y"]
        g, f = self._translators(state)
        gx, fy = g(tx["image"], 0), f(ty["image"], 1)
        out = {"cycle_l1_x": float(np.mean(np.abs(f(gx, 2) - tx["image"]))),
               "cycle_l1_y": float(np.mean(np.abs(g(fy, 3) - ty["image"]))),
               "num_test_x": len(tx["image"]), "num_test_y": len(ty["image"])}
        if c.eval.classifier_dir:
            from gan_jax.metrics import classifier, features
            net = features.lenet_features(c.eval.classifier_dir)
            read = lambda images, labels: classifier.accuracy(net.apply_fn, images, labels, c.eval.batch_size)
            out.update(class_kept_x_to_y=read(gx, tx["label"]), class_kept_y_to_x=read(fy, ty["label"]),
                       accuracy_x=read(tx["image"], tx["label"]), accuracy_y=read(ty["image"], ty["label"]))
        return out | {"protocol": self.protocol()}

    def protocol(self) -> str:
        """How `evaluate`'s numbers are measured, for eval.json."""
        c = self.config
        n = {d: len(self._test[d]["image"]) for d in DOMAINS}
        noise = "dropout on, fixed keys" if c.model.dropout else "no dropout"
        kept = (f"; class kept: the classifier in {c.eval.classifier_dir} reads G(x) / F(y) as the label of x / y "
                "(accuracy_*: on the untranslated images)" if c.eval.classifier_dir else "")
        return (f"the first {n['x']} {c.data.x} (X) and {n['y']} {c.data.y} (Y) test images; G, F with {noise}; "
                f"cycle L1 of [−1, 1] images{kept}")

    def visuals(self, state: TranslationState) -> np.ndarray:
        """Rows: x, G(x), F(G(x)), y, F(y), G(F(y)) of the first test images."""
        g, f = self._translators(state)
        n = min(NUM_VISUALS, *(len(self._test[d]["image"]) for d in DOMAINS))
        x, y = (self._test[d]["image"][:n] for d in DOMAINS)
        gx, fy = g(x, 0), f(y, 1)
        return visualize.image_grid(np.concatenate([x, gx, f(gx, 2), y, fy, g(fy, 3)]), ncols=n)
