"""The Goodfellow et al. 2014 MNIST GAN (Table 1's "Adversarial nets" row, Parzen 225 ± 2).

From the official goodfeli/adversarial `mnist.yaml`: G = 100-d N(0, I) → ReLU 1200 →
ReLU 1200 → sigmoid 784 (rescaled to our [−1, 1] pixels, which D maps back to [0, 1]:
gan_jax/models/goodfellow.py), its output bias starting at the logit of the training pixels' means
(`init_sigmoid_bias_from_marginals`); D = maxout 240×5 → maxout 240×5 → 1, dropout (inputs 0.2,
hidden 0.5); SGD, batch 100, lr 0.1 (D: 0.05 on our un-halved loss, see below) divided by 1.000004
after every update (floor 1e-6), momentum 0.5 rising linearly to 0.7 from epoch 1 to epoch 250
(500 updates per epoch of train[0:50000]), k = 1, and the non-saturating generator cost the code
trains with. Like the code (AdversaryCost2.get_gradients) both SGD steps are taken from the same
parameters, G's on D's samples and dropout masks (`loss.simultaneous`; `--config.loss.simultaneous=False`
alternates, G stepping on the updated D). Departures: the momentum rises per update rather than per
epoch, and our momentum buffer is torch's (b = μb + g, Δp = −lr·b; pylearn2's Δp = μΔp − lr·g differs
by lr_t / lr_{t−1} = 1/1.000004 on the momentum term). The yaml has no stopping rule; `steps` is ours.

python launch.py --config experiments/goodfellow2014_mnist.py --workdir DIR
"""
from experiments.images import image_config

STEPS_PER_EPOCH = 500  # 50,000 training images / batch 100


def get_config(variant: str = ""):
    c = image_config(variant or "mnist", "goodfellow2014", "Goodfellow et al. 2014, Table 1 (MNIST, Parzen)")
    c.batch_size = 100
    c.steps = 250 * STEPS_PER_EPOCH  # the momentum ramp's span; the paper does not state its count
    c.data.num_train = 50_000          # train[0:50000]; train[50000:60000] is the validation split
    c.eval.parzen = True
    # pylearn2's irange init (mnist.yaml): U(±0.05) for G, U(±0.005) for D; kernel_init="lecun_normal" is flax's.
    c.model.generator = dict(name="goodfellow", hidden=(1200, 1200), out_shape=(28, 28, 1), output_bias="marginals",
                             kernel_init="irange", init_range=0.05)
    c.model.critic = dict(name="goodfellow", hidden=(240, 240), pieces=5, input_dropout=0.2, hidden_dropout=0.5,
                          kernel_init="irange", init_range=0.005)
    c.loss.name = "non_saturating"
    c.loss.simultaneous = True
    # pylearn2's ExponentialDecay and MomentumAdjustor(start=1, saturate=250, final_momentum=0.7).
    schedules = dict(learning_rate_decay=1.000004, min_learning_rate=1e-6, momentum=0.5, final_momentum=0.7,
                     momentum_ramp=(1 * STEPS_PER_EPOCH, 250 * STEPS_PER_EPOCH))
    c.optim.generator = dict(name="sgd", learning_rate=0.1, **schedules)
    # AdversaryCost2's d_obj is half our minimax_discriminator_loss (the mean of its two cross-entropies);
    # SGD + momentum at lr 0.1 on half the loss is lr 0.05 on the whole.
    c.optim.critic = dict(name="sgd", learning_rate=0.05, **{**schedules, "min_learning_rate": 5e-7})
    return c
