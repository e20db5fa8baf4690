"""CelebA at 64×64: the aligned faces centre-cropped to 108×108 (as the DCGAN reference code crops them),
then resized to 64; DCGAN, or the SN-GAN standard CNN at 64 px (an 8×8 bottom stage).

python launch.py --config experiments/celeba.py[:dcgan|sngan] --workdir DIR  (default dcgan)

Data: img_align_celeba/ (the aligned JPEGs 000001.jpg, ...) and list_eval_partition.txt from
mmlab.ie.cuhk.edu.hk/projects/CelebA.html, built offline into TFDS records on first use (README, "Datasets"):
from `$GAN_JAX_DATA/celeb_a`, or `--config.data.manual_dir=DIR`. Training reads the
162,770-image train split. Method settings: experiments/cifar10.py (same variants).

Target: Lucic et al. 2018, Table 2, best CelebA FID of the non-saturating GAN, 55.0 ± 3.3 (InfoGAN-style
nets, 10k vs 10k Inception FID); neither DCGAN nor SN-GAN published a CelebA
number for these nets.
"""
from __future__ import annotations

import ml_collections

from experiments.cifar10 import real_image_config

VARIANTS = ("dcgan", "sngan")
TARGET = ("Lucic et al. 2018 Table 2, CelebA, NS GAN: FID 55.0 ± 3.3 (InfoGAN-style nets, 10k vs 10k)")
CROP = 108  # the DCGAN reference code's CelebA crop (then resized to 64)


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    variant = variant or "dcgan"
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; allowed: {list(VARIANTS)}")
    c = real_image_config("celeb_a", 64, 162_770, variant, TARGET)
    c.data.center_crop = CROP
    c.steps = 50_000 if variant == "dcgan" else 100_000  # ≈ 40 epochs (Lucic et al.'s CelebA length) at batch 128 / 64
    return c
