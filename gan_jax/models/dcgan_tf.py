"""The DCGAN of carpedm20/DCGAN-tensorflow (model.py, ops.py) as PacGAN's code builds it for Stacked MNIST in the
VEEGAN setting (Lin et al. 2018, Table 2; fjxmlzn/PacGAN, stacked_MNIST_experiments/VEEGAN_experiment/model.py).

G: z [B, latent] -> Dense(s*s*w0) -> [s, s, w0] BN ReLU -> [ConvT 5x5 stride 2 -> w, BN ReLU] for the other widths
-> ConvT 5x5 stride 2 -> channels, tanh. Defaults (gf_dim 64): widths (512, 256, 128, 64), sides 2 -> 4 -> 7 -> 14
-> 28 at 28 px.
D: Conv 5x5 stride 2 -> w0, LeakyReLU(0.2), then [Conv 5x5 stride 2 -> w, BN, LeakyReLU(0.2)] for the other widths
-> Dense 1 on the flattened map. Defaults (df_dim 64): widths (64, 128, 256, 512), sides 28 -> 14 -> 7 -> 4 -> 2.

As ops.py: TensorFlow's 'SAME' geometry (a transposed convolution is the adjoint of the 'SAME' convolution from its
output side back to its input side, see gan_jax.models.metz), biases everywhere (zeros), weights N(0, 0.02) for the
Dense layers and transposed kernels and truncated N(0, 0.02) (cut at 2 σ) for the critic's convolutions, batch norm
with scale and offset, momentum 0.9, eps 1e-5. PacGAN's code runs G once per packed slot, so the generator's batch
norm takes each slot's statistics alone (`GroupedBatchNorm` over `pack` groups, set from config.model.pack); the
critic's batch norm takes each call's batch (real and fake in separate calls). All convolutions are
gan_jax.models.layers' (``conv_impl``); ``dtype`` is the compute dtype, parameters and batch-norm statistics stay
float32, images and scores are float32.

``unit_pixels`` (set it on both nets): the code's real images are in [0, 1] (X / 255) while its G ends in tanh, so
its D tells the two apart by range too. In our [−1, 1] pixels the generator then returns 2·tanh(a) − 1 (its tanh
read on the [0, 1] scale) and the critic first maps its input by (x + 1) / 2: D sees exactly the code's [0, 1] real
images and [−1, 1] tanh samples, and every consumer of the samples (metrics, grids) reads them as the code's
classifier does, on the data's scale.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from gan_jax.models.dcgan import batch_norm_layer
from gan_jax.models.layers import DCGAN_INIT, Conv, ConvTranspose
from gan_jax.models.metz import same_transpose_padding, side_sizes
from gan_jax.models.mlp import GroupedBatchNorm

KERNEL = 5
CONV_INIT = nn.initializers.truncated_normal(0.02)   # tf.truncated_normal_initializer(stddev=0.02)


def _widths(widths: Sequence[int]) -> tuple[int, ...]:
    out = tuple(int(w) for w in widths)
    if not out or min(out) < 1:
        raise ValueError(f"widths must be one or more positive ints, got {widths!r}")
    return out


def slot_batch_norm(x: jax.Array, pack: int, train: bool, axis_name: str | None, dtype: Any, name: str) -> jax.Array:
    """Batch norm of feature maps [B, H, W, C] whose training statistics are taken over each packed slot alone
    (images i ≡ j mod `pack` form slot j, as `models.pack` groups them): `GroupedBatchNorm` on rows ordered so that
    row r belongs to slot r mod `pack`."""
    b, h, w, c = x.shape
    groups = pack if train else 1
    if groups == 1:
        return GroupedBatchNorm(1, 0.9, 1e-5, axis_name, dtype, name=name)(x.reshape(-1, c), train).reshape(x.shape)
    rows = x.reshape(b // groups, groups, h * w, c).swapaxes(1, 2).reshape(-1, c)
    y = GroupedBatchNorm(groups, 0.9, 1e-5, axis_name, dtype, name=name)(rows, train)
    return y.reshape(b // groups, h * w, groups, c).swapaxes(1, 2).reshape(x.shape)


class DCGANTFGenerator(nn.Module):
    """z [B, latent] -> images [B, image_size, image_size, channels] in [-1, 1] (float32; [-3, 1] with unit_pixels)."""

    image_size: int = 28
    channels: int = 3
    widths: Sequence[int] = (512, 256, 128, 64)
    pack: int = 1
    unit_pixels: bool = False
    bn_axis_name: str | None = None
    dtype: Any = jnp.float32
    conv_impl: str = "auto"

    @nn.compact
    def __call__(self, z: jax.Array, train: bool) -> jax.Array:
        widths = _widths(self.widths)
        if train and z.shape[0] % self.pack:
            raise ValueError(f"a batch of {z.shape[0]} codes does not split into pack={self.pack} slots")
        sides = side_sizes(self.image_size, len(widths))[::-1]  # coarsest first
        x = nn.Dense(sides[0] * sides[0] * widths[0], kernel_init=DCGAN_INIT, dtype=self.dtype)(z.astype(self.dtype))
        x = x.reshape(z.shape[0], sides[0], sides[0], widths[0])
        outputs = (*widths[1:], self.channels)
        for i, (features, n_in, n_out) in enumerate(zip(outputs, sides[:-1], sides[1:])):
            x = nn.relu(slot_batch_norm(x, self.pack, train, self.bn_axis_name, self.dtype, f"BatchNorm_{i}"))
            pad = same_transpose_padding(n_in, n_out, KERNEL, 2)
            x = ConvTranspose(features, KERNEL, 2, (pad, pad), dtype=self.dtype, impl=self.conv_impl)(x)
        out = jnp.tanh(x.astype(jnp.float32))
        return 2.0 * out - 1.0 if self.unit_pixels else out


class DCGANTFDiscriminator(nn.Module):
    """x [B, image_size, image_size, channels] -> scores [B] (float32 logits)."""

    image_size: int = 28
    channels: int = 3
    widths: Sequence[int] = (64, 128, 256, 512)
    unit_pixels: bool = False
    bn_axis_name: str | None = None
    dtype: Any = jnp.float32
    conv_impl: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        widths = _widths(self.widths)
        if x.shape[1:] != (self.image_size, self.image_size, self.channels):
            raise ValueError(f"expected images [B, {self.image_size}, {self.image_size}, {self.channels}], "
                             f"got {x.shape}")
        h = ((x + 1.0) / 2.0 if self.unit_pixels else x).astype(self.dtype)
        for i, features in enumerate(widths):
            h = Conv(features, KERNEL, 2, "SAME", dtype=self.dtype, kernel_init=CONV_INIT, impl=self.conv_impl)(h)
            if i:
                h = batch_norm_layer(train, self.bn_axis_name, self.dtype)(h)
            h = nn.leaky_relu(h, 0.2)
        h = h.reshape(x.shape[0], -1)
        return nn.Dense(1, kernel_init=DCGAN_INIT, dtype=self.dtype)(h)[:, 0].astype(jnp.float32)
