"""The MNIST networks of Goodfellow et al. 2014 ("Generative Adversarial Nets"), from the paper's
pylearn2 configuration (goodfeli/adversarial, `mnist.yaml`).

G: z (100-d; the code's default noise is "gaussian", N(0, I), which is what `train.py` draws)
   → ReLU 1200 → ReLU 1200 → 784, weights U(−0.05, 0.05) (pylearn2's `irange`), biases 0.
D: maxout 240 units × 5 pieces → maxout 240 × 5 → 1 logit, weights U(−0.005, 0.005), biases 0;
   dropout on the input of every layer: the image with rate 0.2 (include prob 0.8, scale 1.25),
   each hidden layer with rate 0.5 (include prob 0.5, scale 2.0) — inverted dropout as in pylearn2.

The paper's pixels are in [0, 1] and our images in [−1, 1], so G outputs 2σ(a) − 1 and D first maps
its input back by (x + 1)/2: in [0, 1] pixel space both nets, their parameters and gradients are the
paper's exactly. (Feeding D the [−1, 1] images directly doubles its first layer's inputs, i.e. scales
that layer's gradient steps by 4 at the paper's lr 0.1; the run diverged by step 325.) G's output
bias starts at 0, or with `output_bias="marginals"` at the yaml's data-dependent init
(`init_sigmoid_bias_from_marginals`): b = logit(clip(mean training pixel, 1e-7, 1 − 1e-7)), so G starts
at the mean image and border pixels start at σ(−16) ≈ 0; `train.init_state` sets it from the pixel
marginals it is given (:func:`sigmoid_bias_from_marginals`). G's output is reshaped to [28, 28, 1].
D returns the logit; the sigmoid is in the loss.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from gan_jax.models.mlp import Maxout


def symmetric_uniform(init_range: float) -> nn.initializers.Initializer:
    """pylearn2's `irange` init: weights i.i.d. U(−init_range, init_range)."""
    def init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -init_range, init_range)
    return init


# The weights' init by name, from init_range: "irange" (the yaml's, U(−init_range, init_range)) or "lecun_normal"
# (flax's default, N(0, 1/fan_in) truncated; init_range unused), the ablation of the yaml's choice.
KERNEL_INITS: dict[str, Callable[[float], nn.initializers.Initializer]] = {
    "irange": symmetric_uniform, "lecun_normal": lambda _: nn.initializers.lecun_normal()}


def kernel_initializer(name: str, init_range: float) -> nn.initializers.Initializer:
    if name not in KERNEL_INITS:
        raise ValueError(f"unknown kernel_init {name!r}; allowed: {list(KERNEL_INITS)}")
    return KERNEL_INITS[name](init_range)


OUTPUT_BIAS_INITS: tuple[str, ...] = ("zeros", "marginals")


def sigmoid_bias_from_marginals(mean: jax.Array) -> jax.Array:
    """pylearn2's `init_sigmoid_bias_from_array`: b with σ(b) = the data's mean pixel (in [0, 1]),
    clipped to [1e-7, 1 − 1e-7] so that always-black pixels get a finite bias (−16.1)."""
    p = jnp.clip(jnp.asarray(mean, jnp.float32), 1e-7, 1.0 - 1e-7)
    return jnp.log(p) - jnp.log1p(-p)


class GoodfellowGenerator(nn.Module):
    """z [B, latent] → x [B, *out_shape] in (−1, 1): ReLU hidden layers, output 2σ(a) − 1.

    `output_bias`: "zeros", or "marginals" for the paper's init of the "output" layer's bias from the
    training pixels (set by `train.init_state`, which needs the marginals for it).
    """

    hidden: Sequence[int] = (1200, 1200)
    out_shape: Sequence[int] = (28, 28, 1)
    init_range: float = 0.05
    kernel_init: str = "irange"
    output_bias: str = "zeros"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, z: jax.Array, train: bool) -> jax.Array:
        del train  # no batch statistics or dropout in G
        if self.output_bias not in OUTPUT_BIAS_INITS:
            raise ValueError(f"unknown output_bias {self.output_bias!r}; allowed: {OUTPUT_BIAS_INITS}")
        init = kernel_initializer(self.kernel_init, self.init_range)
        h = z.astype(self.dtype)
        for width in self.hidden:
            h = nn.relu(nn.Dense(width, kernel_init=init, dtype=self.dtype)(h))
        out = nn.Dense(math.prod(self.out_shape), kernel_init=init, dtype=self.dtype, name="output")(h)
        return (2.0 * nn.sigmoid(out) - 1.0).astype(jnp.float32).reshape(z.shape[0], *self.out_shape)


class GoodfellowDiscriminator(nn.Module):
    """x [B, ...] in [−1, 1] (flattened) → logits [B]: (x + 1)/2, dropout, maxout layers, a linear unit.

    Maxout unit u of a layer: h_u = max_p (W x + b)_{u·pieces + p} (Goodfellow et al. 2013).
    Dropout draws from the "dropout" RNG stream when train=True and is off when train=False.
    With ``return_features=True`` returns (scores, features): the last maxout layer's output [B, hidden[-1]]
    (after its dropout: the output unit's input).
    """

    hidden: Sequence[int] = (240, 240)
    pieces: int = 5
    input_dropout: float = 0.2
    hidden_dropout: float = 0.5
    init_range: float = 0.005
    kernel_init: str = "irange"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool,
                 return_features: bool = False) -> jax.Array | tuple[jax.Array, jax.Array]:
        for name, rate in (("input_dropout", self.input_dropout), ("hidden_dropout", self.hidden_dropout)):
            if not 0.0 <= rate < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {rate}")
        init = kernel_initializer(self.kernel_init, self.init_range)
        x01 = (x.reshape(x.shape[0], -1).astype(self.dtype) + 1.0) / 2.0  # the paper's [0, 1] pixels
        h = nn.Dropout(self.input_dropout, deterministic=not train)(x01)
        for width in self.hidden:
            h = Maxout(width, self.pieces, kernel_init=init, dtype=self.dtype)(h)
            h = nn.Dropout(self.hidden_dropout, deterministic=not train)(h)
        scores = nn.Dense(1, kernel_init=init, dtype=self.dtype)(h)[:, 0].astype(jnp.float32)
        return (scores, h) if return_features else scores
