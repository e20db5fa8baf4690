"""CycleGAN: the generator objective's terms in closed form (cycle loss zero for identity generators); the
history pool (fills first, then shows a stored image half the time and keeps the new one in its slot, acts on
the global batch, size 0 shows the latest images); the task's step, configs and their validation; runs of the
one loop: logging and resuming, 1 vs 2 devices, SIGKILL then relaunch."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax import loop, parallel, tasks
from gan_jax.config_files import load_config
from gan_jax.tasks import cyclegan
from tests.helpers import (assert_rows_close, config_flags, logged_metrics, max_abs_diff, set_fields,
                           sigkill_after_checkpoint_and_relaunch)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The task tests: the smallest nets (compile time dominates), two steps, a checkpoint and a grid at each.
TINY = {"batch_size": 8, "steps": 2, "log_every": 1, "checkpoint_every": 2, "sample_every": 2,
        "model.unet_features": (4, 8), "model.d_features": 4, "eval.num_test": 16, "eval.batch_size": 16,
        "loss.pool_size": 12}


def _xy():
    r = np.random.default_rng(0)
    return (jnp.asarray(r.uniform(-0.5, 0.5, (4, 8, 8, 1)), jnp.float32),
            jnp.asarray(r.uniform(-0.5, 0.5, (3, 8, 8, 1)), jnp.float32))


def test_cycle_loss_zero_for_identity_generators():
    x, y = _xy()
    ident = lambda v: v
    zero_critic = lambda v: jnp.zeros((v.shape[0], 2, 2, 1))
    total, terms = cyclegan.generator_loss(ident, ident, zero_critic, zero_critic, x, y, 10.0, 0.5)
    np.testing.assert_allclose(float(terms["cycle"]), 0.0, atol=0)
    np.testing.assert_allclose(float(terms["identity"]), 0.0, atol=0)
    # LSGAN generator terms ½E(D − 1)² with D ≡ 0: ½ per direction.
    np.testing.assert_allclose(float(terms["g_adv"]), 1.0, rtol=1e-6)
    np.testing.assert_allclose(float(total), 1.0, rtol=1e-6)
    # Inverse pairs also close the cycle; a shift that F does not undo costs |0.1| per direction.
    _, inverse = cyclegan.generator_loss(lambda v: v + 0.1, lambda v: v - 0.1, zero_critic, zero_critic, x, y, 10.0)
    np.testing.assert_allclose(float(inverse["cycle"]), 0.0, atol=1e-6)
    total, shifted = cyclegan.generator_loss(lambda v: v + 0.1, ident, zero_critic, zero_critic, x, y, 10.0, 1.0)
    np.testing.assert_allclose(float(shifted["cycle"]), 0.2, rtol=1e-5)
    np.testing.assert_allclose(float(shifted["identity"]), 0.1, rtol=1e-5)
    np.testing.assert_allclose(float(total), 1.0 + 10 * 0.2 + 0.1, rtol=1e-5)


def _labelled(values) -> jax.Array:
    """Images [N, 1, 1, 1] whose one pixel names them."""
    return jnp.asarray(values, jnp.float32).reshape(-1, 1, 1, 1)


def test_pool_fills_first_and_shows_the_new_images():
    pool = cyclegan.ImagePool.empty(5, (1, 1, 1))
    pool, shown = cyclegan.query_pool(pool, _labelled([1, 2, 3]), jax.random.key(0))
    np.testing.assert_array_equal(shown.ravel(), [1, 2, 3])
    assert int(pool.count) == 3
    np.testing.assert_array_equal(pool.images.ravel()[:3], [1, 2, 3])
    # 4 and 5 fill the pool and are shown; 6 and 7 meet a full pool: each is shown or swapped for a stored one.
    pool, shown = cyclegan.query_pool(pool, _labelled([4, 5, 6, 7]), jax.random.key(1))
    np.testing.assert_array_equal(shown.ravel()[:2], [4, 5])
    assert int(pool.count) == 5
    assert set(np.asarray(shown).ravel()[2:]) <= {1, 2, 3, 4, 5, 6, 7}
    assert set(np.asarray(pool.images).ravel()) | set(np.asarray(shown).ravel()) == set(range(1, 8))


def test_full_pool_shows_a_stored_image_half_the_time_and_keeps_the_new_one_in_its_slot():
    size, draws = 10, 4000
    full = cyclegan.ImagePool(_labelled(np.arange(size)), jnp.array(size, jnp.int32))

    def one(pool, i):  # one new image per query, named size + i
        new, shown = cyclegan.query_pool(pool, _labelled([size + i]), jax.random.fold_in(jax.random.key(0), i))
        return new, (new.images.ravel(), shown.ravel()[0])
    _, (pools, shown) = jax.jit(lambda: jax.lax.scan(one, full, jnp.arange(draws)))()
    pools, shown = np.asarray(pools), np.asarray(shown)
    before = np.concatenate([np.arange(size)[None], pools[:-1]])
    new = size + np.arange(draws)
    fresh = shown == new
    for t in range(draws):
        if fresh[t]:
            np.testing.assert_array_equal(pools[t], before[t])  # the pool is left alone
        else:
            (slot,) = np.flatnonzero(before[t] == shown[t])  # a stored image, shown once, replaced by the new one
            assert pools[t][slot] == new[t]
            np.testing.assert_array_equal(np.delete(pools[t], slot), np.delete(before[t], slot))
    # Binomial(4000, ½): the share of new images has standard deviation 0.008, the bound is 6 of them.
    assert 0.45 < fresh.mean() < 0.55
    # The swapped slot is uniform: every slot is hit (each about 200 times).
    hits = np.bincount([int(np.flatnonzero(pools[t] != before[t])[0]) for t in range(draws) if not fresh[t]],
                       minlength=size)
    assert hits.min() > 100


def test_pools_act_on_the_global_batch():
    """Two devices' halves go through the pool as one batch: each device gets its part of what one device sees."""
    pools = {d: cyclegan.ImagePool(_labelled(np.arange(4)), jnp.array(2, jnp.int32)) for d in ("x", "y")}
    fakes = {"x": _labelled(np.arange(10, 18)), "y": _labelled(np.arange(20, 28))}
    key = jax.random.key(3)
    split = lambda tree: jax.tree.map(lambda a: a.reshape(2, 4, *a.shape[1:]), tree)
    one_pools, one_shown = jax.vmap(cyclegan.query_pools, (None, 0, None), axis_name=parallel.AXIS)(
        pools, jax.tree.map(lambda a: a[None], fakes), key)
    two_pools, two_shown = jax.vmap(cyclegan.query_pools, (None, 0, None), axis_name=parallel.AXIS)(
        pools, split(fakes), key)
    for d in ("x", "y"):
        np.testing.assert_array_equal(two_shown[d].reshape(8), one_shown[d].reshape(8))
        for device in range(2):
            np.testing.assert_array_equal(two_pools[d].images[device], one_pools[d].images[0])
    assert int(one_pools["x"].count[0]) == 4
    assert not np.array_equal(np.asarray(one_shown["x"]).ravel(), np.arange(10, 18))  # the full pool swapped some


def test_pool_size_zero_shows_the_latest_images():
    fakes = {"x": _labelled([1, 2]), "y": _labelled([3, 4])}
    pools, shown = cyclegan.query_pools({}, fakes, jax.random.key(0))
    assert pools == {} and shown is fakes


def _tiny_config(**overrides):
    """digits <-> digits (no files) with the smallest nets: compile time dominates."""
    return set_fields(load_config("experiments/cyclegan_mnist_digits.py", ROOT), {"data.x": "digits", **TINY, **overrides})


def _one_step(config):
    task = tasks.build(config)
    step = parallel.parallelize(task.train_step, "shard_map", parallel.make_mesh(jax.devices()[:1]), batch_axis=0)
    batch = task.batches(0, 1)(0)
    state = jax.device_get(jax.jit(task.init)(jax.random.key(0), batch))  # the step donates its input
    new, metrics = step(step.put_state(state), step.put_batch(batch))
    return state, jax.device_get(new), jax.device_get(metrics)


@pytest.mark.slow
def test_one_training_step_with_and_without_a_pool():
    state, new, metrics = _one_step(_tiny_config())
    assert set(state.generator.params) == {"g", "f"} and set(state.discriminator.params) == {"x", "y"}
    assert int(new.step) == 1
    assert all(np.isfinite(float(v)) for v in metrics.values())
    np.testing.assert_allclose(metrics["g_loss"], metrics["g_adv"] + 10 * metrics["cycle"], rtol=1e-5)
    for old, updated in [(state.generator.params, new.generator.params),
                         (state.discriminator.params, new.discriminator.params)]:
        for name in old:
            assert max_abs_diff(old[name], updated[name]) > 0
    # The empty pools stored the step's 8 generated images of each domain and showed them: the step equals
    # the step without pools.
    assert {d: int(p.count) for d, p in new.pools.items()} == {"x": 8, "y": 8}
    _, without, m_without = _one_step(_tiny_config(**{"loss.pool_size": 0}))
    assert without.pools == {}
    assert metrics == m_without
    assert max_abs_diff(new.replace(pools={}), without) == 0.0


def test_experiment_config():
    c = load_config("experiments/cyclegan_mnist_digits.py", ROOT)
    assert (c.task, c.data.x, c.data.y, c.loss.cycle_weight, c.loss.pool_size, c.model.dropout) == (
        "cyclegan", "mnist", "digits", 10.0, 50, 0.0)
    cyclegan.validate(c, 1)


@pytest.mark.parametrize("overrides, devices, message", [
    ({"data.y": "svhn"}, 1, r"unknown config.data.y 'svhn'; allowed: \['mnist', 'fashion_mnist', 'digits'\]"),
    ({"loss.cycle_weight": -10.0}, 1, "config.loss.cycle_weight must be a number >= 0, got -10.0"),
    ({"loss.identity_weight": -0.5}, 1, "config.loss.identity_weight must be a number >= 0, got -0.5"),
    ({"loss.pool_size": -1}, 1, "config.loss.pool_size must be an integer >= 0, got -1"),
    ({"batch_size": 6}, 4, "config.batch_size=6 is not divisible by the 4 devices"),
    ({"loss.gan_weight": 1.0}, 1, "unknown config field 'loss.gan_weight' for task 'cyclegan'"),
])
def test_bad_config_values_are_named(overrides, devices, message):
    with pytest.raises(ValueError, match=message):
        tasks.build(_tiny_config(**overrides), num_devices=devices)


def test_the_loop_logs_checkpoints_and_resumes_each_step_once(tmp_path):
    one = jax.devices()[:1]
    loop.train_and_evaluate(_tiny_config(), str(tmp_path / "resumed"), devices=one)
    assert [r["step"] for r in logged_metrics(tmp_path / "resumed") if "g_loss" in r] == [1, 2]
    assert sorted(os.listdir(tmp_path / "resumed" / "checkpoints")) == ["2"]
    final = loop.train_and_evaluate(_tiny_config(steps=4), str(tmp_path / "resumed"), devices=one)
    assert [r["step"] for r in logged_metrics(tmp_path / "resumed") if "g_loss" in r] == [1, 2, 3, 4]
    assert set(final) == {"cycle_l1_x", "cycle_l1_y", "num_test_x", "num_test_y", "protocol"}
    with open(tmp_path / "resumed" / "eval.json") as f:
        assert json.load(f) == {"step": 4, **final}
    assert sorted(os.listdir(tmp_path / "resumed" / "samples")) == [f"step_000000{s}.png" for s in (2, 4)]
    # The resumed run is the uninterrupted one: the checkpoint holds the pools.
    assert loop.train_and_evaluate(_tiny_config(steps=4), str(tmp_path / "straight"), devices=one) == final
    train_rows = lambda workdir: [r for r in logged_metrics(workdir) if "g_loss" in r]  # no eval/ rows
    assert train_rows(tmp_path / "straight") == train_rows(tmp_path / "resumed")


def test_two_devices_equal_one_device(tmp_path):
    """The pools see the global batch, losses are per-device means averaged over devices: the run does not
    depend on how its batch is split. Three steps of batch 8 fill the pool of 12 and then swap."""
    config = _tiny_config(steps=3, checkpoint_every=3, sample_every=100, **{"model.dropout": 0.5})
    one = loop.train_and_evaluate(config, str(tmp_path / "one"), devices=jax.devices()[:1])
    two = loop.train_and_evaluate(config, str(tmp_path / "two"), devices=jax.devices()[:2])
    assert len(logged_metrics(tmp_path / "one")) == 4  # 3 steps and the evaluation
    assert_rows_close(logged_metrics(tmp_path / "one"), logged_metrics(tmp_path / "two"), rtol=1e-5)
    np.testing.assert_allclose(two["cycle_l1_x"], one["cycle_l1_x"], rtol=1e-5)


@pytest.mark.slow  # ~20 s: two launches; the in-process resume above covers the checkpointed pools
def test_sigkill_then_relaunch_equals_uninterrupted_run(tmp_path):
    overrides = {**TINY, "data.x": "digits", "steps": 12, "checkpoint_every": 4, "sample_every": 100}
    # The uninterrupted run in this process: its 1-device step is the subprocess's, bit for bit.
    loop.train_and_evaluate(_tiny_config(**overrides), str(tmp_path / "straight"), devices=jax.devices()[:1])
    killed_at, out = sigkill_after_checkpoint_and_relaunch(
        tmp_path / "killed", ["--config", "experiments/cyclegan_mnist_digits.py", *config_flags(overrides)], 4)
    assert 4 <= killed_at < 12  # the kill landed mid-run
    assert f"resumed from the checkpoint at step {killed_at}" in out and "final evaluation: cycle_l1_x = " in out
    assert logged_metrics(tmp_path / "straight") == logged_metrics(tmp_path / "killed")
    assert [r["step"] for r in logged_metrics(tmp_path / "killed") if "g_loss" in r] == list(range(1, 13))
    with open(tmp_path / "straight" / "eval.json") as f, open(tmp_path / "killed" / "eval.json") as g:
        assert json.load(f) == json.load(g)
