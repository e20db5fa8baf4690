"""LeNet-style MNIST classifier: the feature network of classifier FID / KID / IS and the digit reader of
the Stacked-MNIST mode count (VEEGAN / PacGAN classify each channel with an MNIST CNN).

python launch.py --config experiments/classifier_mnist.py --workdir DIR
The finished workdir is the classifier that `--config.eval.classifier_dir=DIR` of the GAN, VAE and image-to-image
experiments loads. Architecture: gan_jax/metrics/classifier.py; training: gan_jax/tasks/classifier.py.
Target: >= 99 % test accuracy. `steps` is 8 epochs of the 60,000 training images in batches of 128 (3,744
steps); with another --config.batch_size, set --config.steps too.
"""
from gan_jax.tasks.classifier import schema

EPOCHS = 8
TRAIN_IMAGES = 60_000  # MNIST's and Fashion-MNIST's training splits


def get_config():
    c = schema()
    c.name, c.paper = "classifier_mnist", "LeNet-style CNN after PacGAN's Keras mnist_cnn (feature network of our FID)"
    c.data.name = "mnist"
    c.steps = EPOCHS * (TRAIN_IMAGES // c.batch_size)
    c.log_every, c.checkpoint_every, c.keep_checkpoints = 468, 1872, 1
    return c
