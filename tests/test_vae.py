"""The VAE task: the closed-form KL against Monte Carlo, the Bernoulli likelihood against its formula, shapes,
a bf16 step, validation, and on the one loop: a run and its relaunch with more steps (equal to one straight
run), a refused workdir of another config, restoring the decoder, SIGKILL then resume, and 1 vs 2 devices."""
import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.vae_mnist import get_config
from gan_jax import loop, parallel, runs, vae
from gan_jax.tasks import vae as vae_task
from tests.helpers import (assert_rows_close, config_flags, launch_task_to_end, logged_metrics, max_abs_diff,
                           set_fields, sigkill_after_checkpoint_and_relaunch)

ONE_DEVICE = jax.devices()[:1]
# Tiny nets on the 128-image fake MNIST of the data_dir fixture; the same run as command-line overrides.
TINY = {"batch_size": 8, "log_every": 1, "checkpoint_every": 10, "sample_every": 1000, "model.latent_dim": 4,
        "model.channels": (4, 8), "model.hidden": 16, "eval.parzen": False, "eval.batch_size": 64}


def tiny_config(data_dir: str, steps: int):
    return set_fields(get_config(), {**TINY, "steps": steps, "data.data_dir": data_dir})


def test_gaussian_kl_matches_monte_carlo():
    mu = jnp.asarray([[0.3, -1.0, 0.5]])
    logvar = jnp.asarray([[0.2, -0.5, 0.0]])
    z = mu + jnp.exp(0.5 * logvar) * jax.random.normal(jax.random.key(0), (200_000, 3))
    log_q = -0.5 * jnp.sum((z - mu) ** 2 / jnp.exp(logvar) + logvar + jnp.log(2 * jnp.pi), axis=-1)
    log_p = -0.5 * jnp.sum(z ** 2 + jnp.log(2 * jnp.pi), axis=-1)
    np.testing.assert_allclose(float(vae.gaussian_kl(mu, logvar)[0]), float(jnp.mean(log_q - log_p)),
                               rtol=0.02, atol=0.005)
    np.testing.assert_allclose(np.asarray(vae.gaussian_kl(jnp.zeros((2, 4)), jnp.zeros((2, 4)))), 0.0, atol=0)


def test_bernoulli_log_likelihood():
    x = jnp.asarray([[1.0, 0.0, 1.0]])
    logits = jnp.asarray([[0.5, -2.0, 3.0]])
    p = 1 / (1 + np.exp(-np.asarray(logits)))
    expected = np.log(p[0, 0]) + np.log(1 - p[0, 1]) + np.log(p[0, 2])
    np.testing.assert_allclose(float(vae.bernoulli_log_likelihood(x, logits)[0]), expected, rtol=1e-6)


def test_shapes_and_bounds():
    task = vae_task.Task(tiny_config("", 2))
    x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (8, 28, 28, 1)), jnp.float32)

    @jax.jit  # one program: eager flax applies compile op by op
    def forward(key):
        params = task.init(key, {"image": x}).vae.params
        noise = jax.random.normal(jax.random.key(1), (8, 4))
        logits, mu, logvar = task.model.apply({"params": params}, (x + 1) / 2, noise)
        samples = vae.sample(task.model, params, jax.random.key(2), 3, truncation=1.0)
        return logits, mu, logvar, samples, vae.elbo(task.model, params, vae.binarise(x, jax.random.key(3)), noise)
    logits, mu, logvar, samples, elbo = forward(jax.random.key(0, impl="rbg"))  # flax init compiles faster
    chex.assert_shape(logits, (8, 28, 28, 1))
    chex.assert_shape([mu, logvar], (8, 4))
    chex.assert_shape(samples, (3, 28, 28, 1))
    assert float(jnp.min(samples)) >= -1 and float(jnp.max(samples)) <= 1
    assert float(jnp.max(elbo)) < 0  # ELBO <= log p(x) <= 0 for binary data


def test_bf16_step_keeps_float32_state_and_elbo_close_to_f32():
    """model.dtype="bfloat16": the step's ELBO is float32, finite and within 0.1 % of the float32 net's (same
    initial parameters, batch and noise; measured 4e-6, the per-pixel bf16 errors average out over the sum), and
    the parameters and Adam moments stay float32."""
    x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (8, 28, 28, 1)), jnp.float32)
    elbo = {}
    for dtype in ("float32", "bfloat16"):
        task = vae_task.Task(set_fields(tiny_config("", 2), {"model.dtype": dtype}))
        step = parallel.parallelize(task.train_step, mesh=parallel.make_mesh(ONE_DEVICE), batch_axis=task.batch_axis)
        state, metrics = step(step.put_state(jax.jit(task.init)(jax.random.key(0), {"image": x})),
                              step.put_batch({"image": x}))
        leaves = jax.tree.leaves(step.get_state(state).vae)  # Adam's step count aside
        assert {a.dtype for a in leaves if jnp.issubdtype(a.dtype, jnp.inexact)} == {jnp.dtype(jnp.float32)}
        elbo[dtype] = jax.device_get(metrics["elbo"])
    assert elbo["bfloat16"].dtype == np.float32 and np.isfinite(elbo["bfloat16"]) and elbo["bfloat16"] < 0
    np.testing.assert_allclose(elbo["bfloat16"], elbo["float32"], rtol=1e-3)


@pytest.mark.parametrize("field, value, message", [
    ("model.dtype", "float16", r"unknown config.model.dtype 'float16'; allowed: \['bfloat16', 'float32'\]"),
    ("data.name", "cifar10", r"unknown config.data.name 'cifar10'; allowed: \['mnist', 'fashion_mnist', 'digits'\]"),
    ("eval.parzen", True, "MNIST protocol; allowed only with config.data.name='mnist', got 'digits'"),
    ("model.channels", (4,), r"config.model.channels must be two integers >= 1, got \(4,\)"),
    ("batch_size", 9, "config.batch_size=9 is not divisible by the 2 devices"),
])
def test_validation_names_the_bad_value(field, value, message):
    c = set_fields(tiny_config("", 2), {"data.name": "digits"} if field == "eval.parzen" else {})
    with pytest.raises(ValueError, match=message):
        vae_task.validate(set_fields(c, {field: value}), 2)


STEPS, CHECKPOINT_EVERY = 40, TINY["checkpoint_every"]


@pytest.fixture(scope="module")
def straight(data_dir, tmp_path_factory):
    """The workdir of an uninterrupted in-process run of STEPS steps on one device."""
    workdir = tmp_path_factory.mktemp("straight")
    loop.train_and_evaluate(tiny_config(data_dir, STEPS), str(workdir), devices=ONE_DEVICE)
    return workdir


def training_rows(workdir) -> list[dict]:
    return [r for r in logged_metrics(workdir) if "elbo" in r]


def eval_json(workdir) -> dict:
    return json.loads((workdir / "eval.json").read_text())


def test_run_then_relaunch_with_more_steps_equals_one_run(data_dir, straight, tmp_path):
    loop.train_and_evaluate(tiny_config(data_dir, STEPS // 2), str(tmp_path), devices=ONE_DEVICE)
    resumed = loop.train_and_evaluate(tiny_config(data_dir, STEPS), str(tmp_path), devices=ONE_DEVICE)
    assert [r["step"] for r in training_rows(tmp_path)] == list(range(1, STEPS + 1))  # no step logged twice
    assert training_rows(tmp_path) == training_rows(straight)
    assert {"step": STEPS, **resumed} == eval_json(straight)
    assert resumed["test_elbo"] < 0 and resumed["num_test"] == 128 and "seed 1234" in resumed["protocol"]
    assert (tmp_path / "checkpoints" / str(STEPS)).is_dir() and (tmp_path / "samples").is_dir()

    example = {"image": np.zeros((1, 28, 28, 1), np.float32)}
    _, a = runs.restore(str(straight), "vae", example)
    _, b = runs.restore(str(tmp_path), "vae", example)
    assert int(a.step) == STEPS and max_abs_diff(a, b) == 0.0
    init = vae_task.Task(tiny_config(data_dir, STEPS)).init(jax.random.key(0), example)
    assert max_abs_diff(a.vae.params, init.vae.params) > 0  # training moved the parameters
    config, model, params = vae_task.restore(str(tmp_path))
    assert config.steps == STEPS and model.latent_dim == 4
    chex.assert_trees_all_equal(params, b.vae.params)

    other = tiny_config(data_dir, STEPS)
    other.model.latent_dim = 5
    with pytest.raises(ValueError, match="latent_dim"):  # a workdir of another config is refused
        loop.train_and_evaluate(other, str(tmp_path), devices=ONE_DEVICE)


def launch_args(data_dir: str) -> list[str]:
    return ["--config", "experiments/vae_mnist.py", *config_flags({**TINY, "steps": STEPS, "data.data_dir": data_dir})]


def test_two_devices_log_what_one_does(data_dir, straight, tmp_path):
    """Per-example binarisation and noise keys: 2 devices draw what 1 does; only float sums' order differs."""
    launch_task_to_end(tmp_path, launch_args(data_dir), devices=2)
    assert_rows_close(logged_metrics(straight), logged_metrics(tmp_path), rtol=2e-5)


@pytest.mark.slow
def test_sigkill_then_resume_equals_uninterrupted_run(data_dir, straight, tmp_path):
    killed_at, out = sigkill_after_checkpoint_and_relaunch(tmp_path, launch_args(data_dir), CHECKPOINT_EVERY)
    assert CHECKPOINT_EVERY <= killed_at < STEPS and f"resumed from the checkpoint at step {killed_at}" in out
    assert logged_metrics(tmp_path) == logged_metrics(straight)
    assert eval_json(tmp_path) == eval_json(straight)
