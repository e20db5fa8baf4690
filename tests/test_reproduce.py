"""The paper-table registry and the reproduce command."""
import glob
import json
import os
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
from absl import app

from gan_jax import paper_tables, reproduce, writers
from gan_jax.config_files import load_config
from tests.helpers import subprocess_xla_flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_registry_configs_exist_for_every_table():
    for table in paper_tables.TABLES.values():
        assert set(table.floor) == set(table.metrics)
        for row in table.rows:
            assert set(row.paper) <= set(table.metrics)
            assert os.path.exists(os.path.join(ROOT, row.config.split(":")[0])), row.config
            assert load_config(row.config, ROOT).paper


def test_stacked_mnist_metz_rows_follow_pacgan_table_3():
    table = paper_tables.get_table("stacked_mnist_metz")
    assert table.classifier == "experiments/classifier_mnist.py"
    for row in table.rows:
        config = load_config(row.config, ROOT)
        pack = config.model.pack
        assert row.method.startswith(f"PacDCGAN{pack}" if pack > 1 else "DCGAN")
        assert config.batch_size == 128 * pack and config.model.critic["channels"] == 3 * pack
        assert config.model.critic["widths"] == ((2, 4, 8) if "D=0.25G" in row.method else (4, 8, 16))
        assert (config.eval.num_samples, config.steps, config.model.latent_dim) == (25_600, 500_000, 256)
    assert table.row("PacDCGAN2 D=0.25G").paper == {"modes": (484.5, 32.99), "kl": (2.61, 0.22)}
    with pytest.raises(ValueError, match="unknown variant 'dcgan_third'; allowed: \\['dcgan', 'dcgan_quarter'"):
        load_config("experiments/stacked_mnist_metz.py:dcgan_third", ROOT)


def test_markdown_puts_mean_and_std_beside_the_paper():
    table = paper_tables.get_table("mixture_ring")
    run = {"seeds": 2, "steps": 10, "results": {
        "GAN": [{"modes": 6.0, "high_quality": 0.9, "reverse_kl": 0.5},
                {"modes": 8.0, "high_quality": 0.8, "reverse_kl": float("inf")}]}}
    text = reproduce.markdown(table, run)
    # modes: |7 - 6.3| / sqrt(1.41**2 / 2 + 0.5**2) = 0.63 standard errors; high quality: 0.132 / 0.05 = 2.64.
    assert ("| GAN | 7 ± 1.4 | 6.3 ± 0.5 | 85 ± 7.1 % | 98.2 ± 0.2 % | ∞ | 0.45 ± 0.09 "
            "| modes yes (0.6), high_quality no (2.6), reverse_kl no (inf) |") in text
    assert "PacGAN2" not in text  # only the methods that were run
    assert "| perfect sampler (floor) | 8 |  | 98.9 % |  | 0.0014 |  |  |" in text
    assert "Lin et al. 2018 (PacGAN), Table 1, 2D-ring" in text
    assert [reproduce._fmt("modes", v) for v in (1000.0, 295.0, 0.0196)] == ["1000", "295", "0.0196"]


def test_tolerance_is_a_two_standard_error_band_around_the_paper():
    tol = paper_tables.Tolerance()
    # One seed: only the paper's standard error counts (Parzen: 225 +- 2, so 221-229 passes).
    assert tol.check([228.9], (225.0, 2.0)) == (True, pytest.approx(1.95))
    assert tol.check([185.9], (225.0, 2.0)) == (False, pytest.approx(19.55))
    # Exactly on the band's edge is inside, whatever the float rounding of 8 - 7.8 (> 0.2).
    assert tol.check([8.0], (7.8, 0.1)) == (True, pytest.approx(2.0))
    assert tol.check([8.0], (7.79, 0.1)) == (False, pytest.approx(2.1))
    # Seeds add their standard error: std 2 over 4 seeds is 1, so sqrt(1 + 0.25) combined.
    ok, distance = tol.check([5.0, 7.0, 5.0, 7.0], (8.0, 0.5))
    assert not ok and distance == pytest.approx(2 / np.sqrt(1 / 3 + 0.25))
    assert tol.check([1000.0, 1000.0], (1000.0, 0.0)) == (True, 0.0)  # PacDCGAN2's 1000 +- 0 modes
    assert tol.check([999.0], (1000.0, 0.0)) == (False, float("inf"))
    assert tol.check([float("inf"), 0.5], (0.45, 0.09)) == (False, float("inf"))
    for table in paper_tables.TABLES.values():  # a tolerance needs the paper's spread of every value it judges
        if table.tolerance:
            assert all(spread is not None for row in table.rows for _, spread in row.paper.values()), table.name
    assert paper_tables.get_table("fid_mnist").tolerance is None  # Inception FIDs: ranking only
    assert "paper within tolerance" not in reproduce.markdown(
        paper_tables.get_table("fid_mnist"), _fid_run(0, {"NS-GAN": [100.0]}))


def test_unknown_table_names_the_tables():
    with pytest.raises(ValueError, match="unknown table 'cifar'; allowed: \\['fid_fashion_mnist', 'fid_mnist'"):
        paper_tables.get_table("cifar")


def test_reproduce_command_end_to_end_at_a_tiny_budget(tmp_path):
    env = dict(os.environ, XLA_FLAGS=subprocess_xla_flags(1))
    cmd = [sys.executable, "-m", "gan_jax.reproduce", "mixture_grid", "--workdir", str(tmp_path), "--seeds", "1",
           "--steps", "5", "--methods", "GAN,PacGAN2"]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "| GAN |" in p.stdout and "| PacGAN2 |" in p.stdout and "17.3 ± 0.8" in p.stdout
    # The run file says where it comes from: commit, date, machine, budget, seeds and the command.
    saved = json.loads((tmp_path / "mixture_grid.json").read_text())
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    assert saved["table"] == "mixture_grid" and saved["commit"] == (head or None)
    assert saved["date"] == time.strftime("%Y-%m-%d") and (saved["steps"], saved["seeds"]) == (5, 1)
    assert saved["machine"]["cpu_count"] == os.cpu_count() and saved["machine"]["device_kind"] == "cpu"
    assert saved["command"] == ("python -m gan_jax.reproduce mixture_grid --workdir " + str(tmp_path)
                                + " --seeds 1 --steps 5 --methods GAN,PacGAN2")
    assert (tmp_path / "mixture_grid.md").read_text().startswith("**Lin et al. 2018 (PacGAN), Table 1, 2D-grid**")
    # A second call resumes the finished runs (no new training) and prints the same table.
    p2 = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    table = lambda out: out[out.index("**Lin"):out.index("Machine:")]  # noqa: E731
    assert p2.returncode == 0 and table(p2.stdout) == table(p.stdout)
    assert "new run" not in p2.stdout


def test_fid_tables_train_their_classifier_once_and_run_every_method_at_one_budget(tmp_path, monkeypatch):
    from gan_jax import loop
    from gan_jax.tasks import gan as gan_task
    from gan_jax.metrics import classifier
    trained, runs = [], []

    def fake_run(config, workdir):
        if config.task == "classifier":
            trained.append((config.data.name, workdir))
            os.makedirs(workdir)
            open(os.path.join(workdir, classifier.METADATA_FILE), "w").write('{"test_accuracy": 0.9}')
            return {"test_accuracy": 0.9}
        runs.append((config, workdir))
        return {"fid": float(len(runs)), "classifier_score": 5.0}

    def fake_floor(config):
        floors.append(config.eval.classifier_dir)
        return {"fid": 0.5, "classifier_score": 8.5}

    floors = []
    monkeypatch.setattr(loop, "train_and_evaluate", fake_run)
    monkeypatch.setattr(gan_task, "real_data_floor", fake_floor)
    table = paper_tables.get_table("fid_fashion_mnist")
    run = reproduce.run_table(table, str(tmp_path), seeds=1, steps=7)
    clf_dir = str(tmp_path / "fid_fashion_mnist" / "classifier")
    assert trained == [("fashion_mnist", clf_dir)] and floors == [clf_dir]
    assert [c.loss.name for c, _ in runs] == ["non_saturating", "wasserstein", "wasserstein", "least_squares",
                                               "hinge", "relativistic_average"]
    for config, _ in runs:
        assert (config.data.name, config.steps, config.batch_size) == ("fashion_mnist", 7, 64)
        assert config.eval.num_samples == 10_000 and config.eval.classifier_dir == clf_dir
    again = reproduce.run_table(table, str(tmp_path), seeds=1, steps=7, methods=["RaSGAN"])
    assert len(trained) == 1 and len(floors) == 1  # the saved classifier and its floor are reused
    assert again["floor"] == run["floor"] == {"fid": 0.5, "classifier_score": 8.5}
    text = reproduce.markdown(table, run)
    assert "| NS-GAN | 1 | 26.5 ± 1.6 | 5 | — |" in text and "| hinge-SN | 5 | — |" in text
    assert "Feature classifier: 90.00% test accuracy." in text
    assert "| perfect sampler (floor, this classifier) | 0.5 |  | 8.5 |  |" in text
    assert "| perfect sampler (floor) | 0.42 |  | 8.44 |  |" in reproduce.markdown(table, {**run, "floor": None})


def test_first_seed_trains_only_the_later_seeds_in_their_own_directories(tmp_path, monkeypatch):
    from gan_jax import loop
    runs = []

    def fake_run(config, workdir):
        runs.append((config.seed, os.path.relpath(workdir, tmp_path)))
        return {"modes": 8.0, "high_quality": 0.9, "reverse_kl": 0.1}

    monkeypatch.setattr(loop, "train_and_evaluate", fake_run)
    table = paper_tables.get_table("mixture_ring")
    run = reproduce.run_table(table, str(tmp_path), seeds=2, steps=3, methods=["GAN"], first_seed=1)
    assert runs == [(1, "mixture_ring/GAN/seed_1"), (2, "mixture_ring/GAN/seed_2")]
    assert "Ours: 2 seed(s) (seeds 1–2) × 3 generator steps" in reproduce.markdown(table, run)
    assert "Ours: 1 seed(s) (seed 2) ×" in reproduce.markdown(table, {**run, "seeds": 1, "first_seed": 2})
    with pytest.raises(ValueError, match="first_seed=-1"):
        reproduce.run_table(table, str(tmp_path), seeds=1, first_seed=-1)
    # Without --steps the file records the configs' own length (the ring configs': 10,000).
    assert reproduce.run_table(table, str(tmp_path / "default"), seeds=1, methods=["GAN"])["steps"] == 10_000


def test_precise_bn_results_are_recorded_pooled_and_printed_as_a_second_table(tmp_path, monkeypatch):
    from gan_jax import loop
    from gan_jax.tasks import gan as gan_task

    def fake_run(config, workdir):
        protocol = {"modes": 6.0 + config.seed, "high_quality": 0.9, "reverse_kl": 0.4}
        return protocol | {k + gan_task.PRECISE_BN: v / 2 for k, v in protocol.items()}

    monkeypatch.setattr(loop, "train_and_evaluate", fake_run)
    table = paper_tables.get_table("mixture_ring")
    a = reproduce.run_table(table, str(tmp_path), seeds=1, steps=3, methods=["GAN"])
    b = reproduce.run_table(table, str(tmp_path), seeds=1, steps=3, methods=["GAN"], first_seed=1)
    assert a["results"]["GAN"] == [{"modes": 6.0, "high_quality": 0.9, "reverse_kl": 0.4}]
    assert a["precise_bn"]["GAN"] == [{"modes": 3.0, "high_quality": 0.45, "reverse_kl": 0.2}]
    merged = reproduce.merge_runs(table, [b, a], ["b.json", "a.json"])
    assert [r["modes"] for r in merged["precise_bn"]["GAN"]] == [3.0, 3.5]   # seed order, as the results
    text = reproduce.markdown(table, merged)
    first, second = text.split("instead of its running averages")
    assert "| GAN | 6.5 ± 0.71 | 6.3 ± 0.5 | 90 ± 0 % |" in first
    assert "| GAN | 3.25 ± 0.35 | 6.3 ± 0.5 | 45 ± 0 % |" in second
    # A run resumed under this code: its older evaluations lack the precise metrics, which its curve leaves out.
    run_dir = tmp_path / "resumed"
    run_dir.mkdir()
    (run_dir / "metrics.jsonl").write_text(json.dumps({"step": 2, "eval/modes": 5.0}) + "\n" + json.dumps(
        {"step": 4, "eval/modes": 6.0, "eval/modes_precise_bn": 7.0}) + "\n")
    assert reproduce._curve(str(run_dir), ("modes", "modes_precise_bn")) == {
        "2": {"modes": 5.0}, "4": {"modes": 6.0, "modes_precise_bn": 7.0}}
    # A file without them (older runs) pools the protocol's results only.
    old = {k: v for k, v in a.items() if k != "precise_bn"}
    assert "precise_bn" not in reproduce.merge_runs(table, [b, old], ["b.json", "old.json"])


def test_eval_every_records_and_prints_each_methods_curve(tmp_path, monkeypatch):
    from gan_jax import loop

    def fake_run(config, workdir):   # a run's metrics.jsonl: eval/* at every eval.every steps and at the end
        os.makedirs(workdir)
        rows = [{"step": 1, "critic_loss": 1.3}]
        every = config.eval_every or config.steps
        rows += [{"step": t, "eval/modes": float(t + config.seed), "eval/high_quality": 0.25 * t,
                  "eval/reverse_kl": 0.5, writers.WALL_KEY: 1.5 * t} for t in range(every, config.steps + 1, every)]
        with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
        return {k[5:]: v for k, v in rows[-1].items() if k.startswith("eval/")}

    monkeypatch.setattr(loop, "train_and_evaluate", fake_run)
    table = paper_tables.get_table("mixture_ring")
    run = reproduce.run_table(table, str(tmp_path), seeds=2, steps=4, methods=["GAN"], eval_every=2)
    assert run["curves"]["GAN"] == [{"2": {"modes": 2.0, "high_quality": 0.5, "reverse_kl": 0.5},
                                     "4": {"modes": 4.0, "high_quality": 1.0, "reverse_kl": 0.5}},
                                    {"2": {"modes": 3.0, "high_quality": 0.5, "reverse_kl": 0.5},
                                     "4": {"modes": 5.0, "high_quality": 1.0, "reverse_kl": 0.5}}]
    text = reproduce.markdown(table, run)
    assert "| GAN | 2 | 4 |\n|---|---|---|\n| modes | 2.5 | 4.5 |\n| high_quality | 50 % | 100 % |" in text
    # Each run's own clock at its last row (6 s here), summed over seeds and, when pooled, over files.
    assert run["train_s"] == 12.0
    other = reproduce.run_table(table, str(tmp_path / "other"), seeds=1, first_seed=2, steps=4, methods=["GAN"])
    assert reproduce.merge_runs(table, [run, other], ["a.json", "b.json"])["train_s"] == 18.0
    older = {k: v for k, v in other.items() if k != "train_s"}
    assert "train_s" not in reproduce.merge_runs(table, [run, older], ["a.json", "b.json"])
    assert "curves" not in reproduce.run_table(table, str(tmp_path / "plain"), seeds=1, steps=4, methods=["GAN"])


def test_set_changes_every_runs_config_is_recorded_and_refuses_keys_the_config_lacks(tmp_path, monkeypatch):
    from gan_jax import loop
    seen = []

    def fake_run(config, workdir):
        seen.append((config.loss.simultaneous, config.model.generator.batch_norm, config.seed))
        return {"modes": 8.0, "high_quality": 0.9, "reverse_kl": 0.1}

    monkeypatch.setattr(loop, "train_and_evaluate", fake_run)
    table = paper_tables.get_table("mixture_ring")
    settings = reproduce.parse_settings(["loss.simultaneous=True", "model.generator.batch_norm=False"])
    assert settings == {"loss.simultaneous": True, "model.generator.batch_norm": False}
    run = reproduce.run_table(table, str(tmp_path), seeds=2, steps=3, methods=["GAN", "PacGAN2"], settings=settings)
    assert seen == [(True, False, 0), (True, False, 1)] * 2 and run["settings"] == settings
    assert ("Config changed in every run (`--set`): `loss.simultaneous=True`, `model.generator.batch_norm=False`."
            in reproduce.markdown(table, run))
    assert reproduce.merge_runs(table, [run], ["a.json"])["settings"] == settings
    assert "settings" not in reproduce.run_table(table, str(tmp_path), seeds=1, steps=3, methods=["GAN"])
    with pytest.raises(ValueError, match="has no key 'loss.simultaneus'; keys under loss: \\['acgan_weight'"):
        reproduce.run_table(table, str(tmp_path), seeds=1, methods=["GAN"], settings={"loss.simultaneus": True})
    with pytest.raises(ValueError, match="--set loss.simultaneous='yes'"):
        reproduce.run_table(table, str(tmp_path), seeds=1, methods=["GAN"], settings={"loss.simultaneous": "yes"})
    with pytest.raises(ValueError, match="KEY=VALUE.*got 'loss.simultaneous'"):
        reproduce.parse_settings(["loss.simultaneous"])
    assert reproduce.parse_settings(["loss.name=hinge"]) == {"loss.name": "hinge"}
    with pytest.raises(ValueError, match="--set seed: the command sets seed itself; use --first_seed/--seeds"):
        reproduce.parse_settings(["seed=3"])


# Classifier FIDs of the Fashion-MNIST table at 2,000 steps, seeds 0 / 1 / 2
# (results/fid_fashion_mnist/all_seed{0,1,2}_2000.json).
RASGAN = [68.24703979492188, 67.19659423828125, 64.69952392578125]
NS_GAN = [69.35540771484375, 71.06607055664062, 69.525146484375]


def test_welch_t_test_matches_its_formula_and_the_recorded_fashion_mnist_figures():
    import jax.numpy as jnp
    from jax.scipy.special import betainc
    diff, t, p = reproduce.welch(RASGAN, NS_GAN)
    va, vb = np.var(RASGAN, ddof=1) / 3, np.var(NS_GAN, ddof=1) / 3
    df = (va + vb) ** 2 / (va ** 2 / 2 + vb ** 2 / 2)  # Welch-Satterthwaite
    np.testing.assert_allclose(diff, np.mean(NS_GAN) - np.mean(RASGAN), rtol=1e-12)
    np.testing.assert_allclose(t, diff / np.sqrt(va + vb), rtol=1e-12)
    # Two-sided Student-t tail through the regularised incomplete beta function (JAX's, not scipy's).
    np.testing.assert_allclose(p, float(betainc(df / 2, 0.5, df / (df + jnp.asarray(t) ** 2))), rtol=1e-4)
    assert (round(diff, 1), round(t, 2), round(p, 2)) == (3.3, 2.76, 0.07)  # as printed for those three seeds
    assert np.isnan(reproduce.welch([8.0, 8.0], [8.0, 8.0])[2])
    with warnings.catch_warnings():  # one constant sample (8 of 8 ring modes twice) is exact, not a precision loss
        warnings.simplefilter("error")
        diff, t, p = reproduce.welch([8.0, 8.0], [7.0, 8.0])
    assert (diff, t) == (-0.5, -1.0) and p == pytest.approx(0.5)  # t with 1 degree of freedom: P(|T| > 1) = 1/2
    with pytest.raises(ValueError, match="two or more values per sample, got 1 and 3"):
        reproduce.welch([1.0], NS_GAN)


def _fid_run(first_seed, fids, steps=2000, floor=0.403):
    """A run of the Fashion-MNIST FID table with two methods; fids: method -> FID per seed."""
    return {"results": {m: [{"fid": f, "classifier_score": 5.0} for f in v] for m, v in fids.items()},
            "steps": steps, "seeds": len(next(iter(fids.values()))), "first_seed": first_seed, "wall_s": 10.0,
            "classifier_test_accuracy": 0.915, "floor": {"fid": floor, "classifier_score": 8.43}}


def test_merge_pools_seeds_run_apart_in_seed_order_and_tests_adjacent_methods():
    table = paper_tables.get_table("fid_fashion_mnist")
    early = _fid_run(0, {"RaSGAN": RASGAN[:2], "NS-GAN": NS_GAN[:2]})
    late = _fid_run(3, {"RaSGAN": RASGAN[2:], "NS-GAN": NS_GAN[2:]})
    run = reproduce.merge_runs(table, [late, early], ["late.json", "early.json"])
    assert run["seed_list"] == [0, 1, 3] and run["seeds"] == 3 and run["wall_s"] == 20.0
    assert [r["fid"] for r in run["results"]["RaSGAN"]] == RASGAN and run["floor"] == early["floor"]
    text = reproduce.markdown(table, run)
    assert "Ours: 3 seed(s) (seeds 0, 1, 3) × 2000 generator steps" in text
    assert "| NS-GAN | 70 ± 0.94 | 26.5 ± 1.6 |" in text and "| RaSGAN | 66.7 ± 1.8 | — |" in text
    assert "- RaSGAN (66.7) → NS-GAN (70): +3.27, t = 2.76, p = 0.07" in text
    assert "Runs from: late.json, early.json." in text
    only = reproduce.merge_runs(table, [late, early], ["late.json", "early.json"], methods=["NS-GAN"])
    assert list(only["results"]) == ["NS-GAN"] and [r["fid"] for r in only["results"]["NS-GAN"]] == NS_GAN
    with pytest.raises(ValueError, match="late.json has no runs of \\['WGAN'\\]; it has \\['NS-GAN', 'RaSGAN'\\]"):
        reproduce.merge_runs(table, [late, early], ["late.json", "early.json"], methods=["WGAN", "NS-GAN"])
    # One seed per method: nothing to test, so no comparison lines.
    assert "t = " not in reproduce.markdown(table, early | {"results": {"RaSGAN": [{"fid": 1.0, "classifier_score": 5.0}],
                                                                         "NS-GAN": [{"fid": 2.0, "classifier_score": 5.0}]},
                                                             "seeds": 1})


def test_merge_pools_each_method_over_the_files_that_have_it():
    table = paper_tables.get_table("fid_fashion_mnist")
    both = _fid_run(0, {"RaSGAN": RASGAN[:2], "NS-GAN": NS_GAN[:2]})
    rasgan = _fid_run(3, {"RaSGAN": RASGAN[2:]})
    run = reproduce.merge_runs(table, [rasgan, both], ["rasgan.json", "both.json"])
    assert run["method_seeds"] == {"NS-GAN": [0, 1], "RaSGAN": [0, 1, 3]}
    assert [r["fid"] for r in run["results"]["RaSGAN"]] == RASGAN
    assert [r["fid"] for r in run["results"]["NS-GAN"]] == NS_GAN[:2]
    text = reproduce.markdown(table, run)
    assert "Ours: NS-GAN 2 seed(s) (seeds 0–1), RaSGAN 3 seed(s) (seeds 0, 1, 3) × 2000 generator steps" in text
    diff, t, p = reproduce.welch(RASGAN, NS_GAN[:2])
    assert f"- RaSGAN (66.7) → NS-GAN (70.2): +{diff:.3g}, t = {t:.2f}, p = {p:.2g}" in text
    # A pooled file pools again: its per-method seeds are kept.
    again = reproduce.merge_runs(table, [run, _fid_run(5, {"NS-GAN": [71.0]})], ["pooled.json", "ns.json"])
    assert again["method_seeds"] == {"NS-GAN": [0, 1, 5], "RaSGAN": [0, 1, 3]}
    # Methods that end with the same seeds make an ordinary run.
    even = reproduce.merge_runs(table, [rasgan, both, _fid_run(3, {"NS-GAN": NS_GAN[2:]})], ["r", "b", "n"])
    assert "method_seeds" not in even and even["seed_list"] == [0, 1, 3] and even["seeds"] == 3


@pytest.mark.parametrize("other, message", [
    (_fid_run(3, {"RaSGAN": [1.0], "NS-GAN": [2.0]}, steps=1000),
     "different generator steps: a.json: 2000, b.json: 1000"),
    (_fid_run(3, {"RaSGAN": [1.0], "NS-GAN": [2.0]}, floor=0.36), "different feature classifiers \\(floor\\)"),
    (_fid_run(3, {"RaSGAN": [1.0], "NS-GAN": [2.0]}) | {"classifier_test_accuracy": 0.9119},
     "different feature classifiers \\(test accuracy\\): a.json: 0.915, b.json: 0.9119; score one set"),
    (_fid_run(3, {"RaSGAN": [1.0], "NS-GAN": [2.0]}) | {"settings": {"loss.simultaneous": True}},
     "different config settings \\(--set\\): a.json: None, b.json: {'loss.simultaneous': True}"),
    (_fid_run(3, {"RaSGAN": [1.0], "NS-GAN": [2.0]}) | {"features": "inception"},
     "different feature networks \\(eval.features\\): a.json: None, b.json: inception"),
    (_fid_run(1, {"RaSGAN": [1.0], "NS-GAN": [2.0]}), "seed 1 of RaSGAN is in both a.json and b.json"),
    (_fid_run(1, {"NS-GAN": [2.0]}), "seed 1 of NS-GAN is in both a.json and b.json"),
    (_fid_run(3, {"RaSGAN": [1.0], "NS-GAN": [2.0]}) | {"table": "fid_mnist"},
     "b.json is a run of table 'fid_mnist', not 'fid_fashion_mnist'"),
    (_fid_run(3, {"RaSGAN": [1.0], "DCGAN": [2.0]}), "has no method 'DCGAN'"),
])
def test_merge_refuses_runs_that_are_not_one_experiment(other, message):
    table = paper_tables.get_table("fid_fashion_mnist")
    with pytest.raises(ValueError, match=message):
        reproduce.merge_runs(table, [_fid_run(0, {"RaSGAN": RASGAN[:2], "NS-GAN": NS_GAN[:2]}), other],
                             ["a.json", "b.json"])


def test_merge_command_writes_the_pooled_table_and_refuses_training_flags(tmp_path):
    paths = []
    for name, run in (("s01.json", _fid_run(0, {"RaSGAN": RASGAN[:2], "NS-GAN": NS_GAN[:2]})),
                      ("s2.json", _fid_run(2, {"RaSGAN": RASGAN[2:], "NS-GAN": NS_GAN[2:]}))):
        (tmp_path / name).write_text(json.dumps(run))
        paths.append(str(tmp_path / name))
    cmd = [sys.executable, "-m", "gan_jax.reproduce", "fid_fashion_mnist", "--workdir", str(tmp_path / "out"),
           "--merge", ",".join(paths)]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "3 seed(s) × 2000 generator steps" in p.stdout and "p = 0.07" in p.stdout
    pooled = json.loads((tmp_path / "out" / "fid_fashion_mnist.json").read_text())
    assert pooled["seed_list"] == [0, 1, 2] and pooled["merged_from"] == paths
    p = subprocess.run(cmd + ["--steps", "5"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert p.returncode != 0 and "trains nothing; drop --steps" in p.stderr
    p = subprocess.run(cmd + ["--set", "loss.simultaneous=True"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert p.returncode != 0 and "trains nothing; drop --set" in p.stderr


@pytest.mark.slow
def test_pacgan2_on_the_2d_ring_reproduces_the_papers_mode_count(tmp_path):
    """PacGAN Table 1, 2D-ring, PacGAN2: 7.9 +- 0.1 modes of 8. Two seeds of 4,000 steps (1 % of the paper's
    budget; ~2 min each on 2 cores) already land within the registry's tolerance for the mode count."""
    env = dict(os.environ, XLA_FLAGS=subprocess_xla_flags(1))
    cmd = [sys.executable, "-m", "gan_jax.reproduce", "mixture_ring", "--workdir", str(tmp_path), "--seeds", "2",
           "--steps", "4000", "--methods", "PacGAN2"]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=1800)
    assert p.returncode == 0, p.stderr[-3000:]
    table = paper_tables.get_table("mixture_ring")
    modes = [r["modes"] for r in json.loads((tmp_path / "mixture_ring.json").read_text())["results"]["PacGAN2"]]
    ok, distance = table.tolerance.check(modes, table.row("PacGAN2").paper["modes"])
    assert ok, (modes, distance)
    assert "| PacGAN2 | " in p.stdout and "modes yes" in p.stdout


def test_every_recorded_run_file_prints_again_with_merge():
    """Each run file in results/<table>/ stays a run of its folder's table that `--merge` reads and prints."""
    paths = sorted(p for p in glob.glob(os.path.join(ROOT, "results", "*", "*.json"))
                   if os.path.basename(p) != reproduce.MANIFEST)
    for path in paths:
        name = os.path.relpath(path, ROOT)
        with open(path) as f:
            run = json.load(f)
        assert run["table"] == os.path.basename(os.path.dirname(path)), name
        table = paper_tables.get_table(run["table"])
        assert f"Runs from: {name}." in reproduce.markdown(table, reproduce.merge_runs(table, [run], [name]))
    assert len(paths) >= 102


def test_parzen_run_file_keeps_its_250_epoch_values():
    with open(os.path.join(ROOT, "results", "parzen_mnist", "adversarial_nets_seed0_125k.json")) as f:
        run = json.load(f)
    (ev,) = run["results"]["Adversarial nets"]
    (curve,) = run["curves"]["Adversarial nets"]
    assert list(curve) == ["10000", "30000", "50000", "70000", "125000"]
    assert ev == {m: curve["125000"][m] for m in ("parzen_log_likelihood", "nn_distance_ratio")}
    assert run["steps"] == 125000 and round(ev["parzen_log_likelihood"], 1) == 185.9
    table = paper_tables.get_table("parzen_mnist")
    assert "| Adversarial nets | 186 | 225 ± 2 | 1.03 | — | parzen_log_likelihood no (19.5) |" in reproduce.markdown(
        table, reproduce.merge_runs(table, [run], ["parzen"]))


def _ring_run(first_seed: int, curves: list[dict], precise: bool = False) -> dict:
    """A PacGAN2 ring run of len(curves) seeds whose results are their curves' last evaluations."""
    last = [c[max(c, key=int)] for c in curves]
    run = {"table": "mixture_ring", "steps": 4, "seeds": len(curves), "first_seed": first_seed, "wall_s": 1.0,
           "results": {"PacGAN2": [{m: e[m] for m in ("modes", "high_quality", "reverse_kl")} for e in last]},
           "curves": {"PacGAN2": curves}}
    if precise:
        run["precise_bn"] = {"PacGAN2": [{m: e[m + "_precise_bn"] for m in ("modes", "high_quality", "reverse_kl")}
                                         for e in last]}
    return run


def _eval(modes: float, kl: float, precise_kl: float | None = None) -> dict:
    e = {"modes": modes, "high_quality": 0.9, "reverse_kl": kl}
    if precise_kl is not None:
        e |= {"modes_precise_bn": modes, "high_quality_precise_bn": 0.95, "reverse_kl_precise_bn": precise_kl}
    return e


def test_merge_pools_curves_and_at_steps_reads_each_seed_at_chosen_evaluations():
    table = paper_tables.get_table("mixture_ring")
    late = _ring_run(2, [{"2": _eval(8, 0.1, 0.05), "4": _eval(7, 0.3, 0.2)}], precise=True)
    early = _ring_run(0, [{"2": _eval(8, 0.0, 0.0), "4": _eval(8, 0.2, 0.1)},
                          {"2": _eval(6, 0.4, 0.4), "4": _eval(6, 0.6, 0.5)}], precise=True)
    merged = reproduce.merge_runs(table, [late, early], ["late.json", "early.json"])
    assert merged["curves"]["PacGAN2"] == early["curves"]["PacGAN2"] + late["curves"]["PacGAN2"]  # seed order
    assert "| PacGAN2 | 2 | 4 |\n|---|---|---|\n| modes | 7.33 | 7 |" in reproduce.markdown(table, merged)
    # One step: the table as it stood then, for the protocol's and the recomputed-BN results alike.
    at2 = reproduce.at_steps(table, merged, [2])
    assert [r["reverse_kl"] for r in at2["results"]["PacGAN2"]] == [0.0, 0.4, 0.1]
    assert [r["reverse_kl"] for r in at2["precise_bn"]["PacGAN2"]] == [0.0, 0.4, 0.05]
    text = reproduce.markdown(table, at2)
    assert "Each seed's value is its evaluation at step 2 (`--at_steps`), not its last." in text
    # Several steps: each seed's mean over them; the last step alone gives back the final results.
    both = reproduce.at_steps(table, merged, [2, 4])
    np.testing.assert_allclose([r["reverse_kl"] for r in both["results"]["PacGAN2"]], [0.1, 0.5, 0.2])
    np.testing.assert_allclose([r["modes"] for r in both["results"]["PacGAN2"]], [8, 6, 7.5])
    assert "mean of its evaluations at steps 2, 4 (`--at_steps`)" in reproduce.markdown(table, both)
    assert reproduce.at_steps(table, merged, [4])["results"] == merged["results"]
    # A file without curves, or curves without recomputed BN, is named or left out.
    with pytest.raises(ValueError, match="seed 0 of PacGAN2 has no evaluation at step\\(s\\) 3; its curve has 2, 4"):
        reproduce.at_steps(table, merged, [3])
    with pytest.raises(ValueError, match="positive step counts or lastN, got steps=\\[0\\], last=0"):
        reproduce.at_steps(table, merged, [0])
    # lastN: each seed's last N evaluations, whatever their steps.
    last2 = reproduce.at_steps(table, merged, last=2)
    assert last2["results"] == both["results"] and last2["at_steps"] == "last2"
    assert "the mean of its last 2 evaluations (`--at_steps`)" in reproduce.markdown(table, last2)
    assert reproduce.at_steps(table, merged, last=1)["results"] == merged["results"]
    with pytest.raises(ValueError, match="seed 0 of PacGAN2 has 2 evaluations, fewer than last3"):
        reproduce.at_steps(table, merged, last=3)
    assert reproduce.parse_at_steps(["last5"]) == ([], 5)
    assert reproduce.parse_at_steps(["380000", "400000"]) == ([380000, 400000], 0)
    for bad in (["last0"], ["last5", "400000"], ["0"], ["lastfive"]):
        with pytest.raises(app.UsageError, match="such as 400000, or lastN such as last5, got"):
            reproduce.parse_at_steps(bad)
    with pytest.raises(ValueError, match="different checkpoints \\(--at_steps\\): a.json: last2, b.json: \\[2, 4\\]"):
        reproduce.merge_runs(table, [last2, both], ["a.json", "b.json"])
    bare = {k: v for k, v in late.items() if k != "curves"}
    assert "curves" not in reproduce.merge_runs(table, [bare, early], ["bare.json", "early.json"])
    with pytest.raises(ValueError, match="train with --eval_every\\); \\['PacGAN2'\\] have none"):
        reproduce.at_steps(table, bare, [4])
    with pytest.raises(ValueError, match="the curves lack some of \\['modes', 'high_quality', 'reverse_kl'\\] at --at_steps \\[4\\]"):
        reproduce.at_steps(table, _ring_run(0, [{"4": _eval(8, 0.2)}]) | {"curves": {"PacGAN2": [{"4": {"modes": 8.0}}]}},
                           [4])
    plain = _ring_run(0, [{"4": _eval(8, 0.2)}]) | {"precise_bn": {"PacGAN2": [_eval(8, 0.1)]}}
    assert "precise_bn" not in reproduce.at_steps(table, plain, [4])
    # Tables read at other checkpoints are not pooled with final ones.
    with pytest.raises(ValueError, match="different checkpoints \\(--at_steps\\): a.json: \\[2\\], b.json: None"):
        reproduce.merge_runs(table, [at2, _ring_run(5, [{"2": _eval(8, 0.1)}])], ["a.json", "b.json"])


def test_merge_pools_runs_of_different_lengths_only_when_read_at_a_step_they_all_evaluated():
    table = paper_tables.get_table("mixture_ring")
    short = _ring_run(0, [{"2": _eval(8, 0.0, 0.0), "4": _eval(8, 0.2, 0.1)}], precise=True)
    long = _ring_run(1, [{"2": _eval(6, 0.4, 0.3), "4": _eval(7, 0.3, 0.2), "6": _eval(5, 0.9, 0.8)}],
                     precise=True) | {"steps": 6}
    with pytest.raises(ValueError, match="different generator steps: short.json: 4, long.json: 6; to compare them "
                                         "at a step all of them evaluated, read them there with --at_steps STEP"):
        reproduce.merge_runs(table, [short, long], ["short.json", "long.json"])
    merged = reproduce.merge_runs(table, [long, short], ["long.json", "short.json"], read_at=[4])
    assert merged["steps"] == [4, 6] and merged["seed_list"] == [0, 1]
    at4 = reproduce.at_steps(table, merged, [4])
    assert [r["reverse_kl"] for r in at4["results"]["PacGAN2"]] == [0.2, 0.3]
    assert [r["reverse_kl"] for r in at4["precise_bn"]["PacGAN2"]] == [0.1, 0.2]
    text = reproduce.markdown(table, at4)
    assert "× 4 or 6 (runs of several lengths) generator steps" in text
    assert "Each seed's value is its evaluation at step 4 (`--at_steps`)" in text
    # A step the shorter run never reached is refused by name; equal lengths still print one step count.
    with pytest.raises(ValueError, match="seed 0 of PacGAN2 has no evaluation at step\\(s\\) 6; its curve has 2, 4"):
        reproduce.at_steps(table, reproduce.merge_runs(table, [short, long], ["s", "l"], read_at=[6]), [6])
    same = reproduce.merge_runs(table, [short, _ring_run(1, [{"4": _eval(8, 0.2)}])], ["a", "b"], read_at=[4])
    assert same["steps"] == 4 and "× 4 generator steps" in reproduce.markdown(table, same)
    # A pooled file of several lengths pools again.
    again = reproduce.merge_runs(table, [merged, _ring_run(2, [{"4": _eval(8, 0.1)}])], ["m", "c"], read_at=[4])
    assert again["steps"] == [4, 6] and again["seed_list"] == [0, 1, 2]
    # A run of its config's default length (--steps not given) is one more length, listed last.
    default = reproduce.merge_runs(table, [_ring_run(3, [{"4": _eval(8, 0.1)}]) | {"steps": None}, merged], ["d", "m"],
                                   read_at=[4])
    assert default["steps"] == [4, 6, None] and "× 4 or 6 or config default (runs of several lengths)" in \
        reproduce.markdown(table, default)


def test_at_steps_of_a_recorded_run_at_its_last_evaluation_is_its_final_result(tmp_path):
    """A recorded 400k ring run: its curve's last evaluation is the result the table reports, and the command
    reads it at any recorded step or refuses a step it lacks, naming the recorded ones."""
    path = os.path.join(ROOT, "results", "mixture_ring", "pacgan2_simultaneous_pacganbn_seed3_400k.json")
    with open(path) as f:
        run = json.load(f)
    table = paper_tables.get_table("mixture_ring")
    last = reproduce.at_steps(table, run, [400000])
    assert last["results"] == run["results"] and last["precise_bn"] == run["precise_bn"]
    assert reproduce.at_steps(table, run, [80000])["results"]["PacGAN2"][0]["modes"] == 7.0  # the lost mode
    cmd = [sys.executable, "-m", "gan_jax.reproduce", "mixture_ring", "--workdir", str(tmp_path), "--merge", path]
    p = subprocess.run(cmd + ["--at_steps", "380000,400000"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "mean of its evaluations at steps 380000, 400000" in p.stdout and "| PacGAN2 | 6 | 7.9 ± 0.1 |" in p.stdout
    assert json.loads((tmp_path / "mixture_ring.json").read_text())["at_steps"] == [380000, 400000]
    p = subprocess.run(cmd + ["--at_steps", "20k"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert p.returncode != 0 and "--at_steps takes step counts such as 400000, or lastN such as last5, got ['20k']" in p.stderr
    p = subprocess.run(cmd + ["--at_steps", "last5"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    saved = json.loads((tmp_path / "mixture_ring.json").read_text())
    assert saved["at_steps"] == "last5" and "the mean of its last 5 evaluations" in p.stdout
    assert saved["results"] == reproduce.at_steps(table, run, [320000, 340000, 360000, 380000, 400000])["results"]
    p = subprocess.run(cmd + ["--at_steps", "30000"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert p.returncode != 0
    assert "seed 3 of PacGAN2 has no evaluation at step(s) 30000; its curve has 20000, 40000" in p.stderr


def test_a_table_reads_the_score_of_the_chosen_feature_network():
    table = paper_tables.get_table("fid_mnist")
    config = reproduce.load_config(table.rows[0].config, reproduce.ROOT)
    assert reproduce._eval_keys(table, config) == {"fid": "fid", "classifier_score": "classifier_score"}
    config.eval.features = "inception"
    assert reproduce._eval_keys(table, config) == {"fid": "fid", "classifier_score": "inception_score"}
    mixture = paper_tables.get_table("mixture_ring")
    assert reproduce._eval_keys(mixture, config) == {m: m for m in mixture.metrics}
