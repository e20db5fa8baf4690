"""pix2pix (Isola et al. 2017) super-resolution: 7×7 block means (4×4 blocks) of a 28 px image → the image.

python launch.py --config experiments/pix2pix_superres.py:mnist --workdir DIR \
    --config.eval.classifier_dir=DIR_OF_OUR_CLASSIFIER  (of the same dataset; FID is skipped without it)
Variants "DATASET[,l1][,14]": DATASET mnist or fashion_mnist; "l1" is the L1-only baseline of the same
U-Net; "14" uses 14×14 inputs (2×2 blocks) instead of 7×7 (gan_jax/tasks/pix2pix.py).
"""
from gan_jax.tasks.pix2pix import experiment_config


def get_config(variant: str = "mnist"):
    task = "superres14" if "14" in variant.split(",") else "superres7"
    return experiment_config(task, ",".join(v for v in variant.split(",") if v != "14"))
