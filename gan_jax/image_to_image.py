"""Image-to-image translation: pix2pix (Isola et al. 2017) and CycleGAN (Zhu et al. 2017), pure jitted
steps over `flax.struct` states, and the fixed-budget loop (orbax checkpoints, resumable) that the
issue-7 experiments (pix2pix, CycleGAN, ADDA, VAE) share.

pix2pix:  G* = argmin_G max_D L_cGAN(G, D) + λ L_L1(G), λ = 100 (Eq. 4), with
  L_cGAN = E log D(x, y) + E log(1 − D(x, G(x))) on PatchGAN logits (averaged over patches), G trained
  with the non-saturating form, D's objective halved (the paper's "divide the objective by 2").
  gan_weight = 0 is the L1-only baseline of the same generator (D is then not trained).
CycleGAN: L = L_LSGAN(G, D_Y) + L_LSGAN(F, D_X) + λ (‖F(G(x)) − x‖₁ + ‖G(F(y)) − y‖₁), λ = 10 (Eq. 3),
  least-squares GAN losses (Sec. 4), discriminators' objective halved; optional identity term
  λ_id (‖G(y) − y‖₁ + ‖F(x) − x‖₁). Fakes go to D straight from the current step (no 50-image history pool).

    python -m gan_jax.image_to_image --config experiments/pix2pix_inpainting.py:mnist --workdir DIR
    python -m gan_jax.image_to_image --config experiments/cyclegan_mnist_digits.py --workdir DIR
"""
from __future__ import annotations

import json
import os
import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import struct

from gan_jax import losses
from gan_jax.config import make_optimizer
from gan_jax.data import paired
from gan_jax.metrics.features import batched_apply
from gan_jax.models.patchgan import PatchGAN
from gan_jax.models.unet import UNet

Array = jax.Array
Batch = dict[str, Array]
Metrics = dict[str, Array]
KINDS = ("pix2pix", "cyclegan")
EVAL_STREAM = 2**31 - 1  # folded into the run key for evaluation's dropout (training folds steps < 2^31 - 1)


@struct.dataclass
class Player:
    """One side's trainable state: parameters (a pytree, possibly of several nets) and optimizer state."""
    params: Any
    opt_state: Any


@struct.dataclass
class TranslationState:
    """step: updates done (also the data position); key: the run's PRNG key (per-step keys are folded in);
    generator / discriminator: pix2pix's G / D, or CycleGAN's {"g": G, "f": F} / {"x": D_X, "y": D_Y}."""
    step: Array
    key: Array
    generator: Player
    discriminator: Player


class Translator(NamedTuple):
    """The static parts of a pix2pix or CycleGAN run, built from a config."""
    kind: str
    generator: UNet
    discriminator: PatchGAN
    g_tx: optax.GradientTransformation
    d_tx: optax.GradientTransformation
    config: ml_collections.ConfigDict


def _player(params: Any, tx: optax.GradientTransformation) -> Player:
    return Player(params, tx.init(params))


def apply_gradients(player: Player, grads: Any, tx: optax.GradientTransformation) -> Player:
    """One optimizer update of a player."""
    updates, opt_state = tx.update(grads, player.opt_state, player.params)
    return Player(optax.apply_updates(player.params, updates), opt_state)


def build(config: ml_collections.ConfigDict) -> Translator:
    if config.kind not in KINDS:
        raise ValueError(f"unknown kind {config.kind!r}; allowed: {KINDS}")
    m = config.model
    g = UNet(features=tuple(m.unet_features), out_channels=1, dropout=m.dropout, dropout_blocks=m.dropout_blocks)
    d = PatchGAN(features=m.d_features, n_layers=m.d_layers, kernel_size=m.d_kernel)
    return Translator(config.kind, g, d, make_optimizer(config.optim.generator, "optim.generator"),
                      make_optimizer(config.optim.discriminator, "optim.discriminator"), config)


def init_state(t: Translator, key: Array, image_shape: tuple[int, int, int]) -> TranslationState:
    """Fresh state for images [H, W, 1]; pix2pix's D sees (input, output) concatenated on channels."""
    @jax.jit  # one compiled program: op-by-op initialisation compiles every random draw separately
    def init(key):
        kg, kf, kx, ky, run = jax.random.split(key, 5)
        x = jnp.zeros((1, *image_shape))
        init_g = lambda k: t.generator.init({"params": k, "dropout": k}, x)["params"]
        if t.kind == "pix2pix":
            gp = init_g(kg)
            dp = t.discriminator.init(kx, jnp.concatenate([x, x], axis=-1))["params"]
        else:
            gp = {"g": init_g(kg), "f": init_g(kf)}
            dp = {"x": t.discriminator.init(kx, x)["params"], "y": t.discriminator.init(ky, x)["params"]}
        return TranslationState(jnp.zeros((), jnp.int32), run, _player(gp, t.g_tx), _player(dp, t.d_tx))
    return init(key)


def translate(t: Translator, params: Any, x: Array, key: Array) -> Array:
    """G(x) with dropout on, pix2pix's test-time noise (Sec. 3.1)."""
    return t.generator.apply({"params": params}, x, deterministic=False, rngs={"dropout": key})


def _patch_logits(t: Translator, params: Any, *images: Array) -> Array:
    return t.discriminator.apply({"params": params}, jnp.concatenate(images, axis=-1)).reshape(-1)


def make_pix2pix_step(t: Translator) -> Callable[[TranslationState, Batch], tuple[TranslationState, Metrics]]:
    """(state, {"x": inputs, "y": targets}) -> (state, metrics): one D then one G update (Isola et al. 2017)."""
    l1_weight, gan_weight = float(t.config.loss.l1_weight), float(t.config.loss.gan_weight)
    if l1_weight < 0 or gan_weight < 0 or l1_weight + gan_weight == 0:
        raise ValueError(f"need l1_weight, gan_weight >= 0, not both 0; got {l1_weight}, {gan_weight}")

    def step(state: TranslationState, batch: Batch):
        x, y = batch["x"], batch["y"]
        key = jax.random.fold_in(state.key, state.step)
        # One generator forward serves both updates: D sees it, then G's loss is pulled back through it.
        fake, pull_back = jax.vjp(lambda gp: translate(t, gp, x, key), state.generator.params)
        metrics = {}
        disc = state.discriminator
        if gan_weight > 0:
            def d_loss_fn(dp):
                return 0.5 * losses.minimax_discriminator_loss(_patch_logits(t, dp, x, y),
                                                               _patch_logits(t, dp, x, fake))
            d_loss, d_grads = jax.value_and_grad(d_loss_fn)(disc.params)
            disc = apply_gradients(disc, d_grads, t.d_tx)
            metrics["d_loss"] = d_loss

        def g_loss_fn(out):
            l1 = losses.l1_reconstruction_loss(y, out)
            adv = (losses.non_saturating_generator_loss(_patch_logits(t, disc.params, x, out))
                   if gan_weight > 0 else jnp.zeros(()))
            return gan_weight * adv + l1_weight * l1, (l1, adv)
        (g_loss, (l1, adv)), d_out = jax.value_and_grad(g_loss_fn, has_aux=True)(fake)
        (g_grads,) = pull_back(d_out)
        metrics.update(g_loss=g_loss, l1=l1, g_adv=adv)
        return state.replace(step=state.step + 1, generator=apply_gradients(state.generator, g_grads, t.g_tx),
                             discriminator=disc), metrics
    return jax.jit(step)


def cyclegan_generator_loss(g: Callable[[Array], Array], f: Callable[[Array], Array],
                            d_x: Callable[[Array], Array], d_y: Callable[[Array], Array], x: Array, y: Array,
                            cycle_weight: float, identity_weight: float = 0.0) -> tuple[Array, dict[str, Array]]:
    """L_G = ½E(D_Y(G(x)) − 1)² + ½E(D_X(F(y)) − 1)² + λ (E|F(G(x)) − x| + E|G(F(y)) − y|)
    + λ_id (E|G(y) − y| + E|F(x) − x|) (Zhu et al. 2017, Eqs. 2-3 with LSGAN), and its terms."""
    fake_y, fake_x = g(x), f(y)
    adv = (losses.least_squares_generator_loss(d_y(fake_y).reshape(-1))
           + losses.least_squares_generator_loss(d_x(fake_x).reshape(-1)))
    cycle = losses.cycle_consistency_loss(x, f(fake_y)) + losses.cycle_consistency_loss(y, g(fake_x))
    identity = (losses.l1_reconstruction_loss(y, g(y)) + losses.l1_reconstruction_loss(x, f(x))
                if identity_weight > 0 else jnp.zeros(()))
    return adv + cycle_weight * cycle + identity_weight * identity, {
        "g_adv": adv, "cycle": cycle, "identity": identity, "fake_x": fake_x, "fake_y": fake_y}


def make_cyclegan_step(t: Translator) -> Callable[[TranslationState, Batch], tuple[TranslationState, Metrics]]:
    """(state, {"x": domain X, "y": domain Y}, unpaired) -> (state, metrics): G and F, then D_X and D_Y
    on the same step's translations (Zhu et al. 2017)."""
    lam, lam_id = float(t.config.loss.cycle_weight), float(t.config.loss.identity_weight)
    if lam < 0 or lam_id < 0:
        raise ValueError(f"cycle_weight and identity_weight must be >= 0, got {lam}, {lam_id}")

    def step(state: TranslationState, batch: Batch):
        x, y = batch["x"], batch["y"]
        key = jax.random.fold_in(state.key, state.step)
        dp = state.discriminator.params
        critic = lambda p: lambda img: t.discriminator.apply({"params": p}, img)

        def g_loss_fn(gp):
            # One dropout key per generator and call site: fold in a counter.
            calls = iter(range(8))
            gen = lambda p: lambda img: translate(t, p, img, jax.random.fold_in(key, next(calls)))
            return cyclegan_generator_loss(gen(gp["g"]), gen(gp["f"]), critic(dp["x"]), critic(dp["y"]),
                                           x, y, lam, lam_id)
        (g_loss, terms), g_grads = jax.value_and_grad(g_loss_fn, has_aux=True)(state.generator.params)
        fake_x, fake_y = jax.lax.stop_gradient(terms.pop("fake_x")), jax.lax.stop_gradient(terms.pop("fake_y"))

        def d_loss_fn(p):
            d_x, d_y = critic(p["x"]), critic(p["y"])
            return 0.5 * (losses.least_squares_discriminator_loss(d_x(x).reshape(-1), d_x(fake_x).reshape(-1))
                          + losses.least_squares_discriminator_loss(d_y(y).reshape(-1), d_y(fake_y).reshape(-1)))
        d_loss, d_grads = jax.value_and_grad(d_loss_fn)(dp)
        metrics = {"g_loss": g_loss, **terms, "d_loss": d_loss}
        return state.replace(step=state.step + 1, generator=apply_gradients(state.generator, g_grads, t.g_tx),
                             discriminator=apply_gradients(state.discriminator, d_grads, t.d_tx)), metrics
    return jax.jit(step)


# --------------------------------------------------------------------------- the shared loop

def fit(step_fn: Callable[[Any, Batch], tuple[Any, Metrics]], state: Any, batch_fn: Callable[[int], Batch],
        config: ml_collections.ConfigDict, workdir: str, log: Callable[[str], None] = print) -> Any:
    """Run `step_fn` from the checkpointed step (if any) to `config.steps`; batch_fn(step) is the batch.

    Saves `state` with orbax every `config.checkpoint_every` steps and at the end (the workdir must hold
    a checkpoint of this config or none); waits on the metrics every `config.log_every` steps and raises
    FloatingPointError on a non-finite loss. `state.step` is the data position.
    """
    from gan_jax.checkpoint import Checkpointer
    ckpt = Checkpointer(workdir, config)
    ckpt.check_config()
    restored = ckpt.restore(state)
    state = state if restored is None else restored
    start, t0 = int(state.step), time.time()
    try:
        for s in range(start, config.steps):
            state, metrics = step_fn(state, {k: jnp.asarray(v) for k, v in batch_fn(s).items()})
            done = s + 1
            if done % config.log_every == 0 or done == config.steps:
                values = {k: float(v) for k, v in jax.device_get(metrics).items()}
                if not all(np.isfinite(v) for v in values.values()):
                    raise FloatingPointError(f"non-finite loss at step {done}: {values}")
                log(f"step {done}/{config.steps} ({time.time() - t0:.0f} s): "
                    + " ".join(f"{k} {v:.4f}" for k, v in values.items()))
            if done % config.checkpoint_every == 0 or done == config.steps:
                ckpt.save(done, state)
    finally:
        ckpt.close()
    return state


# --------------------------------------------------------------------------- experiments

def base_config(kind: str) -> ml_collections.ConfigDict:
    """Every field of a pix2pix / CycleGAN experiment, with defaults scaled to 28 px and a CPU budget."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; allowed: {KINDS}")
    c = ml_collections.ConfigDict()
    c.name, c.kind, c.paper = kind, kind, ""
    c.trainer = "image_to_image"  # launch.py runs gan_jax.image_to_image.train_and_evaluate
    c.seed, c.steps, c.batch_size = 0, 2000, 16
    c.log_every, c.checkpoint_every, c.keep_checkpoints = 100, 500, 2
    # pix2pix: one domain and a paired task; CycleGAN: domains x and y (unpaired).
    c.data = ml_collections.ConfigDict(dict(domain="mnist", task="inpainting", x="mnist", y="digits",
                                            data_dir="", manual_dir="", num_train=0))
    c.model = ml_collections.ConfigDict(dict(unet_features=(32, 64, 128, 128, 128), dropout=0.5,
                                             dropout_blocks=3, d_features=32, d_layers=1, d_kernel=3))
    c.loss = ml_collections.ConfigDict(dict(l1_weight=100.0, gan_weight=1.0, cycle_weight=10.0,
                                            identity_weight=0.0))
    opt = dict(name="adam", learning_rate=2e-4, b1=0.5, b2=0.999)  # both papers
    c.optim = ml_collections.ConfigDict(dict(generator=dict(opt), discriminator=dict(opt)))
    c.eval = ml_collections.ConfigDict(dict(num_test=10000, classifier_dir="", batch_size=500))
    return c


def pix2pix_config(task: str, variant: str) -> ml_collections.ConfigDict:
    """A pix2pix experiment on a paired task; variant "DATASET[,l1]" (l1: the L1-only baseline, gan_weight 0)."""
    parts = [v for v in variant.split(",") if v]
    datasets = [v for v in parts if v in ("mnist", "fashion_mnist")]
    if len(datasets) != 1 or set(parts) - {datasets[0], "l1"}:
        raise ValueError(f"variant must be 'DATASET[,l1]' with DATASET in ('mnist', 'fashion_mnist'), got {variant!r}")
    c = base_config("pix2pix")
    c.data.domain, c.data.task = datasets[0], task
    c.loss.gan_weight = 0.0 if "l1" in parts else 1.0
    c.name = f"pix2pix_{task}_{datasets[0]}" + ("_l1" if "l1" in parts else "")
    c.paper = "Isola et al. 2017 (pix2pix): cGAN + 100 L1, U-Net with dropout, PatchGAN"
    return c


def _pipeline(data: dict[str, np.ndarray], config: ml_collections.ConfigDict, seed: int):
    from gan_jax.data import InMemorySource, Pipeline
    return Pipeline(InMemorySource(data), batch_size=config.batch_size, seed=seed, prefetch=0)


def _train_images(config: ml_collections.ConfigDict, domain: str) -> dict[str, np.ndarray]:
    d = config.data
    return paired.load_domain(domain, "train", data_dir=d.data_dir, manual_dir=d.manual_dir, limit=d.num_train)


def _test_images(config: ml_collections.ConfigDict, domain: str) -> dict[str, np.ndarray]:
    d = config.data
    return paired.load_domain(domain, "test", data_dir=d.data_dir, manual_dir=d.manual_dir,
                              limit=config.eval.num_test)


def _batches(config: ml_collections.ConfigDict) -> Callable[[int], dict[str, np.ndarray]]:
    if config.kind == "pix2pix":
        pipe = _pipeline({"y": _train_images(config, config.data.domain)["image"]}, config, config.seed)
        pairs = jax.jit(lambda y: paired.make_pairs(config.data.task, y))

        def batch(s: int) -> dict[str, np.ndarray]:
            y = pipe.batch(s)["y"]
            return {"x": pairs(y), "y": y}
        return batch
    # CycleGAN's domains are unpaired: independent orders (seeds s and s + 1).
    px = _pipeline({"x": _train_images(config, config.data.x)["image"]}, config, config.seed)
    py = _pipeline({"y": _train_images(config, config.data.y)["image"]}, config, config.seed + 1)
    return lambda s: {**px.batch(s), **py.batch(s)}


def psnr(target: Array, output: Array) -> Array:
    """Per-image PSNR = 10 log10(1 / MSE) on [0, 1] pixels, i.e. MSE of [−1, 1] images divided by 4."""
    mse = jnp.mean(jnp.square(target - output), axis=tuple(range(1, target.ndim))) / 4.0
    return 10.0 * jnp.log10(1.0 / jnp.maximum(mse, 1e-12))


def evaluate_pix2pix(t: Translator, state: TranslationState) -> dict[str, float]:
    """Test-split L1 and PSNR of G(x) against y, and the classifier FID of G(x) vs the real test images."""
    c = t.config
    y = _test_images(c, c.data.domain)["image"]
    key = jax.random.fold_in(state.key, EVAL_STREAM)
    run = jax.jit(lambda im: translate(t, state.generator.params, paired.make_pairs(c.data.task, im), key))
    fake = batched_apply(run, y, c.eval.batch_size)
    out = {"l1": float(jnp.mean(jnp.abs(fake - y))), "psnr": float(jnp.mean(psnr(jnp.asarray(y), jnp.asarray(fake)))),
           "num_test": int(len(y))}
    inputs = batched_apply(jax.jit(lambda im: paired.make_pairs(c.data.task, im)), y, c.eval.batch_size)
    out["input_l1"] = float(np.mean(np.abs(inputs - y)))
    if c.eval.classifier_dir:
        from gan_jax.metrics import features, fid
        net = features.lenet_features(c.eval.classifier_dir)
        real_f, _ = features.extract(net, y)
        out["fid"] = float(fid.fid(jnp.asarray(real_f), jnp.asarray(features.extract(net, fake)[0])))
        out["input_fid"] = float(fid.fid(jnp.asarray(real_f), jnp.asarray(features.extract(net, inputs)[0])))
    return out


def evaluate_cyclegan(t: Translator, state: TranslationState) -> dict[str, float]:
    """Cycle L1 ‖F(G(x)) − x‖₁, ‖G(F(y)) − y‖₁ on the test splits and, with a classifier, how often the
    digit class survives translation (classifier reads G(x) / F(y) as the label of x / y), next to its
    accuracy on the untranslated images."""
    c = t.config
    tx, ty = _test_images(c, c.data.x), _test_images(c, c.data.y)
    gp = state.generator.params
    key = jax.random.fold_in(state.key, EVAL_STREAM)
    g = jax.jit(lambda im: translate(t, gp["g"], im, key))
    f = jax.jit(lambda im: translate(t, gp["f"], im, key))
    bs = c.eval.batch_size
    gx, fy = batched_apply(g, tx["image"], bs), batched_apply(f, ty["image"], bs)
    out = {"cycle_l1_x": float(np.mean(np.abs(batched_apply(f, gx, bs) - tx["image"]))),
           "cycle_l1_y": float(np.mean(np.abs(batched_apply(g, fy, bs) - ty["image"]))),
           "num_test_x": int(len(tx["image"])), "num_test_y": int(len(ty["image"]))}
    if c.eval.classifier_dir:
        from gan_jax.metrics import classifier, features
        net = features.lenet_features(c.eval.classifier_dir)
        read = lambda im, labels: float(classifier.accuracy(net.apply_fn, im, labels, bs))
        out.update(class_kept_x_to_y=read(gx, tx["label"]), class_kept_y_to_x=read(fy, ty["label"]),
                   accuracy_x=read(tx["image"], tx["label"]), accuracy_y=read(ty["image"], ty["label"]))
    return out


def sample_grid(t: Translator, state: TranslationState, n: int = 10) -> np.ndarray:
    """pix2pix: rows input / output / target; CycleGAN: rows x / G(x) / F(G(x)) / y / F(y) / G(F(y))."""
    from gan_jax import visualize
    c, key = t.config, jax.random.fold_in(state.key, EVAL_STREAM)
    if t.kind == "pix2pix":
        y = jnp.asarray(_test_images(c, c.data.domain)["image"][:n])
        x = paired.make_pairs(c.data.task, y)
        rows = [x, translate(t, state.generator.params, x, key), y]
    else:
        gp = state.generator.params
        x, y = (jnp.asarray(_test_images(c, d)["image"][:n]) for d in (c.data.x, c.data.y))
        gx, fy = translate(t, gp["g"], x, key), translate(t, gp["f"], y, key)
        rows = [x, gx, translate(t, gp["f"], gx, key), y, fy, translate(t, gp["g"], fy, key)]
    return visualize.image_grid(np.concatenate([np.asarray(r) for r in rows]), ncols=n)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Train (resuming from workdir), evaluate on the test split(s), write eval.json and samples.png."""
    from gan_jax import visualize
    start = time.time()
    t = build(config)
    state = init_state(t, jax.random.key(config.seed), (paired.SIZE, paired.SIZE, 1))
    step_fn = make_pix2pix_step(t) if t.kind == "pix2pix" else make_cyclegan_step(t)
    state = fit(step_fn, state, _batches(config), config, workdir)
    train_seconds = time.time() - start
    results = evaluate_pix2pix(t, state) if t.kind == "pix2pix" else evaluate_cyclegan(t, state)
    results.update(steps=config.steps, train_seconds=round(train_seconds, 1),
                   seconds=round(time.time() - start, 1), classifier_dir=config.eval.classifier_dir,
                   config=config.to_dict())
    visualize.save_png(sample_grid(t, state), os.path.join(workdir, "samples.png"))
    with open(os.path.join(workdir, "eval.json"), "w") as f:
        json.dump(results, f, indent=1, default=list)
    print(json.dumps({k: v for k, v in results.items() if k != "config"}, indent=1))
    return results


if __name__ == "__main__":
    from gan_jax import cli
    cli.run(train_and_evaluate, "experiments/pix2pix_*.py or cyclegan_*.py",
            "Checkpoints, eval.json and samples.png.")
