"""Pluggable feature networks for FID / KID / IS: images [B, H, W, C] in [−1, 1] -> (features, logits).

- `lenet_features(workdir)`: our LeNet classifier (gan_jax/metrics/classifier.py), 128-d features of its
  hidden dense layer and 10 logits, 28×28×1 inputs. Classifier-FID values are not comparable with
  published (Inception) FIDs (paper_tables.md §6); record the classifier's checkpoint with every number.
  The real-vs-real floor (train[0:10000] vs the 10,000 test images) depends on the classifier's
  weights: `experiment.real_data_floor` measures it, and the reproduce command prints it with each table.
- `inception_v3_features(weights_path)`: the FID InceptionV3 (pool3, 2048-d; 1008 logits) from a weights
  file the user provides (pytorch-fid's port of TensorFlow's 2015 graph, converted to .npz; see
  `_WEIGHTS_HELP` / the FileNotFoundError for the URL and the one-line conversion). Nothing is downloaded.
"""
from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn


@dataclasses.dataclass(frozen=True)
class FeatureNetwork:
    """A feature extractor: `apply_fn` maps images [B, H, W, C] in [−1, 1] (what our generators and data
    sources produce), C one of `channels`, to (features [B, feature_dim], logits [B, num_classes]);
    input_size is the side the network sees (after its own resizing, if any)."""
    name: str
    apply_fn: Callable[[jax.Array], tuple[jax.Array, jax.Array]]
    input_size: int
    channels: tuple[int, ...]
    feature_dim: int
    num_classes: int


def batched_apply(fn: Callable[[jax.Array], Any], images: np.ndarray | jax.Array, batch_size: int) -> Any:
    """fn over images [N, ...] in batches of `batch_size` -> its outputs concatenated as numpy arrays.

    The last batch is padded to full size (one compiled shape) and the padding dropped; each batch's
    output is fetched before the next is dispatched, so only one batch is in flight.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = images.shape[0]
    if n == 0:
        raise ValueError("no images to apply the network to (N = 0)")
    size = min(batch_size, n)
    outputs = []
    for start in range(0, n, size):
        chunk = images[start:start + size]
        valid = chunk.shape[0]
        if valid < size:
            chunk = np.concatenate([np.asarray(chunk), np.zeros((size - valid, *chunk.shape[1:]), chunk.dtype)])
        outputs.append(jax.tree.map(lambda o: np.asarray(o)[:valid], fn(chunk)))
    return jax.tree.map(lambda *parts: np.concatenate(parts), *outputs)


def extract(network: FeatureNetwork, images: np.ndarray | jax.Array, batch_size: int = 500
            ) -> tuple[np.ndarray, np.ndarray]:
    """(features [N, feature_dim], logits [N, num_classes]) of images [N, H, W, C] in [−1, 1]."""
    if images.ndim != 4 or images.shape[-1] not in network.channels:
        raise ValueError(f"{network.name} takes images [N, H, W, C] with C in {network.channels}, "
                         f"got shape {images.shape}")
    return batched_apply(network.apply_fn, images, batch_size)


def lenet_features(workdir: str) -> FeatureNetwork:
    """Our classifier saved by `python -m gan_jax.metrics.classifier ... --workdir workdir`.

    Inputs must be 28×28×1 (crop a 32×32 padded generator output back with images[:, 2:30, 2:30]).
    """
    from gan_jax.metrics import classifier
    model, params, meta = classifier.load_classifier(workdir)
    apply_fn = classifier.make_apply_fn(model, params)

    def checked(images: jax.Array) -> tuple[jax.Array, jax.Array]:
        if images.shape[1:] != classifier.IMAGE_SHAPE:
            raise ValueError(f"the LeNet classifier takes images [B, 28, 28, 1], got shape {images.shape}")
        return apply_fn(images)

    return FeatureNetwork(name=f"lenet_{meta['dataset']}", apply_fn=checked, input_size=28, channels=(1,),
                          feature_dim=meta["feature_dim"], num_classes=meta["num_classes"])


# ----------------------------------------------------------------------------------------- InceptionV3

FID_WEIGHTS_URL = ("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
                   "pt_inception-2015-12-05-6726825d.pth")
INCEPTION_SIZE = 299
_WEIGHTS_HELP = (
    "InceptionV3 FID weights are not downloaded by gan_jax. Get pytorch-fid's port of TensorFlow's 2015 "
    f"FID Inception graph:\n  {FID_WEIGHTS_URL}\nand convert it once to .npz (needs torch):\n"
    "  python -c \"import torch, numpy as np; sd = torch.load('pt_inception-2015-12-05-6726825d.pth', "
    "map_location='cpu'); np.savez('pt_inception-2015-12-05.npz', **{k: v.numpy() for k, v in sd.items()})\"")


class _ConvBN(nn.Module):
    """torchvision's BasicConv2d: conv without bias, BatchNorm (ε = 1e-3, running statistics), ReLU."""
    features: int
    kernel: tuple[int, int]
    strides: int = 1
    padding: tuple[int, int] = (0, 0)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = nn.Conv(self.features, self.kernel, strides=self.strides, use_bias=False, name="conv",
                    padding=[(self.padding[0], self.padding[0]), (self.padding[1], self.padding[1])])(x)
        return nn.relu(nn.BatchNorm(use_running_average=True, epsilon=1e-3, name="bn")(x))


def _avg_pool_3x3(x: jax.Array) -> jax.Array:
    """TensorFlow's 3×3 stride-1 SAME average pool: padded zeros are not counted (pytorch-fid's patch)."""
    return nn.avg_pool(x, (3, 3), (1, 1), padding=((1, 1), (1, 1)), count_include_pad=False)


def _max_pool_3x3_s2(x: jax.Array) -> jax.Array:
    return nn.max_pool(x, (3, 3), (2, 2))


class _InceptionA(nn.Module):
    pool_features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b1 = _ConvBN(64, (1, 1), name="branch1x1")(x)
        b5 = _ConvBN(64, (5, 5), padding=(2, 2), name="branch5x5_2")(_ConvBN(48, (1, 1), name="branch5x5_1")(x))
        b3 = _ConvBN(64, (1, 1), name="branch3x3dbl_1")(x)
        b3 = _ConvBN(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(b3)
        b3 = _ConvBN(96, (3, 3), padding=(1, 1), name="branch3x3dbl_3")(b3)
        bp = _ConvBN(self.pool_features, (1, 1), name="branch_pool")(_avg_pool_3x3(x))
        return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class _InceptionB(nn.Module):
    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b3 = _ConvBN(384, (3, 3), strides=2, name="branch3x3")(x)
        bd = _ConvBN(64, (1, 1), name="branch3x3dbl_1")(x)
        bd = _ConvBN(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
        bd = _ConvBN(96, (3, 3), strides=2, name="branch3x3dbl_3")(bd)
        return jnp.concatenate([b3, bd, _max_pool_3x3_s2(x)], axis=-1)


class _InceptionC(nn.Module):
    channels_7x7: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = self.channels_7x7
        row, col = dict(kernel=(1, 7), padding=(0, 3)), dict(kernel=(7, 1), padding=(3, 0))
        b1 = _ConvBN(192, (1, 1), name="branch1x1")(x)
        b7 = _ConvBN(c, (1, 1), name="branch7x7_1")(x)
        b7 = _ConvBN(c, **row, name="branch7x7_2")(b7)
        b7 = _ConvBN(192, **col, name="branch7x7_3")(b7)
        bd = _ConvBN(c, (1, 1), name="branch7x7dbl_1")(x)
        for i, (width, shape) in enumerate([(c, col), (c, row), (c, col), (192, row)], start=2):
            bd = _ConvBN(width, **shape, name=f"branch7x7dbl_{i}")(bd)
        bp = _ConvBN(192, (1, 1), name="branch_pool")(_avg_pool_3x3(x))
        return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class _InceptionD(nn.Module):
    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b3 = _ConvBN(320, (3, 3), strides=2, name="branch3x3_2")(_ConvBN(192, (1, 1), name="branch3x3_1")(x))
        b7 = _ConvBN(192, (1, 1), name="branch7x7x3_1")(x)
        b7 = _ConvBN(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(b7)
        b7 = _ConvBN(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7)
        b7 = _ConvBN(192, (3, 3), strides=2, name="branch7x7x3_4")(b7)
        return jnp.concatenate([b3, b7, _max_pool_3x3_s2(x)], axis=-1)


class _InceptionE(nn.Module):
    """max_pool: the FID graph's last block pools with a 3×3 max instead of an average (pytorch-fid's
    FIDInceptionE_2; the first E block averages without counting padding)."""
    max_pool: bool

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        def split(y: jax.Array, prefix: str) -> jax.Array:
            return jnp.concatenate([_ConvBN(384, (1, 3), padding=(0, 1), name=f"{prefix}a")(y),
                                    _ConvBN(384, (3, 1), padding=(1, 0), name=f"{prefix}b")(y)], axis=-1)
        b1 = _ConvBN(320, (1, 1), name="branch1x1")(x)
        b3 = split(_ConvBN(384, (1, 1), name="branch3x3_1")(x), "branch3x3_2")
        bd = _ConvBN(448, (1, 1), name="branch3x3dbl_1")(x)
        bd = split(_ConvBN(384, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd), "branch3x3dbl_3")
        pooled = (nn.max_pool(x, (3, 3), (1, 1), padding=((1, 1), (1, 1))) if self.max_pool
                  else _avg_pool_3x3(x))
        bp = _ConvBN(192, (1, 1), name="branch_pool")(pooled)
        return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class InceptionV3(nn.Module):
    """The FID InceptionV3 (TensorFlow's 2015 graph as ported by pytorch-fid), inputs [B, H, W, 3] in
    [−1, 1] with H, W ≥ 75 -> (pool3 features [B, 2048], logits [B, 1008]). Submodule names follow the
    PyTorch state dict, so `inception_variables` maps its keys one to one."""

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        x = _ConvBN(32, (3, 3), strides=2, name="Conv2d_1a_3x3")(x)
        x = _ConvBN(32, (3, 3), name="Conv2d_2a_3x3")(x)
        x = _max_pool_3x3_s2(_ConvBN(64, (3, 3), padding=(1, 1), name="Conv2d_2b_3x3")(x))
        x = _ConvBN(80, (1, 1), name="Conv2d_3b_1x1")(x)
        x = _max_pool_3x3_s2(_ConvBN(192, (3, 3), name="Conv2d_4a_3x3")(x))
        for name, pool in (("Mixed_5b", 32), ("Mixed_5c", 64), ("Mixed_5d", 64)):
            x = _InceptionA(pool, name=name)(x)
        x = _InceptionB(name="Mixed_6a")(x)
        for name, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
            x = _InceptionC(c7, name=name)(x)
        x = _InceptionD(name="Mixed_7a")(x)
        x = _InceptionE(max_pool=False, name="Mixed_7b")(x)
        x = _InceptionE(max_pool=True, name="Mixed_7c")(x)
        pool3 = jnp.mean(x, axis=(1, 2))
        return pool3, nn.Dense(1008, name="fc")(pool3)


def inception_variables(state_dict: dict[str, np.ndarray]) -> dict[str, Any]:
    """PyTorch state-dict arrays -> Flax variables {"params", "batch_stats"}: conv weights [O, I, kh, kw]
    -> kernels [kh, kw, I, O], bn weight/bias -> scale/bias, running_mean/var -> batch_stats mean/var,
    fc weight [out, in] -> kernel [in, out]; num_batches_tracked is dropped."""
    variables: dict[str, Any] = {"params": {}, "batch_stats": {}}
    renames = {("conv", "weight"): ("params", "kernel", (2, 3, 1, 0)), ("bn", "weight"): ("params", "scale", None),
               ("bn", "bias"): ("params", "bias", None), ("bn", "running_mean"): ("batch_stats", "mean", None),
               ("bn", "running_var"): ("batch_stats", "var", None), ("fc", "weight"): ("params", "kernel", (1, 0)),
               ("fc", "bias"): ("params", "bias", None)}
    for key, value in state_dict.items():
        *path, layer, leaf = key.split(".")
        if leaf == "num_batches_tracked":
            continue
        if (layer, leaf) not in renames:
            raise ValueError(f"unexpected InceptionV3 weight {key!r} (expected pytorch-fid's FID Inception)")
        collection, name, perm = renames[(layer, leaf)]
        node = variables[collection]
        for part in (*path, layer):
            node = node.setdefault(part, {})
        node[name] = jnp.asarray(np.transpose(value, perm) if perm else value, jnp.float32)
    return variables


def load_inception_variables(weights_path: str) -> dict[str, Any]:
    """Variables from the .npz of pytorch-fid's `pt_inception-2015-12-05-6726825d.pth`, checked against
    the network's shapes; FileNotFoundError says where to get the file."""
    if not os.path.exists(weights_path):
        raise FileNotFoundError(f"no InceptionV3 weights at {weights_path!r}.\n{_WEIGHTS_HELP}")
    with np.load(weights_path) as npz:
        variables = inception_variables(dict(npz))
    expected = jax.eval_shape(InceptionV3().init, jax.random.key(0), jnp.zeros((1, 75, 75, 3)))
    got_shapes = jax.tree.map(lambda a: a.shape, variables)
    want_shapes = jax.tree.map(lambda a: a.shape, expected)
    if got_shapes != want_shapes:
        raise ValueError(f"{weights_path} does not hold the FID InceptionV3's weights (names or shapes differ "
                         f"from pytorch-fid's pt_inception-2015-12-05).\n{_WEIGHTS_HELP}")
    return variables


def inception_v3_features(weights_path: str) -> FeatureNetwork:
    """FID / KID / IS features: InceptionV3 pool3 (2048-d) and the 1008-way logits, from a user-provided
    weights file (see `load_inception_variables`; nothing is downloaded).

    Preprocessing as pytorch-fid: 1-channel images are tiled to 3 channels (as Lucic et al. 2018 do for
    MNIST), then resized to 299×299 bilinearly (half-pixel centres, no antialiasing: torch's
    `interpolate(..., align_corners=False)`); pixels stay in [−1, 1], the network's input range. The
    original TensorFlow FID code resizes inside its graph, so pytorch-fid's (and our) values differ
    slightly from TF-FID's.
    Checked once (2026-11-23) against torchvision 0.29's Inception3 patched as pytorch-fid patches it,
    loaded with the same random state dict (566 keys, as in pytorch-fid's file): pool3 and logits agree
    to 1e-6 of their largest value for 28×28×1, 64×64×3 and 512×400×3 inputs. Not checked against
    published features: the real weights are not available offline.
    """
    variables = load_inception_variables(weights_path)
    forward = jax.jit(lambda v, images: InceptionV3().apply(v, inception_preprocess(images)))
    apply_fn = functools.partial(forward, variables)  # weights as an argument, not 24M baked-in constants
    return FeatureNetwork(name="inception_v3_fid", apply_fn=apply_fn, input_size=INCEPTION_SIZE, channels=(1, 3),
                          feature_dim=2048, num_classes=1008)


def inception_preprocess(images: jax.Array) -> jax.Array:
    """[B, H, W, 1 or 3] in [−1, 1] -> [B, 299, 299, 3]: grey tiled to RGB, bilinear resize."""
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"InceptionV3 takes images [B, H, W, 1 or 3], got shape {images.shape}")
    if images.shape[-1] == 1:
        images = jnp.tile(images, (1, 1, 1, 3))
    return jax.image.resize(images, (images.shape[0], INCEPTION_SIZE, INCEPTION_SIZE, 3), "bilinear",
                            antialias=False)
