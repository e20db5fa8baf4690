"""VAE (Kingma & Welling 2014) on binarised MNIST: conv encoder/decoder (gan_jax/vae.py), 16-d latent,
Adam 1e-3, batch 128; evaluated like the GAN baselines (classifier FID on 10,000 samples vs the 10,000
test images, Goodfellow et al.'s Parzen window) plus the test ELBO.

python -m gan_jax.vae --config experiments/vae_mnist.py --workdir DIR \
    --config.eval.classifier_dir=DIR_OF_OUR_MNIST_CLASSIFIER
Results: RESULTS.md.
"""
from gan_jax.vae import default_config


def get_config():
    c = default_config()
    c.eval.parzen = True
    return c
