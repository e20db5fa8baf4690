"""The host-side training loop: `train_and_evaluate(config, workdir)`.

Builds data, networks and the compiled data-parallel step; restores the latest checkpoint of
the workdir (refusing one of another config); trains with checkpoints every
`checkpoint_every` steps, at the end and on SIGTERM/SIGINT; logs metrics, visualisations and a
progress bar; stops at the first non-finite loss without saving it; evaluates at the end.
"""
from __future__ import annotations

import contextlib
import importlib
import json
import os
import signal
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from gan_jax import checkpoint, config as config_lib, parallel, train, visualize, writers
from gan_jax.data import mixtures

# On 2 cores, more than ~16 multi-device steps queued without waiting deadlock XLA:CPU's
# collectives (shared/ENVIRONMENT.md); waiting on every 8th step keeps well clear of it.
MAX_STEPS_IN_FLIGHT = 8
PRECISE_BN = "_precise_bn"  # suffix of the mixture metrics evaluated with recomputed batch statistics


class NonFiniteLossError(FloatingPointError):
    """A loss or parameter became NaN or Inf; the last good checkpoint is kept."""


def make_source(config: ml_collections.ConfigDict, split: str = "train"):
    """The dataset named by `config.data.name` as a random-access source of {"x": ..., ...} examples."""
    d = config.data
    if d.name in mixtures.MIXTURES:
        return mixtures.MixtureSource(mixtures.get_mixture(d.name), d.num_train, seed=config.seed)
    from gan_jax import data as data_lib
    if d.name not in data_lib.DATASET_NAMES:
        raise ValueError(f"unknown dataset {d.name!r}; allowed: {sorted(mixtures.MIXTURES) + list(data_lib.DATASET_NAMES)}")
    stacked = d.name == "stacked_mnist"
    source = data_lib.make_image_source(d.name, d.data_dir or None, d.train_split if split == "train" else split,
                                        image_size=d.image_size or None, manual_dir=d.manual_dir or None,
                                        stacked_size=d.num_train if stacked else None)
    return _RenameImage(source, min(len(source), d.num_train) if split == "train" else len(source))


class _RenameImage:
    """Image sources yield "image"; the train step reads "x". Training uses the first `size` examples
    (config.data.num_train: Goodfellow et al. 2014 train on MNIST train[0:50000])."""

    def __init__(self, source, size: int):
        self.source, self.size = source, size

    def __len__(self) -> int:
        return self.size

    def __getitems__(self, idx) -> dict[str, np.ndarray]:
        out = self.source.__getitems__(idx)
        return {("x" if k == "image" else k): v for k, v in out.items()}


class _StopRequested:
    """SIGTERM / SIGINT set a flag; the loop checkpoints and exits at the next step."""

    def __init__(self):
        self.signum = None

    @contextlib.contextmanager
    def installed(self):
        old = {s: signal.signal(s, self._handle) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield self
        finally:
            for s, h in old.items():
                signal.signal(s, h)

    def _handle(self, signum, frame):
        self.signum = signum


def _reference_batch(source, config: ml_collections.ConfigDict) -> np.ndarray | None:
    """The fixed reference batch of a virtual-batch-norm critic: the first N training examples."""
    n = config.model.critic.get("virtual_batch_norm", 0) or config.model.critic.get("base", {}).get(
        "virtual_batch_norm", 0)
    return np.asarray(source.__getitems__(np.arange(n))["x"]) if n else None


def _marginals(source, gan: train.GAN, chunk: int = 10_000) -> np.ndarray | None:
    """The training set's mean example in [0, 1] pixels, for a generator whose output bias starts there
    (Goodfellow et al. 2014: the mean of MNIST train[0:50000]); None for other generators."""
    if getattr(gan.generator, "output_bias", "zeros") != "marginals":
        return None
    total = sum(np.asarray(source.__getitems__(np.arange(i, min(i + chunk, len(source))))["x"], np.float64).sum(0)
                for i in range(0, len(source), chunk))
    return ((total / len(source) + 1.0) / 2.0).astype(np.float32)


def state_initializer(config: ml_collections.ConfigDict, gan: train.GAN, source
                      ) -> Callable[[jax.Array], train.GANState]:
    """`key -> initial state` of `config`'s GAN trained on `source` (with the reference batch of a
    virtual-batch-norm critic and the marginals of a generator that starts from them)."""
    data_shape = np.asarray(source.__getitems__([0])["x"]).shape[1:]
    reference, marginals = _reference_batch(source, config), _marginals(source, gan)
    return lambda key: train.init_state(gan, key, data_shape, reference, marginals)


TRAINERS = {"gan": "gan_jax.experiment", "image_to_image": "gan_jax.image_to_image", "vae": "gan_jax.vae",
            "adda": "gan_jax.adda"}


def trainer(config: ml_collections.ConfigDict) -> Callable[[ml_collections.ConfigDict, str], dict]:
    """The `train_and_evaluate(config, workdir)` that runs `config`: its `trainer` field (pix2pix /
    CycleGAN, VAE, ADDA configs have one) or, without one, this module's GAN loop."""
    name = config.get("trainer", "gan")
    if name not in TRAINERS:
        raise ValueError(f"unknown config.trainer {name!r}; allowed: {sorted(TRAINERS)}")
    return importlib.import_module(TRAINERS[name]).train_and_evaluate


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, devices: list | None = None
                       ) -> dict[str, float]:
    """Train (or resume) the experiment `config` in `workdir` on `devices` (default: all); returns the
    final evaluation."""
    mesh = parallel.make_mesh(devices)
    config_lib.validate(config, num_devices=mesh.size)
    is_chief = jax.process_index() == 0
    os.makedirs(workdir, exist_ok=True)

    gan = train.build(config)
    source = make_source(config)
    init = state_initializer(config, gan, source)
    n_critic = config.loss.n_critic
    pipeline = _pipeline(source, config)
    step_fn = parallel.parallelize(train.make_train_step(gan), config.parallel, mesh)

    ckpt = checkpoint.Checkpointer(workdir, config)
    ckpt.check_config()
    key = jax.random.key(config.seed)
    replicated = NamedSharding(mesh, P())
    state = ckpt.restore(jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=replicated),
                                      jax.eval_shape(init, key)))
    if state is None:
        state = jax.jit(init, out_shardings=replicated)(key)
        _say(f"new run in {workdir}")
    start = int(jax.device_get(state.step))
    if start:
        _say(f"resumed from the checkpoint at step {start} in {workdir}")
    if is_chief:
        with open(os.path.join(workdir, "config.json"), "w") as f:
            json.dump(json.loads(config.to_json_best_effort()), f, indent=2)

    writer = writers.MetricWriter(workdir, enabled=is_chief, resume_step=start)
    progress = writers.Progress(start, config.steps, enabled=is_chief)
    sync_every = min(config.log_every, MAX_STEPS_IN_FLIGHT) if mesh.size > 1 else config.log_every
    device_state = step_fn.put_state(state)
    del state
    pending: list[tuple[int, dict]] = []
    stop = _StopRequested()
    step = start
    try:
        with stop.installed():
            batches = pipeline.iterate(start)
            while step < config.steps:
                host = next(batches)
                host = {k: v.reshape(n_critic, -1, *v.shape[1:]) for k, v in host.items()}
                device_state, metrics = step_fn(device_state, step_fn.put_batch(host))
                step += 1
                pending.append((step, metrics))
                # Read the flag once: a signal landing between two reads would skip the save yet stop.
                signum = stop.signum
                boundary = step % config.checkpoint_every == 0 or step == config.steps or signum is not None
                if boundary or step % sync_every == 0:
                    _check_and_log(pending, writer, progress, config.log_every)
                    pending = []
                if step % config.sample_every == 0 and is_chief:
                    _visualise(gan, step_fn.get_state(device_state), config, workdir, writer, step)
                if config.eval.every and step % config.eval.every == 0 and step < config.steps:
                    scores = evaluate(gan, step_fn.get_state(device_state), config)
                    writer.write(step, {f"eval/{k}": v for k, v in scores.items()})
                if boundary:
                    ckpt.save(step, step_fn.get_state(device_state))
                    _say(f"checkpoint at step {step}")
                if signum is not None:
                    ckpt.wait()
                    if ckpt.latest_step() != step:
                        raise RuntimeError(f"the checkpoint of step {step} is missing after the save; "
                                           f"latest is {ckpt.latest_step()}")
                    _say(f"signal {signum}: saved the checkpoint at step {step}; exiting")
                    raise SystemExit(128 + signum)
        final = step_fn.get_state(device_state)
        results = evaluate(gan, final, config)
        if is_chief:
            _visualise(gan, final, config, workdir, writer, step)
            with open(os.path.join(workdir, "eval.json"), "w") as f:
                json.dump({"step": step, **results, **_per_mode(gan, final, config), "protocol": _protocol(config)},
                          f, indent=2)
            writer.write(step, {f"eval/{k}": v for k, v in results.items()})
        return results
    finally:
        ckpt.wait()
        ckpt.close()
        progress.close()
        writer.close()


def _say(message: str) -> None:
    """A line on stdout from process 0 (the progress bar is on stderr)."""
    if jax.process_index() == 0:
        print(message, flush=True)


def _pipeline(source, config: ml_collections.ConfigDict):
    from gan_jax.data.pipeline import Pipeline
    return Pipeline(source, batch_size=config.batch_size * config.loss.n_critic, seed=config.seed,
                    process_index=jax.process_index(), process_count=jax.process_count())


def _check_and_log(pending: list[tuple[int, dict]], writer: writers.MetricWriter, progress: writers.Progress,
                   log_every: int) -> None:
    """Fetch the pending steps' metrics (this waits for them), stop on a non-finite one, log."""
    fetched = jax.device_get([m for _, m in pending])
    for (step, _), m in zip(pending, fetched):
        m = {k: float(np.asarray(v).reshape(-1)[0]) for k, v in m.items()}
        if not m.pop("finite"):
            bad = sorted(k for k, v in m.items() if not np.isfinite(v)) or ["parameters"]
            raise NonFiniteLossError(f"non-finite {', '.join(bad)} at step {step} ({m}); stopped without "
                                     "saving: the last checkpoint is the last good state")
        if step % log_every == 0:
            writer.write(step, m)
        last = m
    progress.update(pending[-1][0], last)


def evaluate(gan: train.GAN, state: train.GANState, config: ml_collections.ConfigDict) -> dict[str, float]:
    """The experiment's metrics at the end of a run.

    Mixtures: the VEEGAN/PacGAN mode statistics on `eval.num_samples` samples. Images, when
    `eval.classifier_dir` names a classifier saved by `python -m gan_jax.metrics.classifier`: FID and
    the Inception-Score analogue with that classifier's features / class probabilities, on
    `eval.num_samples` samples against as many test images. Nothing otherwise.
    """
    if config.data.name in mixtures.MIXTURES:
        from gan_jax.metrics.mixture import mode_statistics
        mix = mixtures.get_mixture(config.data.name)

        def scores(state: train.GANState, suffix: str = "") -> dict[str, float]:
            samples = _samples(gan, state, config, config.eval.num_samples)
            return {k + suffix: float(v) for k, v in mode_statistics(samples, jnp.asarray(mix.means), mix.std).items()}
        if not config.eval.precise_bn_batches:
            return scores(state)
        stats = train.precise_batch_stats(gan, jax.device_get(state.ema_params),
                                          jax.device_get(state.generator.batch_stats),
                                          jax.random.fold_in(jax.random.key(config.seed), (1 << 30) - 1),
                                          config.eval.precise_bn_batches, config.batch_size)
        return scores(state) | scores(state.replace(generator=state.generator.replace(batch_stats=stats)), PRECISE_BN)
    results = _parzen(gan, state, config) if config.eval.parzen else {}
    if not config.eval.classifier_dir:
        return results
    from gan_jax.metrics import features
    net = features.lenet_features(config.eval.classifier_dir)
    n = config.eval.num_samples
    if config.data.name == "stacked_mnist":
        return {**results, **_stacked_mnist_modes(gan, state, config, net)}
    real = _first_images(config, "test", n)
    fake = np.concatenate([np.asarray(_samples(gan, state, config, min(1000, n - i), offset=i))
                           for i in range(0, n, 1000)])
    return {**results, **_image_scores(net, real, fake)}


def real_data_floor(config: ml_collections.ConfigDict) -> dict[str, float]:
    """What a perfect sampler scores under `evaluate`'s image protocol: the first `eval.num_samples`
    training images taken as the samples, with the classifier of `eval.classifier_dir`."""
    from gan_jax.metrics import features
    n = config.eval.num_samples
    return _image_scores(features.lenet_features(config.eval.classifier_dir), _first_images(config, "test", n),
                         _first_images(config, "train", n))


def _first_images(config: ml_collections.ConfigDict, split: str, n: int) -> np.ndarray:
    source = make_source(config, split)
    if len(source) < n:
        raise ValueError(f"config.eval.num_samples={n} exceeds the {len(source)} {split} images of {config.data.name}")
    return source.__getitems__(np.arange(n))["x"]


def _image_scores(net, real: np.ndarray, images: np.ndarray) -> dict[str, float]:
    """FID of `images` against the `real` images, and the classifier score (IS analogue) of `images`."""
    from gan_jax.metrics import features, fid, inception_score
    real_f, _ = features.extract(net, real)
    fake_f, fake_logits = features.extract(net, images)
    score, _ = inception_score.inception_score(jax.nn.softmax(jnp.asarray(fake_logits)))
    return {"fid": float(fid.fid(jnp.asarray(real_f), jnp.asarray(fake_f))), "classifier_score": float(score)}


def _stacked_mnist_modes(gan, state, config, net) -> dict[str, float]:
    """Modes (of 1000) and KL(generated triples || uniform) of eval.num_samples samples, each channel
    read by the classifier (VEEGAN / PacGAN protocol: 26,000 samples)."""
    from gan_jax.metrics.stacked_mnist import stacked_mnist_modes
    n = config.eval.num_samples
    fake = np.concatenate([np.asarray(_samples(gan, state, config, min(1000, n - i), offset=i))
                           for i in range(0, n, 1000)])
    stats = stacked_mnist_modes(fake, lambda x: net.apply_fn(x)[1])
    return {"modes": float(stats["modes"]), "kl": stats["kl"], "confident": stats["confident"]}


def _parzen(gan: train.GAN, state: train.GANState, config: ml_collections.ConfigDict) -> dict[str, float]:
    """Goodfellow et al. 2014's Parzen log-likelihood of MNIST test images under 10,000 samples, and a
    memorisation check: median distance of 1,000 samples to their nearest training image over the same
    for 1,000 test images (≈ 1 for a generator that does not copy; → 0 for one that memorises)."""
    from gan_jax.metrics import parzen
    if config.data.name != "mnist":
        raise ValueError(f"config.eval.parzen follows Goodfellow et al.'s MNIST protocol; dataset is {config.data.name!r}")
    validation, test = parzen.mnist_parzen_points(config.data.data_dir or None, config.data.manual_dir or None)
    n = parzen.NUM_SAMPLES
    centres = np.concatenate([np.asarray(parzen.to_unit_interval(_samples(gan, state, config, 1000, offset=i)))
                              for i in range(0, n, 1000)])
    ll = parzen.parzen_evaluate(jnp.asarray(test), jnp.asarray(validation), jnp.asarray(centres))
    train_src = make_source(config)
    train_px = np.asarray(parzen.to_unit_interval(train_src.__getitems__(np.arange(len(train_src)))["x"]))
    ratio = _nearest_distance(centres[:1000], train_px) / _nearest_distance(test[:1000], train_px)
    return {"parzen_log_likelihood": ll["mean"], "parzen_std_err": ll["std_err"], "parzen_sigma": ll["sigma"],
            "nn_distance_ratio": ratio}


def _nearest_distance(points: np.ndarray, reference: np.ndarray, chunk: int = 10_000) -> float:
    """Median over `points` of the Euclidean distance to the nearest row of `reference`."""
    p = jnp.asarray(points)
    best = jnp.full(p.shape[0], jnp.inf)
    sq = jnp.sum(p * p, axis=1)
    for i in range(0, reference.shape[0], chunk):
        r = jnp.asarray(reference[i:i + chunk])
        d2 = sq[:, None] - 2 * p @ r.T + jnp.sum(r * r, axis=1)[None, :]
        best = jnp.minimum(best, jnp.min(d2, axis=1))
    return float(jnp.median(jnp.sqrt(jnp.maximum(best, 0.0))))


def _protocol(config: ml_collections.ConfigDict) -> str:
    if config.data.name in mixtures.MIXTURES:
        generator = f"the EMA generator (decay {config.ema_decay})" if config.ema_decay else "the generator"
        precise = (f"; *_precise_bn: G's batch statistics recomputed from {config.eval.precise_bn_batches} batches of "
                   f"{config.batch_size}" if config.eval.precise_bn_batches else "")
        return f"{config.eval.num_samples} samples from {generator}; PacGAN's mode statistics{precise}"
    if config.eval.parzen:
        return ("Goodfellow et al. 2014 Parzen protocol: 10,000 samples, sigma from logspace(-1, 0, 10) on MNIST "
                "train[50000:51000], 10,000 test images, pixels in [0, 1]; memorisation: 1,000 samples' vs 1,000 test "
                "images' median nearest-training-image distance")
    if config.eval.classifier_dir and config.data.name == "stacked_mnist":
        return (f"{config.eval.num_samples} samples, each channel classified by {config.eval.classifier_dir}; "
                "modes = distinct digit triples of 1000, KL(generated triples || uniform)")
    if config.eval.classifier_dir:
        return (f"{config.eval.num_samples} samples vs the first {config.eval.num_samples} {config.data.name} test "
                f"images; features and class probabilities of the classifier in {config.eval.classifier_dir}")
    return "no evaluation configured (set eval.classifier_dir for FID)"


def _per_mode(gan: train.GAN, state: train.GANState, config: ml_collections.ConfigDict) -> dict[str, list[int]]:
    """Mixtures: the evaluated samples' high- and low-quality counts nearest each mode centre (in the order of
    `mixtures.get_mixture(name).means`), which the scalar statistics summarise; nothing for other data."""
    if config.data.name not in mixtures.MIXTURES:
        return {}
    from gan_jax.metrics.mixture import mode_counts
    mix = mixtures.get_mixture(config.data.name)
    samples = _samples(gan, state, config, config.eval.num_samples)
    high, low = mode_counts(samples, jnp.asarray(mix.means), mix.std)
    return {"high_quality_per_mode": [int(c) for c in high], "low_quality_per_mode": [int(c) for c in low]}


def _samples(gan: train.GAN, state: train.GANState, config: ml_collections.ConfigDict, n: int,
             labels: np.ndarray | None = None, offset: int = 0) -> jax.Array:
    """n samples from the generator's EMA weights with fixed keys (the same z at every visualisation).

    Conditional generators without given labels get labels 0, 1, ..., K−1, 0, 1, ... (balanced).
    """
    key = jax.random.fold_in(jax.random.key(config.seed), (1 << 30) + offset)
    if config.model.num_classes and labels is None:
        labels = (np.arange(offset, offset + n) % config.model.num_classes).astype(np.int32)
    return train.sample(gan, jax.device_get(state.ema_params), jax.device_get(state.generator.batch_stats), key, n,
                        labels)


def _visualise(gan, state, config, workdir: str, writer: writers.MetricWriter, step: int) -> None:
    if config.data.name in mixtures.MIXTURES:
        mix = mixtures.get_mixture(config.data.name)
        image = visualize.scatter_png(np.asarray(_samples(gan, state, config, config.eval.num_samples)),
                                      mix.means, title=f"{config.name} step {step}")
    elif config.model.num_classes:
        k = config.model.num_classes  # one row per class
        image = visualize.image_grid(np.asarray(_samples(gan, state, config, k * k, np.repeat(np.arange(k), k))),
                                     ncols=k)
    else:
        image = visualize.image_grid(np.asarray(_samples(gan, state, config, 64)), ncols=8)
    os.makedirs(os.path.join(workdir, "samples"), exist_ok=True)
    visualize.save_png(image, os.path.join(workdir, "samples", f"step_{step:07d}.png"))
    writer.write_image("samples", step, image)
