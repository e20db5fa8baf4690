"""The objective terms of the train step (gan_jax.objectives): registries and weights, each term against a
closed form or an independent computation, the passes a context runs, and the step composing them."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax import config as config_lib, losses, models, objectives, parallel, train
from gan_jax.objectives import CriticOutput, Stream, Term
from tests.helpers import host_batches, max_abs_diff, tiny_config
from tests.test_train import generator_update_inputs, simultaneous_config

B = 8
KEY = jax.random.key(0)


def _data(seed: int, shape=(B, 3)) -> jax.Array:
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))


def _context(critic, real, fake, *, loss="non_saturating", pack=1, real_labels=None, fake_labels=None,
             num_classes=0, calls=None, **options):
    """A single-device context: `critic(x) -> CriticOutput` on packed rows; every pass adds 1 to the batch
    statistics (a counter) and appends its dropout stream to `calls`."""
    config = config_lib.base_config().loss
    config.update(options)
    calls = [] if calls is None else calls

    def apply_critic(x, labels, stream, stats):
        calls.append(stream)
        return critic(x), stats + 1

    def row_keys(stream):
        return jax.vmap(jax.random.fold_in, (None, 0))(jax.random.fold_in(KEY, int(stream)),
                                                       jnp.arange(real.shape[0] // pack))

    return objectives.Context(loss=losses.get_loss(loss), options=config, real=real, fake=fake,
                              real_labels=real_labels, fake_labels=fake_labels, num_classes=num_classes, pack=pack,
                              apply_critic=apply_critic, row_keys=row_keys, gather=lambda x: x, batch_stats=0)


def _linear(w, b=0.3):
    return lambda x: CriticOutput(x @ w + b, None, None)


# ----------------------------------------------------------------------------- registries and weights


def test_registries_name_each_term_and_its_metric():
    assert {n: (t.metric, t.weight_field) for n, t in objectives.CRITIC_TERMS.items()} == {
        "adversarial": ("critic_loss", None), "acgan": ("critic_class_loss", "acgan_weight"),
        "gradient_penalty": ("gradient_penalty", "gradient_penalty"), "r1": ("r1_penalty", "r1_gamma")}
    assert {n: (t.metric, t.weight_field) for n, t in objectives.GENERATOR_TERMS.items()} == {
        "adversarial": ("generator_loss", "generator_adversarial"),
        "acgan": ("generator_class_loss", "acgan_weight"),
        "feature_matching": ("feature_matching", "feature_matching")}


def test_weights_come_from_the_loss_config():
    c = config_lib.base_config().loss
    assert [(w.name, w.weight) for w in objectives.objective(objectives.CRITIC_TERMS, c)] == [("adversarial", 1.0)]
    c.gradient_penalty, c.r1_gamma = 10.0, 3.0
    assert [(w.name, w.weight) for w in objectives.objective(objectives.CRITIC_TERMS, c)] == [
        ("adversarial", 1.0), ("gradient_penalty", 10.0), ("r1", 1.5)]  # R1's weight is γ/2
    assert [(w.name, w.weight) for w in objectives.objective(objectives.GENERATOR_TERMS, c)] == [("adversarial", 1.0)]
    c.feature_matching, c.generator_adversarial = 1.0, 0.0  # Salimans et al. 2016: G minimises feature matching
    assert [(w.name, w.weight) for w in objectives.objective(objectives.GENERATOR_TERMS, c)] == [
        ("feature_matching", 1.0)]


def test_total_sums_the_weighted_terms_and_logs_each_unweighted():
    c = config_lib.base_config().loss
    c.gradient_penalty = 10.0
    registry = {"a": Term(lambda ctx: jnp.float32(2.0), "a_metric"),
                "b": Term(lambda ctx: jnp.float32(3.0), "b_metric", "gradient_penalty", scale=0.5),
                "off": Term(lambda ctx: jnp.float32(7.0), "off_metric", "r1_gamma")}
    loss, metrics = objectives.total(objectives.objective(registry, c), None)
    assert float(loss) == 2.0 + 0.5 * 10.0 * 3.0
    assert metrics == {"a_metric": 2.0, "b_metric": 3.0}


def test_loss_pairs_say_whether_their_generator_reads_real_scores():
    for name in losses.LOSS_NAMES:
        pair = losses.get_loss(name)
        assert pair.needs_real == name.startswith("relativistic"), name
        if not pair.needs_real:
            fake = _data(1, (B,))
            np.testing.assert_array_equal(pair.generator(None, fake), pair.generator(_data(2, (B,)), fake))
    assert not losses.get_loss("minimax", label_smoothing=0.1).needs_real


# ----------------------------------------------------------------------------- terms


@pytest.mark.parametrize("pack", [1, 2])
def test_penalties_of_a_linear_critic_have_closed_forms(pack):
    """D(x) = ⟨w, x⟩ + b: ∇D = w everywhere, so WGAN-GP = (‖w‖ − t)² and R1 = ‖w‖², on packed rows too."""
    w = _data(3, (3 * pack,))
    real, fake = _data(4), _data(5)
    ctx = _context(_linear(w), real, fake, pack=pack, gp_target=2.0)
    norm = float(jnp.linalg.norm(w))
    np.testing.assert_allclose(objectives.gradient_penalty(ctx), (norm - 2.0) ** 2, rtol=1e-5)
    np.testing.assert_allclose(objectives.r1_penalty(ctx), norm ** 2, rtol=1e-5)


def test_gradient_penalty_interpolates_each_packed_group_as_a_whole():
    """PacGAN + WGAN-GP: one ε per packed group of `pack` examples, the gradient taken w.r.t. the group."""
    pack, h = 2, _data(6, (6, 5))
    critic = lambda x: jnp.sum(jnp.tanh(x @ h) ** 2, axis=1)  # noqa: E731
    real, fake = _data(7), _data(8)
    ctx = _context(lambda x: CriticOutput(critic(x), None, None), real, fake, pack=pack)
    eps = jax.vmap(lambda k: jax.random.uniform(k, ()))(ctx.row_keys(Stream.INTERPOLATION))
    groups_real, groups_fake = models.pack(real, pack), models.pack(fake, pack)
    expected = []
    for i in range(B // pack):
        x_hat = eps[i] * groups_real[i] + (1 - eps[i]) * groups_fake[i]
        g = jax.grad(lambda x: critic(x[None])[0])(x_hat)
        expected.append((np.linalg.norm(np.asarray(g, np.float64)) - 1.0) ** 2)
    np.testing.assert_allclose(objectives.gradient_penalty(ctx), np.mean(expected), rtol=1e-5)


def _cross_entropy(logits, labels) -> float:
    logits = np.asarray(logits, np.float64)
    log_p = logits - np.log(np.sum(np.exp(logits), axis=1, keepdims=True))
    return float(-np.mean(log_p[np.arange(len(labels)), labels]))


@pytest.mark.parametrize("fake_class", [False, True])
def test_acgan_terms_against_cross_entropies(fake_class):
    """Odena et al. 2017: D classifies real and generated examples, G wants its samples classified as drawn;
    with K + 1 logits (Salimans et al. 2016) D's target for samples is the extra class K."""
    k = 3
    real, fake = _data(9), _data(10)
    proj = _data(11, (3, k + fake_class))
    real_labels, fake_labels = jnp.array([0, 1, 2, 0, 1, 2, 0, 1]), jnp.array([2, 2, 1, 1, 0, 0, 2, 1])
    ctx = _context(lambda x: CriticOutput(x[:, 0], x @ proj, None), real, fake, real_labels=real_labels,
                   fake_labels=fake_labels, num_classes=k)
    fake_target = np.full(B, k) if fake_class else fake_labels
    np.testing.assert_allclose(objectives.critic_class_loss(ctx),
                               _cross_entropy(real @ proj, real_labels) + _cross_entropy(fake @ proj, fake_target),
                               rtol=1e-5)
    np.testing.assert_allclose(objectives.generator_class_loss(ctx), _cross_entropy(fake @ proj, fake_labels),
                               rtol=1e-5)


def test_feature_matching_is_the_squared_distance_of_the_mean_features():
    """Salimans et al. 2016, Sec. 3.1: ‖E f(x) − E f(G(z))‖²₂, with a gradient for the generated examples."""
    h = _data(12, (3, 4))
    features = lambda x: jnp.tanh(x @ h)  # noqa: E731
    real, fake = _data(13), _data(14)

    def term(fake):
        ctx = _context(lambda x: CriticOutput(x[:, 0], None, features(x)), real, fake)
        return objectives.feature_matching(ctx)

    diff = np.mean(np.asarray(features(real), np.float64), 0) - np.mean(np.asarray(features(fake), np.float64), 0)
    value, grad = jax.value_and_grad(term)(fake)
    np.testing.assert_allclose(value, np.sum(diff ** 2), rtol=1e-5)
    assert float(jnp.max(jnp.abs(grad))) > 0


def test_the_generator_loss_scores_real_data_only_for_pairs_that_read_it():
    w = _data(15, (3,))
    real, fake = _data(16), _data(17)
    for name, passes in (("non_saturating", [Stream.FAKE_DROPOUT]),
                         ("relativistic_average", [Stream.FAKE_DROPOUT, Stream.REAL_DROPOUT])):
        calls = []
        ctx = _context(_linear(w), real, fake, loss=name, calls=calls)
        ctx.fake_output()  # as the step does: the fake pass first
        value = objectives.generator_adversarial(ctx)
        assert calls == passes, name
        expected = losses.get_loss(name).generator(real @ w + 0.3, fake @ w + 0.3)
        np.testing.assert_allclose(value, expected, rtol=1e-6)


def test_a_context_runs_each_pass_once_and_threads_the_batch_statistics():
    calls = []
    ctx = _context(_linear(_data(18, (3,))), _data(19), _data(20), calls=calls)
    first = ctx.real_output()
    assert ctx.real_output() is first and ctx.batch_stats == 1
    ctx.fake_output()
    assert ctx.batch_stats == 2
    ctx.critic(ctx.packed(ctx.real), None, Stream.R1_DROPOUT)  # penalties' critic leaves the statistics alone
    assert ctx.batch_stats == 2 and calls == [Stream.REAL_DROPOUT, Stream.FAKE_DROPOUT, Stream.R1_DROPOUT]


# ----------------------------------------------------------------------------- in the step


def _one_step(gan, config):
    """(initial state, metrics of one single-device step, state after it)."""
    init = train.init_state(gan, jax.random.key(config.seed), (2,))
    step = parallel.parallelize(train.make_train_step(gan), "shard_map", parallel.make_mesh(jax.devices()[:1]))
    batch = host_batches(config, 1)[0]
    state, metrics = step(step.put_state(jax.tree.map(jnp.copy, init)), step.put_batch(batch))
    return init, batch, jax.device_get(metrics), jax.device_get(state)


def test_feature_matching_is_selectable_as_the_generator_objective():
    config = simultaneous_config(**{"loss.feature_matching": 1.0, "loss.generator_adversarial": 0.0})
    config_lib.validate(config)
    gan = train.build(config)
    init, batch, metrics, state = _one_step(gan, config)
    assert "feature_matching" in metrics and "generator_loss" not in metrics
    real, fake = generator_update_inputs(gan, init, batch)

    def features(x):
        return gan.critic.apply({"params": init.critic.params}, x, train=True, return_features=True)[1]

    diff = np.mean(np.asarray(features(real), np.float64), 0) - np.mean(np.asarray(features(fake), np.float64), 0)
    np.testing.assert_allclose(metrics["feature_matching"], np.sum(diff ** 2), rtol=1e-4)
    assert max_abs_diff(init.generator.params, state.generator.params) > 0
    # Composed with the adversarial loss, both are minimised and logged.
    both = simultaneous_config(**{"loss.feature_matching": 0.5})
    _, _, metrics, _ = _one_step(train.build(both), both)
    assert {"feature_matching", "generator_loss"} <= metrics.keys()


def test_a_new_regulariser_is_one_registry_entry(monkeypatch):
    """A drift term (Karras et al. 2018's ε E D(x)²) added to the registry is minimised and logged by the step,
    which is not edited."""
    config = tiny_config("gan")
    monkeypatch.setitem(objectives.CRITIC_TERMS, "drift", Term(
        lambda ctx: jnp.mean(jnp.square(ctx.gather(ctx.real_output().scores))), "drift", scale=1e-3))
    gan = train.build(config)
    init, batch, metrics, state = _one_step(gan, config)
    scores = gan.critic.apply({"params": init.critic.params}, batch["x"][0], train=True)
    np.testing.assert_allclose(metrics["drift"], np.mean(np.square(np.asarray(scores, np.float64))), rtol=1e-5)
    monkeypatch.delitem(objectives.CRITIC_TERMS, "drift")
    _, _, without, plain = _one_step(gan, config)
    assert "drift" not in without and max_abs_diff(state.critic.params, plain.critic.params) > 0


class _PlainCritic(nn.Module):
    @nn.compact
    def __call__(self, x, train):
        return nn.Dense(1)(x)[:, 0]


def test_critics_the_terms_cannot_use_are_refused():
    config = tiny_config("gan", **{"loss.feature_matching": 1.0})
    gan = train.build(config)
    train.init_state(gan, jax.random.key(0), (2,))  # the MLP critic returns its features
    with pytest.raises(ValueError, match=r"config.loss.feature_matching=1.0 needs a critic that returns its "
                                         r"intermediate features \(`return_features=True`"):
        train.init_state(gan._replace(critic=_PlainCritic()), jax.random.key(0), (2,))
    loss = config_lib.base_config().loss
    plain = objectives.objective(objectives.CRITIC_TERMS, loss)
    with pytest.raises(ValueError, match=r"the critic returns class logits \(an ACGAN critic\): set "
                                         r"config.loss.acgan_weight > 0 to train them"):
        objectives.check_critic(plain, loss, batch_norm=False, class_logits=True, features=False)
    loss.acgan_weight = 1.0
    acgan = objectives.objective(objectives.CRITIC_TERMS, loss)
    with pytest.raises(ValueError, match=r"config.loss.acgan_weight > 0 needs a critic with class logits"):
        objectives.check_critic(acgan, loss, batch_norm=False, class_logits=False, features=False)
    objectives.check_critic(acgan, loss, batch_norm=True, class_logits=True, features=False)


def test_the_generator_needs_an_objective():
    config = tiny_config("gan", **{"loss.generator_adversarial": 0.0})
    with pytest.raises(ValueError, match=r"the generator needs an objective: config.loss.generator_adversarial > 0 "
                                         r"or config.loss.feature_matching > 0 \(both are 0\)"):
        config_lib.validate(config)
