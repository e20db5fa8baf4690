"""Minibatch discrimination and virtual batch norm (Salimans et al. 2016): values against numpy,
global-batch equivalence across devices, and VBN's per-example independence."""
import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, PartitionSpec as P

from gan_jax.models.normalization import (MinibatchDiscrimination, PrependReference, VirtualBatchNorm,
                                          set_vbn_reference)

# "rbg" keys: flax init with threefry keys took 17 s to compile for a small DCGAN critic here, with rbg 2 s.
KEY = jax.random.key(0, impl="rbg")


def _mbd_reference(f, t, num_kernels, kernel_dim):
    """o(x_i)_b = sum_{j != i} exp(-||M_ib - M_jb||_1), M = f T, written with explicit loops."""
    m = (np.asarray(f, np.float64) @ np.asarray(t, np.float64)).reshape(len(f), num_kernels, kernel_dim)
    o = np.zeros((len(f), num_kernels))
    for i in range(len(f)):
        for j in range(len(f)):
            if j != i:
                for b in range(num_kernels):
                    o[i, b] += np.exp(-np.abs(m[i, b] - m[j, b]).sum())
    return np.concatenate([f, o], axis=1)


def test_minibatch_discrimination_values():
    layer = MinibatchDiscrimination(num_kernels=3, kernel_dim=2)
    f = jax.random.normal(KEY, (4, 2, 3))  # non-flat input: flattened to [4, 6]
    variables = jax.jit(layer.init)(KEY, f)
    t = variables["params"]["Dense_0"]["kernel"]
    chex.assert_shape(t, (6, 6))
    # Scale T up so that the kernels' values spread over (0, 1) rather than all sitting near 1.
    variables = {"params": {"Dense_0": {"kernel": t * 4}}}
    apply = jax.jit(layer.apply)
    out = apply(variables, f)
    chex.assert_shape(out, (4, 9))
    expected = _mbd_reference(np.asarray(f).reshape(4, 6), t * 4, 3, 2)
    assert 0.05 < expected[:, 6:].min() and expected[:, 6:].max() < 2.5
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    # A batch of one has no other example to compare with.
    np.testing.assert_allclose(apply(variables, f[:1])[:, 6:], 0.0, atol=0)


def test_minibatch_discrimination_gradients_match_finite_differences():
    layer = MinibatchDiscrimination(num_kernels=2, kernel_dim=3)
    f = jax.random.normal(KEY, (5, 4))
    params = jax.jit(layer.init)(KEY, f)["params"]
    w = jnp.arange(5 * 6, dtype=jnp.float32).reshape(5, 6) / 30
    jax.test_util.check_grads(jax.jit(lambda p, x: jnp.sum(w * layer.apply({"params": p}, x))), (params, f), order=1,
                              modes=["rev"], atol=2e-2, rtol=2e-2)


def test_minibatch_discrimination_bad_sizes():
    with pytest.raises(ValueError, match="num_kernels"):
        MinibatchDiscrimination(num_kernels=0).init(KEY, jnp.ones((2, 3)))


def test_minibatch_discrimination_global_batch_on_two_devices():
    """With axis_name, 2 devices × 3 examples give the 6-example single-device outputs and gradients
    (the train step's recipe: loss on all-gathered outputs, then lax.pmean of the gradients)."""
    mesh = Mesh(np.asarray(jax.devices()[:2]), ("batch",))
    single, sharded = MinibatchDiscrimination(4, 3), MinibatchDiscrimination(4, 3, axis_name="batch")
    f = jax.random.normal(KEY, (6, 5))
    params = jax.jit(single.init)(KEY, f)["params"]
    w = jax.random.normal(jax.random.key(1, impl="rbg"), (6, 9))

    def loss(out):
        return jnp.sum(w * jnp.tanh(out))

    def per_device(p, x):
        def local_loss(p):
            out = sharded.apply({"params": p}, x)
            return loss(jax.lax.all_gather(out, "batch", tiled=True)), out
        (value, out), grads = jax.value_and_grad(local_loss, has_aux=True)(p)
        return out, value[None], jax.lax.pmean(grads, "batch")

    run = jax.jit(jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P("batch")),
                                out_specs=(P("batch"), P("batch"), P()), check_vma=False))
    out, values, grads = jax.block_until_ready(run(params, f))
    single_apply = jax.jit(single.apply)
    expected_out = single_apply({"params": params}, f)
    np.testing.assert_allclose(out, expected_out, rtol=1e-6, atol=1e-6)
    # Without the gather the per-device outputs differ: the test can fail.
    assert not np.allclose(single_apply({"params": params}, f[:3]), expected_out[:3], atol=1e-3)
    np.testing.assert_allclose(values, [loss(expected_out)] * 2, rtol=1e-5)
    expected_grads = jax.jit(jax.grad(lambda p: loss(single.apply({"params": p}, f))))(params)
    chex.assert_trees_all_close(grads, expected_grads, rtol=1e-5, atol=1e-5)  # gradients ~0.1: 1e-4 relative


def _vbn_reference(x, n, eps=1e-5):
    """Salimans et al. 2016 §3.4 by definition: reference rows by their own statistics; each example by
    the statistics of the pooled values of the reference batch and itself (all axes but channels)."""
    x = np.asarray(x, np.float64)
    ref = x[:n].reshape(-1, x.shape[-1])
    out = [(x[:n] - ref.mean(0)) / np.sqrt(ref.var(0) + eps)]
    for e in x[n:]:
        pooled = np.concatenate([ref, e.reshape(-1, x.shape[-1])])
        out.append(((e - pooled.mean(0)) / np.sqrt(pooled.var(0) + eps))[None])
    return np.concatenate(out)


@pytest.mark.parametrize("shape", [(7, 3), (6, 4, 5, 2)], ids=["vectors", "images"])
def test_virtual_batch_norm_values(shape):
    n = 4
    x = jax.random.normal(KEY, shape) * 2 + 1
    layer = VirtualBatchNorm(reference_size=n)
    variables = jax.jit(layer.init)(KEY, x)
    apply = jax.jit(layer.apply)
    out = apply(variables, x)
    chex.assert_shape(out, shape)
    np.testing.assert_allclose(out, _vbn_reference(x, n), rtol=1e-4, atol=1e-5)
    gamma = jnp.arange(1, shape[-1] + 1, dtype=jnp.float32)
    beta = -jnp.arange(shape[-1], dtype=jnp.float32)
    scaled = apply({"params": {"scale": gamma, "bias": beta}}, x)
    np.testing.assert_allclose(scaled, _vbn_reference(x, n) * np.asarray(gamma) + np.asarray(beta),
                               rtol=1e-4, atol=1e-4)


def test_virtual_batch_norm_example_at_reference_mean():
    """An example equal to the reference mean has mean 0 after normalisation: the output is β."""
    ref = jax.random.normal(KEY, (5, 3))
    x = jnp.concatenate([ref, ref.mean(0, keepdims=True)])
    beta = jnp.array([0.5, -1.0, 2.0])
    out = jax.jit(VirtualBatchNorm(reference_size=5).apply)({"params": {"scale": jnp.full(3, 3.0), "bias": beta}}, x)
    np.testing.assert_allclose(out[5], beta, atol=1e-6)


def test_virtual_batch_norm_output_does_not_depend_on_the_batch():
    """Like tensorflow/gan's virtual_batchnorm_test: an example's output is the same whatever its batch-mates
    and position), and it does change with the reference batch."""
    n = 4
    layer = VirtualBatchNorm(reference_size=n)
    ref = jax.random.normal(KEY, (n, 3, 3, 2))
    examples = jax.random.normal(jax.random.key(1, impl="rbg"), (5, 3, 3, 2)) * 3
    others = jax.random.normal(jax.random.key(2, impl="rbg"), (5, 3, 3, 2)) - 2
    variables = jax.jit(layer.init)(KEY, jnp.concatenate([ref, examples]))
    apply = jax.jit(layer.apply)
    full = apply(variables, jnp.concatenate([ref, examples]))[n:]
    mixed = apply(variables, jnp.concatenate([ref, examples[2:3], others[1:]]))[n]
    permuted = apply(variables, jnp.concatenate([ref, examples[::-1]]))[n:][::-1]
    np.testing.assert_allclose(mixed, full[2], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(permuted, full, rtol=1e-6, atol=1e-6)
    other_ref = apply(variables, jnp.concatenate([ref * 2, examples]))[n + 2]
    assert not np.allclose(other_ref, full[2], atol=1e-2)


class _VBNNet(nn.Module):
    """A tiny critic using VBN the documented way: prepend the stored reference, drop its rows at the end."""
    n: int

    @nn.compact
    def __call__(self, x):
        h = PrependReference(self.n)(x)
        h = nn.relu(VirtualBatchNorm(self.n)(nn.Dense(6)(h)))
        h = nn.relu(VirtualBatchNorm(self.n)(nn.Dense(6)(h)))
        return nn.Dense(1)(h)[self.n:, 0]


def test_prepended_reference_through_a_network():
    n = 3
    net = _VBNNet(n)
    x = jax.random.normal(KEY, (4, 5))
    variables = jax.jit(net.init)(KEY, x)
    chex.assert_trees_all_equal(variables["batch_stats"], {"PrependReference_0": {"vbn_reference": jnp.zeros((n, 5))}})
    ref = jax.random.normal(jax.random.key(7, impl="rbg"), (n, 5))
    variables = {**variables, "batch_stats": set_vbn_reference(variables["batch_stats"], ref)}
    np.testing.assert_array_equal(variables["batch_stats"]["PrependReference_0"]["vbn_reference"], ref)

    @jax.jit
    def scores(p, x):
        return net.apply({"params": p, "batch_stats": variables["batch_stats"]}, x)

    out = scores(variables["params"], x)
    chex.assert_shape(out, (4,))
    others = jax.random.normal(jax.random.key(3, impl="rbg"), (4, 5))
    np.testing.assert_allclose(scores(variables["params"], x.at[1:].set(others[1:]))[0], out[0], rtol=1e-5, atol=1e-6)
    grad = jax.jit(jax.grad(lambda p: jnp.sum(scores(p, x))))(variables["params"])
    for leaf in jax.tree.leaves(grad):
        assert np.all(np.isfinite(leaf))
    with pytest.raises(ValueError, match="does not match"):
        set_vbn_reference(variables["batch_stats"], jnp.zeros((n + 1, 5)))
    with pytest.raises(ValueError, match="no 'vbn_reference'"):
        set_vbn_reference({"BatchNorm_0": {"mean": jnp.zeros(3)}}, ref)


def test_virtual_batch_norm_gradients_through_the_reference_statistics():
    """The examples' outputs depend on the reference rows through the statistics; reverse-mode gradients
    (with respect to reference and examples alike) match finite differences."""
    layer = VirtualBatchNorm(reference_size=3)
    x = jax.random.normal(KEY, (5, 2, 2, 3))
    w = jax.random.normal(jax.random.key(1, impl="rbg"), (2, 2, 2, 3))

    @jax.jit
    def loss(x):
        return jnp.sum(w * layer.apply({"params": {"scale": jnp.ones(3), "bias": jnp.zeros(3)}}, x)[3:])

    assert float(jnp.abs(jax.grad(loss)(x)[:3]).max()) > 1e-2
    jax.test_util.check_grads(loss, (x,), order=1, modes=["rev"], atol=2e-2, rtol=2e-2)


def test_virtual_batch_norm_bad_reference_size():
    with pytest.raises(ValueError, match="reference_size"):
        VirtualBatchNorm(reference_size=5).init(KEY, jnp.ones((4, 3)))


def test_jit_and_bfloat16():
    x = jax.random.normal(KEY, (6, 4, 4, 3))
    for make in (lambda dt: VirtualBatchNorm(3, dtype=dt), lambda dt: MinibatchDiscrimination(4, dtype=dt)):
        f32, bf16 = make(jnp.float32), make(jnp.bfloat16)
        variables = jax.jit(f32.init)(KEY, x)
        chex.assert_trees_all_equal_dtypes(jax.eval_shape(bf16.init, KEY, x), variables)
        expected = jax.jit(f32.apply)(variables, x)
        out = jax.jit(bf16.apply)(variables, x)
        chex.assert_type(out, jnp.bfloat16)
        np.testing.assert_allclose(np.asarray(out, np.float32), expected, rtol=0.05, atol=0.05)
