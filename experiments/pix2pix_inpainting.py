"""pix2pix (Isola et al. 2017) inpainting: the central 14×14 square of a 28 px image masked to grey → the image.

python launch.py --config experiments/pix2pix_inpainting.py:mnist --workdir DIR \
    --config.eval.classifier_dir=DIR_OF_OUR_CLASSIFIER  (of the same dataset; FID is skipped without it)
Variants "DATASET[,l1]": DATASET mnist or fashion_mnist; "l1" trains the same U-Net on λ·L1 alone (the
baseline showing that L1 alone gives blurry images, Isola et al. 2017 Fig. 4). cGAN + λ L1 with λ = 100, U-Net with dropout,
PatchGAN 11×11 patches (gan_jax/models/patchgan.py, gan_jax/tasks/pix2pix.py).
"""
from gan_jax.tasks.pix2pix import experiment_config


def get_config(variant: str = "mnist"):
    return experiment_config("inpainting", variant)
