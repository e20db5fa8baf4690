"""The VAE task: the convolutional VAE of gan_jax/vae.py (Kingma & Welling 2014) trained on binarised images,
a likelihood baseline for the GANs, evaluated like the GANs (classifier FID, Goodfellow et al.'s Parzen window) plus
its own test ELBO.

Each step maximises the mean ELBO (K&W 2014, Eq. 3) of its batch with Adam. Training images are binarised
afresh each step (x_i ~ Bernoulli of the [0, 1] grey level), the test set once with a fixed seed, so the
test ELBO is in nats on binarised images. Every example's binarisation and reparameterisation noise comes
from its own key (`base.example_keys`), so a run does not depend on the device count.

    python launch.py --config experiments/vae_mnist.py --workdir DIR
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import struct
from jax import lax

from gan_jax import config as config_lib, models, vae, visualize
from gan_jax.data import InMemorySource, Pipeline, paired
from gan_jax.metrics.batching import batched_apply
from gan_jax.parallel import AXIS, example_index
from gan_jax.state import TrainState
from gan_jax.tasks import base

TEST_BINARISATION_SEED = 1234
EVAL_STREAM = 2**31 - 1  # folded into the seed's key for evaluation noise and samples
IMAGE_SHAPE = (paired.SIZE, paired.SIZE, 1)


def schema() -> ml_collections.ConfigDict:
    """Every field of a VAE experiment, with defaults."""
    c = config_lib.common_config("vae")
    c.batch_size = 128
    # num_train: the first that many training images (0: all).
    c.data = ml_collections.ConfigDict(dict(name="mnist", data_dir="", manual_dir="", num_train=0))
    # dtype: the networks' compute dtype, "float32" or "bfloat16" (parameters and the ELBO stay float32).
    c.model = ml_collections.ConfigDict(dict(latent_dim=16, channels=(32, 64), hidden=256, dtype="float32"))
    c.optim = ml_collections.ConfigDict(dict(name="adam", learning_rate=1e-3))
    # FID needs classifier_dir (a classifier run's workdir); parzen follows Goodfellow et al.'s MNIST protocol.
    c.eval = ml_collections.ConfigDict(dict(num_samples=10000, classifier_dir="", parzen=False, batch_size=1000))
    return c


def validate(config: ml_collections.ConfigDict, num_devices: int = 1) -> None:
    """Raise ValueError naming a bad value and the allowed ones."""
    if config.data.name not in paired.DOMAINS:
        raise ValueError(f"unknown config.data.name {config.data.name!r}; allowed: {list(paired.DOMAINS)}")
    base.check_ints(config, ("data.num_train",), minimum=0)
    base.check_ints(config, ("model.latent_dim", "model.hidden", "eval.num_samples", "eval.batch_size"))
    if len(config.model.channels) != 2 or not all(isinstance(ch, int) and ch >= 1 for ch in config.model.channels):
        raise ValueError(f"config.model.channels must be two integers >= 1, got {config.model.channels!r}")
    base.check_dtype(config)
    if config.eval.parzen and config.data.name != "mnist":
        raise ValueError(f"config.eval.parzen follows Goodfellow et al.'s MNIST protocol; allowed only with "
                         f"config.data.name='mnist', got {config.data.name!r}")
    config_lib.make_optimizer(config.optim, "config.optim", config.steps)
    base.check_batch_split(config, num_devices)


@struct.dataclass
class VAEState:
    step: jax.Array
    key: jax.Array
    vae: TrainState


def build_model(config: ml_collections.ConfigDict) -> vae.VAE:
    """The VAE of `config.model`."""
    m = config.model
    return vae.VAE(latent_dim=m.latent_dim, channels=tuple(m.channels), hidden=m.hidden, dtype=models.DTYPES[m.dtype])


class Task:
    """The VAE of `config` on its dataset (see the module docstring)."""

    batch_axis = 0

    def __init__(self, config: ml_collections.ConfigDict):
        self.config = config
        self.model = build_model(config)
        self.tx = config_lib.make_optimizer(config.optim, "config.optim", config.steps)

    def _split(self, split: str, limit: int = 0) -> dict[str, np.ndarray]:
        d = self.config.data
        return paired.load_domain(d.name, split, data_dir=d.data_dir, manual_dir=d.manual_dir, limit=limit)

    def batches(self, process_index: int, process_count: int) -> Callable[[int], dict[str, np.ndarray]]:
        train = self._split("train", self.config.data.num_train)
        return Pipeline(InMemorySource({"image": train["image"]}), batch_size=self.config.batch_size,
                        seed=self.config.seed, process_index=process_index, process_count=process_count,
                        prefetch=0).batch

    def init(self, key: jax.Array, example_batch: dict[str, Any]) -> VAEState:
        init_key, run = jax.random.split(key)
        x = jnp.zeros((1, *np.shape(example_batch["image"])[1:]))
        params = self.model.init(init_key, x, jnp.zeros((1, self.model.latent_dim)))["params"]
        return VAEState(step=jnp.zeros((), jnp.int32), key=run, vae=TrainState.create({"params": params}, self.tx))

    def train_step(self, state: VAEState, batch: dict[str, jax.Array]) -> tuple[VAEState, dict[str, jax.Array]]:
        """An Adam step on −mean ELBO of {"image": [B, 28, 28, 1] in [−1, 1]}; metrics {"elbo"}."""
        images = batch["image"]
        keys = base.example_keys(jax.random.fold_in(state.key, state.step), example_index(images.shape[0]))
        keys = jax.vmap(jax.random.split)(keys)
        x = jax.vmap(vae.binarise)(images, keys[:, 0])
        noise = jax.vmap(lambda k: jax.random.normal(k, (self.model.latent_dim,)))(keys[:, 1])
        loss, grads = jax.value_and_grad(lambda p: -jnp.mean(vae.elbo(self.model, p, x, noise)))(state.vae.params)
        new = state.vae.apply_gradients(self.tx, lax.pmean(grads, AXIS))
        return state.replace(step=state.step + 1, vae=new), {"elbo": -lax.pmean(loss, AXIS)}

    @functools.cached_property
    def _test(self) -> tuple[np.ndarray, np.ndarray]:
        """(test images in [−1, 1], the same binarised once with TEST_BINARISATION_SEED)."""
        images = self._split("test")["image"]
        return images, np.asarray(vae.binarise(jnp.asarray(images), jax.random.key(TEST_BINARISATION_SEED)))

    def _eval_key(self) -> jax.Array:
        return jax.random.fold_in(jax.random.key(self.config.seed), EVAL_STREAM)

    def _samples(self, params: Any, n: int) -> np.ndarray:
        """n decoder means in [−1, 1], drawn in chunks from the run's fixed evaluation keys."""
        chunk = min(n, self.config.eval.batch_size)
        draw = jax.jit(lambda p, k: vae.sample(self.model, p, k, chunk))
        key = self._eval_key()
        return np.concatenate([np.asarray(draw(params, jax.random.fold_in(key, 1 + i)))
                               for i in range(-(-n // chunk))])[:n]

    def evaluate(self, state: VAEState) -> dict[str, Any]:
        """Test ELBO (nats, one z per image), classifier FID of samples vs test images, Parzen (MNIST)."""
        c = self.config
        params = jax.device_get(state.vae.params)
        test, test_bin = self._test
        noise = np.asarray(jax.random.normal(jax.random.fold_in(self._eval_key(), 0),
                                             (len(test), self.model.latent_dim)))
        elbo = jax.jit(functools.partial(vae.elbo, self.model))
        values = np.float64(batched_apply(lambda rows: elbo(params, test_bin[rows], noise[rows]),
                                          np.arange(len(test)), c.eval.batch_size))
        out: dict[str, Any] = {"test_elbo": float(np.mean(values)),
                               "test_elbo_std_err": float(np.std(values) / np.sqrt(len(values))),
                               "num_test": len(values)}
        n = c.eval.num_samples
        samples = self._samples(params, n) if c.eval.classifier_dir or c.eval.parzen else None
        if c.eval.classifier_dir:
            from gan_jax.metrics import features, fid
            net = features.lenet_features(c.eval.classifier_dir)
            out["fid"] = float(fid.fid(jnp.asarray(features.extract(net, test[:n])[0]),
                                       jnp.asarray(features.extract(net, samples)[0])))
        if c.eval.parzen:
            from gan_jax.metrics import parzen
            validation, test_px = parzen.mnist_parzen_points(c.data.data_dir or None, c.data.manual_dir or None)
            centres = parzen.to_unit_interval(jnp.asarray(samples[:parzen.NUM_SAMPLES]))
            ll = parzen.parzen_evaluate(jnp.asarray(test_px), jnp.asarray(validation), centres)
            out.update(parzen_log_likelihood=ll["mean"], parzen_std_err=ll["std_err"], parzen_sigma=ll["sigma"])
        return out | {"protocol": self.protocol(len(test))}

    def protocol(self, num_test: int) -> str:
        """How `evaluate`'s numbers are measured, for eval.json."""
        c = self.config
        parts = [f"test ELBO: the {num_test} {c.data.name} test images binarised once (seed "
                 f"{TEST_BINARISATION_SEED}), one reparameterised z each"]
        if c.eval.classifier_dir:
            parts.append(f"FID: {c.eval.num_samples} decoder means vs the first {min(c.eval.num_samples, num_test)} "
                         f"test images, features of the classifier in {c.eval.classifier_dir}")
        if c.eval.parzen:
            parts.append("Goodfellow et al. 2014 Parzen protocol on the decoder means")
        return "; ".join(parts)

    def visuals(self, state: VAEState) -> np.ndarray:
        """64 decoder means of the fixed evaluation keys, 8 per row."""
        return visualize.image_grid(self._samples(jax.device_get(state.vae.params), 64), ncols=8)


def restore(workdir: str) -> tuple[ml_collections.ConfigDict, vae.VAE, Any]:
    """(config, model, params) of the latest checkpoint of the VAE run in `workdir`."""
    from gan_jax import runs
    config, state = runs.restore(workdir, "vae", {"image": np.zeros((1, *IMAGE_SHAPE), np.float32)})
    return config, build_model(config), state.vae.params
