"""WGAN-GP (Gulrajani et al. 2017, Algorithm 1): λ = 10, n_critic = 5, Adam 1e-4, β = (0, 0.9), batch 64.

python launch.py --config experiments/wgan_gp_mnist.py[:fashion_mnist] --workdir DIR
No batch norm in the critic (the penalty is per example, Sec. 4 of the paper).
"""
from experiments.images import dataset_of, image_config


def get_config(variant: str = ""):
    c = image_config(dataset_of(variant), "wgan_gp", "Gulrajani et al. 2017 (WGAN-GP), Algorithm 1 defaults")
    c.batch_size = 64
    c.loss.name = "wasserstein"
    c.loss.n_critic = 5
    c.loss.gradient_penalty = 10.0
    c.model.critic = dict(name="dcgan", image_size=28, channels=1, batch_norm=False)
    c.optim.generator = dict(name="adam", learning_rate=1e-4, b1=0.0, b2=0.9)
    c.optim.critic = dict(name="adam", learning_rate=1e-4, b1=0.0, b2=0.9)
    return c
