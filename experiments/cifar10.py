"""CIFAR-10 at 32×32: DCGAN, WGAN-GP and SN-GAN (standard CNN) with their papers' optimisers.

python launch.py --config experiments/cifar10.py[:dcgan|wgan_gp|sngan|sngan_ndis5] --workdir DIR  (default dcgan)

Data: the Python version of CIFAR-10 (cifar-10-python.tar.gz, or its extracted cifar-10-batches-py/) from
www.cs.toronto.edu/~kriz/cifar.html, built offline into TFDS records on first use (README, "Datasets"):
from `$GAN_JAX_DATA/cifar10`, or `--config.data.manual_dir=DIR`.

Variants (each names the number it aims at in `config.paper`):
- dcgan: Radford et al. 2016 — DCGAN nets at 32 px (widths 256, 128, 64; z of 100), non-saturating loss,
  Adam 2e-4, β1 0.5, batch 128.
- wgan_gp: Gulrajani et al. 2017, Algorithm 1 — λ 10, n_critic 5, Adam 1e-4, β (0, 0.9), batch 64, DCGAN nets
  without batch norm in the critic.
- sngan: Miyato et al. 2018 — hinge loss, the standard CNN with spectral norm in every critic layer (z of 128),
  Table 1 setting C: Adam 2e-4, β (0.5, 0.999), n_dis 1, batch 64.
- sngan_ndis5: the same nets with n_dis 5 and Adam 2e-4, β (0, 0.9).

Every target below is an Inception FID; the FID built into this project is the LeNet-classifier FID
(`eval.classifier_dir`) unless Inception weights are configured, so the targets are not comparable with it yet.
Protocols of the targets: mimicry README (kwotsin/mimicry): 100k generator steps, 50k generated vs 50k training
images, ResNet nets; StudioGAN README (POSTECH-CVLab/PyTorch-StudioGAN): its own nets and sample counts, as
stated there; Miyato et al. 2018 Table 2: the standard CNN above, the paper's sample counts.
"""
from __future__ import annotations

import ml_collections

from gan_jax.config import base_config

VARIANTS = ("dcgan", "wgan_gp", "sngan", "sngan_ndis5")
FID_NOTE = ("Inception FID; our built-in FID is the LeNet-classifier FID unless Inception weights are configured, "
            "so this is a target, not a comparable number yet")
TARGETS = {
    "dcgan": "StudioGAN README, CIFAR-10 DCGAN: FID 49.03 (StudioGAN's nets and protocol)",
    "wgan_gp": ("mimicry README, CIFAR-10 WGAN-GP: FID 22.29 (100k steps, 50k vs 50k training images, ResNet nets); "
                "StudioGAN README: 25.85"),
    "sngan": ("Miyato et al. 2018, Table 2, standard CNN with hinge loss: FID 25.5; "
              "mimicry README SNGAN: 16.77 (100k steps, 50k vs 50k, ResNet nets); StudioGAN README: 13.25"),
}
TARGETS["sngan_ndis5"] = TARGETS["sngan"]
PAPERS = {
    "dcgan": "Radford et al. 2016 (DCGAN): nets, Adam 2e-4 β1 0.5, batch 128",
    "wgan_gp": "Gulrajani et al. 2017 (WGAN-GP), Algorithm 1: λ 10, n_critic 5, Adam 1e-4 β (0, 0.9), batch 64",
    "sngan": "Miyato et al. 2018 (SN-GAN), standard CNN (Table 3), hinge, Table 1 setting C: Adam 2e-4 β (0.5, 0.999), "
             "n_dis 1",
    "sngan_ndis5": "Miyato et al. 2018 (SN-GAN), standard CNN (Table 3), hinge, Adam 2e-4 β (0, 0.9), n_dis 5 (the "
                   "setting of the paper's ResNet runs)",
}


def real_image_config(dataset: str, image_size: int, num_train: int, method: str, target: str
                      ) -> ml_collections.ConfigDict:
    """The `method` (one of VARIANTS) on `dataset` at `image_size` px, RGB, with its paper's optimiser;
    config.paper names the method's paper and settings and the published number (`target`) it aims at."""
    if method not in VARIANTS:
        raise ValueError(f"unknown variant {method!r}; allowed: {list(VARIANTS)}")
    c = base_config()
    c.name = f"{method}_{dataset}"
    c.paper = f"{PAPERS[method]}; {dataset} {image_size}x{image_size}; target: {target}; {FID_NOTE}"
    c.steps = 100_000
    c.checkpoint_every = 5_000
    c.log_every = 100
    c.sample_every = 5_000
    c.data.name = dataset
    c.data.num_train = num_train
    c.data.image_size = image_size
    c.eval.num_samples = 10_000
    if method.startswith("sngan"):
        c.batch_size = 64
        c.model.latent_dim = 128
        c.model.generator = dict(name="sngan", image_size=image_size, channels=3)
        c.model.critic = dict(name="sngan", image_size=image_size, channels=3)
        c.loss.name = "hinge"
        betas, c.loss.n_critic = ((0.0, 0.9), 5) if method == "sngan_ndis5" else ((0.5, 0.999), 1)
        adam = dict(name="adam", learning_rate=2e-4, b1=betas[0], b2=betas[1])
    else:
        c.model.latent_dim = 100
        c.model.generator = dict(name="dcgan", image_size=image_size, channels=3)
        c.model.critic = dict(name="dcgan", image_size=image_size, channels=3)
        if method == "dcgan":
            c.batch_size = 128
            c.loss.name = "non_saturating"
            adam = dict(name="adam", learning_rate=2e-4, b1=0.5, b2=0.999)
        else:
            c.batch_size = 64
            c.loss.name = "wasserstein"
            c.loss.n_critic = 5
            c.loss.gradient_penalty = 10.0
            c.model.critic["batch_norm"] = False
            adam = dict(name="adam", learning_rate=1e-4, b1=0.0, b2=0.9)
    c.optim.generator = dict(adam)
    c.optim.critic = dict(adam)
    return c


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    variant = variant or "dcgan"
    return real_image_config("cifar10", 32, 50_000, variant, TARGETS.get(variant, ""))
