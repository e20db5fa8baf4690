"""Loading a trained run and drawing from it: `run = gan_jax.load(workdir)`.

    run = gan_jax.load("/tmp/ring")                  # config.json + the newest usable checkpoint
    x = run.sample(0, 64)                            # GAN / VAE: 64 samples from seed 0, a numpy array
    z = run.latents(1, 8, truncation=1.0)            # codes from the run's prior, truncated to [−1, 1]
    path = run.interpolate(2, 10, method="slerp")    # 10 outputs along the great circle between two codes
    y = run.translate(images, direction="x_to_y")    # pix2pix / CycleGAN

`load` returns the `Run` of the workdir's task:

* GAN runs (`GANRun`): the generator's EMA weights (its parameters when the run kept none) in inference mode
  (running batch statistics), as the task's own samples and evaluations use it. Outputs are the data's: images
  [n, H, W, C] in [−1, 1], or points [n, 2] for the 2-D mixtures.
* VAE runs (`VAERun`): the decoder means of gan_jax/vae.py, images [n, 28, 28, 1] in [−1, 1], and `encode`.
* pix2pix and CycleGAN runs (`TranslationRun`): `translate`.
* Other tasks (ADDA, the classifier): a `Run` with `config`, `step`, `state` and `task`, whose sampling and
  translation methods raise ValueError.

Keys are JAX PRNG keys or integer seeds; the same key gives the same arrays. Restoring reads config.json and
checkpoints/ only, and writes nothing to the workdir, so it works on a read-only copy (one exception, in
gan_jax.checkpoint: a step that fails verification is moved to checkpoints.damaged/, which a read-only workdir
refuses with a permission error instead of falling back to the previous step). It does not need the
training data: the state's shapes come from the config (the task's `init` traced on zeros shaped like its data),
and the GAN's data-dependent initial values (a virtual-batch-norm critic's reference batch, an output bias set
from the training set's marginals) are restored from the checkpoint like every other value.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from gan_jax import prior, runs, tasks, train, vae
from gan_jax.data import mixtures, paired
from gan_jax.tasks import gan as gan_task, translation, vae as vae_task

KeyLike = jax.Array | int
# The image domains of gan_jax.data.paired, on which the pix2pix, CycleGAN, VAE, ADDA and classifier tasks train.
DOMAIN_SHAPE = (paired.SIZE, paired.SIZE, 1)
# The batch key each of those tasks' `init` reads its example's shape from.
EXAMPLE_KEY = {"pix2pix": "y", "cyclegan": "x", "vae": "image", "adda": "source", "classifier": "image"}


def load(workdir: str) -> Run:
    """The run in `workdir` at its newest usable checkpoint (see the module docstring)."""
    config = runs.read_config(workdir)
    kind = RUNS.get(config.task, Run)
    return kind(workdir, config, runs.restore_state(workdir, config, kind.abstract_state(config)))


def example_batch(config: ml_collections.ConfigDict) -> dict[str, np.ndarray]:
    """Zeros shaped like one batch of the run's training data: all that `Task.init` reads of a batch."""
    if config.task == "gan":
        return {"x": np.zeros((1, 1, *data_shape(config)), np.float32)}   # [n_critic, B, ...]
    return {EXAMPLE_KEY[config.task]: np.zeros((1, *DOMAIN_SHAPE), np.float32)}


def data_shape(config: ml_collections.ConfigDict) -> tuple[int, ...]:
    """One training example's shape for a GAN config, from the config alone: the mixtures' points are 2-D; an
    image dataset's examples have its native shape, or image_size × image_size with its channels when
    config.data.image_size is set."""
    d = config.data
    if d.name in mixtures.MIXTURES:
        return tuple(mixtures.get_mixture(d.name).means.shape[1:])
    from gan_jax import data
    height, width, channels = data.dataset_spec(d.name).shape
    return (d.image_size, d.image_size, channels) if d.image_size else (height, width, channels)


def _as_key(key: KeyLike) -> jax.Array:
    return jax.random.key(int(key)) if isinstance(key, (int, np.integer)) else key


class Run:
    """A run restored from its workdir: `config`, `state` (its newest usable checkpoint), `step` and `task`.

    The sampling and translation methods belong to the runs that have them (`GANRun`, `VAERun`,
    `TranslationRun`); here they raise ValueError naming the run's task.
    """

    def __init__(self, workdir: str, config: ml_collections.ConfigDict, state: Any):
        self.workdir, self.config, self.state = workdir, config, state

    @classmethod
    def abstract_state(cls, config: ml_collections.ConfigDict) -> Any:
        """The state's shapes and dtypes, which restoring needs: the task's `init` traced on zeros shaped like one
        batch. (The VAE, ADDA and classifier tasks read their data only when asked for batches or evaluations.)"""
        return _traced_init(tasks.build(config).init, config)

    @property
    def step(self) -> int:
        """The training step of the restored checkpoint."""
        return int(jax.device_get(self.state.step))

    @functools.cached_property
    def task(self) -> tasks.Task:
        """The task object of the run's config, built on first use. Building it loads the training data where
        the task does (GAN, pix2pix, CycleGAN), as training does; nothing else here needs it."""
        return tasks.build(self.config)

    def _unsupported(self, method: str) -> ValueError:
        return ValueError(f"{self.workdir} holds a {self.config.task} run, which has no {method}(): sample, "
                          "latents, generate and interpolate draw from GAN and VAE runs, translate maps images "
                          "with pix2pix and CycleGAN runs")

    def latents(self, key: KeyLike, n: int, truncation: float | None = None) -> np.ndarray:
        raise self._unsupported("latents")

    def generate(self, z: np.ndarray, labels: np.ndarray | int | None = None) -> np.ndarray:
        raise self._unsupported("generate")

    def sample(self, key: KeyLike, n: int, labels: np.ndarray | int | None = None,
               truncation: float | None = None) -> np.ndarray:
        raise self._unsupported("sample")

    def interpolate(self, key: KeyLike, n_points: int, method: str = "slerp", labels: np.ndarray | int | None = None,
                    truncation: float | None = None) -> np.ndarray:
        raise self._unsupported("interpolate")

    def translate(self, images: np.ndarray, direction: str = "x_to_y", key: KeyLike | None = None) -> np.ndarray:
        raise self._unsupported("translate")


def _traced_init(init: Callable[[jax.Array, dict[str, Any]], Any], config: ml_collections.ConfigDict) -> Any:
    return jax.eval_shape(lambda key: init(key, example_batch(config)), jax.random.key(config.seed))


class LatentRun(Run):
    """A run with a generator of codes z [n, latent_dim] from its prior (`latent_distribution`, see
    `gan_jax.prior.sample_latents`): the latent tools of gan_jax.latent work on its `generate` and `latent_dim`.
    Conditional generators (num_classes > 0) take labels: one class for all (an int) or one each [n]; without labels
    they get the balanced labels 0, 1, ..., K − 1, 0, 1, ... (example i has class i mod K), as the task's own sample
    grids and evaluations do."""

    latent_dim: int
    num_classes: int = 0
    latent_distribution: str = "normal"

    def latents(self, key: KeyLike, n: int, truncation: float | None = None) -> np.ndarray:
        """n codes [n, latent_dim] from the run's prior (N(0, I) or U(−1, 1)), or that prior truncated to [−t, t]
        with `truncation` t (the truncation trick of BigGAN, Brock et al. 2019: less variety, higher fidelity as t
        shrinks)."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"the number of samples must be an integer >= 1, got {n!r}")
        return np.asarray(prior.sample_latents(_as_key(key), (int(n), self.latent_dim), truncation,
                                               self.latent_distribution))

    def sample(self, key: KeyLike, n: int, labels: np.ndarray | int | None = None,
               truncation: float | None = None) -> np.ndarray:
        """n samples: generate(latents(key, n, truncation), labels)."""
        return self.generate(self.latents(key, n, truncation), labels)

    def interpolate(self, key: KeyLike, n_points: int, method: str = "slerp", labels: np.ndarray | int | None = None,
                    truncation: float | None = None) -> np.ndarray:
        """`n_points` outputs along the path between the two codes latents(key, 2, truncation), both ends included:
        "linear", or "slerp" along the great circle (White 2016, "Sampling Generative Networks"; see
        `gan_jax.prior.interpolate`). Give a conditional generator one class (an int) to keep it along the path."""
        z0, z1 = self.latents(key, 2, truncation)
        return self.generate(np.asarray(prior.interpolate(jnp.asarray(z0), jnp.asarray(z1), n_points, method)), labels)

    def _codes(self, z: np.ndarray) -> jax.Array:
        z = np.asarray(z, np.float32)
        if z.ndim != 2 or z.shape[1] != self.latent_dim or not len(z):
            raise ValueError(f"codes must be [n >= 1, latent_dim={self.latent_dim}], got shape {z.shape}")
        return jnp.asarray(z)

    def class_labels(self, labels: np.ndarray | int | None, n: int) -> jax.Array | None:
        """Labels [n] of a conditional generator (balanced when None); None for an unconditional one."""
        k = self.num_classes
        if not k:
            if labels is not None:
                raise ValueError(f"the generator of {self.workdir} is unconditional: it takes no labels")
            return None
        if labels is None:
            return jnp.arange(n, dtype=jnp.int32) % k
        labels = np.asarray(labels)
        if labels.ndim == 0:
            labels = np.full((n,), labels)
        if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 \
                or labels.max() >= k:
            raise ValueError(f"labels must be one class or {n} classes, integers in [0, {k}), got {labels.tolist()}")
        return jnp.asarray(labels, jnp.int32)


class GANRun(LatentRun):
    """A GAN run: its EMA generator in inference mode (see the module docstring). `sample(key, n)` draws the same
    codes and outputs as `gan_jax.train.sample` with that key."""

    def __init__(self, workdir: str, config: ml_collections.ConfigDict, state: train.GANState):
        super().__init__(workdir, config, state)
        self.gan = train.build(config)
        self.latent_dim, self.num_classes = config.model.latent_dim, config.model.num_classes
        # Absent from the configs of runs from before the field: those drew N(0, I).
        self.latent_distribution = config.model.get("latent_distribution", "normal")
        g = state.generator
        self._variables = g.replace(params=g.ema or g.params).variables

    @classmethod
    def abstract_state(cls, config: ml_collections.ConfigDict) -> train.GANState:
        """`gan_jax.tasks.gan.Task.init`'s state without the training data: its reference batch and marginals
        taken from zeros of the data's shape (their values are restored from the checkpoint)."""
        shape = data_shape(config)
        gan, zeros = train.build(config), _Zeros(shape)
        reference, marginals = gan_task.reference_batch(zeros, config), gan_task.marginals(zeros, gan)
        return _traced_init(lambda key, _: train.init_state(gan, key, shape, reference, marginals), config)

    def generate(self, z: np.ndarray, labels: np.ndarray | int | None = None) -> np.ndarray:
        """G(z) (and labels) [n, ...]: images in [−1, 1] or 2-D points."""
        z = self._codes(z)
        labels = self.class_labels(labels, len(z))
        return np.asarray(_generate(self.gan.generator, self._variables, z, labels), np.float32)


@functools.partial(jax.jit, static_argnums=0)
def _generate(generator: Any, variables: dict[str, Any], z: jax.Array, labels: jax.Array | None) -> jax.Array:
    return generator.apply(variables, z, *(() if labels is None else (labels,)), train=False)


class _Zeros:
    """A data source of zero examples of one shape (`__getitems__` as `gan_jax.data.pipeline` reads it): what the
    GAN task's data-dependent initial values are computed from when only their shapes matter."""

    def __init__(self, shape: tuple[int, ...]):
        self.shape = shape

    def __len__(self) -> int:
        return 1

    def __getitems__(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        return {"x": np.zeros((len(np.asarray(indices)), *self.shape), np.float32)}


class VAERun(LatentRun):
    """A VAE run: the decoder means of codes z (gan_jax/vae.py) and the encoder means of images."""

    def __init__(self, workdir: str, config: ml_collections.ConfigDict, state: vae_task.VAEState):
        super().__init__(workdir, config, state)
        self.model = vae_task.build_model(config)
        self.latent_dim = self.model.latent_dim

    def generate(self, z: np.ndarray, labels: np.ndarray | int | None = None) -> np.ndarray:
        """The decoder means [n, 28, 28, 1] in [−1, 1] of codes z [n, latent_dim]."""
        z = self._codes(z)
        self.class_labels(labels, len(z))
        return np.asarray(_decode(self.model, self.state.vae.params, z))

    def encode(self, images: np.ndarray) -> np.ndarray:
        """The encoder means μ(x) [n, latent_dim] of images [n, 28, 28, 1] in [−1, 1] (grey levels (x + 1) / 2, as
        the encoder was trained on binarised ones)."""
        images = _domain_images(images)
        return np.asarray(_encode(self.model, self.state.vae.params, (images + 1.0) / 2.0))


_decode = jax.jit(vae.decode_images, static_argnums=0)


@functools.partial(jax.jit, static_argnums=0)
def _encode(model: vae.VAE, params: Any, x: jax.Array) -> jax.Array:
    return model.apply({"params": params}, x, method=vae.VAE.encode)[0]


def _domain_images(images: np.ndarray) -> jax.Array:
    images = np.asarray(images, np.float32)
    if images.ndim != 4 or images.shape[1:] != DOMAIN_SHAPE:
        raise ValueError(f"images must be [n, {', '.join(map(str, DOMAIN_SHAPE))}] in [−1, 1], got shape "
                         f"{images.shape}")
    return jnp.asarray(images)


class TranslationRun(Run):
    """A pix2pix or CycleGAN run: `translate` maps images of one domain to the other."""

    def __init__(self, workdir: str, config: ml_collections.ConfigDict, state: translation.TranslationState):
        super().__init__(workdir, config, state)
        self.generator = translation.networks(config)[0]

    @classmethod
    def abstract_state(cls, config: ml_collections.ConfigDict) -> translation.TranslationState:
        """The task's `init` traced on zeros: a translation task reads its images only for `batches`."""
        return _traced_init(tasks.build(config).init, config)

    @property
    def directions(self) -> tuple[str, ...]:
        """pix2pix: "x_to_y" (input to target); CycleGAN: "x_to_y" (G) and "y_to_x" (F)."""
        return ("x_to_y", "y_to_x") if self.config.task == "cyclegan" else ("x_to_y",)

    def translate(self, images: np.ndarray, direction: str = "x_to_y", key: KeyLike | None = None) -> np.ndarray:
        """The generator of `direction` on images [n, 28, 28, 1] in [−1, 1] (pix2pix: the inputs x, e.g.
        `gan_jax.data.paired.make_pairs(config.data.task, targets)`), in batches of config.eval.batch_size.

        Dropout, pix2pix's noise, stays on (Isola et al. 2017): image i's masks come from fold_in(key, i); the
        default key is the run's evaluation key of that direction, so the outputs are those of its evaluation."""
        if direction not in self.directions:
            raise ValueError(f"unknown direction {direction!r} for a {self.config.task} run; "
                             f"allowed: {self.directions}")
        site = self.directions.index(direction)
        params = self.state.generator.params
        if self.config.task == "cyclegan":
            params = params["g" if direction == "x_to_y" else "f"]
        key = translation.eval_key(self.config, site) if key is None else _as_key(key)
        return np.asarray(translation.translate_all(self.generator, params, np.asarray(_domain_images(images)), key,
                                                    self.config.eval.batch_size))


RUNS: dict[str, type[Run]] = {"gan": GANRun, "vae": VAERun, "pix2pix": TranslationRun, "cyclegan": TranslationRun}
