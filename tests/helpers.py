"""Small configs and states shared by the training-core tests."""
import os

import jax
import numpy as np

from experiments.mixtures import mixture_config


def tiny_config(variant: str = "gan", **overrides):
    """A PacGAN-style mixture config with tiny nets, fast to compile and run on CPU."""
    c = mixture_config("ring", variant, paper="test")
    c.model.generator = dict(name="mlp", hidden=(16, 16), out_dim=2, batch_norm=True)
    c.model.critic = dict(name="mlp", hidden=(16,), pieces=2)
    c.batch_size = 16
    c.data.num_train = 1024
    c.steps = 4
    c.log_every = 1
    c.checkpoint_every = 2
    c.sample_every = 1000
    c.eval.num_samples = 256
    c.eval.precise_bn_batches = 0  # tested on its own (test_launch.py)
    for k, v in overrides.items():
        node = c
        *path, last = k.split(".")
        for p in path:
            node = node[p]
        node[last] = v
    return c


def host_batches(config, steps: int, start: int = 0):
    """The real-data host batches [n_critic, B, 2] of `steps` steps, as the training loop builds them."""
    from gan_jax.experiment import _pipeline, make_source
    pipe = _pipeline(make_source(config), config)
    k = config.loss.n_critic
    return [{key: v.reshape(k, -1, *v.shape[1:]) for key, v in pipe.batch(s).items()}
            for s in range(start, start + steps)]


def as_numeric(x) -> np.ndarray:
    """A leaf as float64 numpy; PRNG keys as their key data."""
    if jax.dtypes.issubdtype(getattr(x, "dtype", None), jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    return np.asarray(x, np.float64)


def max_abs_diff(a, b) -> float:
    """The largest absolute difference over the leaves of two pytrees of the same structure."""
    assert jax.tree.structure(a) == jax.tree.structure(b)
    return max(float(np.max(np.abs(as_numeric(x) - as_numeric(y))))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def small(config, data_dir: str):
    """An image experiment config shrunk to one tiny step on the offline MNIST of the `data_dir` fixture."""
    config.steps = 1
    config.batch_size = 8
    config.checkpoint_every = config.log_every = config.sample_every = 1
    config.data.data_dir = data_dir
    config.data.num_train = min(config.data.num_train, 1024)  # Stacked MNIST draws that many triples
    config.eval.parzen = False  # needs the full MNIST: tests/test_image_experiments.py::test_goodfellow_parzen_run
    for who in ("generator", "critic"):
        spec = config.model[who]
        for net in (spec, spec.get("base")):
            if net is not None and net["name"] == "dcgan":
                net["widths"] = (16, 8)
            if net is not None and net["name"] == "goodfellow":
                net["hidden"] = (32, 32)
    return config


def subprocess_xla_flags(devices: int) -> str:
    """XLA_FLAGS for a subprocess with `devices` CPU devices, keeping conftest's optimisation level."""
    opt = [f for f in os.environ.get("XLA_FLAGS", "").split() if f.startswith("--xla_backend_optimization_level")]
    return " ".join([f"--xla_force_host_platform_device_count={devices}", *opt])
