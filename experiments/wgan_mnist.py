"""WGAN (Arjovsky et al. 2017, Algorithm 1): RMSProp 5e-5, weight clipping c = 0.01, n_critic = 5, batch 64.

python launch.py --config experiments/wgan_mnist.py[:fashion_mnist] --workdir DIR
The critic keeps DCGAN's batch norm, as in the paper's DCGAN-critic experiments.
"""
from experiments.images import dataset_of, image_config


def get_config(variant: str = ""):
    c = image_config(dataset_of(variant), "wgan", "Arjovsky et al. 2017 (WGAN), Algorithm 1 defaults")
    c.batch_size = 64
    c.loss.name = "wasserstein"
    c.loss.n_critic = 5
    c.optim.generator = dict(name="rmsprop", learning_rate=5e-5)
    c.optim.critic = dict(name="rmsprop", learning_rate=5e-5, weight_clip=0.01)
    return c
