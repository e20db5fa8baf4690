"""The GAN train step: a pure function of an immutable state, compiled once, data parallel.

One step is Goodfellow et al. 2014's Algorithm 1 with k = n_critic (WGAN: n_critic = 5):
n_critic critic updates, each on its own slice of real data and fresh noise, then one generator
update, all inside one compiled program (`lax.scan` over the critic updates).

The step is written per device with a named axis (`AXIS`): gradients are averaged with
`lax.pmean`, batch-norm statistics by flax's `axis_name`, and the losses are computed on the
scores all-gathered over the axis, so batch-coupled losses (relativistic average, ...) see the
global batch. Noise and interpolation keys are folded from (key, step, critic iteration,
global example index), so a step gives the same result on any number of devices.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import struct
from jax import lax

from gan_jax import config as config_lib, losses, models
from gan_jax.models import goodfellow
from gan_jax.models.normalization import REFERENCE, set_vbn_reference

AXIS = "batch"
Batch = dict[str, jax.Array]
Metrics = dict[str, jax.Array]
# Losses whose generator term also looks at real scores (Jolicoeur-Martineau 2018).
_NEEDS_REAL = "relativistic"


@struct.dataclass
class ModelState:
    """One network's trainable state: parameters, batch statistics ({} if none), optimizer state."""

    params: Any
    batch_stats: Any
    opt_state: Any


@struct.dataclass
class GANState:
    """Everything a run needs to continue exactly (the data position is `step`)."""

    step: jax.Array       # int32 scalar: generator updates done
    key: jax.Array        # typed PRNG key, fixed for the run; per-step keys are folded from it
    generator: ModelState
    critic: ModelState
    ema_params: Any       # EMA of the generator parameters (equal to them when ema_decay = 0)


class GAN(NamedTuple):
    """The static parts of a run: networks, optimizers and objective, built from a config."""

    generator: nn.Module
    critic: nn.Module
    generator_tx: optax.GradientTransformation
    critic_tx: optax.GradientTransformation
    loss: losses.GANLoss
    config: ml_collections.ConfigDict


def build(config: ml_collections.ConfigDict, axis_name: str | None = AXIS) -> GAN:
    """Networks (batch norm averaged over `axis_name`), optimizers and loss pair of a config."""
    m = config.model
    return GAN(generator=models.build_generator(m.generator.to_dict(), m.dtype, axis_name, m.num_classes, m.pack),
               critic=models.build_critic(m.critic.to_dict(), m.dtype, axis_name, m.num_classes),
               generator_tx=config_lib.make_optimizer(config.optim.generator),
               critic_tx=config_lib.make_optimizer(config.optim.critic),
               loss=losses.get_loss(config.loss.name, label_smoothing=config.loss.label_smoothing),
               config=config)


def init_state(gan: GAN, key: jax.Array, data_shape: tuple[int, ...], reference: jax.Array | None = None,
               marginals: jax.Array | None = None) -> GANState:
    """Initial state; `data_shape` is one real example's shape (e.g. (2,) or (28, 28, 1)).

    `reference`: the fixed real batch of a critic with virtual batch norm (Salimans et al. 2016).
    `marginals`: the training set's mean example in [0, 1] pixels (shape `data_shape`), for a generator
    whose output bias starts from it (`output_bias="marginals"`, Goodfellow et al. 2014's code).
    """
    k_g, k_d, k_run = jax.random.split(key, 3)
    cfg = gan.config
    labels = (jnp.zeros((1,), jnp.int32),) if cfg.model.num_classes else ()
    g_vars = gan.generator.init(k_g, jnp.zeros((1, cfg.model.latent_dim)), *labels, train=False)
    if getattr(gan.generator, "output_bias", "zeros") == "marginals":
        g_vars = _output_bias_from_marginals(g_vars, marginals, data_shape)
    d_vars = gan.critic.init(k_d, models.pack(jnp.zeros((cfg.model.pack, *data_shape)), cfg.model.pack), *labels,
                             train=False)
    if cfg.loss.gradient_penalty and any("BatchNorm" in "/".join(map(str, path)) for path, _ in
                                         jax.tree_util.tree_flatten_with_path(d_vars.get("batch_stats", {}))[0]):
        raise ValueError("config.loss.gradient_penalty > 0 needs a critic without batch norm (Gulrajani et al. "
                         "2017, Sec. 4: the penalty is per example); set the critic's batch_norm=False")

    if any(REFERENCE in "/".join(map(str, p)) for p, _ in jax.tree_util.tree_flatten_with_path(d_vars)[0]):
        if reference is None:
            raise ValueError("the critic uses virtual batch norm: init_state needs its reference batch of real data")
        d_vars = {**d_vars, "batch_stats": set_vbn_reference(d_vars["batch_stats"], reference)}

    def model_state(variables, tx):
        params = variables["params"]
        return ModelState(params=params, batch_stats=variables.get("batch_stats", {}), opt_state=tx.init(params))

    g = model_state(g_vars, gan.generator_tx)
    return GANState(step=jnp.zeros((), jnp.int32), key=k_run, generator=g,
                    critic=model_state(d_vars, gan.critic_tx), ema_params=jax.tree.map(jnp.copy, g.params))


def _output_bias_from_marginals(g_vars, marginals: jax.Array | None, data_shape: tuple[int, ...]):
    if marginals is None:
        raise ValueError("the generator's output_bias='marginals' needs the training data's mean example: "
                         "init_state(..., marginals=...)")
    if tuple(marginals.shape) != tuple(data_shape):
        raise ValueError(f"marginals have shape {tuple(marginals.shape)}; the data's examples have {tuple(data_shape)}")
    params = dict(g_vars["params"])
    params["output"] = {**params["output"], "bias": goodfellow.sigmoid_bias_from_marginals(marginals.reshape(-1))}
    return {**g_vars, "params": params}


def _apply(module: nn.Module, params, batch_stats, inputs: tuple, train: bool, rng: jax.Array | None = None):
    """Apply a network to `inputs` (x, or x and labels); returns (output, new batch_stats)."""
    variables = {"params": params, "batch_stats": batch_stats} if batch_stats else {"params": params}
    rngs = {"dropout": rng} if rng is not None else None
    if train and batch_stats:
        out, updated = module.apply(variables, *inputs, train=True, mutable=["batch_stats"], rngs=rngs)
        return out, updated["batch_stats"]
    return module.apply(variables, *inputs, train=train, rngs=rngs), batch_stats


def _gather(scores: jax.Array) -> jax.Array:
    """Scores of the whole global batch, in global example order."""
    return lax.all_gather(scores.reshape(-1), AXIS, tiled=True)


def _example_keys(key: jax.Array, step: jax.Array, it: int | jax.Array, index: jax.Array) -> jax.Array:
    """One key per example: fold_in(key, step, critic iteration, global example index)."""
    k = jax.random.fold_in(jax.random.fold_in(key, step), it)
    return jax.vmap(jax.random.fold_in, (None, 0))(k, index)


def _fold(keys: jax.Array, purpose: int) -> jax.Array:
    """Independent per-example keys for one purpose (0: z, 1: interpolation, 2: fake labels)."""
    return jax.vmap(jax.random.fold_in, (0, None))(keys, purpose)


def _device_key(key: jax.Array, step: jax.Array, it: int | jax.Array) -> jax.Array:
    """A per-device key (dropout masks): unlike the per-example keys, these depend on the device count."""
    return jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(key, step), it), (1 << 20) + lax.axis_index(AXIS))


def _latents(keys: jax.Array, latent_dim: int) -> jax.Array:
    return jax.vmap(lambda k: jax.random.normal(k, (latent_dim,)))(keys)


def _update(tx: optax.GradientTransformation, st: ModelState, grads, batch_stats) -> ModelState:
    updates, opt_state = tx.update(grads, st.opt_state, st.params)
    return ModelState(params=optax.apply_updates(st.params, updates), batch_stats=batch_stats, opt_state=opt_state)


def make_train_step(gan: GAN, unroll_critic: bool = False) -> Callable[[GANState, Batch], tuple[GANState, Metrics]]:
    """The per-device step `(state, batch) -> (state, metrics)`, to run under a named axis `AXIS`.

    `batch["x"]` holds this device's real data, [n_critic, per-device batch, ...] (and
    `batch["label"]`, [n_critic, per-device batch], for conditional models): slice i feeds critic
    update i. Metrics are identical on every device. `unroll_critic` unrolls the n_critic scan (same
    result; a speed option, see BENCHMARKS.md).
    """
    cfg = gan.config
    n_critic, pack, latent = cfg.loss.n_critic, cfg.model.pack, cfg.model.latent_dim
    num_classes, acgan_weight = cfg.model.num_classes, cfg.loss.acgan_weight
    gp_weight, gp_target, r1_gamma = cfg.loss.gradient_penalty, cfg.loss.gp_target, cfg.loss.r1_gamma
    needs_real = cfg.loss.name.startswith(_NEEDS_REAL)
    simultaneous = cfg.loss.get("simultaneous", False)

    def cond(labels) -> tuple:
        return (labels,) if num_classes else ()

    def run_critic(params, stats, x, labels, rng):
        """(scores, class logits or None, new statistics); x is packed here."""
        out, stats = _apply(gan.critic, params, stats, (models.pack(x, pack), *cond(labels)), True, rng)
        scores, logits = out if isinstance(out, tuple) else (out, None)
        if (logits is None) != (acgan_weight == 0):
            raise ValueError("an ACGAN critic (class logits) needs config.loss.acgan_weight > 0, and "
                             f"acgan_weight={acgan_weight} needs a critic with class logits")
        return scores, logits, stats

    def run_generator(params, stats, keys, rng):
        labels = (jax.vmap(lambda k: jax.random.randint(k, (), 0, num_classes))(_fold(keys, 2))
                  if num_classes else None)
        fake, stats = _apply(gan.generator, params, stats, (_latents(_fold(keys, 0), latent), *cond(labels)),
                             True, rng)
        return fake, labels, stats

    def class_loss(logits, labels):
        return losses.acgan_classification_loss(logits, labels) if acgan_weight else 0.0

    def generate(state: GANState, g: ModelState, index: jax.Array, it: int | jax.Array, params):
        """Step `state.step`'s samples for update `it` (labels, new statistics as aux)."""
        keys = _example_keys(state.key, state.step, it, index)
        fake, labels, stats = run_generator(params, g.batch_stats, keys,
                                            jax.random.fold_in(_device_key(state.key, state.step, it), 0))
        return fake, (labels, stats)

    def critic_update(state: GANState, index: jax.Array, given, carry, xs):
        """One critic update; `given` = (fake, (labels, statistics)) already generated for it, or None."""
        g, d = carry
        real, real_labels, it = xs
        keys = _example_keys(state.key, state.step, it, index)
        rng = _device_key(state.key, state.step, it)
        fake, (fake_labels, g_stats) = given or generate(state, g, index, it, g.params)
        fake = lax.stop_gradient(fake)

        def loss_fn(params):
            real_s, real_c, stats = run_critic(params, d.batch_stats, real, real_labels, jax.random.fold_in(rng, 1))
            fake_s, fake_c, stats = run_critic(params, stats, fake, fake_labels, jax.random.fold_in(rng, 2))
            loss = gan.loss.critic(_gather(real_s), _gather(fake_s))
            aux = {"critic_loss": loss, "real_score": jnp.mean(real_s), "fake_score": jnp.mean(fake_s)}
            if acgan_weight:
                # ACGAN (Odena et al. 2017, Eq. 2): D also classifies real and generated images.
                # With a (K+1)-th "fake" class (Salimans et al. 2016), D's target for generated samples is K.
                fake_target = jnp.full_like(fake_labels, num_classes) if fake_c.shape[-1] > num_classes else fake_labels
                aux["critic_class_loss"] = class_loss(real_c, real_labels) + class_loss(fake_c, fake_target)
                loss = loss + acgan_weight * aux["critic_class_loss"]
            if gp_weight:
                # WGAN-GP (Gulrajani et al. 2017, Eq. 3); with packing each packed group is interpolated as a whole.
                def packed_scores(xp):
                    out = _apply(gan.critic, params, stats, (xp, *cond(real_labels)), True, jax.random.fold_in(rng, 3))
                    return out[0][0] if isinstance(out[0], tuple) else out[0]
                aux["gradient_penalty"] = losses.gradient_penalty(
                    packed_scores, models.pack(real, pack), models.pack(fake, pack), _fold(keys, 1)[::pack],
                    target_norm=gp_target)
                loss = loss + gp_weight * aux["gradient_penalty"]
            if r1_gamma:
                # R1 (Mescheder et al. 2018): γ/2 · E‖∇D(x)‖² on real data.
                aux["r1_penalty"] = losses.r1_penalty(
                    lambda x: run_critic(params, stats, x, real_labels, jax.random.fold_in(rng, 4))[0], real)
                loss = loss + 0.5 * r1_gamma * aux["r1_penalty"]
            return loss, (stats, aux)

        (_, (stats, aux)), grads = jax.value_and_grad(loss_fn, has_aux=True)(d.params)
        d = _update(gan.critic_tx, d, lax.pmean(grads, AXIS), stats)
        g = g.replace(batch_stats=g_stats)
        return (g, d), jax.tree.map(lambda a: lax.pmean(a, AXIS), aux)

    def step_fn(state: GANState, batch: Batch) -> tuple[GANState, Metrics]:
        real = batch["x"]
        _check_batch(real, n_critic)
        real_labels = batch["label"] if num_classes else jnp.zeros(real.shape[:2], jnp.int32)
        b = real.shape[1]
        index = lax.axis_index(AXIS) * b + jnp.arange(b)
        # G's step differentiates through one forward pass, kept as a VJP. Simultaneous (Goodfellow et al.
        # 2014's code): taken before the critic's step, whose samples, labels and dropout masks it reuses (its
        # fake masks, stream 2, on the fake batch; its real ones, stream 1, on the real), and scored by the
        # critic before its step. Alternating: fresh samples after the critic's steps, scored by the new critic.
        def g_forward(g: ModelState, it: int):
            fake, g_vjp, aux = jax.vjp(functools.partial(generate, state, g, index, it), g.params, has_aux=True)
            return (fake, aux), g_vjp

        given, g_vjp = g_forward(state.generator, 0) if simultaneous else (None, None)
        (g, d), critic_metrics = lax.scan(functools.partial(critic_update, state, index, given),
                                          (state.generator, state.critic),
                                          (real, real_labels, jnp.arange(n_critic)), unroll=bool(unroll_critic))
        it, d_params, (fake_stream, real_stream) = ((0, state.critic.params, (2, 1)) if simultaneous
                                                    else (n_critic, d.params, (1, 2)))
        if not simultaneous:
            given, g_vjp = g_forward(g, it)
        fake, (fake_labels, g_stats) = given
        rng = _device_key(state.key, state.step, it)

        def g_loss_fn(fake):
            fake_s, fake_c, d_stats = run_critic(d_params, d.batch_stats, fake, fake_labels,
                                                 jax.random.fold_in(rng, fake_stream))
            real_s = (run_critic(d_params, d_stats, real[-1], real_labels[-1], jax.random.fold_in(rng, real_stream))[0]
                      if needs_real else fake_s)
            loss = gan.loss.generator(_gather(real_s), _gather(fake_s))
            return loss + acgan_weight * class_loss(fake_c, fake_labels), (loss, d_stats)

        (_, (g_loss, d_stats)), fake_grad = jax.value_and_grad(g_loss_fn, has_aux=True)(fake)
        (grads,) = g_vjp(fake_grad)
        g = _update(gan.generator_tx, g, lax.pmean(grads, AXIS), g_stats)
        d = d.replace(batch_stats=d_stats)
        decay = cfg.ema_decay
        ema = jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, state.ema_params, g.params)
        metrics = {k: jnp.mean(v) for k, v in critic_metrics.items()}
        metrics["generator_loss"] = lax.pmean(g_loss, AXIS)
        metrics["finite"] = _all_finite((metrics, g.params, d.params))
        return GANState(step=state.step + 1, key=state.key, generator=g, critic=d, ema_params=ema), metrics

    return step_fn


def _check_batch(real: jax.Array, n_critic: int) -> None:
    if real.ndim < 2 or real.shape[0] != n_critic:
        raise ValueError(f"batch['x'] must be [n_critic={n_critic}, batch, ...], got shape {real.shape}")


def _all_finite(tree) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
    return functools.reduce(jnp.logical_and, leaves, jnp.array(True))


def sample(gan: GAN, params, batch_stats, key: jax.Array, n: int, labels: jax.Array | None = None) -> jax.Array:
    """n generator samples in inference mode (running batch statistics); `labels` [n] if conditional.

    Compiled once per (generator, latent size, n): evaluations during training reuse the program.
    """
    if gan.config.model.num_classes and labels is None:
        raise ValueError(f"a conditional generator (num_classes={gan.config.model.num_classes}) needs labels")
    return _sample(gan.generator, gan.config.model.latent_dim, n, params, batch_stats, key, labels)


def precise_batch_stats(gan: GAN, params, batch_stats, key: jax.Array, batches: int, batch_size: int):
    """G's batch statistics recomputed at `params` (Wu & Johnson 2021, "precise BN"): the mean over `batches`
    batches of `batch_size` fresh latents of each batch's statistics, which the running averages only track
    with the noise and lag of their momentum. For generators with a `bn_momentum` field (the MLP)."""
    if not hasattr(gan.generator, "bn_momentum") or gan.config.model.num_classes:
        raise ValueError(f"precise batch statistics need an unconditional generator with a bn_momentum field (the "
                         f"MLP); got {type(gan.generator).__name__} with num_classes={gan.config.model.num_classes}")
    generator = gan.generator.clone(bn_momentum=0.0, bn_axis_name=None)
    return _precise_batch_stats(generator, gan.config.model.latent_dim, batches, batch_size, params, batch_stats, key)


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _precise_batch_stats(generator: nn.Module, latent_dim: int, batches: int, batch_size: int, params, batch_stats,
                         key):
    def one(total, k):  # with momentum 0 the "running averages" a training-mode call returns are the batch's own
        _, stats = _apply(generator, params, batch_stats, (jax.random.normal(k, (batch_size, latent_dim)),), True)
        return jax.tree.map(jnp.add, total, stats), None

    total, _ = lax.scan(one, jax.tree.map(jnp.zeros_like, batch_stats), jax.random.split(key, batches))
    return jax.tree.map(lambda t: t / batches, total)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _sample(generator: nn.Module, latent_dim: int, n: int, params, batch_stats, key, labels) -> jax.Array:
    z = jax.random.normal(key, (n, latent_dim))
    return _apply(generator, params, batch_stats, (z, *(() if labels is None else (labels,))), False)[0]
