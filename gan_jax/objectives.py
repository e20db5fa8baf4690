"""What the GAN train step minimises: weighted terms, composed by configuration.

The shape of google/compare_gan's loss_lib / penalty_lib: a term is one function `term(ctx) -> scalar`
of a `Context`, registered under a name in `CRITIC_TERMS` or `GENERATOR_TERMS` with the `config.loss`
field that weights it. A critic update minimises Σ weight · term over `objective(CRITIC_TERMS,
config.loss)`, a generator update over `objective(GENERATOR_TERMS, config.loss)`: the terms whose weight
is > 0, in registry order. The step logs each term's unweighted value under the term's metric name.
Adding a regulariser is one function and one registry entry (and its weight's field in
`config.base_config`); the train step does not change.

Terms see one device's share of the batch. Terms that couple examples (the adversarial losses, feature
matching) read the global batch through `ctx.gather`, and every random draw comes from per-example keys
(`Context.row_keys`), so a step gives the same value on any number of devices.
"""
from __future__ import annotations

import dataclasses
import enum
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import ml_collections

from gan_jax import losses, models, penalties


class Stream(enum.IntEnum):
    """The purposes folded into per-example keys, fold_in(key, step, critic iteration, global example index,
    purpose): one independent stream per random draw of an update."""

    LATENT = 0
    INTERPOLATION = 1
    FAKE_LABEL = 2
    GENERATOR_DROPOUT = 3
    REAL_DROPOUT = 4
    FAKE_DROPOUT = 5
    GRADIENT_PENALTY_DROPOUT = 6
    R1_DROPOUT = 7


class CriticOutput(NamedTuple):
    """The critic on one batch of packed rows."""

    scores: jax.Array                # [rows]
    logits: jax.Array | None         # class logits [rows, K] or [rows, K + 1] (an ACGAN critic), else None
    features: jax.Array | None       # intermediate features [rows, ...] when a term reads them, else None


# (packed rows, their labels or None, dropout stream, batch statistics) -> (output, updated batch statistics)
ApplyCritic = Callable[[jax.Array, jax.Array | None, Stream, Any], tuple[CriticOutput, Any]]


class Context:
    """What a term reads in one critic or generator update, on this device.

    `real`, `fake`: this device's real and generated examples [b, ...], not packed (in a generator update
    the gradient flows to the generator through `fake`); `real_labels`, `fake_labels`: their classes [b]
    (None for unconditional models). `real_output()`, `fake_output()`: the critic on the packed batches,
    each run once, on first use, in training mode; the batch statistics are threaded through these passes
    in the order they run and end in `batch_stats`. `critic(x, labels, stream)`: the critic's scores on
    packed rows `x` at the same parameters and statistics, which it leaves unchanged: the function that
    input-gradient penalties differentiate. `row_keys(stream)`: one key per packed row of this device.
    `gather(x)`: the global batch of the per-row values `x` [rows, ...], in global row order.
    `options`: the `config.loss` section (each term's own settings, e.g. `gp_target`).
    """

    def __init__(self, *, loss: losses.GANLoss, options: ml_collections.ConfigDict, real: jax.Array,
                 fake: jax.Array, real_labels: jax.Array | None, fake_labels: jax.Array | None, num_classes: int,
                 pack: int, apply_critic: ApplyCritic, row_keys: Callable[[Stream], jax.Array],
                 gather: Callable[[jax.Array], jax.Array], batch_stats: Any):
        self.loss, self.options, self.num_classes, self.pack = loss, options, num_classes, pack
        self.real, self.fake, self.real_labels, self.fake_labels = real, fake, real_labels, fake_labels
        self.row_keys, self.gather, self.batch_stats = row_keys, gather, batch_stats
        self._apply_critic = apply_critic
        self._outputs: dict[str, CriticOutput] = {}

    def packed(self, x: jax.Array) -> jax.Array:
        """`x` [b, ...] as the critic's packed rows (PacGAN, Lin et al. 2018)."""
        return models.pack(x, self.pack)

    def real_output(self) -> CriticOutput:
        return self._output("real", self.real, self.real_labels, Stream.REAL_DROPOUT)

    def fake_output(self) -> CriticOutput:
        return self._output("fake", self.fake, self.fake_labels, Stream.FAKE_DROPOUT)

    def _output(self, which: str, x: jax.Array, labels: jax.Array | None, stream: Stream) -> CriticOutput:
        if which not in self._outputs:
            self._outputs[which], self.batch_stats = self._apply_critic(self.packed(x), labels, stream,
                                                                        self.batch_stats)
        return self._outputs[which]

    def critic(self, x: jax.Array, labels: jax.Array | None, stream: Stream) -> jax.Array:
        return self._apply_critic(x, labels, stream, self.batch_stats)[0].scores


# --------------------------------------------------------------------------- critic terms

def critic_adversarial(ctx: Context) -> jax.Array:
    """The critic loss of the adversarial pair (`config.loss.name`, `gan_jax.losses`) on the global batch's
    scores, real first."""
    return ctx.loss.critic(ctx.gather(ctx.real_output().scores), ctx.gather(ctx.fake_output().scores))


def critic_class_loss(ctx: Context) -> jax.Array:
    """AC-GAN's class log-likelihood L_C (Odena et al. 2017, Sec. 3, Eq. 3), as the cross-entropy the critic
    minimises: real examples of their class, generated ones of the class they were drawn for. A critic with
    K + 1 logits has the "generated" class of Salimans et al. 2016 (Sec. 5): its target for samples is K."""
    real, fake = ctx.real_output().logits, ctx.fake_output().logits
    fake_target = (jnp.full_like(ctx.fake_labels, ctx.num_classes) if fake.shape[-1] > ctx.num_classes
                   else ctx.fake_labels)
    return (losses.acgan_classification_loss(real, ctx.real_labels)
            + losses.acgan_classification_loss(fake, fake_target))


def gradient_penalty(ctx: Context) -> jax.Array:
    """WGAN-GP's penalty (Gulrajani et al. 2017, Eq. 3): E (‖∇D(x̂)‖₂ − t)², x̂ = εx + (1 − ε)G(z), ε ~ U[0, 1]
    per example, t = config.loss.gp_target (1 in the paper). With packing each packed group is interpolated
    as a whole, with one ε, and the gradient is taken w.r.t. the group."""
    return penalties.gradient_penalty(
        lambda x: ctx.critic(x, ctx.real_labels, Stream.GRADIENT_PENALTY_DROPOUT), ctx.packed(ctx.real),
        ctx.packed(ctx.fake), ctx.row_keys(Stream.INTERPOLATION), target_norm=ctx.options.gp_target)


def r1_penalty(ctx: Context) -> jax.Array:
    """R1 (Mescheder et al. 2018, Eq. 9): E‖∇ₓD(x)‖² on real data, weighted γ/2 (config.loss.r1_gamma = γ).
    With packing the gradient is taken w.r.t. each packed group."""
    return penalties.r1_penalty(lambda x: ctx.critic(x, ctx.real_labels, Stream.R1_DROPOUT),
                                ctx.packed(ctx.real))


# --------------------------------------------------------------------------- generator terms

def generator_adversarial(ctx: Context) -> jax.Array:
    """The generator loss of the adversarial pair on the global batch's scores; the critic scores the real
    batch only for a pair whose generator loss reads it (`GANLoss.needs_real`: the relativistic ones)."""
    real = ctx.gather(ctx.real_output().scores) if ctx.loss.needs_real else None
    return ctx.loss.generator(real, ctx.gather(ctx.fake_output().scores))


def generator_class_loss(ctx: Context) -> jax.Array:
    """AC-GAN's class log-likelihood L_C on generated samples (Odena et al. 2017, Eq. 3), as the
    cross-entropy the generator minimises: samples should be classified as the class they were drawn for."""
    return losses.acgan_classification_loss(ctx.fake_output().logits, ctx.fake_labels)


def feature_matching(ctx: Context) -> jax.Array:
    """Feature matching (Salimans et al. 2016, Sec. 3.1): ‖E_x f(x) − E_z f(G(z))‖²₂, f the critic's
    intermediate features (what it returns with `return_features=True`), means over the global batch."""
    return losses.feature_matching_loss(ctx.gather(ctx.real_output().features),
                                        ctx.gather(ctx.fake_output().features))


# --------------------------------------------------------------------------- registries

@dataclasses.dataclass(frozen=True)
class Term:
    """A registered term: `fn`, the metric it is logged under (unweighted), and its weight,
    `scale * config.loss[weight_field]` (`scale` alone when `weight_field` is None).

    `per_example`: why the term needs each example's score to depend on that example alone (an input-gradient
    penalty; "" if it does not): a critic with batch norm is then refused. `class_logits` / `features`: the
    term reads the critic's class logits / intermediate features."""

    fn: Callable[[Context], jax.Array]
    metric: str
    weight_field: str | None = None
    scale: float = 1.0
    per_example: str = ""
    class_logits: bool = False
    features: bool = False

    def weight(self, options: ml_collections.ConfigDict) -> float:
        return self.scale * (float(options[self.weight_field]) if self.weight_field else 1.0)


CRITIC_TERMS: dict[str, Term] = {
    "adversarial": Term(critic_adversarial, "critic_loss"),
    "acgan": Term(critic_class_loss, "critic_class_loss", "acgan_weight", class_logits=True),
    "gradient_penalty": Term(gradient_penalty, "gradient_penalty", "gradient_penalty",
                             per_example="Gulrajani et al. 2017, Sec. 4: the penalty is per example"),
    "r1": Term(r1_penalty, "r1_penalty", "r1_gamma", scale=0.5,
               per_example="Mescheder et al. 2018: the penalty is per example"),
}
GENERATOR_TERMS: dict[str, Term] = {
    "adversarial": Term(generator_adversarial, "generator_loss", "generator_adversarial"),
    "acgan": Term(generator_class_loss, "generator_class_loss", "acgan_weight", class_logits=True),
    "feature_matching": Term(feature_matching, "feature_matching", "feature_matching", features=True),
}


class Weighted(NamedTuple):
    name: str
    term: Term
    weight: float


def objective(registry: dict[str, Term], options: ml_collections.ConfigDict) -> tuple[Weighted, ...]:
    """The terms of `registry` whose weight under `options` (`config.loss`) is > 0, in registry order."""
    weighted = (Weighted(name, term, term.weight(options)) for name, term in registry.items())
    return tuple(w for w in weighted if w.weight > 0)


def total(terms: Sequence[Weighted], ctx: Context) -> tuple[jax.Array, dict[str, jax.Array]]:
    """(Σ weight · term, {metric: unweighted term})."""
    loss, metrics = 0.0, {}
    for w in terms:
        metrics[w.term.metric] = value = w.term.fn(ctx)
        loss = loss + w.weight * value
    return loss, metrics


def check_critic(terms: Sequence[Weighted], options: ml_collections.ConfigDict, *, batch_norm: bool,
                 class_logits: bool, features: bool) -> None:
    """Refuse a critic that the configured `terms` cannot use, naming the config field and why.

    `batch_norm`: the critic has batch norm; `class_logits`: it returns class logits; `features`: it can
    return its intermediate features (`return_features=True`)."""
    def field(w: Weighted) -> str:
        return f"config.loss.{w.term.weight_field}={options[w.term.weight_field]}"

    for w in terms:
        if w.term.per_example and batch_norm:
            raise ValueError(f"{field(w)} needs a critic without batch norm ({w.term.per_example}; batch norm "
                             f"makes each score depend on the whole batch); set the critic's batch_norm=False")
        if w.term.features and not features:
            raise ValueError(f"{field(w)} needs a critic that returns its intermediate features "
                             f"(`return_features=True`: the mlp, goodfellow and dcgan critics)")
    readers = sorted({f"config.loss.{w.term.weight_field}" for w in terms if w.term.class_logits})
    if readers and not class_logits:
        raise ValueError(f"{', '.join(readers)} > 0 needs a critic with class logits (an ACGAN critic)")
    if class_logits and not readers:
        fields = sorted({f"config.loss.{t.weight_field}" for registry in (CRITIC_TERMS, GENERATOR_TERMS)
                         for t in registry.values() if t.class_logits})
        raise ValueError(f"the critic returns class logits (an ACGAN critic): set {', '.join(fields)} > 0 to "
                         f"train them")
