"""The configuration schema shared by every experiment, and its validation.

Experiment files in `experiments/` start from `base_config()` and override fields; `validate`
rejects unknown fields and bad values with messages naming the value and what is allowed.
"""
from __future__ import annotations

import json
from typing import Any

import ml_collections

PARALLEL_MODES = ("shard_map", "pmap")
# Free-form model options: each architecture checks its own keyword arguments.
FREE_FORM = ("model.generator", "model.critic", "optim.generator", "optim.critic")
# Fields that may change between a run and its resumption (they do not change the trajectory).
RESUMABLE_FIELDS = ("steps", "checkpoint_every", "keep_checkpoints", "log_every", "sample_every",
                    "eval", "data.data_dir", "data.manual_dir")


def base_config() -> ml_collections.ConfigDict:
    """Every field an experiment may set, with defaults."""
    c = ml_collections.ConfigDict()
    c.name = ""            # experiment name
    c.paper = ""           # the paper and table the experiment reproduces
    c.seed = 0
    c.steps = 1000         # generator updates
    c.batch_size = 64      # global, per critic update
    c.checkpoint_every = 1000
    c.keep_checkpoints = 3
    c.log_every = 100
    c.sample_every = 1000  # visualisations (scatter plots, image grids)
    c.parallel = "shard_map"
    c.ema_decay = 0.0      # EMA of the generator weights (0: the EMA equals the weights)
    # num_train: mixtures draw that many points; image datasets use the first num_train training images;
    # stacked_mnist stacks that many digit triples from its train_split.
    c.data = ml_collections.ConfigDict(dict(name="ring", num_train=100_000, data_dir="", manual_dir="",
                                            image_size=0, train_split="train"))
    c.model = ml_collections.ConfigDict(dict(
        latent_dim=2, dtype="float32", pack=1, num_classes=0,
        generator=ml_collections.ConfigDict(dict(name="mlp")),
        critic=ml_collections.ConfigDict(dict(name="mlp"))))
    c.loss = ml_collections.ConfigDict(dict(
        name="non_saturating", n_critic=1, label_smoothing=0.0,
        gradient_penalty=0.0, gp_target=1.0, r1_gamma=0.0, acgan_weight=0.0,
        # simultaneous: G's step is taken at the critic before its step, on that step's samples and dropout
        # masks (the code of Goodfellow et al. 2014); default: alternating, G sees the updated critic.
        simultaneous=False))
    # Optimizers: `name` plus the keyword options of `gan_jax.optim.make_optimizer` (weight_clip: WGAN).
    opt = dict(name="adam", learning_rate=2e-4, b1=0.5, b2=0.999)
    c.optim = ml_collections.ConfigDict(dict(generator=ml_collections.ConfigDict(opt),
                                             critic=ml_collections.ConfigDict(opt)))
    # every: also evaluate every that many steps during training (TensorBoard and metrics.jsonl as eval/*;
    # 0: only at the end). It reads the state and leaves the trajectory unchanged.
    # precise_bn_batches: mixtures also report each metric as <metric>_precise_bn, with G's batch-norm statistics
    # recomputed at the evaluated parameters from that many training-size batches instead of the running
    # averages (Wu & Johnson 2021, "precise BN"); 0: off.
    c.eval = ml_collections.ConfigDict(dict(num_samples=2500, classifier_dir="", parzen=False, every=0,
                                            precise_bn_batches=0))
    return c


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        path = f"{prefix}{k}"
        if isinstance(v, (dict, ml_collections.ConfigDict)) and path not in FREE_FORM:
            out.update(_flatten(v, path + "."))
        else:
            out[path] = v.to_dict() if isinstance(v, ml_collections.ConfigDict) else v
    return out


def flatten(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """{"loss.name": ..., "model.generator": {...}, ...}: the comparable form of a config."""
    return _flatten(config)


def _require(ok: bool, msg: str) -> None:
    if not ok:
        raise ValueError(msg)


def validate(config: ml_collections.ConfigDict, num_devices: int = 1) -> None:
    """Raise ValueError for unknown fields or bad values; each message names the value and the allowed ones."""
    from gan_jax import losses

    flat, known = flatten(config), flatten(base_config())
    unknown = sorted(set(flat) - set(known))
    _require(not unknown, f"unknown config fields {unknown}; allowed fields: {sorted(known)}")
    for field in ("steps", "batch_size", "checkpoint_every", "keep_checkpoints", "log_every", "sample_every",
                  "loss.n_critic", "model.pack", "model.latent_dim", "eval.num_samples"):
        v = flat[field]
        _require(isinstance(v, int) and v >= 1, f"config.{field} must be an integer >= 1, got {v!r}")
    for field, zero in (("every", "evaluate only at the end"), ("precise_bn_batches", "off")):
        v = config.eval[field]
        _require(isinstance(v, int) and v >= 0, f"config.eval.{field} must be an integer >= 0 (0: {zero}), got {v!r}")
    _require(config.parallel in PARALLEL_MODES,
             f"unknown config.parallel {config.parallel!r}; allowed: {list(PARALLEL_MODES)}")
    _require(config.loss.name in losses.LOSS_NAMES,
             f"unknown loss {config.loss.name!r}; allowed: {list(losses.LOSS_NAMES)}")
    losses.get_loss(config.loss.name, label_smoothing=config.loss.label_smoothing)
    _require(config.model.num_classes >= 0, f"config.model.num_classes must be >= 0, got {config.model.num_classes!r}")
    _require(not (config.model.num_classes and config.model.pack > 1),
             f"packing (config.model.pack={config.model.pack}) is not defined for conditional models "
             f"(num_classes={config.model.num_classes})")
    _require(not config.loss.acgan_weight or config.model.num_classes,
             f"config.loss.acgan_weight={config.loss.acgan_weight} needs class labels: set config.model.num_classes")
    for field in ("gradient_penalty", "r1_gamma", "acgan_weight"):
        v = config.loss[field]
        _require(v >= 0, f"config.loss.{field} must be >= 0, got {v!r}")
    _require(not config.loss.simultaneous or config.loss.n_critic == 1,
             f"config.loss.simultaneous=True takes one critic step per generator step; got n_critic={config.loss.n_critic}")
    _require(0.0 <= config.ema_decay < 1.0, f"config.ema_decay must be in [0, 1), got {config.ema_decay!r}")
    for who in ("generator", "critic"):
        make_optimizer(config.optim[who], f"config.optim.{who}")
    _require("weight_clip" not in config.optim.generator,
             "config.optim.generator.weight_clip is not allowed: WGAN clips the critic's weights only")
    per_device, rem = divmod(config.batch_size, num_devices)
    _require(rem == 0, f"config.batch_size={config.batch_size} is not divisible by the {num_devices} devices")
    _require(per_device % config.model.pack == 0,
             f"the per-device batch {per_device} (config.batch_size={config.batch_size} over {num_devices} devices) "
             f"is not divisible by config.model.pack={config.model.pack}")


def make_optimizer(spec: ml_collections.ConfigDict | dict, where: str = "optimizer"):
    """The Optax optimizer of a config entry {name, learning_rate, options...}."""
    from gan_jax import optim

    spec = dict(spec)
    for field in ("name", "learning_rate"):
        _require(field in spec, f"{where} needs a {field!r}; got {spec}")
    return optim.make_optimizer(spec.pop("name"), spec.pop("learning_rate"), **spec)


def differing_fields(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Fields whose values differ between two flattened configs, ignoring RESUMABLE_FIELDS.

    A field of `base_config` that `saved` lacks (a checkpoint written before the field existed) counts
    as its default there, and so does an architecture option (model.generator.* / model.critic.*) at the
    default of the network the checkpoint names."""
    from gan_jax import models

    def relevant(k: str) -> bool:
        return not any(k == f or k.startswith(f + ".") for f in RESUMABLE_FIELDS)
    def json_form(x):  # as the checkpoint stores it
        return json.loads(json.dumps(x, default=str))
    defaults = json_form(flatten(base_config()))
    saved = {**{k: v for k, v in defaults.items() if k in current}, **saved}
    for kind in ("generator", "critic"):
        spec, now = saved.get(f"model.{kind}"), current.get(f"model.{kind}")
        if isinstance(spec, dict) and isinstance(now, dict):
            options = json_form(models.option_defaults(kind, spec.get("name")))
            saved[f"model.{kind}"] = {**{k: v for k, v in options.items() if k in now}, **spec}
    keys = sorted(k for k in set(saved) | set(current) if relevant(k))
    return [f"{k}: checkpoint has {saved.get(k, '<absent>')!r}, config has {current.get(k, '<absent>')!r}"
            for k in keys if saved.get(k) != current.get(k)]
