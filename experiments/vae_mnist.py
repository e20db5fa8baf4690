"""VAE (Kingma & Welling 2014) on binarised MNIST: conv encoder/decoder (gan_jax/vae.py), 16-d latent,
Adam 1e-3, batch 128, 5,000 steps; evaluated like the GAN baselines (classifier FID on 10,000 samples vs
the 10,000 test images, Goodfellow et al.'s Parzen window) plus the test ELBO (gan_jax/tasks/vae.py).

python launch.py --config experiments/vae_mnist.py --workdir DIR \
    --config.eval.classifier_dir=DIR_OF_OUR_MNIST_CLASSIFIER
"""
from gan_jax.tasks.vae import schema


def get_config():
    c = schema()
    c.name, c.paper = "vae_mnist", "Kingma & Welling 2014 (VAE), Bernoulli decoder on binarised MNIST"
    c.steps, c.log_every, c.checkpoint_every, c.keep_checkpoints, c.sample_every = 5000, 500, 2500, 2, 2500
    c.eval.parzen = True
    return c
