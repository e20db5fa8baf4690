"""ADDA (Tzeng et al. 2017): MNIST (labelled source) -> scikit-learn's 8x8 digits in MNIST's format
(unlabelled target; gan_jax/data/paired.py), target accuracy of source-only vs ADDA: 1,000 pre-training
steps, then 1,000 adaptation steps, in one run.

python launch.py --config experiments/adda_mnist_digits.py --workdir DIR/seed_N --config.seed=N
One run is one seed: the mean ± std over seeds 0, 1, 2 pools three runs. Networks and losses:
gan_jax/tasks/adda.py.
"""
from gan_jax.tasks.adda import schema


def get_config():
    c = schema()
    c.name, c.paper = "adda_mnist_digits", "Tzeng et al. 2017 (ADDA): LeNet encoder, 500-500 discriminator"
    c.source_steps, c.adapt_steps, c.steps = 1000, 1000, 2000
    c.log_every, c.checkpoint_every, c.keep_checkpoints = 250, 1000, 1
    return c
