"""A convolutional VAE (Kingma & Welling 2014) on MNIST in the GAN harness: the seeds' recap baseline,
evaluated like the GANs (classifier FID, Goodfellow et al.'s Parzen window) plus its own test ELBO.

ELBO(x) = E_{q(z|x)}[log p(x|z)] − KL(q(z|x) ‖ N(0, I)) ≤ log p(x) (Kingma & Welling 2014, Eq. 3), with
q(z|x) = N(μ(x), diag σ²(x)), the closed-form KL = ½ Σ_j (μ_j² + σ_j² − log σ_j² − 1) (App. B), one
reparameterised sample z = μ + σ ⊙ ε, and a Bernoulli decoder log p(x|z) = Σ_i x_i log p_i + (1 − x_i)
log(1 − p_i) on binarised pixels: training images are binarised afresh each step (x_i ~ Bernoulli of the
[0, 1] grey level), the test set once with a fixed seed, so the test ELBO is in nats on binarised MNIST.
Samples for FID / Parzen are the decoder's means p(z), z ~ N(0, I), mapped to [−1, 1].

    python -m gan_jax.vae --config experiments/vae_mnist.py --workdir DIR
"""
from __future__ import annotations

import json
import os
import time
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import struct

from gan_jax.config import make_optimizer
from gan_jax.image_to_image import Player, apply_gradients, fit
from gan_jax.models.layers import Conv, ConvTranspose

Array = jax.Array
TEST_BINARISATION_SEED = 1234


class VAE(nn.Module):
    """Encoder x [B, 28, 28, 1] in [0, 1] -> (μ, log σ²) [B, latent]; decoder z -> pixel logits [B, 28, 28, 1]."""
    latent_dim: int = 16
    channels: tuple[int, int] = (32, 64)
    hidden: int = 256

    def setup(self):
        c1, c2 = self.channels
        self.enc = [Conv(c1, 4, strides=2, padding=1, kernel_init=nn.initializers.lecun_normal()),
                    Conv(c2, 4, strides=2, padding=1, kernel_init=nn.initializers.lecun_normal())]
        self.enc_dense = nn.Dense(self.hidden)
        self.enc_out = nn.Dense(2 * self.latent_dim)
        self.dec_dense = [nn.Dense(self.hidden), nn.Dense(7 * 7 * c2)]
        self.dec = [ConvTranspose(c1, 4, strides=2, padding=1, kernel_init=nn.initializers.lecun_normal()),
                    ConvTranspose(1, 4, strides=2, padding=1, kernel_init=nn.initializers.lecun_normal())]

    def encode(self, x: Array) -> tuple[Array, Array]:
        for conv in self.enc:
            x = nn.relu(conv(x))
        h = nn.relu(self.enc_dense(x.reshape(x.shape[0], -1)))
        mu, logvar = jnp.split(self.enc_out(h), 2, axis=-1)
        return mu, logvar

    def decode(self, z: Array) -> Array:
        h = nn.relu(self.dec_dense[1](nn.relu(self.dec_dense[0](z))))
        h = nn.relu(self.dec[0](h.reshape(z.shape[0], 7, 7, self.channels[1])))
        return self.dec[1](h)

    def __call__(self, x: Array, key: Array) -> tuple[Array, Array, Array]:
        """(decoder logits at one reparameterised z, μ, log σ²)."""
        mu, logvar = self.encode(x)
        z = mu + jnp.exp(0.5 * logvar) * jax.random.normal(key, mu.shape)
        return self.decode(z), mu, logvar


def gaussian_kl(mu: Array, logvar: Array) -> Array:
    """KL(N(μ, diag e^{logvar}) ‖ N(0, I)) = ½ Σ (μ² + e^{logvar} − logvar − 1) per example (K&W 2014, App. B)."""
    return 0.5 * jnp.sum(jnp.square(mu) + jnp.exp(logvar) - logvar - 1.0, axis=-1)


def bernoulli_log_likelihood(x: Array, logits: Array) -> Array:
    """log p(x|z) = Σ_i x_i log σ(l_i) + (1 − x_i) log(1 − σ(l_i)) per example [B], for pixels x in [0, 1]."""
    ll = x * jax.nn.log_sigmoid(logits) + (1.0 - x) * jax.nn.log_sigmoid(-logits)
    return jnp.sum(ll.reshape(x.shape[0], -1), axis=-1)


def elbo(model: VAE, params: Any, x: Array, key: Array) -> Array:
    """Per-example ELBO [B] (nats) of binary images x [B, 28, 28, 1] in {0, 1}, one z sample each."""
    logits, mu, logvar = model.apply({"params": params}, x, key)
    return bernoulli_log_likelihood(x, logits) - gaussian_kl(mu, logvar)


def binarise(images: Array, key: Array) -> Array:
    """[−1, 1] grey images -> {0, 1} pixels drawn Bernoulli((x + 1) / 2)."""
    return jax.random.bernoulli(key, (images + 1.0) / 2.0).astype(jnp.float32)


@struct.dataclass
class VAEState:
    step: Array
    key: Array
    vae: Player


def build(config: ml_collections.ConfigDict):
    m = config.model
    return VAE(latent_dim=m.latent_dim, channels=tuple(m.channels), hidden=m.hidden), \
        make_optimizer(config.optim, "optim")


def init_state(model: VAE, tx, key: Array) -> VAEState:
    @jax.jit  # one compiled program: op-by-op initialisation compiles every random draw separately
    def init(key):
        init_key, run = jax.random.split(key)
        params = model.init(init_key, jnp.zeros((1, 28, 28, 1)), init_key)["params"]
        return VAEState(jnp.zeros((), jnp.int32), run, Player(params, tx.init(params)))
    return init(key)


def make_train_step(model: VAE, tx) -> Callable[[VAEState, dict[str, Array]], tuple[VAEState, dict[str, Array]]]:
    """(state, {"image": [B, 28, 28, 1] in [−1, 1]}) -> (state, {"elbo"}): an Adam step on −mean ELBO."""
    @jax.jit
    def step(state: VAEState, batch):
        bin_key, z_key = jax.random.split(jax.random.fold_in(state.key, state.step))
        x = binarise(batch["image"], bin_key)
        value, grads = jax.value_and_grad(lambda p: -jnp.mean(elbo(model, p, x, z_key)))(state.vae.params)
        return state.replace(step=state.step + 1, vae=apply_gradients(state.vae, grads, tx)), {"elbo": -value}
    return step


def sample(model: VAE, params: Any, key: Array, n: int, truncation: float | None = None) -> Array:
    """n decoder means p(z) in [−1, 1], z ~ N(0, I) (truncated to [−t, t] if `truncation` is given)."""
    from gan_jax.latent import sample_latents
    z = sample_latents(key, (n, model.latent_dim), truncation)
    return decode_images(model, params, z)


def decode_images(model: VAE, params: Any, z: Array) -> Array:
    """Decoder means as [−1, 1] images: 2 σ(logits) − 1."""
    return 2.0 * jax.nn.sigmoid(model.apply({"params": params}, z, method=VAE.decode)) - 1.0


def evaluate(model: VAE, params: Any, config: ml_collections.ConfigDict, key: Array) -> dict[str, float]:
    """Test ELBO (nats, fixed binarisation), classifier FID of samples vs test images, Parzen (MNIST)."""
    from gan_jax.data import paired
    from gan_jax.metrics.features import batched_apply
    test = paired.load_domain(config.data.name, "test", data_dir=config.data.data_dir,
                              manual_dir=config.data.manual_dir)["image"]
    bs = config.eval.batch_size
    x_bin = np.asarray(binarise(jnp.asarray(test), jax.random.key(TEST_BINARISATION_SEED)))
    elbo_key = jax.random.fold_in(key, 0)
    values = batched_apply(jax.jit(lambda x: elbo(model, params, x, elbo_key)), x_bin, bs)
    out = {"test_elbo": float(np.mean(values)), "test_elbo_std_err": float(np.std(values) / np.sqrt(len(values))),
           "num_test": int(len(values))}
    n = config.eval.num_samples
    draw = jax.jit(lambda k: sample(model, params, k, bs))
    samples = np.concatenate([np.asarray(draw(jax.random.fold_in(key, 1 + i))) for i in range(-(-n // bs))])[:n]
    if config.eval.classifier_dir:
        from gan_jax.metrics import features, fid
        net = features.lenet_features(config.eval.classifier_dir)
        out["fid"] = float(fid.fid(jnp.asarray(features.extract(net, test[:n])[0]),
                                   jnp.asarray(features.extract(net, samples)[0])))
    if config.eval.parzen:
        from gan_jax.metrics import parzen
        validation, test_px = parzen.mnist_parzen_points(config.data.data_dir, config.data.manual_dir or None)
        centres = parzen.to_unit_interval(jnp.asarray(samples[:parzen.NUM_SAMPLES]))
        ll = parzen.parzen_evaluate(jnp.asarray(test_px), jnp.asarray(validation), centres)
        out.update(parzen_log_likelihood=ll["mean"], parzen_std_err=ll["std_err"], parzen_sigma=ll["sigma"])
    return out


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Train (resuming from workdir's checkpoint), evaluate, write eval.json and samples.png."""
    from gan_jax import visualize
    from gan_jax.data import InMemorySource, Pipeline, paired
    start = time.time()
    model, tx = build(config)
    state = init_state(model, tx, jax.random.key(config.seed))
    train = paired.load_domain(config.data.name, "train", data_dir=config.data.data_dir,
                               manual_dir=config.data.manual_dir, limit=config.data.num_train)
    pipe = Pipeline(InMemorySource({"image": train["image"]}), batch_size=config.batch_size,
                    seed=config.seed, prefetch=0)
    state = fit(make_train_step(model, tx), state, pipe.batch, config, workdir)
    train_seconds = time.time() - start
    results = evaluate(model, state.vae.params, config, jax.random.fold_in(state.key, 2**31 - 1))
    results.update(steps=config.steps, train_seconds=round(train_seconds, 1), seconds=round(time.time() - start, 1),
                   classifier_dir=config.eval.classifier_dir, config=config.to_dict())
    grid = np.asarray(sample(model, state.vae.params, jax.random.key(0), 64))
    visualize.save_png(visualize.image_grid(grid, ncols=8), os.path.join(workdir, "samples.png"))
    with open(os.path.join(workdir, "eval.json"), "w") as f:
        json.dump(results, f, indent=1, default=list)
    print(json.dumps({k: v for k, v in results.items() if k != "config"}, indent=1))
    return results


def restore(config: ml_collections.ConfigDict, workdir: str) -> tuple[VAE, Any]:
    """(model, params) of the latest checkpoint of a run of `config` in workdir."""
    from gan_jax.checkpoint import Checkpointer
    model, tx = build(config)
    ckpt = Checkpointer(workdir, config)
    ckpt.check_config()
    state = ckpt.restore(jax.eval_shape(lambda: init_state(model, tx, jax.random.key(config.seed))))
    ckpt.close()
    if state is None:
        raise FileNotFoundError(f"no VAE checkpoint in {workdir}; train one with: python -m gan_jax.vae "
                                f"--config experiments/vae_mnist.py --workdir {workdir}")
    return model, state.vae.params


def default_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.name, c.paper = "vae_mnist", "Kingma & Welling 2014 (VAE), Bernoulli decoder on binarised MNIST"
    c.trainer = "vae"  # launch.py runs gan_jax.vae.train_and_evaluate
    c.seed, c.steps, c.batch_size = 0, 5000, 128
    c.log_every, c.checkpoint_every, c.keep_checkpoints = 500, 2500, 2
    c.data = ml_collections.ConfigDict(dict(name="mnist", data_dir="", manual_dir="", num_train=0))
    c.model = ml_collections.ConfigDict(dict(latent_dim=16, channels=(32, 64), hidden=256))
    c.optim = ml_collections.ConfigDict(dict(name="adam", learning_rate=1e-3))
    c.eval = ml_collections.ConfigDict(dict(num_samples=10000, classifier_dir="", parzen=False, batch_size=1000))
    return c


if __name__ == "__main__":
    from gan_jax import cli
    cli.run(train_and_evaluate, "experiments/vae_mnist.py",
            "Checkpoints, eval.json and samples.png.")
