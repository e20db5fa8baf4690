"""Conditional GAN by label concatenation (Mirza & Osindero 2014) with DCGAN nets (Radford et al. 2016).

G(z, y) = DCGAN-G([z, one-hot(y)]); D(x, y) = DCGAN-D([x, 10 one-hot label maps]); non-saturating loss,
Adam 2e-4, β1 0.5, batch 64. Sample grids have one row per class.

python launch.py --config experiments/cgan_mnist.py[:fashion_mnist] --workdir DIR
"""
from experiments.images import dataset_of, image_config


def get_config(variant: str = ""):
    c = image_config(dataset_of(variant), "cgan", "Mirza & Osindero 2014 (conditional GAN), DCGAN nets")
    c.model.num_classes = 10
    c.model.generator = dict(name="conditional", base=dict(name="dcgan", image_size=28, channels=1))
    c.model.critic = dict(name="label_concat", concat="channels",
                          base=dict(name="dcgan", image_size=28, channels=1 + 10))
    c.loss.name = "non_saturating"
    c.optim.generator = dict(name="adam", learning_rate=2e-4, b1=0.5, b2=0.999)
    c.optim.critic = dict(name="adam", learning_rate=2e-4, b1=0.5, b2=0.999)
    return c
