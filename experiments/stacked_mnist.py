"""Stacked MNIST, 1000 modes (PacGAN Table 2, the VEEGAN setting): DCGAN and PacDCGAN2/3/4.

python launch.py --config experiments/stacked_mnist.py[:dcgan|pacdcgan2|pacdcgan3|pacdcgan4] --workdir DIR \\
    --config.eval.classifier_dir=DIR_OF_OUR_MNIST_CLASSIFIER

Protocol (paper_tables.md §3): 128,000 stacked images whose digits are drawn from MNIST train+test;
Adam 2e-4, β1 0.5, batch 64, 50 epochs = 100k updates, non-saturating loss; the critic of PacDCGANm sees
m samples stacked along channels (3m); evaluation on 26,000 samples, each channel read by an MNIST
classifier (ours: experiments/classifier_mnist.py, 99.22 %), modes of 1000 and KL(generated || uniform).
Differences from PacGAN's nets (carpedm20's DCGAN: 5×5 kernels, G from a 2×2×512 linear stage, D widths
64-128-256-512): ours is the DCGAN of gan_jax.models.dcgan at 28 px (4×4 kernels, a 7×7×256 stage,
widths 256-128). A GPU job: ~7.4 s/step for the paper's nets on this 2-core CPU.
"""
from experiments.images import image_config

VARIANTS = ("dcgan", "pacdcgan2", "pacdcgan3", "pacdcgan4")


def get_config(variant: str = "dcgan"):
    variant = variant or "dcgan"
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; allowed: {list(VARIANTS)}")
    pack = int(variant[-1]) if variant != "dcgan" else 1
    c = image_config("mnist", f"stacked_mnist_{variant}", "Lin et al. 2018 (PacGAN), Table 2 (VEEGAN setting)")
    c.name = f"stacked_mnist_{variant}"
    c.data.name = "stacked_mnist"
    c.data.train_split = "train+test"
    c.data.num_train = 128_000
    c.steps = 100_000
    c.batch_size = 64
    c.checkpoint_every = 5_000
    c.sample_every = 5_000
    c.model.pack = pack
    c.model.generator = dict(name="dcgan", image_size=28, channels=3)
    c.model.critic = dict(name="dcgan", image_size=28, channels=3 * pack)
    c.loss.name = "non_saturating"
    c.optim.generator = dict(name="adam", learning_rate=2e-4, b1=0.5, b2=0.999)
    c.optim.critic = dict(name="adam", learning_rate=2e-4, b1=0.5, b2=0.999)
    c.eval.num_samples = 26_000
    return c
