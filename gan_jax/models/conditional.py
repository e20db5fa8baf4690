"""Class-conditional GANs: label concatenation (cGAN), auxiliary classifier (ACGAN), projection.

Convention: conditional generators are called `G(z, labels, train)`, conditional critics
`D(x, labels, train)`, with labels int32 [B] in 0..K−1. Labels are checked when concrete; under
`jit` an out-of-range label cannot be caught (its one-hot code is all zeros).

Each conditional module extends an unconditional network given as a field: `ConditionalGenerator`
and `LabelConcatCritic` any `G(z, train)` / `D(x, train)` (MLP, Goodfellow, DCGAN), `ACGANCritic`
and `ProjectionCritic` a critic that also returns its features,
`D(x, train, return_features=True) -> (scores, features)` (`DCGANDiscriminator`).
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from gan_jax.models.layers import DCGAN_INIT

CONCAT_MODES = ("channels", "vector")


def _check_labels(labels: jax.Array, batch: int, num_classes: int) -> None:
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    if labels.shape != (batch,) or not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(f"labels must be integers of shape ({batch},), got {labels.dtype} {labels.shape}")
    if not isinstance(labels, jax.core.Tracer):
        value = np.asarray(labels)
        if value.size and (value.min() < 0 or value.max() >= num_classes):
            raise ValueError(f"labels must be in [0, {num_classes}), got values in [{value.min()}, {value.max()}]")


class LabelCode(nn.Module):
    """labels [B] → one-hot [B, K] (embed_dim None) or a learned embedding [B, embed_dim], init N(0, 1) like z."""

    num_classes: int
    embed_dim: int | None = None

    @nn.compact
    def __call__(self, labels: jax.Array) -> jax.Array:
        if self.embed_dim is None:
            return jax.nn.one_hot(labels, self.num_classes, dtype=jnp.float32)
        return nn.Embed(self.num_classes, self.embed_dim, embedding_init=nn.initializers.normal(1.0))(labels)


class ConditionalGenerator(nn.Module):
    """cGAN generator (Mirza & Osindero 2014): G(z, y) = G₀([z, code(y)], train).

    `generator` is any unconditional generator (MLP, Goodfellow, DCGAN: a DCGAN generator fed
    [z, one-hot] is the conditional DCGAN generator); code(y) is the one-hot label or, with
    `embed_dim`, a learned embedding. Mirza & Osindero's MNIST nets first map z and y through
    separate hidden layers; here they are joined at the input.
    """

    generator: nn.Module
    num_classes: int
    embed_dim: int | None = None

    @nn.compact
    def __call__(self, z: jax.Array, labels: jax.Array, train: bool) -> jax.Array:
        _check_labels(labels, z.shape[0], self.num_classes)
        code = LabelCode(self.num_classes, self.embed_dim)(labels)
        return self.generator(jnp.concatenate([z, code.astype(z.dtype)], axis=-1), train=train)


class LabelConcatCritic(nn.Module):
    """cGAN critic (Mirza & Osindero 2014): D(x, y) = D₀([x, code(y)], train).

    `concat="channels"`: images [B, H, W, C] get K constant label maps as extra channels
    (code(y) broadcast over H, W) — for convolutional critics (build a DCGAN critic with
    channels = C + K, or C + embed_dim). `concat="vector"`: x is flattened
    and code(y) appended, [B, H·W·C + K] — for MLP critics.
    """

    critic: nn.Module
    num_classes: int
    concat: str = "channels"
    embed_dim: int | None = None

    @nn.compact
    def __call__(self, x: jax.Array, labels: jax.Array, train: bool) -> jax.Array:
        if self.concat not in CONCAT_MODES:
            raise ValueError(f"concat must be one of {CONCAT_MODES}, got {self.concat!r}")
        _check_labels(labels, x.shape[0], self.num_classes)
        code = LabelCode(self.num_classes, self.embed_dim)(labels).astype(x.dtype)
        if self.concat == "channels":
            if x.ndim != 4:
                raise ValueError(f"concat='channels' needs images [B, H, W, C], got shape {x.shape}")
            maps = jnp.broadcast_to(code[:, None, None, :], (*x.shape[:3], code.shape[-1]))
            return self.critic(jnp.concatenate([x, maps], axis=-1), train=train)
        return self.critic(jnp.concatenate([x.reshape(x.shape[0], -1), code], axis=-1), train=train)


class ACGANCritic(nn.Module):
    r"""AC-GAN discriminator (Odena et al. 2017): (scores [B], class_logits) from one critic's features.

    `critic` is an unconditional critic that can return its features,
    `critic(x, train, return_features=True) -> (s(x) [B], φ(x) [B, ...])` (e.g. `DCGANDiscriminator`);
    the class head is a linear layer on flattened φ(x).

    `fake_class=False`: scores = s(x) (the critic's real/fake head) and a K-way class head,
    class_logits [B, K].
    `fake_class=True`: one (K+1)-way classifier whose last class is "fake" (the generated data
    as class K+1, Salimans et al. 2016, §5), class_logits [B, K+1] with l_k (k < K) from
    the class head and the fake logit l_K = −s(x) (the critic's own linear head, so every logit is
    linear in φ). The real/fake logit is derived from the classifier:
    scores = logsumexp_{k<K} l_k − l_K, so σ(scores) = Σ_{k<K} e^{l_k} / Σ_{k≤K} e^{l_k} = p(real | x)
    (Salimans et al. fix l_K = 0: D(x) = Z(x)/(Z(x)+1)). The usual GAN losses then apply to
    `scores`, and `losses.acgan_classification_loss` to the class logits (labels in 0..K−1 for real
    data; with the fake class, label K marks samples).

    `labels` are not an input (the discriminator predicts them); they are accepted so all
    conditional critics share the call `D(x, labels, train)`.
    """

    critic: nn.Module
    num_classes: int
    fake_class: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, labels: jax.Array, train: bool) -> tuple[jax.Array, jax.Array]:
        _check_labels(labels, x.shape[0], self.num_classes)
        s, features = self.critic(x, train=train, return_features=True)
        h = features.reshape(x.shape[0], -1)
        logits = nn.Dense(self.num_classes, kernel_init=DCGAN_INIT, dtype=self.dtype, name="classifier")(h)
        logits = logits.astype(jnp.float32)
        if not self.fake_class:
            return s, logits
        logits = jnp.concatenate([logits, -s[:, None]], axis=-1)
        return jax.nn.logsumexp(logits[:, :-1], axis=-1) - logits[:, -1], logits


class ProjectionCritic(nn.Module):
    r"""Projection discriminator (Miyato & Koyama 2018, Eq. 3): f(x, y) = ψ(φ(x)) + ⟨V_y, φ(x)⟩.

    `critic` is an unconditional critic returning (ψ(φ(x)), φ(x)) with `return_features=True`
    (e.g. `DCGANDiscriminator`, whose ψ is its last, linear convolution); φ(x) is flattened and
    V [K, F] is a learned class embedding, N(0, 0.02). Returns scores [B]. (Miyato & Koyama
    sum-pool φ over space and spectrally normalise V; here φ is flattened and V is plain.)
    """

    critic: nn.Module
    num_classes: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, labels: jax.Array, train: bool) -> jax.Array:
        _check_labels(labels, x.shape[0], self.num_classes)
        psi, features = self.critic(x, train=train, return_features=True)
        h = features.reshape(x.shape[0], -1)
        v = nn.Embed(self.num_classes, h.shape[-1], embedding_init=DCGAN_INIT, dtype=self.dtype, name="embed")(labels)
        return psi + jnp.einsum("bf,bf->b", v, h, preferred_element_type=jnp.float32)
