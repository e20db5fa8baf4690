"""U-Net generator of pix2pix (Isola et al. 2017, Sec. 3.1 and App. 6.1.1), scaled to 28/32 px.

Encoder block i: Conv 4×4 stride 2 (pad 1) → InstanceNorm (not on the first and the innermost block)
→ LeakyReLU 0.2; decoder block i: ConvTranspose 4×4 stride 2 (pad 1) → InstanceNorm → Dropout (the
first `dropout_blocks` decoder blocks: "noise only in the form of dropout", applied at train and test
time as in the paper) → ReLU, then concatenated with the mirrored encoder activation (the skip
connection). The last block maps to `out_channels` with tanh. pix2pix's batch size 1 makes its
BatchNorm an instance norm; we use InstanceNorm at any batch size.

Inputs whose side is not a multiple of 2^depth are edge-padded up to one (28 → 32 for depth ≤ 5)
and the output cropped back, so the same net serves 28 px data.

``dtype`` is the compute dtype (bfloat16 option); parameters stay float32 and the output is float32.
``conv_impl`` picks the form of the convolutions (gan_jax.models.layers; default "auto").
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from gan_jax.models.layers import Conv, ConvTranspose


def _norm(x: jax.Array, dtype: Any) -> jax.Array:
    return nn.InstanceNorm(use_bias=True, use_scale=True, dtype=dtype, param_dtype=jnp.float32)(x)


class UNet(nn.Module):
    """x [B, H, W, C] -> [B, H, W, out_channels] in [−1, 1]; features[i] = channels of encoder block i."""
    features: Sequence[int] = (64, 128, 256, 256, 256)
    out_channels: int = 1
    dropout: float = 0.5
    dropout_blocks: int = 3
    skip: bool = True  # False: the encoder-decoder baseline of pix2pix Fig. 5 (no skips)
    dtype: Any = jnp.float32
    conv_impl: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array, *, deterministic: bool = False) -> jax.Array:
        depth = len(self.features)
        if depth < 2:
            raise ValueError(f"UNet needs >= 2 encoder blocks, got features={tuple(self.features)}")
        h, w = x.shape[1:3]
        m = 2 ** depth
        ph, pw = -h % m, -w % m
        x = jnp.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)), mode="edge")
        x = x.astype(self.dtype)
        conv = dict(strides=2, padding=1, dtype=self.dtype, impl=self.conv_impl)
        skips = []
        for i, f in enumerate(self.features):
            x = Conv(f, 4, name=f"enc{i}", **conv)(x if i == 0 else nn.leaky_relu(x, 0.2))
            if 0 < i < depth - 1:
                x = _norm(x, self.dtype)
            skips.append(x)
        for i, f in enumerate(reversed(self.features[:-1])):
            x = ConvTranspose(f, 4, name=f"dec{i}", **conv)(nn.relu(x))
            x = _norm(x, self.dtype)
            if i < self.dropout_blocks and self.dropout > 0:
                x = nn.Dropout(self.dropout, deterministic=deterministic)(x)
            if self.skip:
                x = jnp.concatenate([x, skips[depth - 2 - i]], axis=-1)
        x = ConvTranspose(self.out_channels, 4, name="out", **conv)(nn.relu(x))
        return jnp.tanh(x[:, ph // 2:ph // 2 + h, pw // 2:pw // 2 + w]).astype(jnp.float32)
