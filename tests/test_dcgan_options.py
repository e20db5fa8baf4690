"""DCGAN critic options from Salimans et al. 2016 inside the train step: virtual batch norm, minibatch discrimination."""
import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax import loop, parallel, train
from gan_jax.tasks import gan as gan_task
from gan_jax.models.dcgan import DCGANDiscriminator
from gan_jax.models.normalization import set_vbn_reference
from tests.helpers import as_numeric, small


def _critic(**kw):
    return DCGANDiscriminator(image_size=28, channels=1, widths=(8, 4), batch_norm=False, **kw)


def test_virtual_batch_norm_scores_do_not_depend_on_the_rest_of_the_batch():
    d = _critic(virtual_batch_norm=4)
    x = jax.random.normal(jax.random.key(0), (6, 28, 28, 1))
    variables = d.init(jax.random.key(1), x, train=False)
    ref = jax.random.normal(jax.random.key(2), (4, 28, 28, 1))
    variables = {**variables, "batch_stats": set_vbn_reference(variables["batch_stats"], ref)}
    full = d.apply(variables, x, train=True)
    alone = jnp.concatenate([d.apply(variables, x[i:i + 1], train=True) for i in range(6)])
    assert full.shape == (6,)
    np.testing.assert_allclose(full, alone, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="virtual_batch_norm replaces batch norm"):
        DCGANDiscriminator(image_size=28, channels=1, virtual_batch_norm=4).init(jax.random.key(0), x, train=False)


def test_minibatch_discrimination_makes_scores_depend_on_the_batch():
    d = _critic(minibatch_discrimination=5)
    x = jax.random.normal(jax.random.key(0), (6, 28, 28, 1))
    variables = d.init(jax.random.key(1), x, train=False)
    full = d.apply(variables, x, train=True)
    half = d.apply(variables, x[:3], train=True)
    assert full.shape == (6,) and not np.allclose(full[:3], half, atol=1e-6)


def _config(data_dir, **critic):
    config = small(importlib.import_module("experiments.wgan_gp_mnist").get_config(), data_dir)
    config.model.critic.update(critic)
    return config


@pytest.mark.parametrize("critic", [dict(virtual_batch_norm=4),
                                    pytest.param(dict(minibatch_discrimination=5), marks=pytest.mark.slow)])
def test_train_step_with_salimans_options_on_two_devices_equals_one(data_dir, critic):
    config = _config(data_dir, **critic)
    gan = train.build(config)
    source = gan_task.make_source(config)
    reference = gan_task.reference_batch(source, config)
    assert (reference is None) == ("virtual_batch_norm" not in critic)
    batch = {"x": np.asarray(source.__getitems__(np.arange(5 * 8))["x"]).reshape(5, 8, 28, 28, 1)}
    out = []
    for n in (1, 2):
        step = parallel.parallelize(train.make_train_step(gan), "shard_map", parallel.make_mesh(jax.devices()[:n]))
        state = step.put_state(train.init_state(gan, jax.random.key(0), (28, 28, 1), reference))
        state, metrics = step(state, step.put_batch(batch))
        out.append(jax.device_get((step.get_state(state), metrics)))
    for a, b in zip(jax.tree.leaves(out[0]), jax.tree.leaves(out[1])):
        np.testing.assert_allclose(as_numeric(a), as_numeric(b), rtol=1e-4, atol=1e-5)


def test_virtual_batch_norm_run_end_to_end(data_dir, tmp_path):
    results = loop.train_and_evaluate(_config(data_dir, virtual_batch_norm=4), str(tmp_path), devices=jax.devices()[:1])
    assert results == {"protocol": "no evaluation configured (set eval.classifier_dir, or eval.features='inception' "
                                   "and eval.inception_weights, for FID)"}
    with pytest.raises(ValueError, match="needs its reference batch"):
        train.init_state(train.build(_config(data_dir, virtual_batch_norm=4)), jax.random.key(0), (28, 28, 1))
