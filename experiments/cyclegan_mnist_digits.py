"""CycleGAN (Zhu et al. 2017): MNIST <-> scikit-learn's 8x8 digits in MNIST's format (unpaired; two real
digit domains, gan_jax/data/paired.py). Two U-Net generators (no dropout: CycleGAN's generators are
deterministic), two 11x11 PatchGANs, least-squares GAN loss, cycle loss lambda = 10, discriminators shown a
history pool of 50 generated images per domain, Adam 2e-4, beta1 0.5 (gan_jax/tasks/cyclegan.py).

python launch.py --config experiments/cyclegan_mnist_digits.py --workdir DIR \
    --config.eval.classifier_dir=DIR_OF_OUR_MNIST_CLASSIFIER
Reports how often our classifier reads the source digit's class after translation (both directions,
next to its accuracy on untranslated images) and the test cycle L1.
"""
from gan_jax.tasks.cyclegan import schema


def get_config():
    c = schema()
    c.name = "cyclegan_mnist_digits"
    c.paper = "Zhu et al. 2017 (CycleGAN): LSGAN loss, cycle weight 10, 50-image history pool"
    c.data.x, c.data.y = "mnist", "digits"
    c.model.unet_features = (32, 64, 128, 128)
    c.steps = 1500
    return c
