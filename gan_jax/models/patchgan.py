"""PatchGAN discriminator (Isola et al. 2017, Sec. 3.2.2 and App. 6.1.2): a fully convolutional net
whose every output logit classifies one receptive-field patch as real or fake; the loss averages
over patches (a "texture/style loss" that models high frequencies only; L1 handles the low ones).

Layers as pix2pix's `NLayerDiscriminator`: `n_layers` convs stride 2 (features·2^i, capped at ·8; no norm
on the first), one conv stride 1, and a 1-channel conv stride 1; kernel k, padding 1, LeakyReLU 0.2,
InstanceNorm. With k = 4, n_layers = 3 the patch is the paper's 70×70 on 256 px (output 30×30).
Scaled to 28 px (70/256 of the side ≈ 8 px): k = 3, n_layers = 1 sees 11×11 patches, output 14×14.
pix2pix conditions D by concatenating the input image to the (real or generated) output.
``dtype`` is the compute dtype (bfloat16 option); parameters stay float32 and the logits are float32.
``conv_impl`` picks the form of the convolutions (gan_jax.models.layers; default "auto").
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from gan_jax.models.layers import Conv

PADDING = 1


def _strides(n_layers: int) -> list[int]:
    return [2] * n_layers + [1, 1]


def receptive_field(n_layers: int, kernel_size: int) -> int:
    """Side of the input patch one output logit sees: 1 + Σ_l (k − 1) Π_{m<l} s_m."""
    rf, jump = 1, 1
    for s in _strides(n_layers):
        rf, jump = rf + (kernel_size - 1) * jump, jump * s
    return rf


def output_size(input_size: int, n_layers: int, kernel_size: int) -> int:
    """Side of the logit map: n ↦ ⌊(n + 2·pad − k) / s⌋ + 1 per layer."""
    n = input_size
    for s in _strides(n_layers):
        n = (n + 2 * PADDING - kernel_size) // s + 1
    return n


class PatchGAN(nn.Module):
    """x [B, H, W, C] -> patch logits [B, H', W', 1] with H' = output_size(H, n_layers, kernel_size)."""
    features: int = 64
    n_layers: int = 1
    kernel_size: int = 3
    dtype: Any = jnp.float32
    conv_impl: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.n_layers < 0 or self.kernel_size < 2:
            raise ValueError(f"need n_layers >= 0 and kernel_size >= 2, got {self.n_layers}, {self.kernel_size}")
        if output_size(min(x.shape[1:3]), self.n_layers, self.kernel_size) < 1:
            raise ValueError(f"input {x.shape[1:3]} too small for n_layers={self.n_layers}, "
                             f"kernel_size={self.kernel_size}")
        strides = _strides(self.n_layers)
        conv = dict(padding=PADDING, dtype=self.dtype, impl=self.conv_impl)
        x = x.astype(self.dtype)
        for i, s in enumerate(strides[:-1]):
            x = Conv(self.features * min(2 ** i, 8), self.kernel_size, strides=s, **conv)(x)
            if i > 0:
                x = nn.InstanceNorm(dtype=self.dtype, param_dtype=jnp.float32)(x)
            x = nn.leaky_relu(x, 0.2)
        return Conv(1, self.kernel_size, strides=1, **conv)(x).astype(jnp.float32)
