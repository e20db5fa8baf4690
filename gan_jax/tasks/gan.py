"""The GAN task: every unconditional, conditional, packed and regularised GAN of `gan_jax.train`.

Data: the 2-D mixtures (drawn once per run) or an image dataset (`config.data.name`). A step's batch is
[n_critic, B, ...]: slice i feeds critic update i. Evaluation (`gan_jax.metrics.protocols`): PacGAN's mode
statistics on the mixtures (also with G's batch statistics recomputed, `eval.precise_bn_batches`); for images,
Goodfellow et al. 2014's Parzen window (`eval.parzen`), FID, KID and the Inception Score with the feature network
of `eval.features` (our saved classifier in `eval.classifier_dir`, or the FID InceptionV3 with
`eval.inception_weights`) and, on Stacked MNIST, the mode count read by the classifier. Samples come from the
generator's EMA weights with fixed keys, so every evaluation and grid of a run uses the same latents.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import ml_collections
import numpy as np

from gan_jax import config as config_lib, train, visualize
from gan_jax.data import mixtures
from gan_jax.data.pipeline import Pipeline
from gan_jax.metrics import features, protocols

PRECISE_BN = protocols.PRECISE_BN
SAMPLE_STREAM = 1 << 30     # folded (plus an offset) into the seed's key for evaluation samples

schema = config_lib.base_config


def validate(config: ml_collections.ConfigDict, num_devices: int = 1) -> None:
    """`config.validate`, and the feature network of FID / KID / IS (`features.check_feature_config`)."""
    config_lib.validate(config, num_devices)
    features.check_feature_config(config)


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
                                        center_crop=d.center_crop or None,
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


def reference_batch(source, config: ml_collections.ConfigDict) -> np.ndarray | None:
    """The fixed reference batch of a virtual-batch-norm critic: the first N training examples."""
    n = config.model.critic.get("virtual_batch_norm", 0) or config.model.critic.get("base", {}).get(
        "virtual_batch_norm", 0)
    return np.asarray(source.__getitems__(np.arange(n))["x"]) if n else None


def marginals(source, gan: train.GAN, chunk: int = 10_000) -> np.ndarray | None:
    """The training set's mean example in [0, 1] pixels, for a generator whose output bias starts there
    (Goodfellow et al. 2014: the mean of MNIST train[0:50000]); None for other generators."""
    if getattr(gan.generator, "output_bias", "zeros") != "marginals":
        return None
    total = sum(np.asarray(source.__getitems__(np.arange(i, min(i + chunk, len(source))))["x"], np.float64).sum(0)
                for i in range(0, len(source), chunk))
    return ((total / len(source) + 1.0) / 2.0).astype(np.float32)


class Task:
    """A GAN of `config` on its dataset (see the module docstring)."""

    batch_axis = 1

    def __init__(self, config: ml_collections.ConfigDict):
        self.config = config
        self.gan = train.build(config)
        self.source = make_source(config)
        self._reference = reference_batch(self.source, config)
        self._marginals = marginals(self.source, self.gan)
        self.train_step = train.make_train_step(self.gan)

    def batches(self, process_index: int, process_count: int) -> Callable[[int], dict[str, np.ndarray]]:
        k = self.config.loss.n_critic
        pipe = Pipeline(self.source, batch_size=self.config.batch_size * k, seed=self.config.seed,
                        process_index=process_index, process_count=process_count, prefetch=0)
        return lambda step: {name: v.reshape(k, -1, *v.shape[1:]) for name, v in pipe.batch(step).items()}

    def init(self, key: jax.Array, example_batch: dict[str, Any]) -> train.GANState:
        data_shape = tuple(np.shape(example_batch["x"])[2:])
        return train.init_state(self.gan, key, data_shape, self._reference, self._marginals)

    def sampler(self, state: train.GANState) -> Callable[..., np.ndarray]:
        """`(n, offset=0, labels=None) -> n samples` of the EMA generator with the run's fixed evaluation keys.

        Conditional generators without given labels get labels offset, offset + 1, ... modulo K (balanced)."""
        c = self.config
        params, stats = jax.device_get(state.generator.ema), jax.device_get(state.generator.batch_stats)

        def draw(n: int, offset: int = 0, labels: np.ndarray | None = None) -> np.ndarray:
            key = jax.random.fold_in(jax.random.key(c.seed), SAMPLE_STREAM + offset)
            if c.model.num_classes and labels is None:
                labels = (np.arange(offset, offset + n) % c.model.num_classes).astype(np.int32)
            return np.asarray(train.sample(self.gan, params, stats, key, n, labels))
        return draw

    def evaluate(self, state: train.GANState) -> dict[str, Any]:
        c = self.config
        if c.data.name in mixtures.MIXTURES:
            mix = mixtures.get_mixture(c.data.name)
            out = protocols.mixture_scores(self.sampler(state), mix, c.eval.num_samples)
            if c.eval.precise_bn_batches:
                stats = train.precise_batch_stats(self.gan, jax.device_get(state.generator.ema),
                                                  jax.device_get(state.generator.batch_stats),
                                                  jax.random.fold_in(jax.random.key(c.seed), (1 << 30) - 1),
                                                  c.eval.precise_bn_batches, c.batch_size)
                precise = state.replace(generator=state.generator.replace(batch_stats=stats))
                out |= {k + PRECISE_BN: v for k, v in protocols.mixture_scores(self.sampler(precise), mix,
                                                                                c.eval.num_samples).items()}
            return out | {"protocol": self.protocol()}
        out: dict[str, Any] = {}
        if c.eval.parzen:
            out |= self._parzen(state)
        if c.data.name == "stacked_mnist" and c.eval.classifier_dir:
            out |= protocols.stacked_mnist_scores(features.lenet_features(c.eval.classifier_dir), self.sampler(state),
                                                  c.eval.num_samples)
        if scores_images(c):
            out |= protocols.image_scores(features.feature_network(c), first_images(c, "test", c.eval.num_samples),
                                          self.sampler(state), c.eval.num_samples)
        return out | {"protocol": self.protocol()}

    def _parzen(self, state: train.GANState) -> dict[str, float]:
        from gan_jax.metrics import parzen
        c = self.config
        if c.data.name != "mnist":
            raise ValueError(f"config.eval.parzen follows Goodfellow et al.'s MNIST protocol; dataset is {c.data.name!r}")
        validation, test = parzen.mnist_parzen_points(c.data.data_dir or None, c.data.manual_dir or None,
                                                      c.eval.parzen_num_validation)
        train_px = np.asarray(parzen.to_unit_interval(self.source.__getitems__(np.arange(len(self.source)))["x"]))
        return protocols.parzen_scores(self.sampler(state), validation, test, train_px, c.eval.parzen_num_samples,
                                       parzen.sigma_grid(*c.eval.parzen_sigma_grid))

    def protocol(self) -> str:
        """How `evaluate`'s numbers are measured, for eval.json."""
        c = self.config
        if c.data.name in mixtures.MIXTURES:
            return protocols.mixture_protocol(c.eval.num_samples, c.ema_decay, c.eval.precise_bn_batches, c.batch_size)
        parts = [protocols.parzen_protocol(c.eval.parzen_num_samples, tuple(c.eval.parzen_sigma_grid),
                                           c.eval.parzen_num_validation)] if c.eval.parzen else []
        if c.data.name == "stacked_mnist" and c.eval.classifier_dir:
            parts.append(protocols.stacked_mnist_protocol(c.eval.num_samples, c.eval.classifier_dir))
        if scores_images(c):
            parts.append(protocols.image_protocol(c.eval.num_samples, c.data.name, features.feature_description(c)))
        return "; ".join(parts) or ("no evaluation configured (set eval.classifier_dir, or eval.features='inception' "
                                    "and eval.inception_weights, for FID)")

    def visuals(self, state: train.GANState) -> np.ndarray:
        c, draw = self.config, self.sampler(state)
        if c.data.name in mixtures.MIXTURES:
            mix = mixtures.get_mixture(c.data.name)
            return visualize.scatter_png(draw(c.eval.num_samples), mix.means, title=f"{c.name} step {int(state.step)}")
        if c.model.num_classes:
            k = c.model.num_classes  # one row per class
            return visualize.image_grid(draw(k * k, labels=np.repeat(np.arange(k), k).astype(np.int32)), ncols=k)
        return visualize.image_grid(draw(64), ncols=8)


def first_images(config: ml_collections.ConfigDict, split: str, n: int) -> np.ndarray:
    """The first n images of a split of the config's dataset."""
    source = make_source(config, split)
    if len(source) < n:
        raise ValueError(f"config.eval.num_samples={n} exceeds the {len(source)} {split} images of {config.data.name}")
    return source.__getitems__(np.arange(n))["x"]


def scores_images(config: ml_collections.ConfigDict) -> bool:
    """Whether evaluation measures FID / KID / IS: `eval.features` names a network (`features.feature_network`),
    and it is not the classifier on Stacked MNIST, which reads each channel's digit there (the mode count)."""
    return (features.feature_description(config) is not None
            and not (config.data.name == "stacked_mnist" and features.chosen_features(config) == "classifier"))


def real_data_floor(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """What a perfect sampler scores under the image protocol: the first `eval.num_samples` training images taken
    as the samples, with the feature network of `eval.features`."""
    if not scores_images(config):
        raise ValueError("the real-data floor needs a feature network: set config.eval.classifier_dir, or "
                         "config.eval.features='inception' and config.eval.inception_weights")
    n = config.eval.num_samples
    train_images = first_images(config, "train", n)
    return protocols.image_scores(features.feature_network(config), first_images(config, "test", n),
                                  protocols.array_sampler(train_images), n)
