"""gan_jax.models.layers equals lax's convolutions in outputs, first and second derivatives."""
import functools
import re

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from gan_jax.models import layers
from gan_jax.models.layers import Conv, ConvTranspose, conv2d, conv_transpose2d

DN = ("NHWC", "HWIO", "NHWC")
F32 = dict(rtol=2e-5, atol=2e-5)

# (batch, H, W, in, out, kernel, stride, padding) — strides 1/2, kernels 3/4/5, int/str/asymmetric pads.
CONV_CASES = [
    (2, 8, 8, 3, 5, 4, 2, 1),      # DCGAN critic layer
    (2, 4, 4, 6, 1, 4, 1, 0),      # DCGAN critic head
    (2, 9, 7, 3, 4, 3, 2, 1),      # kernel not a multiple of the stride, odd sizes
    (1, 8, 10, 2, 3, 5, 2, 2),
    (2, 6, 6, 4, 3, 3, 1, "SAME"),
    (2, 7, 7, 3, 2, 3, 2, "VALID"),
    (1, 8, 8, 3, 2, 4, 2, ((0, 1), (2, 1))),
    (2, 5, 5, 3, 2, 1, 1, 0),      # 1x1: a plain matmul
]
TCONV_CASES = [
    (2, 1, 1, 7, 5, 4, 1, 0),      # DCGAN generator stem: z -> 4x4
    (2, 4, 4, 6, 3, 4, 2, 1),      # DCGAN upsampling: doubles H, W
    (2, 5, 3, 3, 4, 3, 2, 1),
    (1, 4, 4, 2, 3, 5, 2, 2),
    (2, 6, 6, 4, 3, 3, 1, 1),
    (1, 4, 5, 3, 2, 3, 2, ((1, 0), (0, 1))),  # output_padding-like asymmetric crop
]


def _explicit(padding, hw, k, s):
    if isinstance(padding, str):
        return lax.padtype_to_pads(hw, (k, k), (s, s), padding)
    return [(padding, padding)] * 2 if isinstance(padding, int) else padding


def _conv_ref(x, w, s, padding):
    return lax.conv_general_dilated(x, w, (s, s), _explicit(padding, x.shape[1:3], w.shape[0], s),
                                    dimension_numbers=DN)


def _tconv_ref(x, w, s, padding):
    k = w.shape[0]
    pads = [(k - 1 - lo, k - 1 - hi) for lo, hi in _explicit(padding, None, k, s)]
    return lax.conv_transpose(x, w.swapaxes(2, 3), (s, s), pads, dimension_numbers=DN, transpose_kernel=True)


def _inputs(case, dtype=jnp.float32):
    b, h, w, ci, co, k, _, _ = case
    kx, kw = jax.random.split(jax.random.key(sum(map(hash, map(str, case))) % 2**31))
    return jax.random.normal(kx, (b, h, w, ci), dtype), jax.random.normal(kw, (k, k, ci, co), dtype) * 0.3


PAIRS = ([(conv2d, _conv_ref, c) for c in CONV_CASES] + [(conv_transpose2d, _tconv_ref, c) for c in TCONV_CASES])
IDS = [f"{f.__name__}-{c}" for f, _, c in PAIRS]


def _value_and_grads(fn, s, p):
    """x, w -> (fn(x, w), d/dx, d/dw) of a nonlinear scalar of the output."""
    def f(x, w):
        y, vjp = jax.vjp(lambda x, w: fn(x, w, s, p), x, w)
        return (y, *vjp(jnp.cos(y.astype(jnp.float32)).astype(y.dtype)))
    return f


@pytest.mark.parametrize("fn,ref,case", PAIRS, ids=IDS)
def test_outputs_and_gradients_match_lax(fn, ref, case):
    x, w = _inputs(case)
    s, p = case[6], case[7]
    ours, theirs = jax.jit(lambda x, w: (_value_and_grads(fn, s, p)(x, w), _value_and_grads(ref, s, p)(x, w)))(x, w)
    chex.assert_equal_shape([ours[0], theirs[0]])
    np.testing.assert_allclose(ours[0], theirs[0], **F32)
    for a, b in zip(ours[1:], theirs[1:]):  # input and kernel gradients
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("fn,ref,case", [PAIRS[0], PAIRS[2], PAIRS[len(CONV_CASES) + 1], PAIRS[len(CONV_CASES) + 2]],
                         ids=["conv-dcgan", "conv-k3s2", "tconv-dcgan", "tconv-k3s2"])
def test_second_order_gradient_matches_lax(fn, ref, case):
    """WGAN-GP differentiates the input gradient's norm w.r.t. the weights: grad-of-grad must agree."""
    x, w = _inputs(case)
    s, p = case[6], case[7]

    def penalty(f):
        def gp(w, x):
            gx = jax.grad(lambda x: jnp.sum(jnp.tanh(f(x, w, s, p))))(x)
            return jnp.mean((jnp.sqrt(jnp.sum(gx ** 2, axis=(1, 2, 3))) - 1.0) ** 2)
        return jax.grad(gp, argnums=(0, 1))

    ours, theirs = jax.jit(lambda w, x: (penalty(fn)(w, x), penalty(ref)(w, x)))(w, x)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-4)


@pytest.mark.parametrize("fn,ref,case", [PAIRS[0], PAIRS[len(CONV_CASES) + 1]], ids=["conv", "tconv"])
def test_vmap_over_a_leading_axis_matches_loop(fn, ref, case):
    x, w = _inputs(case)
    s, p = case[6], case[7]
    ws = jnp.stack([w, 2.0 * w, -w])
    ys, refs = jax.jit(lambda ws: (jax.vmap(lambda w: fn(x, w, s, p))(ws), [ref(x, w, s, p) for w in ws]))(ws)
    for i in range(3):
        np.testing.assert_allclose(ys[i], refs[i], **F32)


@pytest.mark.parametrize("fn,ref,case", [PAIRS[0], PAIRS[len(CONV_CASES) + 1]], ids=["conv", "tconv"])
def test_bfloat16_close_to_f32_reference(fn, ref, case):
    x, w = _inputs(case)
    s, p = case[6], case[7]
    bf = jnp.bfloat16
    (y, gx, gw), (y_ref, _, gw_ref) = jax.jit(lambda x, w: (_value_and_grads(fn, s, p)(x.astype(bf), w.astype(bf)),
                                                          _value_and_grads(ref, s, p)(x, w)))(x, w)
    assert y.dtype == gx.dtype == gw.dtype == jnp.bfloat16
    np.testing.assert_allclose(y.astype(jnp.float32), y_ref, rtol=3e-2, atol=3e-2)
    np.testing.assert_allclose(gw.astype(jnp.float32), gw_ref, rtol=5e-2, atol=5e-2 * float(jnp.abs(gw_ref).max()))


def test_modules_match_functions_shapes_and_init():
    x = jax.random.normal(jax.random.key(1), (4, 8, 8, 16))
    conv = Conv(32, 4, strides=2, padding=1, use_bias=False)
    tconv = ConvTranspose(8, 4, strides=2, padding=1)

    @jax.jit
    def run(x):
        pc, pt = conv.init(jax.random.key(2), x), tconv.init(jax.random.key(3), x)
        return pc, pt, conv.apply(pc, x), tconv.apply(pt, x)

    pc, pt, yc, yt = run(x)
    chex.assert_shape(pc["params"]["kernel"], (4, 4, 16, 32))
    assert "bias" not in pc["params"]
    np.testing.assert_allclose(jnp.std(pc["params"]["kernel"]), 0.02, rtol=0.1)
    np.testing.assert_allclose(yc, _conv_ref(x, pc["params"]["kernel"], 2, 1), **F32)
    chex.assert_shape(yt, (4, 16, 16, 8))  # torch ConvTranspose2d(k=4, s=2, p=1) doubles H and W
    np.testing.assert_allclose(yt, _tconv_ref(x, pt["params"]["kernel"], 2, 1) + pt["params"]["bias"], **F32)


def test_module_bf16_compute_keeps_f32_params():
    x = jax.random.normal(jax.random.key(1), (2, 8, 8, 3))
    for m in (Conv(4, 3, dtype=jnp.bfloat16), ConvTranspose(4, 4, 2, 1, dtype=jnp.bfloat16)):
        v, y = jax.jit(lambda x: (m.init(jax.random.key(0), x), m.apply(m.init(jax.random.key(0), x), x)))(x)
        assert {a.dtype for a in jax.tree.leaves(v)} == {jnp.dtype(jnp.float32)}
        assert y.dtype == jnp.bfloat16


def test_spectral_norm_wrapping_conv_estimates_top_singular_value():
    """nn.SpectralNorm around our Conv: sigma (batch_stats) -> top singular value of kernel.reshape(-1, O)."""
    x = jnp.ones((2, 8, 8, 3))
    sn = nn.SpectralNorm(Conv(16, 4, strides=2, padding=1, use_bias=False), n_steps=1)

    @jax.jit
    def run(x):
        v = sn.init(jax.random.key(0), x, update_stats=True)
        stats = jax.lax.fori_loop(0, 30, lambda _, st: sn.apply({**v, "batch_stats": st}, x, update_stats=True,
                                                                mutable=["batch_stats"])[1]["batch_stats"],
                                  v["batch_stats"])
        v = {**v, "batch_stats": stats}
        return v, sn.apply(v, x, update_stats=False)

    v, y = run(x)
    kernel = v["params"]["layer_instance"]["kernel"]
    sigma = jax.tree.leaves({k: s for k, s in v["batch_stats"].items() if k.endswith("sigma")})[0]
    top = np.linalg.svd(np.asarray(kernel).reshape(-1, 16), compute_uv=False)[0]
    np.testing.assert_allclose(sigma, top, rtol=1e-3)
    np.testing.assert_allclose(y, _conv_ref(x, kernel / sigma, 2, 1), **F32)


@pytest.mark.parametrize("bad,match", [
    (dict(strides=0), "strides"), (dict(kernel_size=(3, 3, 3)), "kernel_size"), (dict(padding="FULL"), "padding"),
])
def test_bad_arguments_raise_value_error(bad, match):
    args = dict(features=2, kernel_size=3, strides=1, padding=1) | bad
    with pytest.raises(ValueError, match=match):
        Conv(**args).init(jax.random.key(0), jnp.ones((1, 6, 6, 2)))
    with pytest.raises(ValueError, match="padding"):
        conv_transpose2d(jnp.ones((1, 4, 4, 2)), jnp.ones((3, 3, 2, 2)), 1, "SAME")
    with pytest.raises(ValueError, match="kernel"):
        conv2d(jnp.ones((1, 4, 4, 2)), jnp.ones((3, 3, 5, 2)))


@pytest.mark.parametrize("fn,case", [(conv2d, CONV_CASES[0]), (conv_transpose2d, TCONV_CASES[1])], ids=["conv", "tconv"])
def test_impl_choice_same_values_and_second_order_gradients(fn, case):
    """impl="gemm" (the custom-VJP rules, the default on CPU) and impl="xla" (plain XLA convolutions) agree
    to second order."""
    x, w = _inputs(case)
    s, p = case[6], case[7]

    def gp(impl):
        def f(w, x):
            gx = jax.grad(lambda x: jnp.sum(jnp.tanh(fn(x, w, s, p, impl))))(x)
            return jnp.sum(jnp.sin(fn(x, w, s, p, impl))) + jnp.mean((jnp.sqrt(jnp.sum(gx ** 2, axis=(1, 2, 3))) - 1) ** 2)
        return jax.value_and_grad(f, argnums=(0, 1))

    gemm, xla = jax.jit(lambda w, x: (gp("gemm")(w, x), gp("xla")(w, x)))(w, x)
    for a, b in zip(jax.tree.leaves(gemm), jax.tree.leaves(xla)):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-4)
    assert "custom_vjp_call" in str(jax.make_jaxpr(lambda x, w: fn(x, w, s, p))(x, w))
    assert "custom_vjp_call" not in str(jax.make_jaxpr(lambda x, w: fn(x, w, s, p, "xla"))(x, w))
    with pytest.raises(ValueError, match=r"conv impl must be one of \('auto', 'gemm', 'xla'\), got 'cudnn'"):
        fn(x, w, s, p, "cudnn")


@pytest.mark.parametrize("fn,case", [(conv2d, CONV_CASES[0]), (conv_transpose2d, TCONV_CASES[1])], ids=["conv", "tconv"])
def test_auto_impl_is_gemm_on_cpu_bit_for_bit(fn, case):
    """impl="auto" (the default) resolves from the backend at trace time: the GEMM rules on CPU, so its values
    and gradients equal impl="gemm"'s exactly here."""
    assert jax.default_backend() == "cpu"
    assert layers.resolve_impl("auto") == "gemm"
    assert [layers.resolve_impl(i) for i in ("gemm", "xla")] == ["gemm", "xla"]
    with pytest.raises(ValueError, match=r"conv impl must be one of \('auto', 'gemm', 'xla'\), got 'cudnn'"):
        layers.resolve_impl("cudnn")
    x, w = _inputs(case)
    s, p = case[6], case[7]
    value_and_grad = lambda impl: jax.value_and_grad(lambda w, x: jnp.sum(jnp.sin(fn(x, w, s, p, impl))), (0, 1))
    auto, gemm = jax.jit(lambda w, x: (value_and_grad("auto")(w, x), value_and_grad("gemm")(w, x)))(w, x)
    for a, b in zip(jax.tree.leaves(auto), jax.tree.leaves(gemm)):
        np.testing.assert_array_equal(a, b)
    assert "custom_vjp_call" in str(jax.make_jaxpr(lambda x, w: fn(x, w, s, p, "auto"))(x, w))


def test_conv_models_default_to_auto_impl():
    from gan_jax.models import dcgan, metz, patchgan, unet
    for cls in (dcgan.DCGANGenerator, dcgan.DCGANDiscriminator, metz.MetzGenerator, metz.MetzDiscriminator):
        assert cls.__dataclass_fields__["conv_impl"].default == "auto", cls
    for cls in (unet.UNet, patchgan.PatchGAN):
        assert cls.__dataclass_fields__["conv_impl"].default == "auto", cls


def _bf16_nets() -> dict:
    """name -> (dtype -> net, its inputs): every net that takes a `dtype` beside the GAN nets (test_dcgan, ...)."""
    from gan_jax.metrics.classifier import LeNet
    from gan_jax.models.patchgan import PatchGAN
    from gan_jax.models.unet import UNet
    from gan_jax.tasks.adda import DomainDiscriminator, Encoder
    from gan_jax.vae import VAE
    x = jax.random.uniform(jax.random.key(1), (2, 28, 28, 1), minval=-1.0, maxval=1.0)
    return {"unet": (lambda dtype: UNet(features=(8, 16, 16), dropout=0.0, dtype=dtype), (x,)),
            "patchgan": (lambda dtype: PatchGAN(features=8, n_layers=1, dtype=dtype), (x,)),
            "vae": (lambda dtype: VAE(latent_dim=4, channels=(4, 8), hidden=16, dtype=dtype),
                    ((x + 1.0) / 2.0, jax.random.normal(jax.random.key(2), (2, 4)))),
            "adda_encoder": (lambda dtype: Encoder(channels=(4, 8), hidden=16, dtype=dtype), (x,)),
            "adda_discriminator": (lambda dtype: DomainDiscriminator(hidden=16, dtype=dtype),
                                   (jax.random.normal(jax.random.key(3), (2, 16)),)),
            "lenet": (lambda dtype: LeNet(channels=(8, 16), hidden=32, dtype=dtype), (x,))}


# bf16 keeps 8 significant bits (each rounding errs by up to 2^-8 ≈ 0.4 %, ~3 significant digits); through these
# few layers the outputs moved by 0.1-2 % of their largest magnitude (measured; 2 %: the VAE's small μ at init),
# so the bf16 net must stay within 5 % of it.
BF16_ATOL = 0.05


@pytest.mark.parametrize("net", ["unet", "patchgan", "vae", "adda_encoder", "adda_discriminator", "lenet"])
def test_nets_bf16_compute_close_to_f32_with_f32_params(net):
    """The translation nets, the VAE, ADDA's nets and the LeNet classifier take the bf16 option as DCGAN does:
    every layer computes in bfloat16, parameters and outputs are float32, and the outputs are within bf16
    rounding of the float32 net's at the same parameters."""
    make, inputs = _bf16_nets()[net]
    f32, bf16 = make(jnp.float32), make(jnp.bfloat16)
    variables = bf16.init(jax.random.key(0), *inputs)
    assert {a.dtype for a in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}
    chex.assert_trees_all_equal_shapes(variables, f32.init(jax.random.key(0), *inputs))

    @jax.jit
    def run(v, *inputs):
        y16, seen = bf16.apply(v, *inputs, capture_intermediates=True, mutable=["intermediates"])
        return f32.apply(v, *inputs), y16, seen["intermediates"]

    y32, y16, seen = run(variables, *inputs)
    layers = {k: jax.tree.leaves(v) for k, v in seen.items() if k != "__call__"}  # the net's own output aside
    assert layers and all(a.dtype == jnp.bfloat16 for out in layers.values() for a in out), layers
    for a32, a16 in zip(jax.tree.leaves(y32), jax.tree.leaves(y16), strict=True):
        assert a16.dtype == jnp.float32 and a16.shape == a32.shape
        assert bool(jnp.all(jnp.isfinite(a16)))
        np.testing.assert_allclose(a16, a32, atol=BF16_ATOL * float(jnp.max(jnp.abs(a32))), rtol=0)
        assert float(jnp.max(jnp.abs(a16 - a32))) > 0  # the bf16 net does compute in bf16


@pytest.mark.parametrize("fn,case", [(conv2d, CONV_CASES[0]), (conv_transpose2d, TCONV_CASES[0]),
                                     (conv_transpose2d, TCONV_CASES[1])], ids=["conv", "tconv-stem", "tconv"])
def test_gemm_rules_leave_no_convolution_for_xla_to_second_order(fn, case):
    """The point of impl="gemm": values, gradients and the WGAN-GP double backward are all GEMMs and
    data movement, no XLA convolution (whose CPU weight gradients and lhs-dilated adjoints are slow)."""
    x, w = _inputs(case)
    s, p = case[6], case[7]

    def hlo(impl):
        def f(w, x):
            gx = jax.grad(lambda x: jnp.sum(jnp.tanh(fn(x, w, s, p, impl))))(x)
            return jnp.sum(jnp.sin(fn(x, w, s, p, impl))) + jnp.sum(gx ** 2)
        return jax.jit(jax.grad(f, argnums=(0, 1))).lower(w, x).as_text()

    assert "convolution" not in hlo("gemm")
    assert "convolution" in hlo("xla")


def test_im2col_concatenates_whole_channel_rows():
    """The im2col's windows are joined on a second-minor axis: XLA:CPU concatenates along the minor
    axis element by element (6.7 against 2.4 ms for DCGAN's Conv_1 patches, BENCHMARKS.md)."""
    x, w = _inputs(CONV_CASES[0])
    s, p = CONV_CASES[0][6], CONV_CASES[0][7]
    text = jax.jit(lambda x, w: conv2d(x, w, s, p)).lower(x, w).as_text()
    concats = re.findall(r"stablehlo\.concatenate .*dim = (\d+) : .*-> tensor<([0-9x]+)x\w+>", text)
    assert concats, text
    for dim, shape in concats:
        assert int(dim) < len(shape.split("x")) - 1, (dim, shape)


@pytest.mark.parametrize("in_place", [False, True], ids=["fused_sum", "in_place"])
@pytest.mark.parametrize("case", CONV_CASES, ids=str)
def test_col2im_is_the_transpose_of_im2col(case, in_place):
    """Both forms of the hand-written col2im equal jax.linear_transpose of the im2col (paddings that
    crop included)."""
    x, w = _inputs(case)
    s = (case[6],) * 2
    pads = layers._pads(case[7], x.shape[1:3], w.shape[:2], s, allow_str=True)
    out_hw = layers._out_hw(x.shape[1:3], pads, w.shape[:2], s)
    im2col = functools.partial(layers._im2col, kernel_hw=w.shape[:2], s=s, pads=pads, out_hw=out_hw)
    cols = jax.random.normal(jax.random.key(1), im2col(x).shape)
    (expected,) = jax.linear_transpose(im2col, x)(cols)
    chex.assert_trees_all_close(layers._col2im(cols, x.shape, w.shape[:2], s, pads, out_hw, in_place), expected,
                                **F32)


def test_layer_outputs_accumulate_col2im_in_place_and_input_gradients_do_not():
    """A transposed convolution's output (BatchNorm follows in a generator) is accumulated with
    dynamic-update-slices; a convolution's input gradient (one elementwise consumer) keeps the fused
    sum of pads (BENCHMARKS.md: each form is the faster one in its place on XLA:CPU)."""
    x, w = _inputs(TCONV_CASES[1])
    tconv = jax.jit(lambda x, w: conv_transpose2d(x, w, 2, 1)).lower(x, w).as_text()
    assert tconv.count("stablehlo.dynamic_update_slice") == 3, tconv
    x, w = _inputs(CONV_CASES[0])
    input_grad = jax.jit(jax.grad(lambda x: jnp.sum(jnp.sin(conv2d(x, w, 2, 1))))).lower(x).as_text()
    assert "dynamic_update_slice" not in input_grad
    assert input_grad.count("stablehlo.pad") >= 4, input_grad


@pytest.mark.parametrize("case", CONV_CASES, ids=str)
def test_forward_convolution_transposes_nothing(case):
    """The forward GEMM's operands are pads, reshapes and slices of the input and the kernel. The
    space-to-depth im2col this replaced transposed both; its Conv_1 patches took 5.95 against 1.63 ms
    on one core (BENCHMARKS.md)."""
    x, w = _inputs(case)
    text = jax.jit(lambda x, w: conv2d(x, w, case[6], case[7])).lower(x, w).as_text()
    assert "dot_general" in text and "stablehlo.transpose" not in text, text
