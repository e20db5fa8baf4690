"""The SN-GAN "standard CNN" (Miyato et al. 2018, "Spectral Normalization for GANs", Table 3 / App. B.4).

G (Table 3a): z (128) -> dense -> base x base x 512 (BN, ReLU: the dense layer's BN and ReLU are in the authors'
chainer-gan-lib code, not in the table), three 4x4 stride-2 deconvolutions (256, 128, 64) each with BN + ReLU,
3x3 stride-1 conv -> channels, tanh.
D (Table 3b): conv 3x3 s1 64, 4x4 s2 64, 3x3 s1 128, 4x4 s2 128, 3x3 s1 256, 4x4 s2 256, 3x3 s1 512, each
followed by LeakyReLU 0.1, then dense -> 1; every layer spectrally normalised (``nn.SpectralNorm``, one
power iteration per training call, ``u``/``sigma`` in ``batch_stats``, as DCGANDiscriminator's
``spectral_norm`` option).
base = image_size / 8: 4 at 32 px (CIFAR-10), 6 at 48 px (STL-10 in the paper), 8 at 64 px. ``widths`` lists
the generator's widths from the base stage to the finest (default (512, 256, 128, 64)) and the critic's from
the finest to the last (default (64, 128, 256, 512)); base = image_size / 2**(len(widths) - 1) for both.
Weights N(0, 0.02) (chainer-gan-lib's ``wscale``); layers with a bias unless a batch norm follows them.
Convolutions are gan_jax.models.layers' (``conv_impl``); ``dtype`` is the compute dtype (bfloat16 option),
parameters and statistics stay float32, images and scores are float32.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from gan_jax.models.dcgan import batch_norm_layer
from gan_jax.models.layers import DCGAN_INIT, Conv, ConvTranspose

GENERATOR_WIDTHS = (512, 256, 128, 64)
CRITIC_WIDTHS = (64, 128, 256, 512)


def _base(image_size: int, widths: Sequence[int]) -> int:
    """The side of the coarsest stage: image_size / 2**(len(widths) - 1) (ValueError unless exact)."""
    n = len(widths) - 1
    if n < 1 or min(widths) < 1 or image_size % 2 ** n or image_size // 2 ** n < 1:
        raise ValueError(f"widths {tuple(widths)!r} must be two or more positive ints, and image_size "
                         f"{image_size!r} divisible by 2**(len(widths) - 1) = {2 ** max(n, 0)}")
    return image_size // 2 ** n


class SNGANGenerator(nn.Module):
    """z [B, latent] -> images [B, image_size, image_size, channels] in [-1, 1] (float32); Table 3a."""

    image_size: int = 32
    channels: int = 3
    widths: Sequence[int] = GENERATOR_WIDTHS
    bn_axis_name: str | None = None
    dtype: Any = jnp.float32
    conv_impl: str = "auto"

    @nn.compact
    def __call__(self, z: jax.Array, train: bool) -> jax.Array:
        base = _base(self.image_size, self.widths)
        x = nn.Dense(base * base * self.widths[0], use_bias=False, kernel_init=DCGAN_INIT, dtype=self.dtype)(z)
        x = x.reshape(z.shape[0], base, base, self.widths[0])
        x = nn.relu(batch_norm_layer(train, self.bn_axis_name, self.dtype)(x))
        for features in self.widths[1:]:
            x = ConvTranspose(features, 4, 2, 1, use_bias=False, dtype=self.dtype, impl=self.conv_impl)(x)
            x = nn.relu(batch_norm_layer(train, self.bn_axis_name, self.dtype)(x))
        x = Conv(self.channels, 3, 1, 1, dtype=self.dtype, impl=self.conv_impl)(x)
        return jnp.tanh(x.astype(jnp.float32))


class SNGANDiscriminator(nn.Module):
    """x [B, image_size, image_size, channels] -> scores [B] (float32); Table 3b.

    ``spectral_norm=False`` gives the same network unnormalised (the paper's comparisons of normalisations use
    it). With ``return_features=True`` returns (scores, features): the last feature map [B, base, base, w_last].
    """

    image_size: int = 32
    channels: int = 3
    widths: Sequence[int] = CRITIC_WIDTHS
    spectral_norm: bool = True
    dtype: Any = jnp.float32
    conv_impl: str = "auto"

    def _layer(self, layer: nn.Module, x: jax.Array, train: bool) -> jax.Array:
        return nn.SpectralNorm(layer)(x, update_stats=train) if self.spectral_norm else layer(x)

    def _conv(self, x: jax.Array, features: int, k: int, s: int, train: bool) -> jax.Array:
        conv = Conv(features, k, s, 1, dtype=self.dtype, impl=self.conv_impl)
        return nn.leaky_relu(self._layer(conv, x, train), 0.1)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool,
                 return_features: bool = False) -> jax.Array | tuple[jax.Array, jax.Array]:
        _base(self.image_size, self.widths)
        if x.shape[1:] != (self.image_size, self.image_size, self.channels):
            raise ValueError(f"expected images [B, {self.image_size}, {self.image_size}, {self.channels}], "
                             f"got {x.shape}")
        h = x.astype(self.dtype)
        for features in self.widths[:-1]:
            h = self._conv(h, features, 3, 1, train)
            h = self._conv(h, features, 4, 2, train)
        h = self._conv(h, self.widths[-1], 3, 1, train)
        dense = nn.Dense(1, kernel_init=DCGAN_INIT, dtype=self.dtype)
        scores = self._layer(dense, h.reshape(x.shape[0], -1), train)[:, 0].astype(jnp.float32)
        return (scores, h) if return_features else scores
