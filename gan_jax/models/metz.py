"""The small Stacked-MNIST nets of Metz et al. 2016 (Unrolled GAN), as PacGAN's code builds them for its
Table 3 (Lin et al. 2018; fjxmlzn/PacGAN, stacked_MNIST_experiments/unrolled_GAN_experiment, TensorFlow).

G: z [B, 256] -> Dense(base*base*w0) -> [base, base, w0] BN ReLU -> [ConvT 3x3 stride 2 -> w, BN ReLU] for
the other widths -> Conv 3x3 stride 1 -> channels, tanh. Defaults: widths (64, 32, 16, 8) at 4 -> 7 -> 14 -> 28 px.
D: [Conv 3x3 stride 2 -> w, BN, LeakyReLU(0.3)] for each width -> Dense 1 on the flattened map. PacGAN's
"D = 1/4 size of G" has widths (2, 4, 8), "D = 1/2 size of G" (4, 8, 16); batch norm on every layer.
Convolutions use TensorFlow's 'SAME' geometry (a transposed convolution is the adjoint of the 'SAME'
convolution from its output size back to its input size: 4 -> 7 -> 14 -> 28), biases everywhere, weights
N(0, 0.02), batch norm momentum 0.9 and eps 1e-5 (carpedm20's DCGAN ops). ``dtype`` is the compute dtype
(bfloat16 option); parameters and statistics stay float32, images and scores are float32.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from gan_jax.models.dcgan import batch_norm_layer
from gan_jax.models.layers import DCGAN_INIT, Conv, ConvTranspose


def side_sizes(image_size: int, n: int) -> list[int]:
    """[image_size, ceil(image_size / 2), ...]: the n + 1 sides of n stride-2 'SAME' stages (28 -> 14 -> 7 -> 4)."""
    sides = [image_size]
    for _ in range(n):
        sides.append(-(-sides[-1] // 2))
    return sides


def same_transpose_padding(in_side: int, out_side: int, kernel: int, stride: int) -> tuple[int, int]:
    """(lo, hi) such that ConvTranspose maps in_side to out_side as TF's conv2d_transpose 'SAME' does:
    the padding of the 'SAME' convolution out_side -> in_side."""
    total = (in_side - 1) * stride + kernel - out_side
    if total < 0 or -(-out_side // stride) != in_side:
        raise ValueError(f"no 'SAME' transposed convolution maps side {in_side} to {out_side} "
                         f"(kernel {kernel}, stride {stride})")
    return total // 2, total - total // 2


class MetzGenerator(nn.Module):
    """z [B, latent] -> images [B, image_size, image_size, channels] in [-1, 1] (float32)."""

    image_size: int = 28
    channels: int = 3
    widths: Sequence[int] = (64, 32, 16, 8)
    kernel_size: int = 3
    bn_axis_name: str | None = None
    dtype: Any = jnp.float32
    conv_impl: str = "auto"

    @nn.compact
    def __call__(self, z: jax.Array, train: bool) -> jax.Array:
        widths = tuple(int(w) for w in self.widths)
        if len(widths) < 1 or min(widths) < 1:
            raise ValueError(f"widths must be one or more positive ints, got {self.widths!r}")
        sides = side_sizes(self.image_size, len(widths) - 1)[::-1]  # coarsest first
        k = self.kernel_size
        x = nn.Dense(sides[0] * sides[0] * widths[0], kernel_init=DCGAN_INIT, dtype=self.dtype)(z.astype(self.dtype))
        x = x.reshape(z.shape[0], sides[0], sides[0], widths[0])
        x = nn.relu(batch_norm_layer(train, self.bn_axis_name, self.dtype)(x))
        for features, n_in, n_out in zip(widths[1:], sides[:-1], sides[1:]):
            pad = same_transpose_padding(n_in, n_out, k, 2)
            x = ConvTranspose(features, k, 2, (pad, pad), dtype=self.dtype, impl=self.conv_impl)(x)
            x = nn.relu(batch_norm_layer(train, self.bn_axis_name, self.dtype)(x))
        x = Conv(self.channels, k, 1, "SAME", dtype=self.dtype, impl=self.conv_impl)(x)
        return jnp.tanh(x.astype(jnp.float32))


class MetzDiscriminator(nn.Module):
    """x [B, image_size, image_size, channels] -> scores [B] (float32 logits)."""

    image_size: int = 28
    channels: int = 3
    widths: Sequence[int] = (2, 4, 8)
    kernel_size: int = 3
    bn_axis_name: str | None = None
    dtype: Any = jnp.float32
    conv_impl: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        if x.shape[1:] != (self.image_size, self.image_size, self.channels):
            raise ValueError(f"expected images [B, {self.image_size}, {self.image_size}, {self.channels}], "
                             f"got {x.shape}")
        h = x.astype(self.dtype)
        for features in self.widths:
            h = Conv(int(features), self.kernel_size, 2, "SAME", dtype=self.dtype, impl=self.conv_impl)(h)
            h = nn.leaky_relu(batch_norm_layer(train, self.bn_axis_name, self.dtype)(h), 0.3)
        h = h.reshape(x.shape[0], -1)
        return nn.Dense(1, kernel_init=DCGAN_INIT, dtype=self.dtype)(h)[:, 0].astype(jnp.float32)
