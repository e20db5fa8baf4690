"""Inception Score (Salimans et al. 2016, "Improved Techniques for Training GANs").

IS = exp(E_x KL(p(y|x) ‖ p(y))), p(y) = E_x p(y|x), from class probabilities [N, K]. Protocol of the
paper's code (openai/improved-gan `inception_score.py`): the N samples (50,000 in the paper) are cut into
10 contiguous splits (boundaries ⌊i N / 10⌋), the score is computed per split with that split's p(y), and
the mean and (ddof = 0) standard deviation over splits are reported. With InceptionV3's 1008-way
softmax this is the published IS; with our 10-class MNIST classifier it is bounded by 10 and is not
comparable with published values.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import xlogy


def split_scores(probs: jax.Array, num_splits: int = 10) -> jax.Array:
    """exp(mean_x Σ_y p(y|x) log(p(y|x) / p_s(y))) of each contiguous split s -> [num_splits]."""
    if probs.ndim != 2:
        raise ValueError(f"probs must be [N, K] class probabilities, got shape {probs.shape}")
    n = probs.shape[0]
    if not 1 <= num_splits <= n:
        raise ValueError(f"num_splits must be in 1..N={n}, got {num_splits}")
    scores = []
    for s in range(num_splits):
        part = probs[s * n // num_splits:(s + 1) * n // num_splits]
        marginal = jnp.mean(part, axis=0, keepdims=True)
        kl = jnp.sum(xlogy(part, part) - xlogy(part, marginal), axis=1)
        scores.append(jnp.exp(jnp.mean(kl)))
    return jnp.stack(scores)


def inception_score(probs: jax.Array, num_splits: int = 10) -> tuple[jax.Array, jax.Array]:
    """(mean, std) of the Inception Score over `num_splits` splits of probs [N, K] (rows sum to 1)."""
    scores = split_scores(probs, num_splits)
    return jnp.mean(scores), jnp.std(scores)
