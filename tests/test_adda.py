"""ADDA: the source stage's cross-entropy, the target encoder equal to the source encoder until the switch,
adaptation moving only M_t and D (M_s and C fixed), the accuracy read-out, both stages in bf16, validation, and
on the one loop:
both stages in one run, a relaunch that extends adaptation (equal to one straight run), SIGKILL then resume,
and 1 vs 2 devices."""
import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.adda_mnist_digits import get_config
from gan_jax import loop, parallel, runs
from gan_jax.tasks import adda
from tests.helpers import (assert_rows_close, config_flags, launch_task_to_end, logged_metrics, max_abs_diff,
                           set_fields, sigkill_after_checkpoint_and_relaunch)

ONE_DEVICE = jax.devices()[:1]
SOURCE_STEPS = ADAPT_STEPS = 20
# Tiny nets; the fake MNIST of the data_dir fixture (128 images), the target is scikit-learn's digits.
TINY = {"batch_size": 8, "log_every": 1, "checkpoint_every": 10, "model.channels": (4, 8), "model.hidden": 16,
        "model.disc_hidden": 16}


def tiny_config(data_dir: str = "", source_steps: int = SOURCE_STEPS, adapt_steps: int = ADAPT_STEPS):
    return set_fields(get_config(), {**TINY, "data.data_dir": data_dir, "source_steps": source_steps,
                                     "adapt_steps": adapt_steps, "steps": source_steps + adapt_steps})


def changed(a, b) -> bool:
    return max_abs_diff(a, b) > 0


def stage_batch() -> dict[str, np.ndarray]:
    """8 random source images with labels, and 8 target images."""
    r = np.random.default_rng(0)
    images = r.uniform(-1, 1, (8, 28, 28, 1)).astype(np.float32)
    return {"source": images, "label": r.integers(0, 10, 8).astype(np.int32), "target": images[::-1] * 0.5}


def one_device_step(task: adda.Task) -> parallel.ParallelStep:
    """The task's train step compiled for one device."""
    return parallel.parallelize(task.train_step, mesh=parallel.make_mesh(ONE_DEVICE), batch_axis=task.batch_axis)


def test_stages():
    task = adda.Task(tiny_config(source_steps=1, adapt_steps=1))
    batch = stage_batch()
    images, labels = batch["source"], batch["label"]
    step = one_device_step(task)
    logits = jax.jit(task.logits)
    state = jax.device_get(jax.jit(task.init)(jax.random.key(0), batch))  # on the host: the step donates its input
    p = state.source.params
    out = logits(p["encoder"], p["classifier"], images)
    chex.assert_shape(out, (8, 10))
    chex.assert_trees_all_equal(state.target.params, p["encoder"])

    trained, metrics = step(step.put_state(state), step.put_batch(batch))
    trained = jax.device_get(step.get_state(trained))
    # The cross-entropy of the initial logits, recomputed by hand.
    expected = -np.mean(np.asarray(jax.nn.log_softmax(out))[np.arange(8), labels])
    np.testing.assert_allclose(float(metrics["source_loss"]), expected, rtol=1e-5)
    assert int(trained.step) == 1 and changed(trained.source, state.source)
    chex.assert_trees_all_equal(trained.target.params, trained.source.params["encoder"])  # M_t follows M_s
    chex.assert_trees_all_equal(trained.discriminator, state.discriminator)

    adapted, m = step(step.put_state(trained), step.put_batch(batch))
    adapted = jax.device_get(step.get_state(adapted))
    assert int(adapted.step) == 2 and all(np.isfinite(float(v)) for v in jax.device_get(m).values())
    chex.assert_trees_all_equal(adapted.source, trained.source)  # M_s and C fixed
    assert changed(adapted.target.params, trained.target.params)
    assert changed(adapted.discriminator.params, trained.discriminator.params)

    p = trained.source.params
    pred = np.argmax(np.asarray(logits(p["encoder"], p["classifier"], images)), -1)
    acc = task.accuracy(p["encoder"], p["classifier"], {"image": images, "label": labels})
    np.testing.assert_allclose(acc, np.mean(pred == labels), atol=0)


def test_bf16_stages_keep_float32_state_and_losses_close_to_f32():
    """model.dtype="bfloat16": a pre-training then an adaptation step log finite float32 losses within 0.1 % of
    the float32 nets' (same initial parameters and batches; measured <= 2e-4), the logits are float32 and within
    5 % of their largest magnitude (measured 0.8 %), and every parameter and optimiser moment stays float32."""
    batch = stage_batch()
    tasks, rows, states = {}, {}, {}
    for dtype in ("float32", "bfloat16"):
        tasks[dtype] = task = adda.Task(set_fields(tiny_config(source_steps=1, adapt_steps=1), {"model.dtype": dtype}))
        step = one_device_step(task)
        state, rows[dtype] = step.put_state(jax.jit(task.init)(jax.random.key(0), batch)), []
        for _ in range(2):  # pre-training, then adaptation
            state, metrics = step(state, step.put_batch(batch))
            rows[dtype].append(jax.device_get(metrics))
        states[dtype] = jax.device_get(step.get_state(state))
        floats = {a.dtype for a in jax.tree.leaves(states[dtype]) if jnp.issubdtype(a.dtype, jnp.inexact)}
        assert floats == {jnp.dtype(jnp.float32)}
    for r16, r32 in zip(rows["bfloat16"], rows["float32"], strict=True):
        assert set(r16) == {"source_loss", "d_loss", "mapping_loss"}
        for k in r16:
            assert r16[k].dtype == np.float32 and np.isfinite(r16[k])
            np.testing.assert_allclose(r16[k], r32[k], rtol=1e-3)
    p = states["bfloat16"].source.params
    l16, l32 = (jax.jit(tasks[d].logits)(p["encoder"], p["classifier"], batch["source"])
                for d in ("bfloat16", "float32"))
    assert l16.dtype == jnp.float32
    np.testing.assert_allclose(l16, l32, atol=0.05 * float(jnp.max(jnp.abs(l32))), rtol=0)


@pytest.mark.parametrize("fields, message", [
    ({"model.dtype": "float16"}, r"unknown config.model.dtype 'float16'; allowed: \['bfloat16', 'float32'\]"),
    ({"steps": 41}, "config.steps=41 must be config.source_steps [+] config.adapt_steps = 20 [+] 20 = 40"),
    ({"adapt_steps": -1, "steps": 19}, "config.adapt_steps must be an integer >= 0, got -1"),
    ({"data.target": "usps"}, r"unknown config.data.target 'usps'; allowed: \['mnist', 'fashion_mnist', 'digits'\]"),
    ({"batch_size": 9}, "config.batch_size=9 is not divisible by the 2 devices"),
])
def test_validation_names_the_bad_value(fields, message):
    with pytest.raises(ValueError, match=message):
        adda.validate(set_fields(tiny_config(), fields), 2)


@pytest.fixture(scope="module")
def straight(data_dir, tmp_path_factory):
    """The workdir of an uninterrupted in-process run of both stages on one device."""
    workdir = tmp_path_factory.mktemp("straight")
    loop.train_and_evaluate(tiny_config(data_dir), str(workdir), devices=ONE_DEVICE)
    return workdir


def eval_json(workdir) -> dict:
    return json.loads((workdir / "eval.json").read_text())


def test_source_stage_then_relaunch_with_adaptation_equals_one_run(data_dir, straight, tmp_path):
    source_only = loop.train_and_evaluate(tiny_config(data_dir, adapt_steps=0), str(tmp_path), devices=ONE_DEVICE)
    assert source_only["adda_target_accuracy"] == source_only["source_only_target_accuracy"]  # M_t = M_s
    resumed = loop.train_and_evaluate(tiny_config(data_dir), str(tmp_path), devices=ONE_DEVICE)
    rows = [r for r in logged_metrics(tmp_path) if "d_loss" in r]
    assert [r["step"] for r in rows] == list(range(1, SOURCE_STEPS + ADAPT_STEPS + 1))  # no step logged twice
    assert rows == [r for r in logged_metrics(straight) if "d_loss" in r]
    assert {"step": SOURCE_STEPS + ADAPT_STEPS, **resumed} == eval_json(straight)
    assert resumed["source_only_target_accuracy"] == source_only["source_only_target_accuracy"]
    assert resumed["num_target_test"] == 360 and resumed["num_target_train_unlabelled"] == 1437
    assert all(0 <= resumed[k] <= 1 for k in ("adda_target_accuracy", "source_test_accuracy"))
    assert (tmp_path / "checkpoints" / str(SOURCE_STEPS + ADAPT_STEPS)).is_dir()

    example = {"source": np.zeros((1, 28, 28, 1), np.float32), "label": np.zeros((1,), np.int32),
               "target": np.zeros((1, 28, 28, 1), np.float32)}
    _, a = runs.restore(str(straight), "adda", example)
    _, b = runs.restore(str(tmp_path), "adda", example)
    assert max_abs_diff(a, b) == 0.0 and changed(a.target.params, a.source.params["encoder"])


def launch_args(data_dir: str) -> list[str]:
    return ["--config", "experiments/adda_mnist_digits.py",
            *config_flags({**TINY, "data.data_dir": data_dir, "source_steps": SOURCE_STEPS,
                           "adapt_steps": ADAPT_STEPS, "steps": SOURCE_STEPS + ADAPT_STEPS})]


def test_two_devices_log_what_one_does(data_dir, straight, tmp_path):
    launch_task_to_end(tmp_path, launch_args(data_dir), devices=2)
    assert_rows_close(logged_metrics(straight), logged_metrics(tmp_path), rtol=2e-5)


@pytest.mark.slow
def test_sigkill_then_resume_equals_uninterrupted_run(data_dir, straight, tmp_path):
    killed_at, out = sigkill_after_checkpoint_and_relaunch(tmp_path, launch_args(data_dir), TINY["checkpoint_every"])
    assert 10 <= killed_at < SOURCE_STEPS + ADAPT_STEPS and f"resumed from the checkpoint at step {killed_at}" in out
    assert logged_metrics(tmp_path) == logged_metrics(straight)
    assert eval_json(tmp_path) == eval_json(straight)
