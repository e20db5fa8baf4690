"""RaSGAN (Jolicoeur-Martineau 2018): relativistic average standard GAN, Adam 2e-4, β = (0.5, 0.999), n_D = 1.

python launch.py --config experiments/rasgan_mnist.py[:fashion_mnist] --workdir DIR
"""
from experiments.images import dataset_of, image_config


def get_config(variant: str = ""):
    c = image_config(dataset_of(variant), "rasgan", "Jolicoeur-Martineau 2018 (RaSGAN), Eqs. 9-10 (average)")
    c.loss.name = "relativistic_average"
    c.optim.generator = dict(name="adam", learning_rate=2e-4, b1=0.5, b2=0.999)
    c.optim.critic = dict(name="adam", learning_rate=2e-4, b1=0.5, b2=0.999)
    return c
