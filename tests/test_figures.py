"""gan_jax.figures: the curves behind the three divergence figures, and the one command that draws them."""
import json
import math

import jax
import numpy as np
import pytest
import scipy.integrate
import scipy.stats

from gan_jax import divergences as dv
from gan_jax import figures

LOG2 = math.log(2.0)


def _js_quad(mu, var):
    """JS(N(0,1) || N(mu, var)) by adaptive quadrature, independent of the library."""
    p = scipy.stats.norm(0.0, 1.0).pdf
    q = scipy.stats.norm(mu, math.sqrt(var)).pdf

    def integrand(x):
        m = 0.5 * (p(x) + q(x))
        return 0.5 * (scipy.special.rel_entr(p(x), m) + scipy.special.rel_entr(q(x), m))

    return scipy.integrate.quad(integrand, -np.inf, np.inf, epsabs=1e-13)[0]


def test_gaussian_sweep_curves():
    c = {k: np.asarray(v) for k, v in figures.gaussian_divergence_sweep(num=21).items()}
    np.testing.assert_allclose(c["mu"][[0, 10, 20]], [-1.0, 0.0, 1.0], atol=1e-7)
    np.testing.assert_allclose(c["var"][[0, 10, 20]], [0.5, 1.0, 1.5], atol=1e-7)
    for name in ("kl_pq", "kl_qp", "js"):
        np.testing.assert_allclose(c[name][10], 0.0, atol=1e-6)
        assert np.all(c[name][np.arange(21) != 10] > 0)
    # Closed-form KL at the ends, written out: KL(N(0,1) || N(1, 1.5)) = 1/2 [log 1.5 + 2/1.5 - 1].
    np.testing.assert_allclose(c["kl_pq"][20], 0.5 * (math.log(1.5) + 2 / 1.5 - 1), rtol=1e-6)
    np.testing.assert_allclose(c["kl_qp"][0], 0.5 * (-math.log(0.5) + 1.5 - 1), rtol=1e-6)
    for i in (0, 4, 15, 20):
        np.testing.assert_allclose(c["js"][i], _js_quad(float(c["mu"][i]), float(c["var"][i])), rtol=1e-4)
    # JS <= (KL(p||q) + KL(q||p)) / 4, by convexity of KL in its second argument.
    assert np.all(c["js"] <= 0.25 * (c["kl_pq"] + c["kl_qp"]) + 1e-7)


def test_parallel_lines_example_1():
    c = {k: np.asarray(v) for k, v in figures.parallel_lines_sweep(num=21, num_z=8).items()}
    theta = c["theta"]
    off = theta != 0
    assert off.sum() == 20  # theta = 0 is on the grid
    np.testing.assert_allclose(c["w"], np.abs(theta), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(c["js"][off], LOG2, rtol=1e-6)
    np.testing.assert_allclose(c["js"][~off], 0.0, atol=1e-7)
    for name in ("kl_0_theta", "kl_theta_0"):
        assert np.all(np.isposinf(c[name][off]))
        np.testing.assert_allclose(c[name][~off], 0.0, atol=1e-7)
    for bad in (20, 1):
        with pytest.raises(ValueError, match="num must be odd and >= 3"):
            figures.parallel_lines_sweep(num=bad)


def test_discriminator_estimates_js_within_two_percent():
    # Short budget (300 steps): measured relative errors 0.13-0.40 % over seeds 0-5; 2 % leaves margin.
    r = {k: np.asarray(v) for k, v in figures.discriminator_js_estimate(jax.random.key(0), 1.0, steps=300).items()}
    np.testing.assert_allclose(r["js_true"], 0.111421482185, rtol=1e-5)
    np.testing.assert_allclose(r["value_optimum"], -1.163451396750, rtol=1e-5)
    np.testing.assert_allclose(r["js_estimate"], r["js_true"], rtol=2e-2)
    np.testing.assert_allclose(r["relative_error"], abs(r["js_estimate"] - r["js_true"]) / r["js_true"], rtol=1e-5)
    # D* maximises V, so a trained D can only fall short (up to float32 rounding of the quadrature).
    assert float(r["value_trained"]) <= float(r["value_optimum"]) + 1e-5
    bulk = (r["x"] > -2.5) & (r["x"] < 3.5)
    np.testing.assert_allclose(r["d_trained"][bulk], r["d_star"][bulk], atol=0.05)
    np.testing.assert_allclose(r["d_star"], dv.optimal_discriminator(scipy.stats.norm.pdf(r["x"]),
                                                                     scipy.stats.norm.pdf(r["x"], 1.0)), atol=1e-6)


def test_main_writes_the_three_figures_and_numbers(tmp_path, capsys):
    numbers = figures.main(["--outdir", str(tmp_path), "--steps", "200", "--mus", "1.0"])
    for name in ("divergences_gaussian_sweep.png", "wgan_parallel_lines.png", "optimal_discriminator_js.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    record = json.loads((tmp_path / "optimal_discriminator_js.json").read_text())
    assert record["steps"] == 200 and record["results"] == numbers
    assert json.loads(capsys.readouterr().out) == record
    np.testing.assert_allclose(numbers["mu=1"]["js_true"], 0.111421482185, rtol=1e-5)
    assert 0.0 <= numbers["mu=1"]["relative_error"] < 2e-2
