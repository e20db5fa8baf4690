"""2-D mixtures and their mode metrics (VEEGAN / PacGAN), and PacGAN packing."""
import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax import models
from gan_jax.data import mixtures
from gan_jax.metrics.mixture import mode_counts, mode_statistics
from gan_jax.models import mlp


def test_mixtures_follow_pacgan():
    ring, grid = mixtures.get_mixture("ring"), mixtures.get_mixture("grid")
    np.testing.assert_allclose(np.linalg.norm(ring.means, axis=1), 1.0)
    np.testing.assert_allclose(ring.means[2], [0.0, 1.0], atol=1e-12)
    assert ring.std == 0.01 and ring.num_modes == 8
    assert grid.std == 0.05 and grid.num_modes == 25
    assert sorted(set(grid.means[:, 0])) == [-4, -2, 0, 2, 4]
    with pytest.raises(ValueError, match="unknown mixture 'spiral'; allowed: \\['grid', 'ring'\\]"):
        mixtures.get_mixture("spiral")


@pytest.mark.parametrize("name,k", [("ring", 8), ("grid", 25)])
def test_a_perfect_sampler_reaches_the_published_floors(name, k):
    """2500 true samples: all modes, HQ ≈ 1 − e^{−4.5} = 98.89 %, reverse KL ≈ (K − 1)/(2N)."""
    mix = mixtures.get_mixture(name)
    hq, kl = [], []
    for seed in range(40):
        s = mode_statistics(jnp.asarray(mix.sample(np.random.default_rng(seed), 2500)), jnp.asarray(mix.means), mix.std)
        assert int(s["modes"]) == k
        hq.append(float(s["high_quality"]))
        kl.append(float(s["reverse_kl"]))
    assert abs(np.mean(hq) - (1 - np.exp(-4.5))) < 0.002
    assert abs(np.mean(kl) - (k - 1) / 5000) < 0.3 * (k - 1) / 5000


def test_mode_counts_split_each_modes_nearest_samples_by_quality():
    mix = mixtures.get_mixture("ring")
    means = jnp.asarray(mix.means)
    samples = jnp.concatenate([jnp.tile(means[3], (5, 1)),                        # 5 on mode 3
                               means[:1] + jnp.array([[2.5 * mix.std, 0.0]]),     # 1 inside 3 std of mode 0
                               means[:1] + jnp.array([[3.5 * mix.std, 0.0]]),     # 1 outside it, still nearest 0
                               jnp.zeros((2, 2)) + jnp.array([[0.9, 0.05]])])      # 2 off the ring, nearest mode 0
    high, low = mode_counts(samples, means, mix.std)
    chex.assert_trees_all_equal(high, jnp.zeros(8).at[3].set(5).at[0].set(1))
    chex.assert_trees_all_equal(low, jnp.zeros(8).at[0].set(3))
    s = mode_statistics(samples, means, mix.std)
    assert int(s["modes"]) == 2 and float(s["high_quality"]) == pytest.approx(6 / 9)
    np.testing.assert_allclose(float(s["reverse_kl"]), (5 / 6) * np.log(8 * 5 / 6) + (1 / 6) * np.log(8 / 6), rtol=1e-6)


def test_collapse_and_misses_are_scored():
    mix = mixtures.get_mixture("ring")
    means = jnp.asarray(mix.means)
    one_mode = jnp.tile(means[:1], (100, 1))
    s = mode_statistics(one_mode, means, mix.std)
    assert int(s["modes"]) == 1 and float(s["high_quality"]) == 1.0
    np.testing.assert_allclose(float(s["reverse_kl"]), np.log(8), rtol=1e-6)
    far = jnp.full((10, 2), 5.0)
    s = mode_statistics(far, means, mix.std)
    assert int(s["modes"]) == 0 and float(s["high_quality"]) == 0.0 and np.isinf(float(s["reverse_kl"]))
    # A sample just inside / outside 3 σ of a mode.
    inside = means[:1] + jnp.array([[2.99 * mix.std, 0.0]])
    outside = means[:1] + jnp.array([[3.01 * mix.std, 0.0]])
    assert float(mode_statistics(inside, means, mix.std)["high_quality"]) == 1.0
    assert float(mode_statistics(outside, means, mix.std)["high_quality"]) == 0.0


def test_mixture_source_is_fixed_by_its_seed():
    mix = mixtures.get_mixture("grid")
    a, b, c = (mixtures.MixtureSource(mix, 1000, seed) for seed in (0, 0, 1))
    np.testing.assert_array_equal(a.points, b.points)
    assert not np.array_equal(a.points, c.points)
    np.testing.assert_array_equal(a.__getitems__([3, 5])["x"], a.points[[3, 5]])


def test_pack_concatenates_consecutive_samples():
    x = jnp.arange(12.0).reshape(6, 2)
    np.testing.assert_array_equal(models.pack(x, 3), [[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11]])
    img = jnp.arange(4 * 2 * 2 * 3.0).reshape(4, 2, 2, 3)
    packed = models.pack(img, 2)
    assert packed.shape == (2, 2, 2, 6)
    np.testing.assert_array_equal(packed[1, ..., :3], img[2])
    np.testing.assert_array_equal(packed[1, ..., 3:], img[3])
    with pytest.raises(ValueError, match="batch 5 is not divisible by the packing degree 2"):
        models.pack(jnp.zeros((5, 2)), 2)


@pytest.mark.parametrize("shape", [(7, 15), (2, 4, 15)])
def test_max_over_pieces_equals_jnp_max_and_its_gradient(shape):
    y = jax.random.normal(jax.random.key(0), shape)
    g = jax.random.normal(jax.random.key(1), shape[:-1] + (3,))
    plain = lambda y: jnp.max(y.reshape(*y.shape[:-1], 3, 5), axis=-1)  # noqa: E731
    ours = lambda y: mlp.max_over_pieces(y, 5)  # noqa: E731
    for f in (ours, jax.jit(ours)):
        out, vjp = jax.vjp(f, y)
        want, want_vjp = jax.vjp(plain, y)
        np.testing.assert_array_equal(out, want)
        np.testing.assert_array_equal(vjp(g)[0], want_vjp(g)[0])


def test_max_over_pieces_gives_a_tie_to_its_first_piece():
    # unit 0: all five pieces tie; unit 1: pieces 1 and 3 tie at the max
    y = jnp.array([[2.0, 2.0, 2.0, 2.0, 2.0, 0.0, 3.0, 1.0, 3.0, -1.0]])
    grad = jax.grad(lambda y: jnp.sum(mlp.max_over_pieces(y, 5) * jnp.array([1.0, 10.0])))(y)
    np.testing.assert_array_equal(grad, [[1.0, 0, 0, 0, 0, 0, 10.0, 0, 0, 0]])
    # A subgradient of this convex function: F(y + d) >= F(y) + <grad, d> for every d (raising all five tied
    # pieces together is the direction that a full gradient on every tied piece would fail).
    F = lambda y: float(jnp.sum(mlp.max_over_pieces(y, 5) * jnp.array([1.0, 10.0])))  # noqa: E731
    directions = [jnp.full_like(y, 0.1)] + list(jax.random.normal(jax.random.key(2), (200,) + y.shape))
    assert all(F(y + d) >= F(y) + float(jnp.sum(grad * d)) - 1e-5 for d in directions)


def test_max_over_pieces_keeps_bfloat16():
    y = jax.random.normal(jax.random.key(0), (4, 10)).astype(jnp.bfloat16)
    grad = jax.grad(lambda y: jnp.sum(mlp.max_over_pieces(y, 5).astype(jnp.float32)))(y)
    assert grad.dtype == jnp.bfloat16 and float(jnp.sum(grad)) == 8.0


def _batch_norm(module, variables, x, train):
    out, updated = module.apply(variables, x, train, mutable=["batch_stats"])
    return out, updated["batch_stats"]


def test_grouped_batch_norm_with_one_group_is_flax_batch_norm():
    x = 3.0 + 2.0 * jax.random.normal(jax.random.key(0), (12, 5))
    ours = mlp.GroupedBatchNorm(momentum=0.95, epsilon=1e-4)
    flax_bn = nn.BatchNorm(momentum=0.95, epsilon=1e-4)
    variables = {"params": {"scale": jnp.linspace(0.5, 2.0, 5), "bias": jnp.linspace(-1.0, 1.0, 5)},
                 "batch_stats": {"mean": jnp.full(5, 0.5), "var": jnp.full(5, 2.0)}}
    assert jax.tree.structure(ours.init(jax.random.key(1), x, True)) == jax.tree.structure(
        flax_bn.init(jax.random.key(1), x, use_running_average=False))
    out, new = _batch_norm(ours, variables, x, True)
    want, want_new = flax_bn.apply(variables, x, use_running_average=False, mutable=["batch_stats"])
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)
    chex.assert_trees_all_close(new, want_new["batch_stats"], rtol=1e-6)
    np.testing.assert_allclose(new["mean"], 0.95 * 0.5 + 0.05 * x.mean(0), rtol=1e-6)
    np.testing.assert_allclose(ours.apply(variables, x, False),
                               flax_bn.apply(variables, x, use_running_average=True), rtol=1e-5, atol=1e-5)


def test_grouped_batch_norm_normalises_each_packed_slot_alone_and_averages_their_updates():
    """PacGAN's G runs once per packed slot (rows i ≡ j mod m); its running averages move by the slots' mean."""
    x = jax.random.normal(jax.random.key(0), (12, 4)) * jnp.array([1.0, 2.0, 3.0, 4.0])
    x = x.at[1::3].add(5.0)  # slot 1 sits elsewhere: pooled statistics would differ
    variables = {"params": {"scale": jnp.ones(4), "bias": jnp.zeros(4)},
                 "batch_stats": {"mean": jnp.zeros(4), "var": jnp.ones(4)}}
    out, new = _batch_norm(mlp.GroupedBatchNorm(groups=3, momentum=0.95, epsilon=1e-4), variables, x, True)
    one = mlp.GroupedBatchNorm(groups=1, momentum=0.95, epsilon=1e-4)
    slots = [_batch_norm(one, variables, x[j::3], True) for j in range(3)]
    for j, (slot_out, _) in enumerate(slots):
        np.testing.assert_allclose(out[j::3], slot_out, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(slot_out.mean(0), 0.0, atol=1e-5)
    chex.assert_trees_all_close(new, jax.tree.map(lambda *s: sum(s) / 3, *[s for _, s in slots]), rtol=1e-5)
    with pytest.raises(ValueError, match="over 3 groups .* divisible by 3; got a batch of 10"):
        _batch_norm(mlp.GroupedBatchNorm(groups=3), variables, x[:10], True)


def test_mlp_generator_normalises_per_packed_slot_and_keeps_flax_names():
    z = jax.random.normal(jax.random.key(0), (8, 2))
    for per_slot in (True, False):
        gen = models.build_generator(dict(name="mlp", hidden=(6, 6), bn_per_slot=per_slot, bn_momentum=0.95), pack=2)
        assert gen.pack == 2
        variables = gen.init(jax.random.key(1), z, True)
        assert set(variables["batch_stats"]) == {"BatchNorm_0", "BatchNorm_1"}
        _, new = gen.apply(variables, z, True, mutable=["batch_stats"])
        h = z @ variables["params"]["Dense_0"]["kernel"]
        var = (h[0::2].var(0) + h[1::2].var(0)) / 2 if per_slot else h.var(0)  # pooled: also the slots' spread
        np.testing.assert_allclose(new["batch_stats"]["BatchNorm_0"]["var"], 0.95 + 0.05 * var, rtol=1e-5)
