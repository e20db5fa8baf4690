"""Adversarial discriminative domain adaptation (ADDA, Tzeng et al. 2017), both
stages in one run:

1. Pre-training, steps [0, source_steps): source encoder M_s and classifier C on labelled source images
   (cross-entropy). The target encoder M_t is kept equal to M_s, so adaptation starts from M_s's copy.
2. Adaptation, steps [source_steps, source_steps + adapt_steps): with M_s and C fixed, a domain
   discriminator D and M_t play a GAN game on encoder outputs, target labels unused:
     J_D = −E_s log D(M_s(x_s)) − E_t log(1 − D(M_t(x_t)))           (Tzeng et al. 2017, Eq. 8)
     J_M = −E_t log D(M_t(x_t))                                       (the "inverted label" loss, Eq. 9)
   one D step on J_D, then one M_t step on J_M against the updated D.
3. Test: C(M_t(x)) on held-out target images, against the source-only C(M_s(x)).

One compiled step chooses the stage with `lax.cond` on the step. Every step logs source_loss (C(M) on the
source batch), d_loss (J_D) and mapping_loss (J_M) at the step's parameters; only the stage's networks move.

Networks are ADDA's MNIST→USPS choice: LeNet encoder (conv 20 5×5, conv 50 5×5, dense 500; strided
instead of pooled, see gan_jax/metrics/classifier.py for why), a linear classifier, and a 500-500-1 ReLU
discriminator. Source: MNIST; target: scikit-learn's digits in MNIST's format (gan_jax/data/paired.py),
a real shift of writers, scanning and stroke. `model.dtype` is the networks' compute dtype (bfloat16 option);
parameters stay float32, and features, logits and losses are float32.

    python launch.py --config experiments/adda_mnist_digits.py --workdir DIR [--config.seed=N]
One run is one seed; the seeds of a mean ± std are separate runs (workdirs) with --config.seed=0, 1, 2.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import struct
from jax import lax

from gan_jax import config as config_lib, losses, models
from gan_jax.data import InMemorySource, Pipeline, paired
from gan_jax.metrics.batching import batched_apply
from gan_jax.models.layers import Conv
from gan_jax.parallel import AXIS
from gan_jax.state import TrainState
from gan_jax.tasks import base

Array = jax.Array
NUM_CLASSES = 10


class Encoder(nn.Module):
    """x [B, 28, 28, 1] in [−1, 1] -> features [B, hidden] (LeNet, strided), float32."""
    channels: tuple[int, int] = (20, 50)
    hidden: int = 500
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        x = x.astype(self.dtype)
        for c in self.channels:
            x = nn.relu(Conv(c, 5, strides=2, padding="SAME", kernel_init=nn.initializers.lecun_normal(),
                             dtype=self.dtype)(x))
        return nn.relu(nn.Dense(self.hidden, dtype=self.dtype)(x.reshape(x.shape[0], -1))).astype(jnp.float32)


class DomainDiscriminator(nn.Module):
    """features [B, d] -> source-vs-target logits [B], float32."""
    hidden: int = 500
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, f: Array) -> Array:
        f = f.astype(self.dtype)
        for _ in range(2):
            f = nn.relu(nn.Dense(self.hidden, dtype=self.dtype)(f))
        return nn.Dense(1, dtype=self.dtype)(f)[:, 0].astype(jnp.float32)


def schema() -> ml_collections.ConfigDict:
    """Every field of an ADDA experiment, with defaults; `steps` must be source_steps + adapt_steps."""
    c = config_lib.common_config("adda")
    c.source_steps, c.adapt_steps, c.steps = 1000, 1000, 2000
    c.batch_size = 128
    c.data = ml_collections.ConfigDict(dict(source="mnist", target="digits", data_dir="", manual_dir=""))
    # dtype: the networks' compute dtype, "float32" or "bfloat16" (parameters stay float32).
    c.model = ml_collections.ConfigDict(dict(channels=(20, 50), hidden=500, disc_hidden=500, dtype="float32"))
    c.optim = ml_collections.ConfigDict(dict(
        source=dict(name="adam", learning_rate=1e-3),
        target=dict(name="adam", learning_rate=2e-4, b1=0.5, b2=0.999),  # ADDA's adversarial stage
        discriminator=dict(name="adam", learning_rate=2e-4, b1=0.5, b2=0.999)))
    return c


def _updates(config: ml_collections.ConfigDict, who: str) -> int:
    """Updates of optimizer `who` in a run: the source's in pre-training, the others' in adaptation."""
    return config.source_steps if who == "source" else config.adapt_steps


def validate(config: ml_collections.ConfigDict, num_devices: int = 1) -> None:
    """Raise ValueError naming a bad value and the allowed ones."""
    for side in ("source", "target"):
        if config.data[side] not in paired.DOMAINS:
            raise ValueError(f"unknown config.data.{side} {config.data[side]!r}; allowed: {list(paired.DOMAINS)}")
    base.check_ints(config, ("source_steps", "model.hidden", "model.disc_hidden"))
    base.check_ints(config, ("adapt_steps",), minimum=0)
    if config.steps != config.source_steps + config.adapt_steps:
        raise ValueError(f"config.steps={config.steps} must be config.source_steps + config.adapt_steps = "
                         f"{config.source_steps} + {config.adapt_steps} = {config.source_steps + config.adapt_steps}")
    if len(config.model.channels) != 2 or not all(isinstance(ch, int) and ch >= 1 for ch in config.model.channels):
        raise ValueError(f"config.model.channels must be two integers >= 1, got {config.model.channels!r}")
    base.check_dtype(config)
    for who in ("source", "target", "discriminator"):
        config_lib.make_optimizer(config.optim[who], f"config.optim.{who}", _updates(config, who))
    base.check_batch_split(config, num_devices)


@struct.dataclass
class AddaState:
    """source: M_s and C ({"encoder", "classifier"}); target: M_t (equal to M_s until source_steps);
    discriminator: D."""
    step: Array
    key: Array
    source: TrainState
    target: TrainState
    discriminator: TrainState


class Task:
    """ADDA of `config` (see the module docstring)."""

    batch_axis = 0

    def __init__(self, config: ml_collections.ConfigDict):
        self.config = config
        m, o = config.model, config.optim
        dtype = models.DTYPES[m.dtype]
        self.encoder = Encoder(tuple(m.channels), m.hidden, dtype)
        self.classifier = nn.Dense(NUM_CLASSES, dtype=dtype)
        self.discriminator = DomainDiscriminator(m.disc_hidden, dtype)
        self.source_tx = config_lib.make_optimizer(o.source, "config.optim.source", _updates(config, "source"))
        self.target_tx = config_lib.make_optimizer(o.target, "config.optim.target", _updates(config, "target"))
        self.disc_tx = config_lib.make_optimizer(o.discriminator, "config.optim.discriminator",
                                                 _updates(config, "discriminator"))

    def _split(self, domain: str, split: str) -> dict[str, np.ndarray]:
        d = self.config.data
        return paired.load_domain(domain, split, data_dir=d.data_dir, manual_dir=d.manual_dir)

    @functools.cached_property
    def _target_train(self) -> np.ndarray:
        return self._split(self.config.data.target, "train")["image"]  # its labels are never read

    def batches(self, process_index: int, process_count: int) -> Callable[[int], dict[str, np.ndarray]]:
        """{"source": x_s, "label": y_s, "target": x_t} at every step; the domains are unpaired (independent
        orders, seeds s and s + 1)."""
        c = self.config
        pipe = functools.partial(Pipeline, batch_size=c.batch_size, process_index=process_index,
                                 process_count=process_count, prefetch=0)
        source = pipe(InMemorySource(self._split(c.data.source, "train")), seed=c.seed)
        target = pipe(InMemorySource({"target": self._target_train}), seed=c.seed + 1)

        def batch(step: int) -> dict[str, np.ndarray]:
            s = source.batch(step)
            return {"source": s["image"], "label": s["label"], **target.batch(step)}
        return batch

    def init(self, key: Array, example_batch: dict[str, Any]) -> AddaState:
        ke, kc, kd, run = jax.random.split(key, 4)
        encoder = self.encoder.init(ke, jnp.zeros((1, *np.shape(example_batch["source"])[1:])))["params"]
        features = jnp.zeros((1, self.encoder.hidden))
        params = {"encoder": encoder, "classifier": self.classifier.init(kc, features)["params"]}
        disc = self.discriminator.init(kd, features)["params"]
        return AddaState(step=jnp.zeros((), jnp.int32), key=run,
                         source=TrainState.create({"params": params}, self.source_tx),
                         target=TrainState.create({"params": encoder}, self.target_tx),
                         discriminator=TrainState.create({"params": disc}, self.disc_tx))

    def classify(self, classifier_params: Any, features: Array) -> Array:
        """C(f): class logits [B, 10], float32."""
        return self.classifier.apply({"params": classifier_params}, features).astype(jnp.float32)

    def logits(self, encoder_params: Any, classifier_params: Any, x: Array) -> Array:
        """C(M(x)): class logits [B, 10], float32."""
        return self.classify(classifier_params, self.encoder.apply({"params": encoder_params}, x))

    def _source_loss(self, params: Any, x: Array, labels: Array) -> Array:
        out = self.logits(params["encoder"], params["classifier"], x)
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(out, labels))

    def _d_loss(self, d_params: Any, source_features: Array, target_features: Array) -> Array:
        """J_D (Eq. 8): source features labelled 1, target features 0."""
        d = lambda f: self.discriminator.apply({"params": d_params}, f)
        return losses.minimax_discriminator_loss(d(source_features), d(target_features))

    def _mapping_loss(self, d_params: Any, target_features: Array) -> Array:
        """J_M (Eq. 9): target features labelled 1."""
        return losses.non_saturating_generator_loss(self.discriminator.apply({"params": d_params}, target_features))

    def _pretrain(self, state: AddaState, batch: dict[str, Array]) -> tuple[AddaState, dict[str, Array]]:
        """Stage 1: a step of M_s and C on the source cross-entropy; M_t follows M_s, D stays."""
        loss, grads = jax.value_and_grad(self._source_loss)(state.source.params, batch["source"], batch["label"])
        source = state.source.apply_gradients(self.source_tx, lax.pmean(grads, AXIS))
        encode = lambda x: self.encoder.apply({"params": state.source.params["encoder"]}, x)
        f_s, f_t = encode(batch["source"]), encode(batch["target"])
        d_params = state.discriminator.params
        metrics = {"source_loss": loss, "d_loss": self._d_loss(d_params, f_s, f_t),
                   "mapping_loss": self._mapping_loss(d_params, f_t)}
        return state.replace(source=source, target=state.target.replace(params=source.params["encoder"])), metrics

    def _adapt(self, state: AddaState, batch: dict[str, Array]) -> tuple[AddaState, dict[str, Array]]:
        """Stage 2: one D step on J_D, then one M_t step on J_M against the updated D; M_s and C fixed."""
        src = state.source.params
        f_s = self.encoder.apply({"params": src["encoder"]}, batch["source"])
        f_t = self.encoder.apply({"params": state.target.params}, batch["target"])
        d_loss, d_grads = jax.value_and_grad(self._d_loss)(state.discriminator.params, f_s, f_t)
        disc = state.discriminator.apply_gradients(self.disc_tx, lax.pmean(d_grads, AXIS))
        m_loss, m_grads = jax.value_and_grad(lambda p: self._mapping_loss(
            disc.params, self.encoder.apply({"params": p}, batch["target"])))(state.target.params)
        target = state.target.apply_gradients(self.target_tx, lax.pmean(m_grads, AXIS))
        source_loss = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(
            self.classify(src["classifier"], f_s), batch["label"]))
        metrics = {"source_loss": source_loss, "d_loss": d_loss, "mapping_loss": m_loss}
        return state.replace(target=target, discriminator=disc), metrics

    def train_step(self, state: AddaState, batch: dict[str, Array]) -> tuple[AddaState, dict[str, Array]]:
        new, metrics = lax.cond(state.step < self.config.source_steps, self._pretrain, self._adapt, state, batch)
        return new.replace(step=state.step + 1), lax.pmean(metrics, AXIS)

    def accuracy(self, encoder_params: Any, classifier_params: Any, data: dict[str, np.ndarray]) -> float:
        """Fraction of data["image"] whose argmax C(M(x)) is data["label"]."""
        run = jax.jit(self.logits)
        out = batched_apply(lambda x: run(encoder_params, classifier_params, x), data["image"], 1000)
        return float(np.mean(np.argmax(out, axis=-1) == data["label"]))

    @functools.cached_property
    def _test(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """(source test split, target test split)."""
        return self._split(self.config.data.source, "test"), self._split(self.config.data.target, "test")

    def evaluate(self, state: AddaState) -> dict[str, Any]:
        """Target test accuracy of the source-only C(M_s(x)) and the adapted C(M_t(x)), and the source's."""
        source, target = jax.device_get((state.source.params, state.target.params))
        source_test, target_test = self._test
        return {"source_only_target_accuracy": self.accuracy(source["encoder"], source["classifier"], target_test),
                "adda_target_accuracy": self.accuracy(target, source["classifier"], target_test),
                "source_test_accuracy": self.accuracy(source["encoder"], source["classifier"], source_test),
                "num_target_test": len(target_test["label"]),
                "num_target_train_unlabelled": len(self._target_train)}

    def visuals(self, state: AddaState) -> None:
        return None
