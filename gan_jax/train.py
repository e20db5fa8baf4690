"""The GAN train step: a pure function of an immutable state, compiled once, data parallel.

One step is Goodfellow et al. 2014's Algorithm 1 with k = n_critic (WGAN: n_critic = 5):
n_critic critic updates, each on its own slice of real data and fresh noise, then one generator
update, all inside one compiled program (`lax.scan` over the critic updates). What each update
minimises is composed from weighted terms (`gan_jax.objectives`): the adversarial pair, penalties,
auxiliary losses; the step itself switches on none of them.

The step is written per device with a named axis (`AXIS`): gradients are averaged with
`lax.pmean`, batch-norm statistics by flax's `axis_name`, and the losses are computed on the
scores all-gathered over the axis, so batch-coupled losses (relativistic average, ...) see the
global batch. Noise, interpolation and dropout keys are folded from (key, step, critic iteration,
global example index, purpose); a network that draws dropout runs per example, each with its own
key. So a step gives the same result on any number of devices.
"""
from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, NamedTuple

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import struct
from jax import lax

from gan_jax import config as config_lib, losses, models, objectives, parallel, prior
from gan_jax.models import goodfellow
from gan_jax.models.normalization import REFERENCE, set_vbn_reference
from gan_jax.objectives import Stream
from gan_jax.state import TrainState

AXIS = parallel.AXIS
Batch = dict[str, jax.Array]
Metrics = dict[str, jax.Array]


@struct.dataclass
class GANState:
    """Everything a run needs to continue exactly (the data position is `step`). The generator's `ema` is
    the EMA of its parameters (equal to them when ema_decay = 0); the critic keeps none."""

    step: jax.Array       # int32 scalar: generator updates done
    key: jax.Array        # typed PRNG key, fixed for the run; per-step keys are folded from it
    generator: TrainState
    critic: TrainState


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
               generator_tx=config_lib.make_optimizer(config.optim.generator, "config.optim.generator",
                                                      config_lib.total_updates(config, "generator")),
               critic_tx=config_lib.make_optimizer(config.optim.critic, "config.optim.critic",
                                                   config_lib.total_updates(config, "critic")),
               loss=losses.get_loss(config.loss.name, label_smoothing=config.loss.label_smoothing),
               config=config)


def _terms(gan: GAN) -> tuple[tuple[objectives.Weighted, ...], tuple[objectives.Weighted, ...]]:
    """The critic's and the generator's weighted objective terms."""
    return (objectives.objective(objectives.CRITIC_TERMS, gan.config.loss),
            objectives.objective(objectives.GENERATOR_TERMS, gan.config.loss))


def _returns_features(critic: nn.Module) -> bool:
    return "return_features" in inspect.signature(critic.__call__).parameters


def init_state(gan: GAN, key: jax.Array, data_shape: tuple[int, ...], reference: jax.Array | None = None,
               marginals: jax.Array | None = None) -> GANState:
    """Initial state; `data_shape` is one real example's shape (e.g. (2,) or (28, 28, 1)).

    `reference`: the fixed real batch of a critic with virtual batch norm (Salimans et al. 2016).
    `marginals`: the training set's mean example in [0, 1] pixels (shape `data_shape`), for a generator
    whose output bias starts from it (`output_bias="marginals"`, Goodfellow et al. 2014's code).
    Refuses a critic the configured objective terms cannot use (`objectives.check_critic`).
    """
    k_g, k_d, k_run = jax.random.split(key, 3)
    cfg = gan.config
    labels = (jnp.zeros((1,), jnp.int32),) if cfg.model.num_classes else ()
    g_vars = gan.generator.init(k_g, jnp.zeros((1, cfg.model.latent_dim)), *labels, train=False)
    if getattr(gan.generator, "output_bias", "zeros") == "marginals":
        g_vars = _output_bias_from_marginals(g_vars, marginals, data_shape)
    x = models.pack(jnp.zeros((cfg.model.pack, *data_shape)), cfg.model.pack)
    d_vars = gan.critic.init(k_d, x, *labels, train=False)
    critic_out = jax.eval_shape(lambda v: gan.critic.apply(v, x, *labels, train=False), d_vars)
    batch_norm = any("BatchNorm" in "/".join(map(str, path)) for path, _ in
                     jax.tree_util.tree_flatten_with_path(d_vars.get("batch_stats", {}))[0])
    critic_terms, generator_terms = _terms(gan)
    objectives.check_critic(critic_terms + generator_terms, cfg.loss, batch_norm=batch_norm,
                            class_logits=isinstance(critic_out, tuple), features=_returns_features(gan.critic))

    if any(REFERENCE in "/".join(map(str, p)) for p, _ in jax.tree_util.tree_flatten_with_path(d_vars)[0]):
        if reference is None:
            raise ValueError("the critic uses virtual batch norm: init_state needs its reference batch of real data")
        d_vars = {**d_vars, "batch_stats": set_vbn_reference(d_vars["batch_stats"], reference)}
    return GANState(step=jnp.zeros((), jnp.int32), key=k_run,
                    generator=TrainState.create(g_vars, gan.generator_tx, ema=True),
                    critic=TrainState.create(d_vars, gan.critic_tx))


def _output_bias_from_marginals(g_vars, marginals: jax.Array | None, data_shape: tuple[int, ...]):
    if marginals is None:
        raise ValueError("the generator's output_bias='marginals' needs the training data's mean example: "
                         "init_state(..., marginals=...)")
    if tuple(marginals.shape) != tuple(data_shape):
        raise ValueError(f"marginals have shape {tuple(marginals.shape)}; the data's examples have {tuple(data_shape)}")
    params = dict(g_vars["params"])
    params["output"] = {**params["output"], "bias": goodfellow.sigmoid_bias_from_marginals(marginals.reshape(-1))}
    return {**g_vars, "params": params}


def _variables(params, batch_stats) -> dict[str, Any]:
    return {"params": params, "batch_stats": batch_stats} if batch_stats else {"params": params}


def _apply(module: nn.Module, variables: dict[str, Any], inputs: tuple, train: bool,
           dropout_keys: jax.Array | None = None, **kwargs):
    """Apply a network to `inputs` (x, or x and labels); returns (output, new batch_stats).

    `dropout_keys`: one key per example; the network then runs per example (`jax.vmap`), each example with
    its own dropout key, so that its masks do not depend on how the batch is split over devices.
    """
    batch_stats = variables.get("batch_stats", {})
    if dropout_keys is not None:
        def one(example: tuple, key: jax.Array):
            out = module.apply(variables, *(a[None] for a in example), train=train, rngs={"dropout": key}, **kwargs)
            return jax.tree.map(lambda o: o[0], out)
        return jax.vmap(one)(inputs, dropout_keys), batch_stats
    if train and batch_stats:
        out, updated = module.apply(variables, *inputs, train=True, mutable=["batch_stats"], **kwargs)
        return out, updated["batch_stats"]
    return module.apply(variables, *inputs, train=train, **kwargs), batch_stats


def _draws_dropout(module: nn.Module, variables: dict[str, Any], inputs: tuple, **kwargs) -> bool:
    """Whether `module` draws from the "dropout" RNG stream in training mode (traced, not run, without one).

    Such a network runs per example, which its batch statistics, if it had any, would not survive."""
    try:
        jax.eval_shape(lambda v, i: module.apply(v, *i, train=True, mutable=True, **kwargs), variables, inputs)
    except flax.errors.InvalidRngError:
        if variables.get("batch_stats"):
            raise ValueError(f"{type(module).__name__} draws dropout and keeps batch statistics: dropout keys are "
                             "per example (the same on any number of devices), which needs a network without "
                             "batch statistics") from None
        return True
    return False


def _gather(x: jax.Array) -> jax.Array:
    """Per-row values [rows, ...] of the whole global batch, in global row order."""
    return lax.all_gather(x, AXIS, tiled=True)


def _example_keys(key: jax.Array, step: jax.Array, it: int | jax.Array, index: jax.Array) -> jax.Array:
    """One key per example: fold_in(key, step, critic iteration, global example index)."""
    k = jax.random.fold_in(jax.random.fold_in(key, step), it)
    return jax.vmap(jax.random.fold_in, (None, 0))(k, index)


def _fold(keys: jax.Array, purpose: Stream) -> jax.Array:
    """Independent per-example keys for one purpose."""
    return jax.vmap(jax.random.fold_in, (0, None))(keys, int(purpose))


def _latents(keys: jax.Array, latent_dim: int, distribution: str) -> jax.Array:
    return jax.vmap(lambda k: prior.sample_latents(k, (latent_dim,), distribution=distribution))(keys)


class _Network(NamedTuple):
    """A network as the step runs it in training mode: per example (`dropout`) or on the batch."""

    module: nn.Module
    dropout: bool
    kwargs: dict[str, Any]

    def __call__(self, variables: dict[str, Any], inputs: tuple, keys: jax.Array):
        """(output, new batch statistics); `keys`: this purpose's per-example keys, used iff `dropout`."""
        return _apply(self.module, variables, inputs, True, keys if self.dropout else None, **self.kwargs)


class _Networks(NamedTuple):
    generator: _Network
    critic: _Network


def make_train_step(gan: GAN, unroll_critic: bool = False) -> Callable[[GANState, Batch], tuple[GANState, Metrics]]:
    """The per-device step `(state, batch) -> (state, metrics)`, to run under a named axis `AXIS`.

    `batch["x"]` holds this device's real data, [n_critic, per-device batch, ...] (and
    `batch["label"]`, [n_critic, per-device batch], for conditional models): slice i feeds critic
    update i. Metrics (each objective term's value under its metric name, and the critic's mean
    `real_score` / `fake_score`) are identical on every device. `unroll_critic` unrolls the n_critic
    scan (same result; a speed option, see BENCHMARKS.md).
    """
    cfg = gan.config
    n_critic, pack, latent, num_classes = cfg.loss.n_critic, cfg.model.pack, cfg.model.latent_dim, cfg.model.num_classes
    critic_terms, generator_terms = _terms(gan)
    features = any(w.term.features for w in critic_terms + generator_terms)
    critic_kwargs = {"return_features": True} if features else {}
    simultaneous, generator_updates = cfg.loss.simultaneous, cfg.loss.generator_updates
    distribution = cfg.model.latent_distribution

    def cond(labels: jax.Array | None) -> tuple:
        return (labels,) if num_classes else ()

    def critic_output(out) -> objectives.CriticOutput:
        if features:
            return objectives.CriticOutput(out[0], None, out[1])
        scores, logits = out if isinstance(out, tuple) else (out, None)
        return objectives.CriticOutput(scores, logits, None)

    def context(critic: _Network, params, batch_stats, keys: jax.Array, real, real_labels, fake,
                fake_labels) -> objectives.Context:
        def row_keys(purpose: Stream) -> jax.Array:
            return _fold(keys, purpose)[::pack]

        def apply_critic(x, labels, purpose: Stream, stats):
            out, stats = critic(_variables(params, stats), (x, *cond(labels)), row_keys(purpose))
            return critic_output(out), stats

        return objectives.Context(loss=gan.loss, options=cfg.loss, real=real, fake=fake,
                                  real_labels=real_labels if num_classes else None, fake_labels=fake_labels,
                                  num_classes=num_classes, pack=pack, apply_critic=apply_critic, row_keys=row_keys,
                                  gather=_gather, batch_stats=batch_stats)

    def generate(generator: _Network, g: TrainState, keys: jax.Array, params):
        """The samples of the update whose per-example keys are `keys` (labels, new statistics as aux)."""
        labels = (jax.vmap(lambda k: jax.random.randint(k, (), 0, num_classes))(_fold(keys, Stream.FAKE_LABEL))
                  if num_classes else None)
        fake, stats = generator(_variables(params, g.batch_stats),
                                (_latents(_fold(keys, Stream.LATENT), latent, distribution), *cond(labels)),
                                _fold(keys, Stream.GENERATOR_DROPOUT))
        return fake, (labels, stats)

    def critic_update(nets: _Networks, state: GANState, index: jax.Array, given, carry, xs):
        """One critic update; `given` = (fake, (labels, statistics)) already generated for it, or None."""
        g, d = carry
        real, real_labels, it = xs
        keys = _example_keys(state.key, state.step, it, index)
        fake, (fake_labels, g_stats) = given or generate(nets.generator, g, keys, g.params)
        fake = lax.stop_gradient(fake)

        def loss_fn(params):
            ctx = context(nets.critic, params, d.batch_stats, keys, real, real_labels, fake, fake_labels)
            real_out, fake_out = ctx.real_output(), ctx.fake_output()  # batch statistics: real, then fake
            loss, aux = objectives.total(critic_terms, ctx)
            aux |= {"real_score": jnp.mean(real_out.scores), "fake_score": jnp.mean(fake_out.scores)}
            return loss, (ctx.batch_stats, aux)

        (_, (stats, aux)), grads = jax.value_and_grad(loss_fn, has_aux=True)(d.params)
        d = d.apply_gradients(gan.critic_tx, lax.pmean(grads, AXIS), stats)
        g = g.replace(batch_stats=g_stats)
        return (g, d), jax.tree.map(lambda a: lax.pmean(a, AXIS), aux)

    def step_fn(state: GANState, batch: Batch) -> tuple[GANState, Metrics]:
        real = batch["x"]
        _check_batch(real, n_critic)
        real_labels = batch["label"] if num_classes else jnp.zeros(real.shape[:2], jnp.int32)
        b = real.shape[1]
        index = parallel.example_index(b)
        z = jax.ShapeDtypeStruct((b, latent), jnp.float32)
        g_inputs, d_inputs = (z, *cond(real_labels[0])), (models.pack(real[0], pack), *cond(real_labels[0]))
        nets = _Networks(
            _Network(gan.generator, _draws_dropout(gan.generator, state.generator.variables, g_inputs), {}),
            _Network(gan.critic, _draws_dropout(gan.critic, state.critic.variables, d_inputs, **critic_kwargs),
                     critic_kwargs))

        # G's step differentiates through one forward pass, kept as a VJP. Simultaneous (Goodfellow et al.
        # 2014's code): taken before the critic's step, whose samples, labels and dropout masks it reuses (the
        # same update's keys), and scored by the critic before its step. Alternating: fresh samples after the
        # critic's steps, scored by the new critic.
        def g_forward(g: TrainState, keys: jax.Array):
            fake, g_vjp, aux = jax.vjp(functools.partial(generate, nets.generator, g, keys), g.params, has_aux=True)
            return (fake, aux), g_vjp

        given, g_vjp = g_forward(state.generator, _example_keys(state.key, state.step, 0, index)) if simultaneous \
            else (None, None)
        (g, d), critic_metrics = lax.scan(functools.partial(critic_update, nets, state, index, given),
                                          (state.generator, state.critic),
                                          (real, real_labels, jnp.arange(n_critic)), unroll=bool(unroll_critic))
        # G's codes: the critic's (simultaneous; loss.reuse_critic_codes: its last update's) or fresh ones.
        it = 0 if simultaneous else n_critic - 1 if cfg.loss.reuse_critic_codes else n_critic
        d_params = state.critic.params if simultaneous else d.params
        keys = _example_keys(state.key, state.step, it, index)

        def g_update(g: TrainState, d: TrainState, given, g_vjp):
            fake, (fake_labels, g_stats) = given

            def g_loss_fn(fake):
                ctx = context(nets.critic, d_params, d.batch_stats, keys, real[-1], real_labels[-1], fake, fake_labels)
                ctx.fake_output()  # batch statistics: fake, then real if a term reads it
                loss, aux = objectives.total(generator_terms, ctx)
                return loss, (ctx.batch_stats, aux)

            (_, (d_stats, g_metrics)), fake_grad = jax.value_and_grad(g_loss_fn, has_aux=True)(fake)
            (grads,) = g_vjp(fake_grad)
            return (g.apply_gradients(gan.generator_tx, lax.pmean(grads, AXIS), g_stats),
                    d.replace(batch_stats=d_stats), g_metrics)

        # Every generator update draws the same codes (the same keys) at G's newest parameters; metrics: the last.
        for u in range(generator_updates):
            if u or not simultaneous:
                given, g_vjp = g_forward(g, keys)
            g, d, g_metrics = g_update(g, d, given, g_vjp)
        g = g.update_ema(cfg.ema_decay)
        metrics = {k: jnp.mean(v) for k, v in critic_metrics.items()}
        metrics |= {k: lax.pmean(v, AXIS) for k, v in g_metrics.items()}
        return GANState(step=state.step + 1, key=state.key, generator=g, critic=d), metrics

    return step_fn


def _check_batch(real: jax.Array, n_critic: int) -> None:
    if real.ndim < 2 or real.shape[0] != n_critic:
        raise ValueError(f"batch['x'] must be [n_critic={n_critic}, batch, ...], got shape {real.shape}")


def sample(gan: GAN, params, batch_stats, key: jax.Array, n: int, labels: jax.Array | None = None) -> jax.Array:
    """n generator samples in inference mode (running batch statistics); `labels` [n] if conditional.

    Compiled once per (generator, latent size, n): evaluations during training reuse the program.
    """
    if gan.config.model.num_classes and labels is None:
        raise ValueError(f"a conditional generator (num_classes={gan.config.model.num_classes}) needs labels")
    m = gan.config.model
    return _sample(gan.generator, m.latent_dim, m.latent_distribution, n, params, batch_stats, key, labels)


def precise_batch_stats(gan: GAN, params, batch_stats, key: jax.Array, batches: int, batch_size: int):
    """G's batch statistics recomputed at `params` (Wu & Johnson 2021, "precise BN"): the mean over `batches`
    batches of `batch_size` fresh latents of each batch's statistics, which the running averages only track
    with the noise and lag of their momentum. For generators with a `bn_momentum` field (the MLP)."""
    if not hasattr(gan.generator, "bn_momentum") or gan.config.model.num_classes:
        raise ValueError(f"precise batch statistics need an unconditional generator with a bn_momentum field (the "
                         f"MLP); got {type(gan.generator).__name__} with num_classes={gan.config.model.num_classes}")
    generator = gan.generator.clone(bn_momentum=0.0, bn_axis_name=None)
    m = gan.config.model
    return _precise_batch_stats(generator, m.latent_dim, m.latent_distribution, batches, batch_size, params,
                                batch_stats, key)


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3, 4))
def _precise_batch_stats(generator: nn.Module, latent_dim: int, distribution: str, batches: int, batch_size: int,
                         params, batch_stats, key):
    def one(total, k):  # with momentum 0 the "running averages" a training-mode call returns are the batch's own
        z = prior.sample_latents(k, (batch_size, latent_dim), distribution=distribution)
        _, stats = _apply(generator, _variables(params, batch_stats), (z,), True)
        return jax.tree.map(jnp.add, total, stats), None

    total, _ = lax.scan(one, jax.tree.map(jnp.zeros_like, batch_stats), jax.random.split(key, batches))
    return jax.tree.map(lambda t: t / batches, total)


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _sample(generator: nn.Module, latent_dim: int, distribution: str, n: int, params, batch_stats, key,
            labels) -> jax.Array:
    z = prior.sample_latents(key, (n, latent_dim), distribution=distribution)
    return _apply(generator, _variables(params, batch_stats), (z, *(() if labels is None else (labels,))), False)[0]
