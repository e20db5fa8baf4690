"""A convolutional VAE (Kingma & Welling 2014): the network, its ELBO and its samples. It is trained by the
VAE task (gan_jax/tasks/vae.py), a likelihood baseline evaluated like the GANs.

ELBO(x) = E_{q(z|x)}[log p(x|z)] − KL(q(z|x) ‖ N(0, I)) ≤ log p(x) (Kingma & Welling 2014, Eq. 3), with
q(z|x) = N(μ(x), diag σ²(x)), the closed-form KL = ½ Σ_j (μ_j² + σ_j² − log σ_j² − 1) (App. B), one
reparameterised sample z = μ + σ ⊙ ε, ε ~ N(0, I) (Sec. 2.4), and a Bernoulli decoder log p(x|z) =
Σ_i x_i log p_i + (1 − x_i) log(1 − p_i) on binarised pixels. Samples are the decoder's means p(z),
z ~ N(0, I), mapped to [−1, 1].

``dtype`` is the networks' compute dtype (bfloat16 option); parameters stay float32, and μ, log σ², the
reparameterised z, the logits and so the ELBO are float32.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from gan_jax.models.layers import Conv, ConvTranspose
from gan_jax.prior import sample_latents

Array = jax.Array


class VAE(nn.Module):
    """Encoder x [B, 28, 28, 1] in [0, 1] -> (μ, log σ²) [B, latent]; decoder z -> pixel logits [B, 28, 28, 1]."""
    latent_dim: int = 16
    channels: tuple[int, int] = (32, 64)
    hidden: int = 256
    dtype: Any = jnp.float32

    def setup(self):
        c1, c2 = self.channels
        conv = dict(strides=2, padding=1, kernel_init=nn.initializers.lecun_normal(), dtype=self.dtype)
        self.enc = [Conv(c1, 4, **conv), Conv(c2, 4, **conv)]
        self.enc_dense = nn.Dense(self.hidden, dtype=self.dtype)
        self.enc_out = nn.Dense(2 * self.latent_dim, dtype=self.dtype)
        self.dec_dense = [nn.Dense(self.hidden, dtype=self.dtype), nn.Dense(7 * 7 * c2, dtype=self.dtype)]
        self.dec = [ConvTranspose(c1, 4, **conv), ConvTranspose(1, 4, **conv)]

    def encode(self, x: Array) -> tuple[Array, Array]:
        """(μ, log σ²), float32."""
        x = x.astype(self.dtype)
        for conv in self.enc:
            x = nn.relu(conv(x))
        h = nn.relu(self.enc_dense(x.reshape(x.shape[0], -1)))
        mu, logvar = jnp.split(self.enc_out(h).astype(jnp.float32), 2, axis=-1)
        return mu, logvar

    def decode(self, z: Array) -> Array:
        """Pixel logits, float32."""
        h = nn.relu(self.dec_dense[1](nn.relu(self.dec_dense[0](z.astype(self.dtype)))))
        h = nn.relu(self.dec[0](h.reshape(z.shape[0], 7, 7, self.channels[1])))
        return self.dec[1](h).astype(jnp.float32)

    def __call__(self, x: Array, noise: Array) -> tuple[Array, Array, Array]:
        """(decoder logits at z = μ + σ ⊙ noise, μ, log σ²); noise [B, latent] ~ N(0, I)."""
        mu, logvar = self.encode(x)
        return self.decode(mu + jnp.exp(0.5 * logvar) * noise), mu, logvar


def gaussian_kl(mu: Array, logvar: Array) -> Array:
    """KL(N(μ, diag e^{logvar}) ‖ N(0, I)) = ½ Σ (μ² + e^{logvar} − logvar − 1) per example (K&W 2014, App. B)."""
    return 0.5 * jnp.sum(jnp.square(mu) + jnp.exp(logvar) - logvar - 1.0, axis=-1)


def bernoulli_log_likelihood(x: Array, logits: Array) -> Array:
    """log p(x|z) = Σ_i x_i log σ(l_i) + (1 − x_i) log(1 − σ(l_i)) per example [B], for pixels x in [0, 1]."""
    ll = x * jax.nn.log_sigmoid(logits) + (1.0 - x) * jax.nn.log_sigmoid(-logits)
    return jnp.sum(ll.reshape(x.shape[0], -1), axis=-1)


def elbo(model: VAE, params: Any, x: Array, noise: Array) -> Array:
    """Per-example ELBO [B] (nats) of binary images x [B, 28, 28, 1] in {0, 1}, at one z per example drawn
    with `noise` [B, latent] ~ N(0, I)."""
    logits, mu, logvar = model.apply({"params": params}, x, noise)
    return bernoulli_log_likelihood(x, logits) - gaussian_kl(mu, logvar)


def binarise(images: Array, key: Array) -> Array:
    """[−1, 1] grey images -> {0, 1} pixels drawn Bernoulli((x + 1) / 2)."""
    return jax.random.bernoulli(key, (images + 1.0) / 2.0).astype(jnp.float32)


def sample(model: VAE, params: Any, key: Array, n: int, truncation: float | None = None) -> Array:
    """n decoder means p(z) in [−1, 1], z ~ N(0, I) (truncated to [−t, t] if `truncation` is given)."""
    return decode_images(model, params, sample_latents(key, (n, model.latent_dim), truncation))


def decode_images(model: VAE, params: Any, z: Array) -> Array:
    """Decoder means as [−1, 1] images: 2 σ(logits) − 1."""
    return 2.0 * jax.nn.sigmoid(model.apply({"params": params}, z, method=VAE.decode)) - 1.0
