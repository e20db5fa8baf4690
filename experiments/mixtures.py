"""Shared config of the 2-D mixture experiments (mode collapse; VEEGAN Table 1, PacGAN Table 1).

PacGAN's protocol (Lin et al. 2018, fjxmlzn/PacGAN synthetic_data_experiments): G 2 → 4 × 400
(BatchNorm + ReLU, no bias) → 2; D 3 × LinearMaxout(200 units, 5 pieces) → 1; weights N(0, 0.02);
z ~ N(0, I_2); Adam lr 1e-4, β1 0.8; batch 100; 100,000 training points; 2,500 evaluation samples;
packing m = 1 (GAN), 2, 3, 4. PacGAN's code (ALI's `ali_algorithm`) updates G and D simultaneously, both
gradients taken at the same parameters on the same samples; these configs alternate (D's step, then G's on fresh
samples against the new D) unless `--config.loss.simultaneous=True` (docs/results/mixture_ring.md compares both). PacGAN's G
normalises each packed slot by its own batch statistics, with running averages at momentum 0.95 and ε = 1e-4;
these configs keep flax's batch norm (one batch, 0.9, 1e-5) unless `model.generator.bn_per_slot=True`,
`bn_momentum=0.95`, `bn_epsilon=0.0001` are set (`gan_jax/models/mlp.py`). The paper
trains 400k updates (≈ 2 h per run here): the default is a CPU-sized 10k (`--config.steps=400000` for the full protocol).

Variants (`--config experiments/mixture_ring.py:<variant>`):
  gan        non-saturating GAN (Goodfellow et al. 2014), PacGAN's nets
  pacgan2/3/4  the same with the critic seeing m packed samples (Lin et al. 2018)
  wgan_gp    WGAN-GP with the same nets (Gulrajani et al. 2017; toy-task settings of its gan_toy.py:
             λ = 0.1, n_critic = 5, Adam 1e-4, β = (0.5, 0.9)); no batch norm in the critic.
"""
from gan_jax.config import base_config

VARIANTS = ("gan", "pacgan2", "pacgan3", "pacgan4", "wgan_gp")


def mixture_config(dataset: str, variant: str, paper: str):
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; allowed: {list(VARIANTS)}")
    c = base_config()
    c.name = f"mixture_{dataset}_{variant}"
    c.paper = paper
    c.seed = 0
    c.steps = 10_000
    c.batch_size = 100
    c.checkpoint_every = 2_000
    c.log_every = 100
    c.sample_every = 2_000
    c.data.name = dataset
    c.data.num_train = 100_000
    c.model.latent_dim = 2
    # PacGAN's own batch norm (gan_jax/models/mlp.py): bn_per_slot=True, bn_momentum=0.95, bn_epsilon=1e-4.
    c.model.generator = dict(name="mlp", hidden=(400, 400, 400, 400), out_dim=2, batch_norm=True, bn_per_slot=False,
                             bn_momentum=0.9, bn_epsilon=1e-5)
    c.model.critic = dict(name="mlp", hidden=(200, 200, 200), pieces=5)
    adam = dict(name="adam", learning_rate=1e-4, b1=0.8, b2=0.999)
    c.optim.generator = dict(adam)
    c.optim.critic = dict(adam)
    c.loss.name = "non_saturating"
    if variant.startswith("pacgan"):
        # PacGAN's batch of 100 counts packed examples: the critic sees 100 packs of m samples.
        c.model.pack = int(variant[-1])
        c.batch_size = 100 * c.model.pack
    elif variant == "wgan_gp":
        c.loss.name = "wasserstein"
        c.loss.n_critic = 5
        c.loss.gradient_penalty = 0.1
        wgan_adam = dict(adam, b1=0.5, b2=0.9)
        c.optim.generator = dict(wgan_adam)
        c.optim.critic = dict(wgan_adam)
    c.eval.num_samples = 2500
    # The protocol's numbers use G's running batch-norm averages; the *_precise_bn ones recompute them at the
    # evaluated parameters, as PacGAN's code re-estimates them (50 batch-norm update batches) before it samples.
    c.eval.precise_bn_batches = 100
    return c
