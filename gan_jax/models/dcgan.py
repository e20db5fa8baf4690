"""DCGAN generator and critic (Radford et al. 2016, "Unsupervised Representation Learning with DCGANs").

Defaults equal the PyTorch reference step of benchmarks/bench.py (`benchmarks/torch_reference.py`) layer for layer
at 32 and 64 px:
G: ConvT(z -> w0, k=base, s1, p0) BN ReLU, [ConvT(4, s2, p1) BN ReLU]*, ConvT(-> C, 4, s2, p1) tanh;
D: Conv(C -> w_last, 4, s2, p1) LReLU(0.2), [Conv(4, s2, p1) (BN) LReLU(0.2)]*, Conv(-> 1, k=base, s1, p0);
no biases, weights N(0, 0.02), BatchNorm momentum 0.9 (torch's 0.1), eps 1e-5, z of 100 (the config's latent_dim).
``widths`` lists the feature widths from the coarsest (base x base) stage to the finest, as torch_reference's
ARCHS; the critic uses them in reverse. base = image_size / 2**len(widths): 4 at 32 and 64 px, and 7 at
28 px (MNIST: a 7x7 stage, then 14 and 28, like Gulrajani et al.'s MNIST nets; widths (256, 128)).
All convolutions are gan_jax.models.layers' (``conv_impl``, default "auto", picks their form, see there). ``dtype``
is the compute dtype (bfloat16 option); parameters and batch-norm statistics stay float32, images and scores are
float32.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from gan_jax.models.layers import DCGAN_INIT, Conv, ConvTranspose
from gan_jax.models.normalization import MinibatchDiscrimination, PrependReference, VirtualBatchNorm

DEFAULT_WIDTHS = {28: (256, 128), 32: (256, 128, 64), 64: (512, 256, 128, 64)}


def _geometry(image_size: int, widths: Sequence[int] | None) -> tuple[tuple[int, ...], int]:
    """(widths, base): the widths to use and the side of the coarsest stage."""
    if widths is None:
        if image_size not in DEFAULT_WIDTHS:
            raise ValueError(f"image_size {image_size!r} has no default widths (sizes with defaults: "
                             f"{sorted(DEFAULT_WIDTHS)}); pass widths explicitly")
        widths = DEFAULT_WIDTHS[image_size]
    widths = tuple(int(w) for w in widths)
    n = len(widths)
    if n < 1 or min(widths) < 1 or image_size % 2 ** n or image_size // 2 ** n < 1:
        raise ValueError(f"widths {widths!r} must be positive, and image_size {image_size!r} divisible by "
                         f"2**len(widths) = {2 ** n}")
    return widths, image_size // 2 ** n


def batch_norm_layer(train: bool, axis_name: str | None, dtype: Any) -> nn.BatchNorm:
    # torch BatchNorm2d: running = 0.9 running + 0.1 batch, eps 1e-5; statistics reduced in float32.
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, axis_name=axis_name,
                        dtype=dtype, param_dtype=jnp.float32)


class DCGANGenerator(nn.Module):
    """z [B, latent] -> images [B, image_size, image_size, channels] in [-1, 1] (float32)."""

    image_size: int = 32
    channels: int = 3
    widths: Sequence[int] | None = None
    bn_axis_name: str | None = None
    dtype: Any = jnp.float32
    conv_impl: str = "auto"

    @nn.compact
    def __call__(self, z: jax.Array, train: bool) -> jax.Array:
        widths, base = _geometry(self.image_size, self.widths)
        x = z.reshape(z.shape[0], 1, 1, -1)
        stages = [(widths[0], base, 1, 0)] + [(w, 4, 2, 1) for w in widths[1:]]
        for features, k, s, p in stages:
            x = ConvTranspose(features, k, s, p, use_bias=False, dtype=self.dtype, impl=self.conv_impl)(x)
            x = nn.relu(batch_norm_layer(train, self.bn_axis_name, self.dtype)(x))
        x = ConvTranspose(self.channels, 4, 2, 1, use_bias=False, dtype=self.dtype, impl=self.conv_impl)(x)
        return jnp.tanh(x.astype(jnp.float32))


class DCGANDiscriminator(nn.Module):
    """x [B, image_size, image_size, channels] -> scores [B] (float32 logits / critic values).

    ``batch_norm=False`` removes the critic's batch norm (WGAN-GP); ``virtual_batch_norm=N`` replaces it
    by virtual batch norm over a fixed reference batch of N real images (Salimans et al. 2016, §3.4: the
    reference, held in ``batch_stats`` by ``PrependReference``, is filled once with real data by the
    train state's init and goes through the critic with every batch); ``minibatch_discrimination=K``
    adds K minibatch-discrimination kernels on the flattened last features (Salimans et al. 2016, §3.2,
    summed over the global batch across ``bn_axis_name``) before a linear output; ``spectral_norm=True`` wraps every
    convolution in ``nn.SpectralNorm`` (Miyato et al. 2018), one power iteration per training call, its
    ``u``/``sigma`` kept in ``batch_stats``. The power iteration is deterministic in (params, u), so with
    replicated parameters it stays identical on every device and needs no cross-device averaging; batch
    statistics are averaged over ``bn_axis_name``.
    With ``return_features=True`` returns (scores, features): the penultimate map [B, base, base, w0].
    """

    image_size: int = 32
    channels: int = 3
    widths: Sequence[int] | None = None
    batch_norm: bool = True
    spectral_norm: bool = False
    virtual_batch_norm: int = 0
    minibatch_discrimination: int = 0
    bn_axis_name: str | None = None
    dtype: Any = jnp.float32
    conv_impl: str = "auto"

    def _conv(self, x: jax.Array, features: int, k: int, s: int, p: int, train: bool) -> jax.Array:
        conv = Conv(features, k, s, p, use_bias=False, dtype=self.dtype, impl=self.conv_impl)
        return nn.SpectralNorm(conv)(x, update_stats=train) if self.spectral_norm else conv(x)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool,
                 return_features: bool = False) -> jax.Array | tuple[jax.Array, jax.Array]:
        widths, base = _geometry(self.image_size, self.widths)
        if x.shape[1:] != (self.image_size, self.image_size, self.channels):
            raise ValueError(f"expected images [B, {self.image_size}, {self.image_size}, {self.channels}], "
                             f"got {x.shape}")
        if self.virtual_batch_norm and self.batch_norm:
            raise ValueError("virtual_batch_norm replaces batch norm: set batch_norm=False with it")
        widths = widths[::-1]
        n_ref = self.virtual_batch_norm
        h = x.astype(self.dtype)
        if n_ref:
            h = PrependReference(n_ref)(h)
        h = nn.leaky_relu(self._conv(h, widths[0], 4, 2, 1, train), 0.2)
        for features in widths[1:]:
            h = self._conv(h, features, 4, 2, 1, train)
            if self.batch_norm:
                h = batch_norm_layer(train, self.bn_axis_name, self.dtype)(h)
            elif n_ref:
                h = VirtualBatchNorm(n_ref, dtype=self.dtype)(h)
            h = nn.leaky_relu(h, 0.2)
        h = h[n_ref:]
        if self.minibatch_discrimination:
            # Training sums over the global batch (all devices); inference over the batch given.
            f = MinibatchDiscrimination(self.minibatch_discrimination, axis_name=self.bn_axis_name if train else None,
                                        dtype=self.dtype)(h)
            scores = nn.Dense(1, use_bias=False, kernel_init=DCGAN_INIT, dtype=self.dtype)(f)[:, 0]
        else:
            scores = self._conv(h, 1, base, 1, 0, train).reshape(x.shape[0])
        scores = scores.astype(jnp.float32)
        return (scores, h) if return_features else scores
