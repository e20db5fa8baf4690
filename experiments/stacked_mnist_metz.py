"""Stacked MNIST, 1000 modes, in the Metz et al. 2016 setting (PacGAN Table 3): DCGAN and PacDCGAN2/3/4
with a discriminator 1/4 (default) or 1/2 the size of the generator.

python launch.py --config experiments/stacked_mnist_metz.py[:dcgan|pacdcgan2|pacdcgan3|pacdcgan4][_half] \\
    --workdir DIR --config.eval.classifier_dir=DIR_OF_OUR_MNIST_CLASSIFIER

Protocol (PacGAN's code, fjxmlzn/PacGAN unrolled_GAN_experiment): three MNIST-train digits drawn
uniformly per image, pixels in [-1, 1]; nets of gan_jax.models.metz (G 256-d N(0, I) z -> 4x4x64 ->
7x7x32 -> 14x14x16 -> 28x28x8 -> 3 channels; D 3x3 stride-2 convolutions with widths 2-4-8 (1/4) or
4-8-16 (1/2), BN, LeakyReLU 0.3); non-saturating loss; Adam D 2e-4, G 1e-4, betas (0.5, 0.99); 128
packed examples per step (PacDCGANm: 128 m images); 500,000 updates; 25,600 samples evaluated, each
channel read by our MNIST classifier (experiments/classifier_mnist.py). The paper draws fresh digits every
step; here 12.8M triples (100,000 steps of 128, ~12,800 per mode) are a pure function of (seed, index),
never stored (shuffling them took 8 s, once per epoch).
Difference: PacGAN's sampler normalises with the evaluation batch's statistics; ours uses the running
averages (eval mode), like every gan_jax evaluation.
"""
from experiments.images import image_config

METHODS = ("dcgan", "pacdcgan2", "pacdcgan3", "pacdcgan4")
CRITIC_WIDTHS = {"quarter": (2, 4, 8), "half": (4, 8, 16)}


def get_config(variant: str = "dcgan"):
    variant = variant or "dcgan"
    method, _, size = variant.partition("_")
    size = size or "quarter"
    if method not in METHODS or size not in CRITIC_WIDTHS:
        allowed = [f"{m}{s}" for m in METHODS for s in ("", "_quarter", "_half")]
        raise ValueError(f"unknown variant {variant!r}; allowed: {allowed}")
    pack = int(method[-1]) if method != "dcgan" else 1
    c = image_config("mnist", f"stacked_mnist_metz_{method}_{size}",
                     "Lin et al. 2018 (PacGAN), Table 3 (Metz et al. 2016 setting), "
                     f"D = {'1/4' if size == 'quarter' else '1/2'} size of G")
    c.name = f"stacked_mnist_metz_{method}_{size}"
    c.data.name = "stacked_mnist"
    c.data.train_split = "train"
    c.data.num_train = 100_000 * 128
    c.steps = 500_000
    c.batch_size = 128 * pack
    c.checkpoint_every = 10_000
    c.log_every = 500
    c.sample_every = 10_000
    c.model.pack = pack
    c.model.latent_dim = 256
    c.model.generator = dict(name="metz", image_size=28, channels=3)
    c.model.critic = dict(name="metz", image_size=28, channels=3 * pack, widths=CRITIC_WIDTHS[size])
    c.loss.name = "non_saturating"
    c.optim.generator = dict(name="adam", learning_rate=1e-4, b1=0.5, b2=0.99)
    c.optim.critic = dict(name="adam", learning_rate=2e-4, b1=0.5, b2=0.99)
    c.eval.num_samples = 25_600
    return c
