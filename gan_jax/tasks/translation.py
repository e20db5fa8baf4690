"""What pix2pix and CycleGAN share: their config fields, the U-Net generator and PatchGAN discriminator,
the state, per-example dropout keys, the image domains and test-time translation.

The generators are pix2pix's U-Net with dropout as its noise (Isola et al. 2017, Sec. 3.1), applied at train
and test time. Each example's dropout masks come from its own key, folded from the run key, the step, a call
site and the example's global index (evaluation: a fixed key of the seed and the test image's index). With
InstanceNorm, the U-Net's only normalisation, no example's output depends on the rest of its batch, so a
step does not depend on how the batch is split over devices.
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

from gan_jax import config as config_lib, models, state as state_lib
from gan_jax.data import paired
from gan_jax.data.pipeline import Pipeline
from gan_jax.data.sources import InMemorySource
from gan_jax.metrics.batching import batched_apply
from gan_jax.models import patchgan
from gan_jax.models.unet import UNet
from gan_jax.tasks import base

Array = jax.Array
# Folded into the seed's key for evaluation's dropout.
EVAL_STREAM = 2**31 - 1


@struct.dataclass
class TranslationState:
    """step: updates done (also the data position); key: the run key (per-step keys are folded from it);
    generator / discriminator: pix2pix's G / D, or CycleGAN's {"g": G, "f": F} / {"x": D_X, "y": D_Y} in one
    `TrainState` each; pools: CycleGAN's image history pools by domain ({} for pix2pix and pool_size 0)."""

    step: Array
    key: Array
    generator: state_lib.TrainState
    discriminator: state_lib.TrainState
    pools: dict[str, Any] = struct.field(default_factory=dict)


def schema(task: str) -> ml_collections.ConfigDict:
    """The fields pix2pix and CycleGAN share, with defaults scaled to 28 px and a CPU budget; each task adds
    its data domains and its loss."""
    c = config_lib.common_config(task)
    c.steps, c.batch_size = 2000, 16
    c.log_every, c.checkpoint_every, c.keep_checkpoints, c.sample_every = 100, 500, 2, 500
    # num_train: the first that many training images of each domain (0: all).
    c.data = ml_collections.ConfigDict(dict(data_dir="", manual_dir="", num_train=0))
    # dtype: the networks' compute dtype, "float32" or "bfloat16" (parameters stay float32).
    c.model = ml_collections.ConfigDict(dict(unet_features=(32, 64, 128, 128, 128), dropout=0.5,
                                             dropout_blocks=3, d_features=32, d_layers=1, d_kernel=3,
                                             dtype="float32"))
    opt = dict(name="adam", learning_rate=2e-4, b1=0.5, b2=0.999)  # both papers
    c.optim = ml_collections.ConfigDict(dict(generator=dict(opt), discriminator=dict(opt)))
    # num_test: the first that many test images of each domain (0: all); batch_size: of evaluation passes.
    c.eval = ml_collections.ConfigDict(dict(num_test=10000, classifier_dir="", batch_size=500))
    return c


def check(ok: bool, message: str) -> None:
    """Raise ValueError(message) unless ok."""
    if not ok:
        raise ValueError(message)


def check_weights(config: ml_collections.ConfigDict, fields: tuple[str, ...]) -> None:
    """Each `config.loss.<field>` must be a number >= 0."""
    for field in fields:
        v = config.loss[field]
        check(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0,
              f"config.loss.{field} must be a number >= 0, got {v!r}")


def check_domain(value: Any, field: str) -> None:
    """`config.<field>` must name an image domain of `gan_jax.data.paired`."""
    check(value in paired.DOMAINS, f"unknown config.{field} {value!r}; allowed: {list(paired.DOMAINS)}")


def validate(config: ml_collections.ConfigDict, num_devices: int) -> None:
    """Check the shared fields' values (see `schema`); each message names the value and what is allowed."""
    m = config.model
    features = m.unet_features
    check(isinstance(features, (tuple, list)) and len(features) >= 2
          and all(isinstance(f, int) and not isinstance(f, bool) and f >= 1 for f in features),
          f"config.model.unet_features must be two or more integers >= 1 (channels of the encoder blocks), "
          f"got {features!r}")
    base.check_dtype(config)
    check(isinstance(m.dropout, (int, float)) and 0.0 <= m.dropout < 1.0,
          f"config.model.dropout must be in [0, 1), got {m.dropout!r}")
    base.check_ints(config, ("model.dropout_blocks", "model.d_layers", "data.num_train", "eval.num_test"), 0)
    base.check_ints(config, ("model.d_features", "eval.batch_size"))
    base.check_ints(config, ("model.d_kernel",), 2)
    check(patchgan.output_size(paired.SIZE, m.d_layers, m.d_kernel) >= 1,
          f"a PatchGAN with config.model.d_layers={m.d_layers}, d_kernel={m.d_kernel} has no output on "
          f"{paired.SIZE} px images")
    optimizers(config)
    base.check_batch_split(config, num_devices)


def networks(config: ml_collections.ConfigDict) -> tuple[UNet, patchgan.PatchGAN]:
    """The U-Net generator (one output channel) and the PatchGAN discriminator of `config.model`."""
    m = config.model
    dtype = models.DTYPES[m.dtype]
    return (UNet(features=tuple(m.unet_features), out_channels=1, dropout=m.dropout, dropout_blocks=m.dropout_blocks,
                 dtype=dtype),
            patchgan.PatchGAN(features=m.d_features, n_layers=m.d_layers, kernel_size=m.d_kernel, dtype=dtype))


def optimizers(config: ml_collections.ConfigDict) -> tuple[optax.GradientTransformation, optax.GradientTransformation]:
    """(generator, discriminator) optimizers of `config.optim`; each updates once per step."""
    return (config_lib.make_optimizer(config.optim.generator, "config.optim.generator", config.steps),
            config_lib.make_optimizer(config.optim.discriminator, "config.optim.discriminator", config.steps))


def init_generator(net: UNet, key: Array, image: Array) -> dict[str, Any]:
    """The U-Net's flax variables for images shaped like `image` [1, H, W, C]."""
    return net.init({"params": key, "dropout": key}, image)


def _per_example_dropout(index: Array) -> Callable[..., Any]:
    """A flax method interceptor: every `nn.Dropout` draws example i's mask from fold_in(its own key, index[i])."""
    def interceptor(next_fun: Callable[..., Any], args: tuple, kwargs: dict, context: nn.module.InterceptorContext):
        if not (isinstance(context.module, nn.Dropout) and context.method_name == "__call__"):
            return next_fun(*args, **kwargs)
        keys = base.example_keys(context.module.make_rng("dropout"), index)
        return jax.vmap(lambda x, k: next_fun(x[None], *args[1:], **{**kwargs, "rng": k})[0])(args[0], keys)
    return interceptor


def translate(net: UNet, params: Any, x: Array, key: Array, index: Array) -> Array:
    """G(x) [B, H, W, C] with dropout on (pix2pix's noise, Sec. 3.1); `index` [B]: the examples' global indices,
    folded into `key` for their dropout masks. Only the masks are drawn per example: the convolutions see the
    whole batch (their weight gradients under `jax.vmap` run ~10x slower on XLA:CPU)."""
    with nn.intercept_methods(_per_example_dropout(index)):
        return net.apply({"params": params}, x, deterministic=False, rngs={"dropout": key})


@functools.partial(jax.jit, static_argnums=0)
def _translate_rows(net: UNet, params: Any, images: Array, rows: Array, key: Array) -> Array:
    return translate(net, params, images[rows], key, rows)


def translate_all(net: UNet, params: Any, images: np.ndarray, key: Array, batch_size: int) -> np.ndarray:
    """G(images) (numpy) in batches of `batch_size`, image i under dropout key fold_in(key, i)."""
    images = jnp.asarray(images)
    rows = np.arange(len(images), dtype=np.int32)
    return batched_apply(lambda r: _translate_rows(net, params, images, r, key), rows, batch_size)


def eval_key(config: ml_collections.ConfigDict, site: int = 0) -> Array:
    """The dropout key of evaluation call site `site`: the same at every evaluation of a run."""
    return jax.random.fold_in(jax.random.fold_in(jax.random.key(config.seed), EVAL_STREAM), site)


def domain_images(config: ml_collections.ConfigDict, domain: str, split: str) -> dict[str, np.ndarray]:
    """{"image": [N, 28, 28, 1] in [−1, 1], "label": [N]}: the first `data.num_train` training or
    `eval.num_test` test images of a domain (0: all). Read once per process: do not modify them."""
    d = config.data
    return _load_domain(domain, split, d.data_dir, d.manual_dir, d.num_train if split == "train" else config.eval.num_test)


@functools.lru_cache(maxsize=4)
def _load_domain(domain: str, split: str, data_dir: str, manual_dir: str, limit: int) -> dict[str, np.ndarray]:
    return paired.load_domain(domain, split, data_dir=data_dir, manual_dir=manual_dir, limit=limit)


def pipeline(images: np.ndarray, name: str, config: ml_collections.ConfigDict, seed: int, process_index: int,
             process_count: int) -> Pipeline:
    """Batches {name: this process's slice of config.batch_size images}, a pure function of the step."""
    return Pipeline(InMemorySource({name: images}), batch_size=config.batch_size, seed=seed,
                    process_index=process_index, process_count=process_count, prefetch=0)


def psnr(target: Array, output: Array) -> Array:
    """Per-image PSNR = 10 log10(1 / MSE) on [0, 1] pixels, i.e. MSE of [−1, 1] images divided by 4."""
    mse = jnp.mean(jnp.square(target - output), axis=tuple(range(1, target.ndim))) / 4.0
    return 10.0 * jnp.log10(1.0 / jnp.maximum(mse, 1e-12))
