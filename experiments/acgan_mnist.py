"""AC-GAN (Odena et al. 2017): the discriminator also classifies (auxiliary 10-way head), Eq. 2;
Adam 2e-4, β1 0.5, batch 100; conditional DCGAN generator, non-saturating source loss.

Variants: "" / "mnist", "fashion_mnist", and "fake_class" (MNIST with the (K+1)-way classifier whose
last class is "fake", Salimans et al. 2016 §5).

python launch.py --config experiments/acgan_mnist.py[:fashion_mnist|fake_class] --workdir DIR
"""
from experiments.images import dataset_of, image_config


def get_config(variant: str = ""):
    fake_class = variant == "fake_class"
    c = image_config(dataset_of("" if fake_class else variant), "acgan" + ("_fake_class" if fake_class else ""),
                     "Odena et al. 2017 (AC-GAN), Eq. 2; Adam 2e-4, beta1 0.5")
    c.batch_size = 100
    c.model.num_classes = 10
    c.model.generator = dict(name="conditional", base=dict(name="dcgan", image_size=28, channels=1))
    c.model.critic = dict(name="acgan", fake_class=fake_class, base=dict(name="dcgan", image_size=28, channels=1))
    c.loss.name = "non_saturating"
    c.loss.acgan_weight = 1.0
    c.optim.generator = dict(name="adam", learning_rate=2e-4, b1=0.5, b2=0.999)
    c.optim.critic = dict(name="adam", learning_rate=2e-4, b1=0.5, b2=0.999)
    return c
