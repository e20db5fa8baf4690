"""Pluggable feature networks for FID / KID / IS: images [B, H, W, C] in [−1, 1] -> (features, logits).

- `lenet_features(workdir)`: our LeNet classifier (gan_jax/metrics/classifier.py), 128-d features of its
  hidden dense layer and 10 logits, 28×28×1 inputs. Classifier-FID values are not comparable with
  published (Inception) FIDs; record the classifier's checkpoint with every number.
  The real-vs-real floor (train[0:10000] vs the 10,000 test images) depends on the classifier's
  weights: `protocols.image_scores` with training images as the samples measures it, and the reproduce
  command prints it with each table.
- `inception_v3_features(weights_path)`: the FID InceptionV3 (pool3, 2048-d; 1008 logits) of pytorch-fid,
  TensorFlow's 2015 graph, from a weights file the user provides; nothing is downloaded. Download
  pytorch-fid's `pt_inception-2015-12-05-6726825d.pth` (`FID_WEIGHTS_URL`) and convert it once (needs torch):

      python -m gan_jax.metrics.convert_inception pt_inception-2015-12-05-6726825d.pth pt_inception-2015-12-05.npz

`config.eval.features` picks the network of a GAN run's FID / KID / IS (`FEATURE_CHOICES`,
`feature_network(config)`): "classifier" (eval.classifier_dir) or "inception" (eval.inception_weights).

`feature_pass` runs a network over a set of images as one compiled program per batch, the batch split
over the local devices, and accumulates the FID moments (`fid.FeatureStats`) across devices and
batches; `extract` returns the per-image features and logits.
"""
from __future__ import annotations

import dataclasses
import functools
import os
from typing import TYPE_CHECKING, Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from gan_jax.metrics import fid
from gan_jax.metrics.batching import batched_apply  # noqa: F401  (re-exported: callers import it from here)

if TYPE_CHECKING:
    import ml_collections


AXIS = "batch"  # the 1-D mesh axis the images are split over


@dataclasses.dataclass(frozen=True, eq=False)
class FeatureNetwork:
    """A feature extractor: `forward(variables, images)` maps images [B, H, W, C] in [−1, 1] (what our
    generators and data sources produce), C one of `channels`, to (features [B, feature_dim], logits
    [B, num_classes]); input_size is the side the network sees (after its own resizing, if any);
    score_name is what the Inception Score of its class probabilities is reported as. The weights stay a
    separate argument, so compiled passes take them as inputs instead of baking them in."""
    name: str
    forward: Callable[[Any, jax.Array], tuple[jax.Array, jax.Array]]
    variables: Any
    input_size: int
    channels: tuple[int, ...]
    feature_dim: int
    num_classes: int
    score_name: str = "classifier_score"

    @functools.cached_property
    def apply_fn(self) -> Callable[[jax.Array], tuple[jax.Array, jax.Array]]:
        """Jitted images -> (features, logits) on one device, the variables bound."""
        return functools.partial(jax.jit(self.forward), self.variables)


@dataclasses.dataclass(frozen=True)
class FeaturePass:
    """What `feature_pass` returns: the moments of all features, and the per-image outputs asked for."""
    stats: fid.FeatureStats
    features: np.ndarray | None = None
    logits: np.ndarray | None = None


@functools.lru_cache(maxsize=8)
def _compiled_step(forward: Callable, devices: tuple[jax.Device, ...], keep: tuple[str, ...]) -> Callable:
    """(variables, stats, images [B, ...], mask [B]) -> (stats + the batch's moments, {kept outputs [B, ...]}),
    one program over a 1-D mesh of `devices`: each device runs the network on B / len(devices) images,
    the moments of its unmasked rows are summed over the mesh (`fid.psum_stats`) and merged into the
    replicated running moments."""
    mesh = Mesh(np.asarray(devices), (AXIS,))

    def step(variables: Any, stats: fid.FeatureStats, images: jax.Array, mask: jax.Array
             ) -> tuple[fid.FeatureStats, dict[str, jax.Array]]:
        feats, logits = forward(variables, images)
        batch = fid.psum_stats(fid.batch_stats(feats.astype(stats.mean.dtype), mask), AXIS)
        outputs = {"features": feats, "logits": logits}
        return fid.merge(stats, batch), {k: outputs[k] for k in keep}

    return jax.jit(jax.shard_map(step, mesh=mesh, in_specs=(P(), P(), P(AXIS), P(AXIS)),
                                 out_specs=(P(), P(AXIS))))


def _check_images(network: FeatureNetwork, images: np.ndarray | jax.Array) -> None:
    if images.ndim != 4 or images.shape[-1] not in network.channels:
        raise ValueError(f"{network.name} takes images [N, H, W, C] with C in {network.channels}, "
                         f"got shape {images.shape}")
    if images.shape[0] == 0:
        raise ValueError(f"no images to apply {network.name} to (N = 0)")


def feature_pass(network: FeatureNetwork, images: np.ndarray | jax.Array, batch_size: int = 500, *,
                 keep_features: bool = False, keep_logits: bool = False,
                 devices: Sequence[jax.Device] | None = None) -> FeaturePass:
    """The network over images [N, H, W, C] in [−1, 1]: the streaming moments of the features (for FID),
    and the features / logits [N, ...] themselves if asked (KID needs features, IS logits).

    Each batch of `batch_size` images (rounded up to a multiple of the device count) is split over
    `devices` (default: this process's local devices) and processed by one compiled program that also
    reduces the moments across them. The last batch is padded with masked rows, so counts are exact and
    the result does not depend on the device count beyond float rounding. At most two batches are in
    flight (a waited-on step before each new one), which also keeps CPU collectives clear of deadlock.
    """
    _check_images(network, images)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    devices = tuple(devices) if devices is not None else tuple(jax.local_devices())
    n = images.shape[0]
    size = -(-min(batch_size, n) // len(devices)) * len(devices)
    keep = tuple(k for k, wanted in (("features", keep_features), ("logits", keep_logits)) if wanted)
    step = _compiled_step(network.forward, devices, keep)
    mesh = Mesh(np.asarray(devices), (AXIS,))
    replicated, split = NamedSharding(mesh, P()), NamedSharding(mesh, P(AXIS))
    variables = jax.device_put(network.variables, replicated)
    stats = jax.device_put(fid.init_stats(network.feature_dim), replicated)
    parts: dict[str, list[np.ndarray]] = {k: [] for k in keep}
    previous: tuple[dict[str, jax.Array], int] | None = None

    def collect(outputs: dict[str, jax.Array], valid: int) -> None:
        for k, v in outputs.items():
            parts[k].append(np.asarray(v)[:valid])

    for start in range(0, n, size):
        chunk = np.asarray(images[start:start + size])
        valid = chunk.shape[0]
        if valid < size:
            chunk = np.concatenate([chunk, np.zeros((size - valid, *chunk.shape[1:]), chunk.dtype)])
        mask = np.arange(size) < valid
        last_stats = stats
        stats, outputs = step(variables, stats, jax.device_put(chunk, split), jax.device_put(mask, split))
        jax.block_until_ready(last_stats)
        if previous is not None:
            collect(*previous)
        previous = (outputs, valid)
    collect(*previous)
    return FeaturePass(stats=jax.device_get(stats), **{k: np.concatenate(v) for k, v in parts.items()})


def extract(network: FeatureNetwork, images: np.ndarray | jax.Array, batch_size: int = 500,
            devices: Sequence[jax.Device] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(features [N, feature_dim], logits [N, num_classes]) of images [N, H, W, C] in [−1, 1], computed
    by `feature_pass` over the local devices."""
    out = feature_pass(network, images, batch_size, keep_features=True, keep_logits=True, devices=devices)
    return out.features, out.logits


def lenet_features(workdir: str) -> FeatureNetwork:
    """Our classifier saved by `python -m gan_jax.metrics.classifier ... --workdir workdir`.

    Inputs must be 28×28×1 (crop a 32×32 padded generator output back with images[:, 2:30, 2:30]).
    """
    from gan_jax.metrics import classifier
    model, params, meta = classifier.load_classifier(workdir)

    def forward(params: Any, images: jax.Array) -> tuple[jax.Array, jax.Array]:
        if images.shape[1:] != classifier.IMAGE_SHAPE:
            raise ValueError(f"the LeNet classifier takes images [B, 28, 28, 1], got shape {images.shape}")
        return model.apply({"params": params}, images, train=False)

    return FeatureNetwork(name=f"lenet_{meta['dataset']}", forward=forward, variables=params, input_size=28,
                          channels=(1,), feature_dim=meta["feature_dim"], num_classes=meta["num_classes"])


# ----------------------------------------------------------------------------------------- InceptionV3

FID_WEIGHTS_URL = ("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
                   "pt_inception-2015-12-05-6726825d.pth")
INCEPTION_SIZE = 299
WEIGHTS_HELP = (f"download pytorch-fid's FID Inception weights {FID_WEIGHTS_URL} and convert them once (needs "
                "torch): python -m gan_jax.metrics.convert_inception pt_inception-2015-12-05-6726825d.pth "
                "pt_inception-2015-12-05.npz")


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


def checked_inception_variables(state_dict: dict[str, np.ndarray], source: str) -> dict[str, Any]:
    """`inception_variables` of a whole state dict, refused (naming `source`) unless its names and shapes
    are those of the FID InceptionV3."""
    variables = inception_variables(state_dict)
    expected = jax.eval_shape(InceptionV3().init, jax.random.key(0), jnp.zeros((1, 75, 75, 3)))
    if jax.tree.map(lambda a: a.shape, variables) != jax.tree.map(lambda a: a.shape, expected):
        raise ValueError(f"{source} does not hold the FID InceptionV3's weights (names or shapes differ from "
                         f"pytorch-fid's pt_inception-2015-12-05); {WEIGHTS_HELP}")
    return variables


def load_inception_variables(weights_path: str) -> dict[str, Any]:
    """Variables from the .npz of pytorch-fid's `pt_inception-2015-12-05-6726825d.pth`, checked against
    the network's shapes; FileNotFoundError says how to get the file."""
    if not os.path.exists(weights_path):
        raise FileNotFoundError(f"no InceptionV3 weights at {weights_path!r}: {WEIGHTS_HELP}")
    with np.load(weights_path) as npz:
        return checked_inception_variables(dict(npz), weights_path)


def inception_v3_features(weights_path: str) -> FeatureNetwork:
    """FID / KID / IS features: InceptionV3 pool3 (2048-d) and the 1008-way logits, from a user-provided
    weights file (see `load_inception_variables`; nothing is downloaded).

    Preprocessing as pytorch-fid: 1-channel images are tiled to 3 channels (as Lucic et al. 2018 do for
    MNIST), then resized to 299×299 bilinearly (half-pixel centres, no antialiasing: torch's
    `interpolate(..., align_corners=False)`); pixels stay in [−1, 1], the network's input range. The
    original TensorFlow FID code resizes inside its graph, so pytorch-fid's (and our) values differ
    slightly from TF-FID's. tests/test_inception_reference.py checks pool3 and logits against pytorch-fid's
    own network (its published code, the same random weights) from 32×32×1 and 64×64×3 inputs: they agree
    to 1e-4 absolute on values up to ~10 (measured 4e-6, float32 rounding) on CPU.
    """
    return FeatureNetwork(name="inception_v3_fid", forward=_inception_forward,
                          variables=load_inception_variables(weights_path), input_size=INCEPTION_SIZE,
                          channels=(1, 3), feature_dim=2048, num_classes=1008, score_name="inception_score")


def _inception_forward(variables: dict[str, Any], images: jax.Array) -> tuple[jax.Array, jax.Array]:
    return InceptionV3().apply(variables, inception_preprocess(images))


def inception_preprocess(images: jax.Array) -> jax.Array:
    """[B, H, W, 1 or 3] in [−1, 1] -> [B, 299, 299, 3]: grey tiled to RGB, bilinear resize."""
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"InceptionV3 takes images [B, H, W, 1 or 3], got shape {images.shape}")
    if images.shape[-1] == 1:
        images = jnp.tile(images, (1, 1, 1, 3))
    return jax.image.resize(images, (images.shape[0], INCEPTION_SIZE, INCEPTION_SIZE, 3), "bilinear",
                            antialias=False)


# ------------------------------------------------------------------------------- choice by config.eval.features

@dataclasses.dataclass(frozen=True)
class FeatureChoice:
    """A value of `config.eval.features`: the eval field that locates its weights, the network built from that
    location, how protocol lines name it ("{}": the location) and, for a choice that cannot do without its
    file, how to get one (`required`)."""
    field: str
    load: Callable[[str], FeatureNetwork]
    description: str
    required: str = ""
    score_name: str = "classifier_score"  # the key its Inception Score is reported under


FEATURE_CHOICES = {
    "classifier": FeatureChoice("classifier_dir", lenet_features, "the classifier in {}"),
    "inception": FeatureChoice("inception_weights", inception_v3_features,
                               "pytorch-fid's FID InceptionV3 (pool3, 1008 classes) with the weights {}", WEIGHTS_HELP,
                               "inception_score"),
}


def chosen_features(config: ml_collections.ConfigDict) -> str:
    """`config.eval.features`; "classifier" for the config of a run from before the field."""
    return config.eval.get("features", "classifier")


def score_name(config: ml_collections.ConfigDict) -> str:
    """The key under which `config`'s feature network reports the Inception Score of its class probabilities."""
    return FEATURE_CHOICES[chosen_features(config)].score_name


def _selected(config: ml_collections.ConfigDict) -> tuple[FeatureChoice, str]:
    choice = FEATURE_CHOICES[chosen_features(config)]
    return choice, config.eval.get(choice.field, "")


def feature_network(config: ml_collections.ConfigDict) -> FeatureNetwork | None:
    """The network of FID / KID / IS that `config.eval.features` names, loaded from its eval field; None when
    that field is empty (the classifier without `eval.classifier_dir`: no FID)."""
    choice, where = _selected(config)
    return choice.load(where) if where else None


def feature_description(config: ml_collections.ConfigDict) -> str | None:
    """How protocol lines name `feature_network(config)`, without loading it; None when there is none."""
    choice, where = _selected(config)
    return choice.description.format(where) if where else None


def check_feature_config(config: ml_collections.ConfigDict) -> None:
    """Refuse an unknown `config.eval.features`, naming the allowed ones, and a choice whose required weights
    file is unset or missing, saying how to make one."""
    name = chosen_features(config)
    if name not in FEATURE_CHOICES:
        raise ValueError(f"unknown config.eval.features {name!r}; allowed: {list(FEATURE_CHOICES)}")
    choice, where = _selected(config)
    if choice.required and not where:
        raise ValueError(f"config.eval.features={name!r} needs config.eval.{choice.field}: {choice.required}")
    if choice.required and not os.path.exists(where):
        raise ValueError(f"config.eval.{choice.field}={where!r} does not exist; {choice.required}")
