"""Stacked MNIST, 1000 modes (PacGAN Table 2, the VEEGAN setting): DCGAN and PacDCGAN2/3/4.

python launch.py --config experiments/stacked_mnist.py[:dcgan|pacdcgan2|pacdcgan3|pacdcgan4] --workdir DIR \\
    --config.eval.classifier_dir=DIR_OF_OUR_MNIST_CLASSIFIER [--config.steps=20000]   (resumable legs)

As PacGAN's code, fjxmlzn/PacGAN stacked_MNIST_experiments/VEEGAN_experiment (config.py, model.py,
pacgan_task.py), built on carpedm20/DCGAN-tensorflow (model.py, ops.py):
- data (model.py `load_mnist`): 128,000 stacked 28×28×3 images, each channel a digit drawn from MNIST train+test;
- nets (model.py `generator` / `discriminator`, ops.py): gan_jax.models.dcgan_tf — G z → Dense 2×2×512 → 5×5
  stride-2 transposed convolutions 256-128-64-3, BN + ReLU, tanh; D 5×5 stride-2 convolutions 64-128-256-512
  (BN from the second), LeakyReLU 0.2, Dense 1; biases, N(0, 0.02) / truncated N(0, 0.02) weights;
- z: 100-d U(−1, 1) (model.py `train`, pacgan_task.py);
- packing (model.py `build_model`): G runs once per slot (its batch norm per slot) and the m samples are stacked
  along channels (3m), the real ones m stacked images drawn at random; the batch of 64 counts packed examples,
  so PacDCGANm draws 64 m images per step;
- loss and optimiser (model.py, config.py): non-saturating, Adam 2e-4, β1 0.5 (β2 0.999, TF's default), for both;
- length (config.py): 50 epochs of 128,000 / 64 = 2,000 steps: 100,000 steps;
- evaluation (model.py `log_metrics`): after every epoch (eval_every 2,000: the learning curve), 26,000 samples of
  fixed codes, G's running batch statistics, each channel read by an MNIST classifier (PacGAN: a Keras CNN;
  ours: experiments/classifier_mnist.py), modes of 1000 and KL(generated triples ‖ uniform).
- two generator steps per critic step on the critic step's codes (model.py: one batch_z feeds D's step and both
  "Run g_optim twice" steps): loss.generator_updates = 2, loss.reuse_critic_codes = True;
- real images in [0, 1] (model.py `load_mnist`: X / 255) against G's tanh samples in [−1, 1]: unit_pixels on both
  nets (gan_jax.models.dcgan_tf), which keeps our [−1, 1] pixels outside the nets.
Differences: its G moves the batch-norm running averages once per slot and call; here once per critic and generator
update by the slots' mean statistics. It walks its training set in the same order every epoch; here each epoch is
shuffled.
"""
from experiments.images import image_config

VARIANTS = ("dcgan", "pacdcgan2", "pacdcgan3", "pacdcgan4")


def get_config(variant: str = "dcgan"):
    variant = variant or "dcgan"
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; allowed: {list(VARIANTS)}")
    pack = int(variant[-1]) if variant != "dcgan" else 1
    c = image_config("mnist", f"stacked_mnist_{variant}", "Lin et al. 2018 (PacGAN), Table 2 (VEEGAN setting)")
    c.name = f"stacked_mnist_{variant}"
    c.data.name = "stacked_mnist"
    c.data.train_split = "train+test"
    c.data.num_train = 128_000
    c.steps = 100_000
    c.batch_size = 64 * pack
    c.log_every = 100
    c.checkpoint_every = 1_000
    c.eval_every = 2_000
    c.sample_every = 2_000
    c.model.pack = pack
    c.model.latent_dim = 100
    c.model.latent_distribution = "uniform"
    c.model.generator = dict(name="dcgan_tf", image_size=28, channels=3, unit_pixels=True)
    c.model.critic = dict(name="dcgan_tf", image_size=28, channels=3 * pack, unit_pixels=True)
    c.loss.name = "non_saturating"
    c.loss.generator_updates = 2
    c.loss.reuse_critic_codes = True
    c.optim.generator = dict(name="adam", learning_rate=2e-4, b1=0.5, b2=0.999)
    c.optim.critic = dict(name="adam", learning_rate=2e-4, b1=0.5, b2=0.999)
    c.eval.num_samples = 26_000
    return c
