"""Config schemas: the fields every task shares, the GAN task's schema, and their validation.

Every experiment file in `experiments/` returns a ConfigDict starting from its task's schema
(`common_config()` plus the task's own fields; the GAN's is `base_config()`). `check_fields` rejects
unknown fields naming the closest valid one; each task's `validate` rejects bad values naming the
value and what is allowed.
"""
from __future__ import annotations

import difflib
import json
import math
from typing import TYPE_CHECKING, Any

import ml_collections

if TYPE_CHECKING:
    import optax

PARALLEL_MODES = ("shard_map", "pmap")
# Free-form model options: each architecture checks its own keyword arguments.
FREE_FORM = ("model.generator", "model.critic", "optim.generator", "optim.critic", "optim.discriminator",
             "optim.source", "optim.target")
# Fields that may change between a run and its resumption (they do not change the trajectory).
RESUMABLE_FIELDS = ("steps", "checkpoint_every", "keep_checkpoints", "log_every", "sample_every", "eval_every",
                    "max_abs_loss", "steps_per_call",
                    "eval", "data.data_dir", "data.manual_dir", "adapt_steps")
# Top-level fields that must be integers >= 1 in every task.
POSITIVE_FIELDS = ("steps", "batch_size", "checkpoint_every", "keep_checkpoints", "log_every", "sample_every",
                   "steps_per_call")


def common_config(task: str) -> ml_collections.ConfigDict:
    """The fields every task's config has, with defaults; `task` names the task module (gan_jax.tasks)."""
    c = ml_collections.ConfigDict()
    c.task = task
    c.name = ""            # experiment name
    c.paper = ""           # the paper and table the experiment reproduces
    c.seed = 0
    c.steps = 1000         # training steps (GAN: generator updates)
    c.batch_size = 64      # global batch (GAN: per critic update)
    c.checkpoint_every = 1000
    c.keep_checkpoints = 3
    c.log_every = 100
    c.sample_every = 1000  # visualisations (scatter plots, image grids, translations)
    # Also evaluate every that many steps during training (eval/* rows of metrics.jsonl and TensorBoard;
    # 0: only at the end). It reads the state and leaves the trajectory unchanged.
    c.eval_every = 0
    c.parallel = "shard_map"
    # Train steps per compiled call (a `lax.scan` over that many batches): fewer dispatches for small models,
    # the same trajectory. Calls end early at every checkpoint, sample and eval step.
    c.steps_per_call = 1
    # The divergence guard: a logged loss of larger magnitude stops the run like a NaN does.
    c.max_abs_loss = 1e10
    return c


def check_fields(config: ml_collections.ConfigDict, schema: ml_collections.ConfigDict) -> None:
    """Refuse fields `schema` lacks, naming each with the closest valid field; check the common fields."""
    flat, known = flatten(config), flatten(schema)
    for field in sorted(set(flat) - set(known)):
        close = difflib.get_close_matches(field, list(known), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else f"; allowed fields: {sorted(known)}"
        raise ValueError(f"unknown config field {field!r} for task {config.get('task', '?')!r}{hint}")
    for field in POSITIVE_FIELDS:
        v = config[field]
        _require(isinstance(v, int) and not isinstance(v, bool) and v >= 1,
                 f"config.{field} must be an integer >= 1, got {v!r}")
    _require(isinstance(config.seed, int) and config.seed >= 0, f"config.seed must be an integer >= 0, got {config.seed!r}")
    _require(isinstance(config.eval_every, int) and config.eval_every >= 0,
             f"config.eval_every must be an integer >= 0 (0: evaluate only at the end), got {config.eval_every!r}")
    _require(config.parallel in PARALLEL_MODES,
             f"unknown config.parallel {config.parallel!r}; allowed: {list(PARALLEL_MODES)}")
    _require(isinstance(config.max_abs_loss, (int, float)) and config.max_abs_loss > 0,
             f"config.max_abs_loss must be a number > 0, got {config.max_abs_loss!r}")
    for field, value in _flatten_all(config).items():
        for v in value if isinstance(value, (tuple, list)) else [value]:
            _require(not isinstance(v, float) or math.isfinite(v), f"config.{field} must be finite, got {value!r}")


def fill_model_options(config: ml_collections.ConfigDict) -> None:
    """Give `model.generator` / `model.critic` (and a conditional wrapper's `base`) every option of their
    architecture at its default, so that each is settable from the command line
    (`--config.model.critic.spectral_norm=True`); a config without such networks is left as it is."""
    from gan_jax import models

    def fill(spec: ml_collections.ConfigDict, kind: str) -> None:
        for key, value in models.option_defaults(kind, spec.get("name")).items():
            if key not in spec and key not in _SET_BY_BUILDER and _plain(value):
                spec[key] = value
        if isinstance(spec.get("base"), ml_collections.ConfigDict):
            fill(spec.base, kind)

    with config.unlocked():
        for kind in ("generator", "critic"):
            spec = config.get("model", {}).get(kind)
            if isinstance(spec, ml_collections.ConfigDict) and "name" in spec:
                fill(spec, kind)


# Network fields the model builder sets from other config fields (models._build), not options.
_SET_BY_BUILDER = ("bn_axis_name", "pack", "dtype", "num_classes", "generator", "critic", "base")


def _plain(value: Any) -> bool:
    if isinstance(value, (tuple, list)):
        return all(_plain(v) for v in value)
    return value is None or isinstance(value, (bool, int, float, str))


def apply_overrides(config: ml_collections.ConfigDict, assignments: list[str]) -> None:
    """Apply command-line assignments "FIELD=VALUE" (from `--config.FIELD=VALUE`) to `config`.

    VALUE is read as a Python literal (`3`, `1e-4`, `True`, `(32, 32)`) and falls back to the raw text for
    string fields; an unknown FIELD is refused naming the closest valid one, a VALUE of the wrong type naming
    the field's type."""
    known = list(_flatten_all(config))
    for assignment in assignments:
        field, sep, text = assignment.partition("=")
        _require(bool(sep) and bool(field), f"--config.{assignment}: expected --config.FIELD=VALUE")
        *parents, last = field.split(".")
        node = config
        for name in parents:
            node = node.get(name) if isinstance(node, ml_collections.ConfigDict) else None
        if not isinstance(node, ml_collections.ConfigDict) or last not in node:
            close = difflib.get_close_matches(field, known, n=1, cutoff=0.6)
            raise ValueError(f"unknown config field {field!r}" + (f"; did you mean {close[0]!r}?" if close else ""))
        node[last] = _coerce(field, node[last], text)


def _flatten_all(d: Any, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        out.update(_flatten_all(v, f"{prefix}{k}.") if isinstance(v, ml_collections.ConfigDict) else {f"{prefix}{k}": v})
    return out


def _coerce(field: str, current: Any, text: str) -> Any:
    """`text` as a value for a field holding `current`."""
    import ast
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        # inf and nan are numbers to a float field, so that validation can name them as non-finite.
        value = float(text) if text.strip().lower().lstrip("+-") in ("inf", "infinity", "nan") else text
    if current is None:
        return value
    if isinstance(current, str):
        return text
    if isinstance(current, bool) or isinstance(value, bool):
        _require(isinstance(current, bool) and isinstance(value, bool),
                 f"config.{field} takes {type(current).__name__}, got {text!r}")
        return value
    if isinstance(current, float) and isinstance(value, int):
        return float(value)
    if isinstance(current, (tuple, list)) and isinstance(value, (tuple, list)):
        return tuple(value)
    _require(isinstance(value, type(current)),
             f"config.{field} takes {type(current).__name__}, got {text!r}")
    return value


def base_config() -> ml_collections.ConfigDict:
    """Every field of a GAN experiment, with defaults."""
    c = common_config("gan")
    c.ema_decay = 0.0      # EMA of the generator weights (0: the EMA equals the weights)
    # num_train: mixtures draw that many points; image datasets use the first num_train training images;
    # stacked_mnist stacks that many digit triples from its train_split. center_crop: take the central
    # center_crop x center_crop square of each image before resizing to image_size (DCGAN's CelebA: 108); 0: none.
    c.data = ml_collections.ConfigDict(dict(name="ring", num_train=100_000, data_dir="", manual_dir="",
                                            image_size=0, train_split="train", center_crop=0))
    # latent_distribution: the prior of z, "normal" N(0, I) or "uniform" U(−1, 1) (gan_jax.prior.sample_latents).
    c.model = ml_collections.ConfigDict(dict(
        latent_dim=2, latent_distribution="normal", dtype="float32", pack=1, num_classes=0,
        generator=ml_collections.ConfigDict(dict(name="mlp")),
        critic=ml_collections.ConfigDict(dict(name="mlp"))))
    # The weights of the objective terms (gan_jax.objectives): the critic minimises the pair's critic loss (name)
    # + gradient_penalty · WGAN-GP + r1_gamma/2 · R1 + acgan_weight · class loss; the generator
    # generator_adversarial · the pair's generator loss + acgan_weight · class loss + feature_matching · feature
    # matching (Salimans et al. 2016: feature_matching=1, generator_adversarial=0 makes it G's objective).
    c.loss = ml_collections.ConfigDict(dict(
        name="non_saturating", n_critic=1, label_smoothing=0.0,
        gradient_penalty=0.0, gp_target=1.0, r1_gamma=0.0, acgan_weight=0.0,
        generator_adversarial=1.0, feature_matching=0.0,
        # simultaneous: G's step is taken at the critic before its step, on that step's samples and dropout
        # masks (the code of Goodfellow et al. 2014); default: alternating, G sees the updated critic.
        simultaneous=False,
        # generator_updates: G's updates per step after the critic's, each on the same codes at G's newest
        # parameters (carpedm20/DCGAN-tensorflow, and PacGAN's Stacked-MNIST code built on it, "run g_optim twice").
        generator_updates=1,
        # reuse_critic_codes: G's updates draw the codes of the critic's last update instead of fresh ones (so, with
        # G unchanged since, the very samples that update saw), as carpedm20/DCGAN-tensorflow feeds one batch_z to
        # both steps; alternating updates only (simultaneous ones always reuse the critic's samples).
        reuse_critic_codes=False))
    # Optimizers: `name` plus the keyword options of `gan_jax.optim.make_optimizer` (weight_clip: WGAN).
    opt = dict(name="adam", learning_rate=2e-4, b1=0.5, b2=0.999)
    c.optim = ml_collections.ConfigDict(dict(generator=ml_collections.ConfigDict(opt),
                                             critic=ml_collections.ConfigDict(opt)))
    # precise_bn_batches: mixtures also report each metric as <metric>_precise_bn, with G's batch-norm statistics
    # recomputed at the evaluated parameters from that many training-size batches instead of the running
    # averages (Wu & Johnson 2021, "precise BN"); 0: off.
    # features: the network of FID / KID / IS (gan_jax.metrics.features.FEATURE_CHOICES): "classifier", our LeNet
    # saved in classifier_dir (none set: no FID), or "inception", the FID InceptionV3 with the .npz weights
    # inception_weights (python -m gan_jax.metrics.convert_inception makes it from pytorch-fid's .pth).
    # parzen_*: the Parzen protocol's samples, validation images (MNIST train[50000:50000 + n]) and σ grid
    # (start, end, count) of logspace exponents; the defaults are goodfeli/adversarial parzen_ll.py's.
    c.eval = ml_collections.ConfigDict(dict(num_samples=2500, classifier_dir="", parzen=False,
                                            parzen_num_samples=10_000, parzen_num_validation=1_000,
                                            parzen_sigma_grid=(-1.0, 0.0, 10),
                                            precise_bn_batches=0, features="classifier", inception_weights=""))
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
    """Raise ValueError for unknown fields or bad values of a GAN config; each message names the value and the
    allowed ones."""
    from gan_jax import losses, prior
    from gan_jax.metrics import parzen

    check_fields(config, base_config())
    for field in ("loss.n_critic", "model.pack", "model.latent_dim", "eval.num_samples"):
        v = flatten(config)[field]
        _require(isinstance(v, int) and v >= 1, f"config.{field} must be an integer >= 1, got {v!r}")
    v = config.data.center_crop
    _require(isinstance(v, int) and v >= 0, f"config.data.center_crop must be an integer >= 0 (0: no crop), got {v!r}")
    _require(config.model.latent_distribution in prior.DISTRIBUTIONS,
             f"unknown config.model.latent_distribution {config.model.latent_distribution!r}; "
             f"allowed: {list(prior.DISTRIBUTIONS)}")
    v = config.eval.precise_bn_batches
    _require(isinstance(v, int) and v >= 0, f"config.eval.precise_bn_batches must be an integer >= 0 (0: off), got {v!r}")
    v = config.eval.parzen_num_samples
    _require(isinstance(v, int) and v >= 1, f"config.eval.parzen_num_samples must be an integer >= 1, got {v!r}")
    v = config.eval.parzen_num_validation
    _require(isinstance(v, int) and 1 <= v <= parzen.MAX_VALIDATION,
             f"config.eval.parzen_num_validation must be an integer in 1..{parzen.MAX_VALIDATION} (MNIST "
             f"train[50000:60000]), got {v!r}")
    grid = config.eval.parzen_sigma_grid
    try:
        parzen.sigma_grid(*grid)
    except (TypeError, ValueError):
        _require(False, f"config.eval.parzen_sigma_grid must be (start, end, count): logspace exponents start <= end "
                        f"and an integer count >= 1, got {grid!r}")
    _require(config.loss.name in losses.LOSS_NAMES,
             f"unknown loss {config.loss.name!r}; allowed: {list(losses.LOSS_NAMES)}")
    losses.get_loss(config.loss.name, label_smoothing=config.loss.label_smoothing)
    _require(config.model.num_classes >= 0, f"config.model.num_classes must be >= 0, got {config.model.num_classes!r}")
    _require(not (config.model.num_classes and config.model.pack > 1),
             f"packing (config.model.pack={config.model.pack}) is not defined for conditional models "
             f"(num_classes={config.model.num_classes})")
    _require(not config.loss.acgan_weight or config.model.num_classes,
             f"config.loss.acgan_weight={config.loss.acgan_weight} needs class labels: set config.model.num_classes")
    for field in ("gradient_penalty", "r1_gamma", "acgan_weight", "generator_adversarial", "feature_matching"):
        v = config.loss[field]
        _require(v >= 0, f"config.loss.{field} must be >= 0, got {v!r}")
    _require(config.loss.generator_adversarial > 0 or config.loss.feature_matching > 0,
             "the generator needs an objective: config.loss.generator_adversarial > 0 or "
             "config.loss.feature_matching > 0 (both are 0)")
    v = config.loss.generator_updates
    _require(isinstance(v, int) and not isinstance(v, bool) and v >= 1,
             f"config.loss.generator_updates must be an integer >= 1, got {v!r}")
    _require(not config.loss.simultaneous or v == 1,
             f"config.loss.simultaneous=True takes one generator update per step; got generator_updates={v}")
    _require(not (config.loss.simultaneous and config.loss.reuse_critic_codes),
             "config.loss.reuse_critic_codes=True is for alternating updates; simultaneous=True already reuses the "
             "critic's samples")
    _require(not config.loss.simultaneous or config.loss.n_critic == 1,
             f"config.loss.simultaneous=True takes one critic step per generator step; got n_critic={config.loss.n_critic}")
    _require(0.0 <= config.ema_decay < 1.0, f"config.ema_decay must be in [0, 1), got {config.ema_decay!r}")
    for who in ("generator", "critic"):
        make_optimizer(config.optim[who], f"config.optim.{who}", total_updates(config, who))
    _require("weight_clip" not in config.optim.generator,
             "config.optim.generator.weight_clip is not allowed: WGAN clips the critic's weights only")
    per_device, rem = divmod(config.batch_size, num_devices)
    _require(rem == 0, f"config.batch_size={config.batch_size} is not divisible by the {num_devices} devices")
    _require(per_device % config.model.pack == 0,
             f"the per-device batch {per_device} (config.batch_size={config.batch_size} over {num_devices} devices) "
             f"is not divisible by config.model.pack={config.model.pack}")


def total_updates(config: ml_collections.ConfigDict, who: str) -> int:
    """Updates of the GAN's `who` ("generator" or "critic") in a run: the critic takes loss.n_critic per step."""
    return config.steps * (config.loss.n_critic if who == "critic" else 1)


def make_optimizer(spec: ml_collections.ConfigDict | dict, where: str = "optimizer",
                   total_updates: int | None = None) -> optax.GradientTransformation:
    """The Optax optimizer of a config entry {name, learning_rate, options...}.

    The options are `gan_jax.optim.make_optimizer`'s, among them the learning-rate `schedule` ("constant",
    "linear", "cosine", "exponential") and `warmup_steps`, e.g. SNGAN's linear decay to 0 after 1000 updates
    of warm-up: {name: "adam", learning_rate: 2e-4, b1: 0.0, b2: 0.9, schedule: "linear", warmup_steps: 1000}.
    `total_updates` is the run's number of updates of this optimizer (what "linear" and "cosine" decay over),
    given by the task, not by the entry."""
    from gan_jax import optim

    spec = dict(spec)
    for field in ("name", "learning_rate"):
        _require(field in spec, f"{where} needs a {field!r}; got {spec}")
    _require("total_updates" not in spec,
             f"{where}.total_updates is not an option: the run's length (config.steps) sets it")
    return optim.make_optimizer(spec.pop("name"), spec.pop("learning_rate"), total_updates=total_updates, **spec)


def differing_fields(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Fields whose values differ between two flattened configs, ignoring RESUMABLE_FIELDS.

    A field of `base_config` that `saved` lacks (a checkpoint written before the field existed) counts
    as its default there, and so does an architecture option (model.generator.* / model.critic.*) at the
    default of the network the checkpoint names. The other tasks' schemas share those fields' defaults."""
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
    return [f"{k}: the run has {saved.get(k, '<absent>')!r}, this config has {current.get(k, '<absent>')!r}"
            for k in keys if saved.get(k) != current.get(k)]
