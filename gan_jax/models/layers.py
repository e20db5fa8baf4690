"""Convolution layers that XLA:CPU compiles to fast matrix products.

XLA:CPU lowers the weight gradient of a plainly written strided convolution inside a
full GAN step with the batch as the contracted feature axis (``dim_labels=f01b_i01o->01bf``),
~1 s per call at DCGAN sizes: a plain jitted DCGAN step runs 18x slower than PyTorch eager.
These layers never emit a convolution. Both are written as one matrix product plus
contiguous data movement on the space-to-depth grid, so forward, backward and
grad-of-grad are all ``dot_general`` (YNNPACK GEMMs on XLA:CPU) with contiguous
slices, pads and reshapes around them:

* ``conv2d``: a stride-s convolution with a k x k kernel equals a stride-1 convolution with a
  ceil(k/s) x ceil(k/s) kernel on the space-to-depth input (tap ``a = s*d + r``: shift ``d``
  on the coarse grid, phase ``r`` in the channels). Its im2col is ``ceil(k/s)^2`` contiguous
  shifted windows, concatenated, times the rearranged kernel.
* ``conv_transpose2d`` (PyTorch ``ConvTranspose2d`` semantics): the dual. One product
  ``x @ W`` gives every tap's contribution on the coarse grid; ``ceil(k/s)^2`` shifted
  (padded) copies are summed, depth-to-space restores the fine grid, and the PyTorch padding
  is cropped.

When ``k`` is not a multiple of ``s`` the kernel is zero-padded to the next multiple
(exact, at the cost of ``(ceil(k/s) s / k)^2`` more FLOPs; DCGAN's 4x4/stride-2 layers waste none).
Autodiff of these forms is plain JAX, so higher-order derivatives (WGAN-GP) need no custom rules.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

Array = jax.Array
Pads = tuple[tuple[int, int], tuple[int, int]]
PaddingLike = str | int | Sequence[int] | Sequence[tuple[int, int]]

DCGAN_INIT = nn.initializers.normal(0.02)


def _pair(v: int | Sequence[int], name: str) -> tuple[int, int]:
    """An int or a length-2 sequence of positive ints as a pair."""
    t = (v, v) if isinstance(v, int) else tuple(v)
    if len(t) != 2 or not all(isinstance(i, int) and i >= 1 for i in t):
        raise ValueError(f"{name} must be a positive int or two positive ints, got {v!r}")
    return t  # type: ignore[return-value]


def _pads(padding: PaddingLike, in_hw: tuple[int, int], kernel: tuple[int, int],
          strides: tuple[int, int], allow_str: bool) -> Pads:
    """Padding as ((lo, hi), (lo, hi)) from 'SAME'/'VALID', an int, two ints or two pairs."""
    if isinstance(padding, str):
        if not allow_str or padding.upper() not in ("SAME", "VALID"):
            allowed = "'SAME', 'VALID', " if allow_str else ""
            raise ValueError(f"padding must be {allowed}an int, two ints or two (lo, hi) pairs, got {padding!r}")
        return tuple(lax.padtype_to_pads(in_hw, kernel, strides, padding.upper()))  # type: ignore[return-value]
    if isinstance(padding, int):
        return ((padding, padding), (padding, padding))
    p = tuple(padding)
    if len(p) == 2 and all(isinstance(i, int) for i in p):
        return ((p[0], p[0]), (p[1], p[1]))
    if len(p) == 2 and all(len(tuple(i)) == 2 for i in p):
        return tuple(tuple(int(j) for j in i) for i in p)  # type: ignore[return-value]
    raise ValueError(f"padding must be an int, two ints or two (lo, hi) pairs, got {padding!r}")


def _coarse_kernel(kernel: Array, strides: tuple[int, int]) -> tuple[Array, tuple[int, int]]:
    """Kernel [kh, kw, I, O] -> [th, tw, sh, sw, I, O] with taps a = s*d + r (zero-padded to th*sh)."""
    (kh, kw, ci, co), (sh, sw) = kernel.shape, strides
    th, tw = -(-kh // sh), -(-kw // sw)
    k = jnp.pad(kernel, ((0, th * sh - kh), (0, tw * sw - kw), (0, 0), (0, 0)))
    return k.reshape(th, sh, tw, sw, ci, co).transpose(0, 2, 1, 3, 4, 5), (th, tw)


def conv2d(x: Array, kernel: Array, strides: int | Sequence[int] = 1,
           padding: PaddingLike = 0) -> Array:
    """y[n,i,j,o] = sum_{a,b,c} xpad[n, s_h i + a, s_w j + b, c] kernel[a,b,c,o].

    Equals ``lax.conv_general_dilated(x, kernel, strides, pads, dimension_numbers=('NHWC',
    'HWIO', 'NHWC'))``. x: [B, H, W, I]; kernel: [kh, kw, I, O]; padding as in ``nn.Conv``.
    """
    s = _pair(strides, "strides")
    (B, H, W, C), (kh, kw) = x.shape, kernel.shape[:2]
    if kernel.ndim != 4 or kernel.shape[2] != C:
        raise ValueError(f"kernel must be [kh, kw, {C}, O] for input {x.shape}, got {kernel.shape}")
    pads = _pads(padding, (H, W), (kh, kw), s, allow_str=True)
    ho, wo = [(n + lo + hi - k) // st + 1 for n, (lo, hi), k, st in zip((H, W), pads, (kh, kw), s)]
    if ho < 1 or wo < 1:
        raise ValueError(f"kernel {(kh, kw)} larger than padded input {(H, W)} with padding {pads}")
    kc, (th, tw) = _coarse_kernel(kernel, s)
    hs, ws = ho + th - 1, wo + tw - 1  # coarse rows/cols the windows read
    # lax.pad with a negative high pad crops rows that no output reads.
    xp = lax.pad(x, jnp.zeros((), x.dtype),
                 ((0, 0, 0), (pads[0][0], hs * s[0] - H - pads[0][0], 0),
                  (pads[1][0], ws * s[1] - W - pads[1][0], 0), (0, 0, 0)))
    xs = xp.reshape(B, hs, s[0], ws, s[1], C).transpose(0, 1, 3, 2, 4, 5).reshape(B, hs, ws, -1)
    cols = [xs[:, d:d + ho, e:e + wo] for d in range(th) for e in range(tw)]
    patches = jnp.concatenate(cols, axis=-1) if len(cols) > 1 else cols[0]
    y = jnp.dot(patches.reshape(B * ho * wo, -1), kc.reshape(-1, kernel.shape[3]))
    return y.reshape(B, ho, wo, kernel.shape[3])


def conv_transpose2d(x: Array, kernel: Array, strides: int | Sequence[int] = 1,
                     padding: int | Sequence[int] | Sequence[tuple[int, int]] = 0) -> Array:
    """PyTorch ConvTranspose2d: y[n, s_h i + a - lo_h, s_w j + b - lo_w, o] += x[n,i,j,c] kernel[a,b,c,o].

    x: [B, H, W, I]; kernel: [kh, kw, I, O] (torch's weight ``[I, O, kh, kw]`` permuted (2, 3, 0, 1));
    padding p crops p rows/cols from each side (a pair (lo, hi) per dim crops lo and hi; a negative
    hi adds rows, like torch's output_padding). Output H' = (H - 1) s_h + kh - lo_h - hi_h.
    Equals ``lax.conv_transpose(x, kernel.swapaxes(2, 3), strides, [(kh-1-lo, kh-1-hi), ...],
    transpose_kernel=True)``.
    """
    s = _pair(strides, "strides")
    (B, H, W, C), (kh, kw) = x.shape, kernel.shape[:2]
    if kernel.ndim != 4 or kernel.shape[2] != C:
        raise ValueError(f"kernel must be [kh, kw, {C}, O] for input {x.shape}, got {kernel.shape}")
    pads = _pads(padding, (H, W), (kh, kw), s, allow_str=False)
    ho, wo = [(n - 1) * st + k - lo - hi for n, st, k, (lo, hi) in zip((H, W), s, (kh, kw), pads)]
    if ho < 1 or wo < 1:
        raise ValueError(f"padding {pads} crops the whole output of size {((H - 1) * s[0] + kh, (W - 1) * s[1] + kw)}")
    co = kernel.shape[3]
    kc, (th, tw) = _coarse_kernel(kernel, s)
    # z[n,i,j,d,e,(r,q,o)]: contribution of x[n,i,j] to coarse cell (i+d, j+e), phase (r, q).
    z = jnp.dot(x.reshape(B * H * W, C), kc.transpose(4, 0, 1, 2, 3, 5).reshape(C, -1))
    z = z.reshape(B, H, W, th, tw, -1)
    zero = jnp.zeros((), z.dtype)
    acc = sum(lax.pad(z[:, :, :, d, e], zero, ((0, 0, 0), (d, th - 1 - d, 0), (e, tw - 1 - e, 0), (0, 0, 0)))
              for d in range(th) for e in range(tw))
    hs, ws = H + th - 1, W + tw - 1
    y = acc.reshape(B, hs, ws, s[0], s[1], co).transpose(0, 1, 3, 2, 4, 5).reshape(B, hs * s[0], ws * s[1], co)
    return lax.pad(y, zero, ((0, 0, 0), (-pads[0][0], ho + pads[0][0] - hs * s[0], 0),
                             (-pads[1][0], wo + pads[1][0] - ws * s[1], 0), (0, 0, 0)))


class Conv(nn.Module):
    """2-D convolution on NHWC inputs, drop-in for ``nn.Conv`` (params ``kernel`` [kh, kw, I, O], ``bias``).

    Computes in ``dtype`` (e.g. bfloat16; None: promoted input/param dtype) with parameters
    stored in ``param_dtype``. Default init N(0, 0.02) as in DCGAN (Radford et al., 2016).
    """
    features: int
    kernel_size: int | Sequence[int]
    strides: int | Sequence[int] = 1
    padding: PaddingLike = "SAME"
    use_bias: bool = True
    dtype: Any = None
    param_dtype: Any = jnp.float32
    kernel_init: Any = DCGAN_INIT
    bias_init: Any = nn.initializers.zeros

    @nn.compact
    def __call__(self, x: Array) -> Array:
        kh, kw = _pair(self.kernel_size, "kernel_size")
        kernel = self.param("kernel", self.kernel_init, (kh, kw, x.shape[-1], self.features), self.param_dtype)
        bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype) if self.use_bias else None
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        y = conv2d(x, kernel, self.strides, self.padding)
        return y if bias is None else y + bias


class ConvTranspose(nn.Module):
    """Transposed 2-D convolution with PyTorch ``ConvTranspose2d`` semantics on NHWC inputs.

    ``ConvTranspose(f, 4, strides=2, padding=1)`` doubles H and W. Params ``kernel`` [kh, kw, I, O]
    (torch weight permuted (2, 3, 0, 1)) and ``bias``; ``dtype``/``param_dtype``/init as in ``Conv``.
    """
    features: int
    kernel_size: int | Sequence[int]
    strides: int | Sequence[int] = 1
    padding: int | Sequence[int] | Sequence[tuple[int, int]] = 0
    use_bias: bool = True
    dtype: Any = None
    param_dtype: Any = jnp.float32
    kernel_init: Any = DCGAN_INIT
    bias_init: Any = nn.initializers.zeros

    @nn.compact
    def __call__(self, x: Array) -> Array:
        kh, kw = _pair(self.kernel_size, "kernel_size")
        kernel = self.param("kernel", self.kernel_init, (kh, kw, x.shape[-1], self.features), self.param_dtype)
        bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype) if self.use_bias else None
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        y = conv_transpose2d(x, kernel, self.strides, self.padding)
        return y if bias is None else y + bias
