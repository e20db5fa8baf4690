"""The README's examples run as written: the losses/divergences snippet on a toy critic, and the load-and-sample
snippet on a short finished run."""
import os
import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from gan_jax import loop
from tests.helpers import tiny_config

README = os.path.join(os.path.dirname(__file__), "..", "README.md")


def python_blocks() -> list[str]:
    with open(README) as f:
        return re.findall(r"```python\n(.*?)```", f.read(), re.S)


def block_with(text: str) -> str:
    (block,) = [b for b in python_blocks() if text in b]
    return block


def test_losses_snippet_runs_and_gives_the_wgan_gp_gradient():
    critic = nn.Dense(1)
    real = jax.random.normal(jax.random.key(0), (8, 3))
    fake = jax.random.normal(jax.random.key(1), (8, 3)) + 1.0
    params = critic.init(jax.random.key(2), real)
    namespace = dict(critic=critic, params=params, real=real, fake=fake, key=jax.random.key(3),
                     p=jnp.array([0.5, 0.5, 0.0]), q=jnp.array([0.0, 0.5, 0.5]))
    exec(block_with("losses.gradient_penalty"), namespace)
    # A linear critic f(x) = w.x + b: the Wasserstein term's gradient is mean(fake) - mean(real) for w, and the
    # penalty's is 2 * 10 * (|w| - 1) * w / |w| (its input gradient is w everywhere).
    w = params["params"]["kernel"][:, 0]
    norm = jnp.linalg.norm(w)
    expected = (fake.mean(0) - real.mean(0)) + 20.0 * (norm - 1.0) * w / norm
    chex.assert_trees_all_close(namespace["grads"]["params"]["kernel"][:, 0], expected, rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(namespace["grads"]["params"]["bias"], jnp.zeros(1), atol=1e-6)
    # JS of these two distributions, which share half their mass, is log 2 / 2.
    np.testing.assert_allclose(namespace["divergences"].js_divergence(namespace["p"], namespace["q"]),
                               np.log(2) / 2, rtol=1e-6)


def test_load_and_sample_snippet_runs_on_a_finished_run(tmp_path):
    workdir = str(tmp_path / "run")
    loop.train_and_evaluate(tiny_config(), workdir, devices=jax.devices()[:1])
    block = block_with("gan_jax.load").replace('"/tmp/dcgan"', repr(workdir))
    namespace: dict = {}
    exec(block, namespace)
    assert namespace["images"].shape == (64, 2)     # the 2-D mixture's "images" are points
    assert namespace["path"].shape == (10, 2)
    assert namespace["x"].shape == (16, 2)
