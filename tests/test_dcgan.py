"""DCGAN generator/critic: shapes, torch-equal parameter counts, init, bf16, spectral and batch norm."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax.models.dcgan import DEFAULT_WIDTHS, DCGANDiscriminator, DCGANGenerator

SMALL = dict(image_size=32, channels=3, widths=(32, 16, 8))


def _init(module, x, seed=0):
    """Variables of `module` for input `x`, drawn in NumPy: N(0, 0.02) params, fresh BN / SN statistics.

    XLA:CPU takes ~1 s to compile each jax.random.normal, so tests other than the init test skip `init`.
    """
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), x, train=False))

    def fill(path, s):
        name = jax.tree_util.keystr(path)
        if "params" in name:
            return jnp.asarray(rng.normal(0.0, 0.02, s.shape), s.dtype)
        if name.endswith("/u']"):
            return jnp.asarray(rng.normal(size=s.shape), s.dtype)
        return jnp.ones(s.shape, s.dtype) if ("var" in name or "sigma" in name) else jnp.zeros(s.shape, s.dtype)
    return jax.tree_util.tree_map_with_path(fill, shapes)


def _n_params(tree) -> int:
    return sum(int(np.prod(a.shape)) for a in jax.tree.leaves(tree))


def _torch_counts(widths, channels, base, zdim, critic_bn):
    """Parameters of torch_reference's nets: bias-free convs (in*out*k*k) plus BatchNorm (2 per channel)."""
    g = zdim * widths[0] * base ** 2 + 2 * widths[0]
    g += sum(a * b * 16 + 2 * b for a, b in zip(widths, widths[1:])) + widths[-1] * channels * 16
    r = widths[::-1]
    d = channels * r[0] * 16 + sum(a * b * 16 + (2 * b if critic_bn else 0) for a, b in zip(r, r[1:]))
    return g, d + r[-1] * base ** 2


@pytest.mark.parametrize("size,channels", [(28, 1), (32, 3), (64, 3)])
@pytest.mark.parametrize("critic_bn", [True, False])
def test_parameter_count_equals_torch_reference(size, channels, critic_bn):
    widths = DEFAULT_WIDTHS[size]
    g = DCGANGenerator(image_size=size, channels=channels)
    d = DCGANDiscriminator(image_size=size, channels=channels, batch_norm=critic_bn)
    gv = jax.eval_shape(lambda: g.init(jax.random.key(0), jnp.zeros((2, 100)), train=False))
    dv = jax.eval_shape(lambda: d.init(jax.random.key(0), jnp.zeros((2, size, size, channels)), train=False))
    base = size // 2 ** len(widths)
    assert (_n_params(gv["params"]), _n_params(dv["params"])) == _torch_counts(widths, channels, base, 100, critic_bn)
    if size == 64 and critic_bn:  # the published PyTorch DCGAN tutorial nets
        assert (_n_params(gv["params"]), _n_params(dv["params"])) == (3_576_704, 2_765_568)
    assert ("batch_stats" in dv) == critic_bn


@pytest.mark.parametrize("size,channels", [(28, 1), (32, 3), (64, 3)])
def test_output_shapes_ranges_and_dtypes(size, channels):
    widths = tuple(8 * 2 ** i for i in range(len(DEFAULT_WIDTHS[size])))[::-1]
    g = DCGANGenerator(image_size=size, channels=channels, widths=widths)
    d = DCGANDiscriminator(image_size=size, channels=channels, widths=widths)
    z = jax.random.normal(jax.random.key(0), (3, 100))

    gv, dv = _init(g, z), _init(d, jnp.zeros((3, size, size, channels)))

    @jax.jit
    def run(z):
        x, _ = g.apply(gv, 5.0 * z, train=True, mutable=["batch_stats"])
        out, _ = d.apply(dv, x, train=True, return_features=True, mutable=["batch_stats"])
        return x, out, d.apply(dv, x, train=True, mutable=["batch_stats"])[0]

    x, (scores, feats), plain_scores = run(z)
    chex.assert_shape(x, (3, size, size, channels))
    assert x.dtype == jnp.float32 and float(jnp.max(jnp.abs(x))) <= 1.0
    chex.assert_shape(scores, (3,))
    assert scores.dtype == jnp.float32
    base = size // 2 ** len(widths)
    chex.assert_shape(feats, (3, base, base, widths[0]))
    np.testing.assert_allclose(plain_scores, scores)


def test_initial_weights_are_dcgan_normal():
    """Radford et al.: all conv weights N(0, 0.02); BatchNorm scale 1, bias 0."""
    gv, dv = jax.jit(lambda z, x: (DCGANGenerator().init(jax.random.key(0), z, train=False),
                                   DCGANDiscriminator().init(jax.random.key(1), x, train=False)))(
        jnp.zeros((2, 100)), jnp.zeros((2, 32, 32, 3)))
    for params in (gv["params"], dv["params"]):
        flat = jax.tree_util.tree_flatten_with_path(params)[0]
        kernels = [v for p, v in flat if "kernel" in jax.tree_util.keystr(p) and v.size >= 4096]
        assert len(kernels) >= 3
        for k in kernels:
            np.testing.assert_allclose(jnp.std(k), 0.02, rtol=0.05)
            np.testing.assert_allclose(jnp.mean(k), 0.0, atol=0.02 * 5 / np.sqrt(k.size))
        for p, v in flat:
            if "BatchNorm" in jax.tree_util.keystr(p):
                np.testing.assert_array_equal(v, 1.0 if "scale" in jax.tree_util.keystr(p) else 0.0)


def test_bfloat16_compute_with_float32_params_and_statistics():
    g32, d32 = DCGANGenerator(**SMALL), DCGANDiscriminator(**SMALL)
    g16, d16 = DCGANGenerator(**SMALL, dtype=jnp.bfloat16), DCGANDiscriminator(**SMALL, dtype=jnp.bfloat16)
    z = jax.random.normal(jax.random.key(0), (8, 100))

    gv, dv = _init(g16, z), _init(d16, jnp.zeros((8, 32, 32, 3)))

    @jax.jit
    def run(z):
        x16, gs = g16.apply(gv, z, train=True, mutable=["batch_stats"])
        x32, _ = g32.apply(gv, z, train=True, mutable=["batch_stats"])
        (s16, f16), _ = d16.apply(dv, x32, train=True, return_features=True, mutable=["batch_stats"])
        s32, _ = d32.apply(dv, x32, train=True, mutable=["batch_stats"])
        return (gv, gs, dv), (x16, x32, s16, s32, f16)

    trees, (x16, x32, s16, s32, f16) = run(z)
    for tree in trees:
        assert {a.dtype for a in jax.tree.leaves(tree)} == {jnp.dtype(jnp.float32)}
    assert f16.dtype == jnp.bfloat16 and s16.dtype == jnp.float32 and x16.dtype == jnp.float32
    np.testing.assert_allclose(x16, x32, atol=0.05)
    np.testing.assert_allclose(s16, s32, atol=0.05 * float(jnp.max(jnp.abs(s32))) + 1e-3)


def test_spectral_norm_critic_has_unit_top_singular_values():
    d = DCGANDiscriminator(**SMALL, batch_norm=False, spectral_norm=True)
    x = jax.random.normal(jax.random.key(0), (4, 32, 32, 3))
    v = _init(d, x)

    @jax.jit
    def power_iterations(v):
        def body(_, stats):
            return d.apply({**v, "batch_stats": stats}, x, train=True, mutable=["batch_stats"])[1]["batch_stats"]
        return jax.lax.fori_loop(0, 200, body, v["batch_stats"])

    stats = power_iterations(v)
    assert sorted(v["params"]) == [f"Conv_{i}" for i in range(4)]  # the same parameter tree as without SN
    for i in range(4):
        kernel = np.asarray(v["params"][f"Conv_{i}"]["kernel"])
        sigma = float(stats[f"SpectralNorm_{i}"][f"Conv_{i}/kernel/sigma"])
        top = np.linalg.svd(kernel.reshape(-1, kernel.shape[-1]), compute_uv=False)[0]
        np.testing.assert_allclose(top / sigma, 1.0, rtol=1e-2)


def test_batch_norm_off_removes_batch_stats():
    d = DCGANDiscriminator(**SMALL, batch_norm=False)
    v = _init(d, jnp.zeros((2, 32, 32, 3)))
    assert set(v) == {"params"}
    x = jax.random.normal(jax.random.key(1), (4, 32, 32, 3))
    # Without batch statistics each example's score is independent of the rest of the batch.
    score = jax.jit(lambda x: d.apply(v, x, train=True))
    np.testing.assert_allclose(score(x)[:2], score(x[:2]), rtol=1e-5, atol=1e-6)


def test_bn_axis_name_averages_batch_statistics_across_the_axis():
    """Split over a named axis "batch", per-group outputs equal the whole batch's (statistics are pmean'd)."""
    g = DCGANGenerator(**SMALL, bn_axis_name="batch")
    d = DCGANDiscriminator(**SMALL, bn_axis_name="batch")
    z = jax.random.normal(jax.random.key(0), (8, 100))
    gv, dv = _init(DCGANGenerator(**SMALL), z), _init(DCGANDiscriminator(**SMALL), jnp.zeros((8, 32, 32, 3)))

    def run(g, d, z):
        x, gs = g.apply(gv, z, train=True, mutable=["batch_stats"])
        s, ds = d.apply(dv, x, train=True, mutable=["batch_stats"])
        return s, gs, ds

    whole = jax.jit(lambda z: run(DCGANGenerator(**SMALL), DCGANDiscriminator(**SMALL), z))(z)
    split = jax.jit(jax.vmap(lambda z: run(g, d, z), axis_name="batch"))(z.reshape(2, 4, 100))
    np.testing.assert_allclose(split[0].reshape(8), whole[0], rtol=1e-4, atol=1e-5)
    for a, b in zip(jax.tree.leaves(split[1:]), jax.tree.leaves(whole[1:])):
        np.testing.assert_allclose(a[0], b, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(a[1], b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("kwargs,match", [
    (dict(image_size=48), "image_size"), (dict(image_size=32, widths=(8, 8, 8, 8, 8, 8)), "widths"),
    (dict(image_size=32, widths=(8, 0, 8)), "widths"),
])
def test_bad_geometry_raises_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        jax.eval_shape(lambda: DCGANGenerator(**kwargs).init(jax.random.key(0), jnp.zeros((1, 100)), train=False))


def test_critic_rejects_wrong_image_shape():
    with pytest.raises(ValueError, match="expected images"):
        jax.eval_shape(lambda: DCGANDiscriminator(**SMALL).init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)),
                                                                 train=False))
