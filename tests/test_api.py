"""gan_jax.load and python -m gan_jax.sample on finished runs (a 2-D ring GAN, a DCGAN on the fake MNIST, a
pix2pix run): shapes, ranges, determinism, equality with the GAN task's own sampler, the latent tools' geometry,
and that loading and sampling never write to the workdir."""
import builtins
import contextlib
import functools
import importlib
import io
import json
import os
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

import gan_jax
from gan_jax import api, loop, prior, sample, tasks, train, vae
from gan_jax.data import paired
from tests.helpers import set_fields, small, subprocess_xla_flags, tiny_config

ONE_DEVICE = jax.devices()[:1]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def ring(tmp_path_factory) -> str:
    workdir = str(tmp_path_factory.mktemp("ring"))
    loop.train_and_evaluate(tiny_config(), workdir, devices=ONE_DEVICE)
    return workdir


@pytest.fixture(scope="module")
def dcgan(data_dir, tmp_path_factory) -> str:
    workdir = str(tmp_path_factory.mktemp("dcgan"))
    loop.train_and_evaluate(small(importlib.import_module("experiments.dcgan_mnist").get_config(), data_dir), workdir,
                            devices=ONE_DEVICE)
    return workdir


def snapshot(workdir: str) -> dict[str, tuple[int, int]]:
    """(size, mtime in ns) of every file and folder under `workdir`."""
    out = {}
    for folder, dirs, files in os.walk(workdir):
        for name in dirs + files:
            path = os.path.join(folder, name)
            st = os.stat(path)
            out[os.path.relpath(path, workdir)] = (st.st_size, st.st_mtime_ns)
    return out


@contextlib.contextmanager
def read_only(workdir: str, monkeypatch=None):
    """`workdir` made read-only (chmod -R a-w; root ignores it, so with `monkeypatch`, every Python-level open for
    writing, creation, rename or removal under it raises too), and its files checked unchanged afterwards."""
    root = os.path.realpath(workdir)
    inside = lambda path: os.path.realpath(os.fspath(path)).startswith(root + os.sep) or \
        os.path.realpath(os.fspath(path)) == root

    def refuse(path):
        raise PermissionError(f"test: write to read-only workdir: {path}")

    if monkeypatch is not None:
        real_open, real_os_open = builtins.open, os.open
        writes = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

        def guarded_open(file, mode="r", *args, **kwargs):
            if isinstance(file, (str, bytes, os.PathLike)) and set(mode) & set("wax+") and inside(file):
                refuse(file)
            return real_open(file, mode, *args, **kwargs)

        def guarded_os_open(path, flags, *args, **kwargs):
            if flags & writes and inside(path):
                refuse(path)
            return real_os_open(path, flags, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", guarded_open)
        monkeypatch.setattr(io, "open", guarded_open)
        monkeypatch.setattr(os, "open", guarded_os_open)
        for name in ("mkdir", "makedirs", "remove", "unlink", "rmdir"):
            real = getattr(os, name)
            monkeypatch.setattr(os, name, lambda path, *a, _real=real, **k: refuse(path) if inside(path)
                                else _real(path, *a, **k))
        for name in ("rename", "replace"):
            real = getattr(os, name)
            monkeypatch.setattr(os, name, lambda src, dst, *a, _real=real, **k: refuse(src)
                                if inside(src) or inside(dst) else _real(src, dst, *a, **k))
    before = snapshot(workdir)
    modes = {path: os.stat(path).st_mode for path in [workdir] + [os.path.join(workdir, p) for p in before]}
    for path, mode in modes.items():
        os.chmod(path, mode & ~0o222)
    try:
        yield
    finally:
        if monkeypatch is not None:
            monkeypatch.undo()
        for path, mode in modes.items():
            os.chmod(path, mode)
    assert snapshot(workdir) == before


@functools.cache
def obeying_permissions() -> list[str] | None:
    """A command prefix under which the user obeys file permission bits, so that `read_only`'s chmod binds a
    subprocess: none for other users; for root, setpriv dropping the capabilities that override the bits, where
    it can (else None: root writes anyway, and only the unchanged files show that nothing wrote)."""
    if os.geteuid() != 0:
        return []
    caps = "-dac_override,-dac_read_search,-fowner"
    prefix = ["setpriv", f"--bounding-set={caps}", f"--inh-caps={caps}"]
    try:
        return prefix if subprocess.run([*prefix, "true"], capture_output=True, check=False).returncode == 0 else None
    except FileNotFoundError:
        return None


def cli(*args: str) -> subprocess.CompletedProcess:
    """python -m gan_jax.sample ARGS, obeying file permissions where it can."""
    env = dict(os.environ, XLA_FLAGS=subprocess_xla_flags(1))
    return subprocess.run([*(obeying_permissions() or []), sys.executable, "-m", "gan_jax.sample", *args],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=120, check=False)


def test_ring_run(ring, tmp_path, monkeypatch):
    with read_only(ring, monkeypatch):
        with pytest.raises(PermissionError), open(os.path.join(ring, "checkpoints", "new"), "w"):
            pass   # the guard holds
        run = gan_jax.load(ring)
        x = run.sample(0, 64)
        assert isinstance(run, api.GANRun) and run.step == 4 and run.config.data.name == "ring"
        assert x.shape == (64, 2) and x.dtype == np.float32 and np.all(np.isfinite(x))
        np.testing.assert_array_equal(run.sample(jax.random.key(0), 64), x)   # an int seed is its key
        assert np.abs(run.sample(1, 64) - x).max() > 0
        # The EMA generator in inference mode: what the task's own sampler draws from the same key.
        g = run.state.generator
        np.testing.assert_allclose(x, train.sample(run.gan, g.ema, g.batch_stats, jax.random.key(0), 64), atol=1e-6)
        sample.main(["--workdir", ring, "--num", "16", "--seed", "3", "--out", str(tmp_path / "ring.npz")])
        with pytest.raises(ValueError, match="pix2pix and CycleGAN"):
            run.translate(x)
    saved = np.load(tmp_path / "ring.npz")
    np.testing.assert_array_equal(saved["samples"], run.sample(3, 16))
    np.testing.assert_array_equal(saved["samples"], run.generate(saved["z"]))
    assert int(saved["step"]) == 4 and "labels" not in saved

    with read_only(ring):
        if obeying_permissions() is not None:   # the workdir is read-only to the command
            probe = subprocess.run([*obeying_permissions(), "touch", os.path.join(ring, "probe")], capture_output=True,
                                   check=False)
            assert probe.returncode != 0
        done = cli("--workdir", ring, "--num", "200", "--out", str(tmp_path / "ring.png"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert np.asarray(Image.open(tmp_path / "ring.png")).ndim == 3   # the scatter plot


def test_a_read_only_workdir_with_a_damaged_step_falls_back(ring, tmp_path, monkeypatch, capsys):
    workdir = str(shutil.copytree(ring, tmp_path / "ring"))
    step = os.path.join(workdir, "checkpoints", "4")
    with open(os.path.join(step, "manifest.json")) as f:
        damaged = os.path.join(step, min(json.load(f)["files"]))
    with open(damaged, "ab") as f:
        f.write(b"\0")
    with read_only(workdir, monkeypatch):
        assert gan_jax.load(workdir).step == 2
    assert "checkpoint step 4 in" in capsys.readouterr().err and os.path.isdir(step)   # skipped, not moved


def test_interpolation_and_truncation(ring):
    run = gan_jax.load(ring)
    z0, z1 = run.latents(5, 2)
    for method in prior.METHODS:
        path = run.interpolate(5, 7, method=method)
        assert path.shape == (7, 2)
        np.testing.assert_allclose(path[[0, -1]], run.generate(np.stack([z0, z1])), atol=1e-5)
    # slerp between codes of equal norm r stays on the sphere of radius r; its midpoint is (z0 + z1) / (2 cos(Ω/2)).
    r = np.linalg.norm(z0)
    z1 = z1 * r / np.linalg.norm(z1)
    codes = np.asarray(prior.interpolate(jnp.asarray(z0), jnp.asarray(z1), 9, "slerp"))
    np.testing.assert_allclose(np.linalg.norm(codes, axis=1), r, rtol=1e-5)
    half = np.arccos(np.dot(z0, z1) / r**2) / 2
    np.testing.assert_allclose(codes[4], (z0 + z1) / (2 * np.cos(half)), rtol=1e-5, atol=1e-6)

    z = run.latents(0, 2000, truncation=0.5)
    assert z.shape == (2000, run.latent_dim) and np.abs(z).max() <= 0.5 and np.abs(z).max() > 0.45
    np.testing.assert_array_equal(run.sample(0, 2000, truncation=0.5), run.generate(z))
    with pytest.raises(ValueError, match="truncation"):
        run.sample(0, 4, truncation=0.0)
    with pytest.raises(ValueError, match="unconditional"):
        run.sample(0, 4, labels=1)


def test_dcgan_run(dcgan, tmp_path, monkeypatch, capsys):
    with read_only(dcgan):
        done = cli("--workdir", dcgan, "--num", "10", "--seed", "7", "--out", str(tmp_path / "dcgan.npz"))
    assert done.returncode == 0, done.stderr[-2000:]
    with read_only(dcgan, monkeypatch):
        run = gan_jax.load(dcgan)
        x = run.sample(7, 10)
        assert sample.main(["--workdir", dcgan, "--num", "10", "--out", str(tmp_path / "dcgan.png")]) == 0
        assert sample.main(["--workdir", dcgan, "--num", "10", "--out", str(tmp_path / "x.npz"), "--labels", "1"]) == 2
    assert capsys.readouterr().err.strip() == f"error: the generator of {dcgan} is unconditional: it takes no labels"
    assert x.shape == (10, 28, 28, 1) and -1.0 <= x.min() < x.max() <= 1.0
    np.testing.assert_allclose(np.load(tmp_path / "dcgan.npz")["samples"], x, atol=1e-6)   # another process
    assert np.asarray(Image.open(tmp_path / "dcgan.png")).shape == (3 * 29 + 1, 4 * 29 + 1, 3)   # 4 per row


def test_pix2pix_run(tmp_path):
    from gan_jax.tasks import pix2pix
    config = set_fields(pix2pix.experiment_config("inpainting", "mnist"), {   # scikit-learn's digits: no files
        "data.domain": "digits", "batch_size": 8, "steps": 2, "checkpoint_every": 2, "sample_every": 2,
        "model.unet_features": (4, 8), "model.d_features": 4, "eval.num_test": 16, "eval.batch_size": 16})
    loop.train_and_evaluate(config, str(tmp_path), devices=ONE_DEVICE)
    with read_only(str(tmp_path)):
        run = gan_jax.load(str(tmp_path))
    targets = paired.load_domain("digits", "test", limit=5)["image"]
    y = run.translate(paired.make_pairs("inpainting", jnp.asarray(targets)))
    assert isinstance(run, api.TranslationRun) and run.step == 2
    assert y.shape == (5, 28, 28, 1) and -1.0 <= y.min() < y.max() <= 1.0
    with pytest.raises(ValueError, match="pix2pix run, which has no sample"):
        run.sample(0, 4)
    with pytest.raises(ValueError, match="allowed"):
        run.translate(targets, direction="y_to_x")


def test_vae_and_classifier_runs(data_dir, tmp_path):
    from experiments.classifier_mnist import get_config as classifier_config
    from experiments.vae_mnist import get_config as vae_config
    # The tiny nets of tests/test_vae.py and tests/test_image_experiments.py (their programs are in the cache).
    tiny = {"checkpoint_every": 1, "sample_every": 1000, "data.data_dir": data_dir, "model.channels": (4, 8),
            "model.hidden": 16}
    loop.train_and_evaluate(set_fields(vae_config(), {**tiny, "steps": 1, "batch_size": 8, "model.latent_dim": 4,
                                                      "eval.parzen": False, "eval.batch_size": 64}),
                            str(tmp_path / "vae"), devices=ONE_DEVICE)
    loop.train_and_evaluate(set_fields(classifier_config(), {**tiny, "steps": 4, "batch_size": 32}),
                            str(tmp_path / "clf"), devices=ONE_DEVICE)
    run = gan_jax.load(str(tmp_path / "vae"))
    x = run.sample(0, 6, truncation=2.0)
    assert isinstance(run, api.VAERun) and x.shape == (6, 28, 28, 1) and -1.0 <= x.min() < x.max() <= 1.0
    np.testing.assert_allclose(x, vae.sample(run.model, run.state.vae.params, jax.random.key(0), 6, 2.0), atol=1e-6)
    assert run.encode(x).shape == (6, 4) and run.interpolate(1, 3, method="linear").shape == (3, 28, 28, 1)

    other = gan_jax.load(str(tmp_path / "clf"))
    assert type(other) is api.Run and other.step == 4 and other.config.task == "classifier"
    assert hasattr(other.state, "net")
    for method, args in (("sample", (0, 4)), ("latents", (0, 4)), ("interpolate", (0, 4)), ("translate", (x,))):
        with pytest.raises(ValueError, match=f"classifier run, which has no {method}"):
            getattr(other, method)(*args)


@pytest.mark.parametrize("name, fields", [("goodfellow2014_mnist", {}),   # output bias from the data's marginals
                                          ("dcgan_mnist", {"model.critic.virtual_batch_norm": 4,
                                                           "model.critic.batch_norm": False})])
def test_gan_state_shapes_come_from_the_config(name, fields, data_dir):
    """Restoring needs the state's shapes only: those built without the data equal the task's own."""
    config = set_fields(small(importlib.import_module(f"experiments.{name}").get_config(), data_dir), fields)
    task = tasks.build(config)
    expected = jax.eval_shape(lambda k: task.init(k, task.batches(0, 1)(0)), jax.random.key(0))
    assert jax.tree.structure(api.GANRun.abstract_state(config)) == jax.tree.structure(expected)
    assert jax.tree.leaves(api.GANRun.abstract_state(config)) == jax.tree.leaves(expected)


def test_labels_of_conditional_generators():
    run = api.GANRun.__new__(api.GANRun)
    run.workdir, run.num_classes = "w", 3
    np.testing.assert_array_equal(run.class_labels(None, 5), [0, 1, 2, 0, 1])   # balanced
    np.testing.assert_array_equal(run.class_labels(2, 3), [2, 2, 2])
    np.testing.assert_array_equal(run.class_labels(np.array([0, 2]), 2), [0, 2])
    for bad in (3, [0, 1, 2], [0.5, 1.0]):
        with pytest.raises(ValueError, match=r"labels must be one class or 2 classes, integers in \[0, 3\)"):
            run.class_labels(np.asarray(bad), 2)


def test_user_errors(tmp_path, capsys):
    assert sample.main(["--workdir", str(tmp_path), "--out", str(tmp_path / "x.png")]) == 2
    assert sample.main(["--workdir", str(tmp_path), "--out", str(tmp_path / "x.jpg")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [f"error: no config.json: {tmp_path} is not the workdir of a run of launch.py ({tmp_path}/config.json)",
                   f"error: --out must end in one of ('.png', '.npz'), got '{tmp_path}/x.jpg'"]
    assert os.listdir(tmp_path) == []


def test_a_run_saved_before_a_field_existed_loads_with_its_default(ring, tmp_path):
    old = str(tmp_path / "old")
    shutil.copytree(ring, old)
    path = os.path.join(old, "config.json")
    with open(path) as f:
        saved = json.load(f)
    del saved["max_abs_loss"], saved["model"]["latent_distribution"]
    with open(path, "w") as f:
        json.dump(saved, f)
    run = gan_jax.load(old)
    assert (run.config.max_abs_loss, run.config.model.latent_distribution) == (1e10, "normal")
    np.testing.assert_array_equal(run.sample(0, 8), gan_jax.load(ring).sample(0, 8))
