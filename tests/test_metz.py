"""Metz et al. 2016's Stacked-MNIST nets (PacGAN Table 3): sizes by formula, TF 'SAME' transposed
convolutions, packing widths, bf16 compute."""
import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from gan_jax.models import build_critic, build_generator
from gan_jax.models.layers import ConvTranspose
from gan_jax.models.metz import MetzDiscriminator, MetzGenerator, same_transpose_padding, side_sizes

KEY = jax.random.key(0, impl="rbg")


def _count(tree) -> int:
    return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(tree))


def _init(net, shape):
    return jax.jit(functools.partial(net.init, train=False))(KEY, jnp.zeros(shape))


def test_parameter_counts_equal_pacgans_nets():
    """Every layer of PacGAN's TensorFlow nets (linear/conv with bias, BN with scale and offset)."""
    g_params = _init(MetzGenerator(), (1, 256))["params"]
    assert _count(g_params) == ((256 * 4 * 4 * 64 + 1024) + 2 * 64 + (9 * 64 * 32 + 32) + 2 * 32
                                + (9 * 32 * 16 + 16) + 2 * 16 + (9 * 16 * 8 + 8) + 2 * 8 + (9 * 8 * 3 + 3))
    for widths, pack in (((2, 4, 8), 1), ((4, 8, 16), 2), ((2, 4, 8), 4)):
        d_params = _init(MetzDiscriminator(channels=3 * pack, widths=widths), (1, 28, 28, 3 * pack))["params"]
        a, b, c = widths
        assert _count(d_params) == ((9 * 3 * pack * a + a) + 2 * a + (9 * a * b + b) + 2 * b + (9 * b * c + c)
                                    + 2 * c + (4 * 4 * c + 1))


def test_sides_and_same_padding():
    assert side_sizes(28, 3) == [28, 14, 7, 4]
    assert [same_transpose_padding(i, o, 3, 2) for i, o in ((4, 7), (7, 14), (14, 28))] == [(1, 1), (0, 1), (0, 1)]
    with pytest.raises(ValueError, match="no 'SAME' transposed convolution maps side 4 to 9"):
        same_transpose_padding(4, 9, 3, 2)


@pytest.mark.parametrize("n_in,n_out", [(4, 7), (7, 14), (14, 28)])
def test_transposed_convolutions_are_tf_same_conv2d_transpose(n_in, n_out):
    """TF's conv2d_transpose(padding='SAME', output_shape=n_out) is the input-gradient of the 'SAME'
    stride-2 convolution from n_out to n_in; the generator's layers must be exactly that."""
    k1, k2 = jax.random.split(jax.random.key(1))
    y = jax.random.normal(k1, (2, n_in, n_in, 5))
    layer = ConvTranspose(3, 3, 2, (same_transpose_padding(n_in, n_out, 3, 2),) * 2, use_bias=False)
    params = layer.init(k2, y)
    kernel = params["params"]["kernel"]  # [3, 3, I=5, O=3]
    conv = lambda x: lax.conv_general_dilated(x, jnp.swapaxes(kernel, 2, 3), (2, 2), "SAME",  # noqa: E731
                                              dimension_numbers=("NHWC", "HWIO", "NHWC"))
    _, vjp = jax.vjp(conv, jnp.zeros((2, n_out, n_out, 3)))
    chex.assert_trees_all_close(layer.apply(params, y), vjp(y)[0], atol=1e-5)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_generator_and_packed_critic_through_the_registry(dtype):
    g = build_generator({"name": "metz"}, dtype)
    d = build_critic({"name": "metz", "channels": 6, "widths": (4, 8, 16)}, dtype)
    g_vars = _init(g, (1, 256))
    z = jax.random.normal(jax.random.key(2), (4, 256))
    x, _ = g.apply(g_vars, z, train=True, mutable=["batch_stats"])
    chex.assert_shape(x, (4, 28, 28, 3))
    assert x.dtype == jnp.float32 and float(jnp.max(jnp.abs(x))) <= 1.0
    assert float(jnp.std(x)) > 0
    packed = jnp.concatenate([x[:2], x[2:]], axis=-1)
    d_vars = _init(d, (1, 28, 28, 6))
    scores, _ = d.apply(d_vars, packed, train=True, mutable=["batch_stats"])
    chex.assert_shape(scores, (2,))
    assert scores.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(scores)))
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(d_vars["params"]))
    with pytest.raises(ValueError, match=r"expected images \[B, 28, 28, 6\], got \(2, 28, 28, 3\)"):
        d.apply(d_vars, x[:2], train=False)
