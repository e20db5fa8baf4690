"""Convolution layers whose gradients XLA:CPU compiles to fast kernels.

Inside a full GAN step, XLA:CPU lowers the weight gradient of a plainly written strided
convolution with the batch as the contracted feature axis (``dim_labels=f01b_i01o->01bf``),
~1 s per call at DCGAN sizes, so a plain jitted DCGAN step ran 18x slower than PyTorch eager.
Here a convolution is a ``jax.custom_vjp`` op whose rules never ask XLA for that convolution:

* forward: one GEMM ``im2col(x) @ K`` with the kernel zero-padded to multiples of s and the patches
  in its natural (kh, kw, C) column order, cut from the free reshape [B, H/s, s, W/s, s*C] of the
  padded input: ceil(k/s) * s * ceil(k/s) contiguous windows of s*C values, so neither the input nor
  the kernel is ever transposed (k^2 windows of C values for a plain im2col);
* weight gradient: one batch-major GEMM ``g^T @ im2col(x)`` on the same patches;
* input gradient: the adjoint, one GEMM ``g @ K^T`` and col2im (the im2col's transpose, which sums
  the shifted windows back onto the input), itself a custom-VJP op whose
  rules are the convolution op and the weight-gradient GEMM, so second derivatives (WGAN-GP) stay on
  these rules. (The lhs-dilated ``lax`` convolution this replaced works on the s^2-times larger
  dilated input; BENCHMARKS.md has the DCGAN step times before and after.)

``conv_transpose2d`` (PyTorch ``ConvTranspose2d`` semantics) is the adjoint op applied to its
input, with the col2im accumulated in place (see `_col2im`: a BatchNorm usually follows). ``impl="gemm"`` uses
these rules on every backend (on an H100 they were once faster than XLA's own (cuDNN) convolutions, 5-60 % per
DCGAN step in bf16, BENCHMARKS.md, measured while the adjoint was still the lhs-dilated ``lax`` convolution and
the im2col the space-to-depth one); ``impl="xla"`` gives plain ``lax.conv_general_dilated`` and XLA's
gradients; ``impl="auto"`` (the default) is "gemm" on the CPU backend and "xla" on any other, decided from
``jax.default_backend()`` when the convolution is traced. When k is not a multiple
of s the kernel is zero-padded to the next multiple (exact; DCGAN's
4x4/stride-2 layers waste nothing). The tests check values, gradients and second derivatives
against ``lax.conv_general_dilated`` / ``lax.conv_transpose``.
"""
from __future__ import annotations

import functools
import itertools
import operator
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

Array = jax.Array
Pads = tuple[tuple[int, int], tuple[int, int]]
DN = ("NHWC", "HWIO", "NHWC")
PaddingLike = str | int | Sequence[int] | Sequence[tuple[int, int]]
IMPLS = ("auto", "gemm", "xla")

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


def resolve_impl(impl: str) -> str:
    """The concrete form of a conv ``impl``: "gemm" or "xla" as given; "auto": "gemm" on the CPU backend
    (XLA:CPU's own strided-convolution gradients are slow, see the module docstring), "xla" (cuDNN on GPUs)
    on any other."""
    if impl not in IMPLS:
        raise ValueError(f"conv impl must be one of {IMPLS}, got {impl!r}")
    if impl == "auto":
        return "gemm" if jax.default_backend() == "cpu" else "xla"
    return impl


def _use_gemm(impl: str) -> bool:
    """Whether `impl` resolves to the custom-VJP GEMM rules rather than XLA's convolution."""
    return resolve_impl(impl) == "gemm"


def _conv_geometry(x: Array, kernel: Array, strides, padding, allow_str: bool = True):
    s = _pair(strides, "strides")
    (_, h, w, c), (kh, kw) = x.shape, kernel.shape[:2]
    if kernel.ndim != 4 or kernel.shape[2] != c:
        raise ValueError(f"kernel must be [kh, kw, {c}, O] for input {x.shape}, got {kernel.shape}")
    return s, _pads(padding, (h, w), (kh, kw), s, allow_str)


def _out_hw(in_hw: Sequence[int], pads: Pads, kernel_hw: Sequence[int], s: tuple[int, int]) -> tuple[int, int]:
    """Output height and width of a stride-s convolution of an input of size in_hw padded by pads."""
    return tuple((n + lo + hi - k) // st + 1 for n, (lo, hi), k, st in zip(in_hw, pads, kernel_hw, s))  # type: ignore[return-value]


def _im2col(x: Array, kernel_hw: tuple[int, int], s: tuple[int, int], pads: Pads,
            out_hw: tuple[int, int]) -> Array:
    """Patches [B*Ho*Wo, th*s_h*tw*s_w*C], columns in the padded kernel's (kh, kw, C) order.

    Output (i, j) reads rows s_h i + a and columns s_w j + b of the padded input. With
    a = s_h d + r, b = s_w e + q (th = ceil(kh/s_h) coarse rows d, tw coarse columns e) that is
    window (d, r, e) of the free reshape [B, hs, s_h, ws, s_w*C]: th*s_h*tw windows, each a
    contiguous run of s_w*C values per output. (The space-to-depth form this replaced transposed
    the input into s_h*s_w*C-channel blocks first; BENCHMARKS.md has both timings.)
    """
    (b, h, w, c), (kh, kw), (sh, sw), (ho, wo) = x.shape, kernel_hw, s, out_hw
    th, tw = -(-kh // sh), -(-kw // sw)
    hs, ws = ho + th - 1, wo + tw - 1  # coarse rows/cols the windows read
    # lax.pad with a negative high pad crops rows that no output reads.
    xp = lax.pad(x, jnp.zeros((), x.dtype), ((0, 0, 0), (pads[0][0], hs * sh - h - pads[0][0], 0),
                                             (pads[1][0], ws * sw - w - pads[1][0], 0), (0, 0, 0)))
    x5 = xp.reshape(b, hs, sh, ws, sw * c)
    cols = [x5[:, d:d + ho, r, e:e + wo] for d in range(th) for r in range(sh) for e in range(tw)]
    # Stacked on a new second-minor axis (the same memory layout as concatenating on the channel
    # axis): XLA:CPU copies whole rows then, 2.8x faster for DCGAN's Conv_1 patches.
    patches = jnp.stack(cols, axis=-2) if len(cols) > 1 else cols[0]
    return patches.reshape(b * ho * wo, -1)


def _col2im(cols: Array, x_shape: tuple[int, ...], kernel_hw: tuple[int, int], s: tuple[int, int], pads: Pads,
            out_hw: tuple[int, int], in_place: bool = False) -> Array:
    """The transpose of `_im2col`: sums every patch column back onto the input pixel it was read from.

    Window (d, r, e) of output (i, j) came from coarse pixel (i + d, j + e) of the [B, hs, s_h, ws,
    s_w*C] view, so the view is a sum of th*tw shifted copies of the patches (r stays an axis),
    then the forward's pad is undone. ``in_place=False`` writes the sum as pads and adds, which
    XLA:CPU compiles to one loop fusion when the result has one elementwise consumer (the critic's
    input gradient, before the LeakyReLU backward). Before a BatchNorm (the generator's forward)
    that form is re-added inside each BatchNorm fusion from th*tw materialised padded copies, so
    ``in_place=True`` accumulates the copies into one buffer with dynamic-update-slices, which XLA
    keeps as a buffer of its own (BENCHMARKS.md: generator non-matmul ops 48 -> 35 ms per NS step on one core).
    """
    (b, h, w, c), (kh, kw), (sh, sw), (ho, wo) = x_shape, kernel_hw, s, out_hw
    th, tw = -(-kh // sh), -(-kw // sw)
    hs, ws = ho + th - 1, wo + tw - 1
    t = cols.reshape(b, ho, wo, th, sh, tw, sw * c)
    zero = jnp.zeros((), cols.dtype)

    def shifted(d: int, e: int) -> Array:
        return lax.pad(t[:, :, :, d, :, e], zero, ((0, 0, 0), (d, hs - ho - d, 0), (e, ws - wo - e, 0),
                                                   (0, 0, 0), (0, 0, 0)))

    if in_place:
        acc = shifted(0, 0)
        for d, e in itertools.product(range(th), range(tw)):
            if d or e:
                at = (0, d, e, 0, 0)
                window = lax.dynamic_slice(acc, at, (b, ho, wo, sh, sw * c)) + t[:, :, :, d, :, e]
                acc = lax.dynamic_update_slice(acc, window, at)
    else:
        acc = functools.reduce(operator.add, itertools.starmap(shifted, itertools.product(range(th), range(tw))))
    xp = acc.transpose(0, 1, 3, 2, 4).reshape(b, hs * sh, ws * sw, c)
    return lax.pad(xp, zero, ((0, 0, 0), (-pads[0][0], h + pads[0][0] - hs * sh, 0),
                              (-pads[1][0], w + pads[1][0] - ws * sw, 0), (0, 0, 0)))


def _padded_kernel(kernel: Array, s: tuple[int, int]) -> Array:
    """Kernel [kh, kw, I, O] -> [th*s_h*tw*s_w*I, O]: zero-padded to multiples of s, in _im2col's column order."""
    (kh, kw, _, co), (sh, sw) = kernel.shape, s
    pad = ((0, -kh % sh), (0, -kw % sw), (0, 0), (0, 0))
    return jnp.pad(kernel, pad).reshape(-1, co)


def _weight_gradient(x: Array, g: Array, kernel_hw: tuple[int, int], s: tuple[int, int], pads: Pads) -> Array:
    """dW[a,b,c,o] = sum_{n,i,j} xpad[n, s_h i + a, s_w j + b, c] g[n,i,j,o]: one batch-major GEMM.

    g^T @ im2col(x) gives [O, K] (the small output-channel dimension leading, the form YNNPACK runs
    fast); the optimisation barrier keeps XLA from folding the transpose back into the product. The
    im2col is the forward's (XLA's CSE merges the two).
    """
    (_, _, _, c), (_, ho, wo, co) = x.shape, g.shape
    (kh, kw), (sh, sw) = kernel_hw, s
    patches = _im2col(x, kernel_hw, s, pads, (ho, wo))
    dw = lax.dot_general(g.reshape(-1, co), patches, (((0,), (0,)), ((), ())))
    dw = lax.optimization_barrier(dw).reshape(co, kh + -kh % sh, kw + -kw % sw, c)
    return dw.transpose(1, 2, 3, 0)[:kh, :kw]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv_op(x: Array, kernel: Array, s: tuple[int, int], pads: Pads) -> Array:
    """The convolution as im2col GEMM (its patches are reused by the weight gradient)."""
    b, co = x.shape[0], kernel.shape[3]
    ho, wo = _out_hw(x.shape[1:3], pads, kernel.shape[:2], s)
    y = _im2col(x, kernel.shape[:2], s, pads, (ho, wo)) @ _padded_kernel(kernel, s)
    return y.reshape(b, ho, wo, co)


def _conv_op_fwd(x, kernel, s, pads):
    return _conv_op(x, kernel, s, pads), (x, kernel)


def _conv_op_bwd(s, pads, res, g):
    x, kernel = res
    return (_conv_adjoint_op(g, kernel, s, pads, x.shape[1:3], False),
            _weight_gradient(x, g, kernel.shape[:2], s, pads))


_conv_op.defvjp(_conv_op_fwd, _conv_op_bwd)


def _conv_adjoint(y: Array, kernel: Array, s: tuple[int, int], pads: Pads, in_hw: tuple[int, int]) -> Array:
    """The adjoint of x -> conv(x, kernel) (x of spatial size in_hw), applied to y.

    An lhs-dilated correlation with the flipped, in/out-swapped kernel: pads (k-1-lo, in + lo - (out-1) s - 1).
    """
    k = kernel.shape[:2]
    adj = [(k[d] - 1 - pads[d][0], in_hw[d] + pads[d][0] - (y.shape[1 + d] - 1) * s[d] - 1) for d in range(2)]
    return lax.conv_general_dilated(y, jnp.swapaxes(kernel[::-1, ::-1], 2, 3), (1, 1), adj, lhs_dilation=s,
                                    dimension_numbers=DN)


def _conv_adjoint_gemm(y: Array, kernel: Array, s: tuple[int, int], pads: Pads, in_hw: tuple[int, int],
                       in_place: bool) -> Array:
    """`_conv_adjoint` as one GEMM ``y @ K^T`` and col2im, the transpose of the forward's im2col
    (``in_place``: see `_col2im`; True for a layer's output, False for an input gradient)."""
    (b, ho, wo, co), c = y.shape, kernel.shape[2]
    cols = jnp.matmul(y.reshape(-1, co), _padded_kernel(kernel, s).T, preferred_element_type=jnp.float32)
    return _col2im(cols, (b, *in_hw, c), kernel.shape[:2], s, pads, (ho, wo), in_place).astype(y.dtype)


_conv_adjoint_op = jax.custom_vjp(_conv_adjoint_gemm, nondiff_argnums=(2, 3, 4, 5))


def _conv_adjoint_op_fwd(y, kernel, s, pads, in_hw, in_place):
    return _conv_adjoint_op(y, kernel, s, pads, in_hw, in_place), (y, kernel)


def _conv_adjoint_op_bwd(s, pads, in_hw, in_place, res, g):
    # <adjoint(y), g> = <y, conv(g)>: d/dy = conv(g, kernel), d/dkernel = the conv's weight gradient at (g, y).
    y, kernel = res
    return _conv_op(g, kernel, s, pads), _weight_gradient(g, y, kernel.shape[:2], s, pads)


_conv_adjoint_op.defvjp(_conv_adjoint_op_fwd, _conv_adjoint_op_bwd)


def conv2d(x: Array, kernel: Array, strides: int | Sequence[int] = 1,
           padding: PaddingLike = 0, impl: str = "auto") -> Array:
    """y[n,i,j,o] = sum_{a,b,c} xpad[n, s_h i + a, s_w j + b, c] kernel[a,b,c,o].

    Equals ``lax.conv_general_dilated(x, kernel, strides, pads, dimension_numbers=('NHWC',
    'HWIO', 'NHWC'))``; with the GEMM rules (``impl``, see the module docstring) computed as im2col
    GEMMs. x: [B, H, W, I]; kernel: [kh, kw, I, O]; padding as in ``nn.Conv`` ('SAME', 'VALID',
    int, two ints, two pairs).
    """
    s, pads = _conv_geometry(x, kernel, strides, padding)
    ho, wo = _out_hw(x.shape[1:3], pads, kernel.shape[:2], s)
    if ho < 1 or wo < 1:
        raise ValueError(f"kernel {kernel.shape[:2]} larger than padded input {x.shape[1:3]} with padding {pads}")
    if _use_gemm(impl):
        return _conv_op(x, kernel, s, pads)
    return lax.conv_general_dilated(x, kernel, s, pads, dimension_numbers=DN)


def conv_transpose2d(x: Array, kernel: Array, strides: int | Sequence[int] = 1,
                     padding: int | Sequence[int] | Sequence[tuple[int, int]] = 0, impl: str = "auto") -> Array:
    """PyTorch ConvTranspose2d: y[n, s_h i + a - lo_h, s_w j + b - lo_w, o] += x[n,i,j,c] kernel[a,b,c,o].

    x: [B, H, W, I]; kernel: [kh, kw, I, O] (torch's weight ``[I, O, kh, kw]`` permuted (2, 3, 0, 1));
    padding p crops p rows/cols from each side (a pair (lo, hi) per dim crops lo and hi; a negative
    hi adds rows, like torch's output_padding). Output H' = (H - 1) s_h + kh - lo_h - hi_h.
    Equals ``lax.conv_transpose(x, kernel.swapaxes(2, 3), strides, [(kh-1-lo, kh-1-hi), ...],
    transpose_kernel=True)``: the input-adjoint of ``conv2d(., kernel.swapaxes(2, 3), strides, padding)``.
    """
    s, pads = _conv_geometry(x, kernel, strides, padding, allow_str=False)
    out_hw = tuple((n - 1) * st + k - lo - hi for n, st, k, (lo, hi) in zip(x.shape[1:3], s, kernel.shape[:2], pads))
    if min(out_hw) < 1:
        raise ValueError(f"padding {pads} crops the whole output of size "
                         f"{tuple((n - 1) * st + k for n, st, k in zip(x.shape[1:3], s, kernel.shape[:2]))}")
    if _use_gemm(impl):
        return _conv_adjoint_op(x, jnp.swapaxes(kernel, 2, 3), s, pads, out_hw, True)
    return _conv_adjoint(x, jnp.swapaxes(kernel, 2, 3), s, pads, out_hw)


class _ConvLayer(nn.Module):
    """The parameters and dtype handling shared by `Conv` and `ConvTranspose`; `op` is the convolution."""
    features: int
    kernel_size: int | Sequence[int]
    strides: int | Sequence[int] = 1
    padding: PaddingLike = 0
    use_bias: bool = True
    dtype: Any = None
    param_dtype: Any = jnp.float32
    kernel_init: Any = DCGAN_INIT
    bias_init: Any = nn.initializers.zeros
    impl: str = "auto"
    op: ClassVar[Callable[..., Array]]

    @nn.compact
    def __call__(self, x: Array) -> Array:
        kh, kw = _pair(self.kernel_size, "kernel_size")
        kernel = self.param("kernel", self.kernel_init, (kh, kw, x.shape[-1], self.features), self.param_dtype)
        bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype) if self.use_bias else None
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        y = self.op(x, kernel, self.strides, self.padding, self.impl)
        return y if bias is None else y + bias


class Conv(_ConvLayer):
    """2-D convolution on NHWC inputs, drop-in for ``nn.Conv`` (params ``kernel`` [kh, kw, I, O], ``bias``).

    Computes in ``dtype`` (e.g. bfloat16; None: promoted input/param dtype) with parameters
    stored in ``param_dtype``. Default init N(0, 0.02) as in DCGAN (Radford et al., 2016).
    ``impl``: "auto" (the default: "gemm" on CPU, "xla" elsewhere), "gemm" (this module's rules) or "xla"
    (``lax.conv_general_dilated``).
    """
    padding: PaddingLike = "SAME"
    op = staticmethod(conv2d)


class ConvTranspose(_ConvLayer):
    """Transposed 2-D convolution with PyTorch ``ConvTranspose2d`` semantics on NHWC inputs.

    ``ConvTranspose(f, 4, strides=2, padding=1)`` doubles H and W. Params ``kernel`` [kh, kw, I, O]
    (torch weight permuted (2, 3, 0, 1)) and ``bias``; ``dtype``/``param_dtype``/init/``impl`` as in ``Conv``.
    """
    padding: int | Sequence[int] | Sequence[tuple[int, int]] = 0
    op = staticmethod(conv_transpose2d)
