"""The pix2pix task (Isola et al. 2017): paired image-to-image translation with a conditional GAN.

    G* = arg min_G max_D L_cGAN(G, D) + λ L_L1(G),  λ = 100   (Eq. 4)
    L_cGAN(G, D) = E log D(x, y) + E log(1 − D(x, G(x)))     (Eq. 1)
    L_L1(G) = E ‖y − G(x)‖₁                                   (Eq. 3)

D is a PatchGAN that sees the input concatenated to the real or generated output, its loss averaged over
patches and halved (the paper's "divide the objective by 2 while optimizing D", Sec. 3.3); G takes the
non-saturating form of its adversarial term. `loss.gan_weight` = 0 is the L1-only baseline of the same
generator (D is then not trained). A batch holds the target images y; the step makes each input x from
its target (`gan_jax.data.paired.make_pairs`: the masked centre, or block means). Each device averages
its losses over its examples and patches and the means are averaged over devices (equal per-device
batches), so the loss is the global batch's.

Evaluation on the first `eval.num_test` test images: L1 and PSNR of G(x) against y (next to those of the
input itself) and, with a classifier (`eval.classifier_dir`), FID of G(x) and of x against y.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax import lax

from gan_jax import losses, parallel, visualize
from gan_jax.data import paired
from gan_jax.state import TrainState
from gan_jax.tasks import translation
from gan_jax.tasks.translation import TranslationState, check

Metrics = dict[str, jax.Array]
DATASETS = ("mnist", "fashion_mnist")  # the experiments' variants
NUM_VISUALS = 10  # test images in the sample grid


def schema() -> ml_collections.ConfigDict:
    """Every field of a pix2pix experiment, with defaults."""
    c = translation.schema("pix2pix")
    c.data.domain, c.data.task = "mnist", "inpainting"
    c.loss = ml_collections.ConfigDict(dict(l1_weight=100.0, gan_weight=1.0))
    return c


def validate(config: ml_collections.ConfigDict, num_devices: int) -> None:
    """Raise ValueError for a bad value, naming it and the allowed ones."""
    translation.validate(config, num_devices)
    translation.check_domain(config.data.domain, "data.domain")
    check(config.data.task in paired.TASKS,
          f"unknown config.data.task {config.data.task!r}; allowed: {list(paired.TASKS)}")
    translation.check_weights(config, ("l1_weight", "gan_weight"))
    check(config.loss.l1_weight + config.loss.gan_weight > 0,
          "config.loss.l1_weight and config.loss.gan_weight are both 0: nothing would train the generator")


def experiment_config(task: str, variant: str) -> ml_collections.ConfigDict:
    """A pix2pix experiment on a paired task; variant "DATASET[,l1]" (l1: the L1-only baseline, gan_weight 0)."""
    parts = [v for v in variant.split(",") if v]
    datasets = [v for v in parts if v in DATASETS]
    if len(datasets) != 1 or set(parts) - {datasets[0], "l1"}:
        raise ValueError(f"variant must be 'DATASET[,l1]' with DATASET in {DATASETS}, got {variant!r}")
    c = schema()
    c.data.domain, c.data.task = datasets[0], task
    c.loss.gan_weight = 0.0 if "l1" in parts else 1.0
    c.name = f"pix2pix_{task}_{datasets[0]}" + ("_l1" if "l1" in parts else "")
    c.paper = "Isola et al. 2017 (pix2pix): cGAN + 100 L1, U-Net with dropout, PatchGAN"
    return c


class Task:
    """pix2pix on `config.data.task` pairs of `config.data.domain` images (see the module docstring)."""

    batch_axis = 0

    def __init__(self, config: ml_collections.ConfigDict):
        self.config = config
        self.generator, self.discriminator = translation.networks(config)
        self.g_tx, self.d_tx = translation.optimizers(config)

    def batches(self, process_index: int, process_count: int) -> Callable[[int], dict[str, np.ndarray]]:
        c = self.config
        images = translation.domain_images(c, c.data.domain, "train")["image"]
        return translation.pipeline(images, "y", c, c.seed, process_index, process_count).batch

    def init(self, key: jax.Array, example_batch: dict[str, Any]) -> TranslationState:
        kg, kd, run = jax.random.split(key, 3)
        image = jnp.zeros((1, *np.shape(example_batch["y"])[1:]), jnp.float32)
        g = translation.init_generator(self.generator, kg, image)
        d = self.discriminator.init(kd, jnp.concatenate([image, image], axis=-1))
        return TranslationState(step=jnp.zeros((), jnp.int32), key=run, generator=TrainState.create(g, self.g_tx),
                                discriminator=TrainState.create(d, self.d_tx))

    def _patch_logits(self, params: Any, x: jax.Array, y: jax.Array) -> jax.Array:
        return self.discriminator.apply({"params": params}, jnp.concatenate([x, y], axis=-1)).reshape(-1)

    def train_step(self, state: TranslationState, batch: dict[str, jax.Array]) -> tuple[TranslationState, Metrics]:
        """One D update, then one G update against the updated D."""
        l1_weight, gan_weight = float(self.config.loss.l1_weight), float(self.config.loss.gan_weight)
        y = batch["y"]
        x = paired.make_pairs(self.config.data.task, y)
        key, index = jax.random.fold_in(state.key, state.step), parallel.example_index(len(y))
        # One generator forward serves both updates: D sees it, then G's loss is pulled back through it.
        fake, pull_back = jax.vjp(lambda p: translation.translate(self.generator, p, x, key, index),
                                  state.generator.params)
        metrics = {}
        disc = state.discriminator
        if gan_weight > 0:
            def d_loss_fn(params: Any) -> jax.Array:
                return 0.5 * losses.minimax_discriminator_loss(self._patch_logits(params, x, y),
                                                               self._patch_logits(params, x, fake))
            metrics["d_loss"], d_grads = jax.value_and_grad(d_loss_fn)(disc.params)
            disc = disc.apply_gradients(self.d_tx, lax.pmean(d_grads, parallel.AXIS))

        def g_loss_fn(out: jax.Array) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
            l1 = losses.l1_reconstruction_loss(y, out)
            adv = (losses.non_saturating_generator_loss(self._patch_logits(disc.params, x, out))
                   if gan_weight > 0 else jnp.zeros(()))
            return gan_weight * adv + l1_weight * l1, (l1, adv)
        (g_loss, (l1, adv)), d_out = jax.value_and_grad(g_loss_fn, has_aux=True)(fake)
        (g_grads,) = pull_back(d_out)
        gen = state.generator.apply_gradients(self.g_tx, lax.pmean(g_grads, parallel.AXIS))
        metrics.update(g_loss=g_loss, l1=l1, g_adv=adv)
        return (state.replace(step=state.step + 1, generator=gen, discriminator=disc),
                lax.pmean(metrics, parallel.AXIS))

    @functools.cached_property
    def _test(self) -> tuple[np.ndarray, np.ndarray]:
        """(inputs x, targets y) of the first `eval.num_test` test images."""
        c = self.config
        y = translation.domain_images(c, c.data.domain, "test")["image"]
        return np.asarray(paired.make_pairs(c.data.task, jnp.asarray(y))), y

    def _translate(self, state: TranslationState, x: np.ndarray) -> np.ndarray:
        return translation.translate_all(self.generator, jax.device_get(state.generator.params), x,
                                         translation.eval_key(self.config), self.config.eval.batch_size)

    def evaluate(self, state: TranslationState) -> dict[str, Any]:
        c = self.config
        x, y = self._test
        fake = self._translate(state, x)
        out = {"l1": float(np.mean(np.abs(fake - y))), "psnr": float(jnp.mean(translation.psnr(y, fake))),
               "input_l1": float(np.mean(np.abs(x - y))), "input_psnr": float(jnp.mean(translation.psnr(y, x))),
               "num_test": len(y)}
        if c.eval.classifier_dir:
            from gan_jax.metrics import features, fid
            net = features.lenet_features(c.eval.classifier_dir)
            stats = lambda images: features.feature_pass(net, images, c.eval.batch_size).stats
            real = stats(y)
            out["fid"] = float(fid.fid_from_stats(real, stats(fake)))
            out["input_fid"] = float(fid.fid_from_stats(real, stats(x)))
        return out | {"protocol": self.protocol()}

    def protocol(self) -> str:
        """How `evaluate`'s numbers are measured, for eval.json."""
        c = self.config
        n = len(self._test[1])
        fid = (f"; FID of G(x) and of x vs the targets, features of the classifier in {c.eval.classifier_dir}"
               if c.eval.classifier_dir else "")
        return (f"the first {n} {c.data.domain} test images as targets y, {c.data.task} inputs x; G(x) with dropout "
                f"on (fixed keys); L1: mean over all pixels of [−1, 1] images; PSNR: on [0, 1] pixels, per image, "
                f"averaged{fid}")

    def visuals(self, state: TranslationState) -> np.ndarray:
        """Rows: inputs, outputs, targets of the first test images."""
        x, y = (a[:NUM_VISUALS] for a in self._test)
        return visualize.image_grid(np.concatenate([x, self._translate(state, x), y]), ncols=len(y))
