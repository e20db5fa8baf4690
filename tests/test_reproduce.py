"""The paper-table registry and the reproduce command."""
import os
import subprocess
import sys

import pytest

from gan_jax import paper_tables, reproduce
from tests.helpers import subprocess_xla_flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_registry_configs_exist_for_tables_produced_here():
    for table in paper_tables.TABLES.values():
        assert set(table.floor) == set(table.metrics)
        for row in table.rows:
            assert set(row.paper) <= set(table.metrics)
            if not table.not_here:
                assert os.path.exists(os.path.join(ROOT, row.config.split(":")[0])), row.config
                assert reproduce.load_config(row.config, ROOT).paper


def test_stacked_mnist_metz_rows_follow_pacgan_table_3():
    table = paper_tables.get_table("stacked_mnist_metz")
    assert table.classifier == "experiments/classifier_mnist.py" and not table.not_here
    for row in table.rows:
        config = reproduce.load_config(row.config, ROOT)
        pack = config.model.pack
        assert row.method.startswith(f"PacDCGAN{pack}" if pack > 1 else "DCGAN")
        assert config.batch_size == 128 * pack and config.model.critic["channels"] == 3 * pack
        assert config.model.critic["widths"] == ((2, 4, 8) if "D=0.25G" in row.method else (4, 8, 16))
        assert (config.eval.num_samples, config.steps, config.model.latent_dim) == (25_600, 500_000, 256)
    assert table.row("PacDCGAN2 D=0.25G").paper == {"modes": (484.5, 32.99), "kl": (2.61, 0.22)}
    with pytest.raises(ValueError, match="unknown variant 'dcgan_third'; allowed: \\['dcgan', 'dcgan_quarter'"):
        reproduce.load_config("experiments/stacked_mnist_metz.py:dcgan_third", ROOT)


def test_markdown_puts_mean_and_std_beside_the_paper():
    table = paper_tables.get_table("mixture_ring")
    run = {"seeds": 2, "steps": 10, "results": {
        "GAN": [{"modes": 6.0, "high_quality": 0.9, "reverse_kl": 0.5},
                {"modes": 8.0, "high_quality": 0.8, "reverse_kl": float("inf")}]}}
    text = reproduce.markdown(table, run)
    assert "| GAN | 7 ± 1.4 | 6.3 ± 0.5 | 85 ± 7.1 % | 98.2 ± 0.2 % | ∞ | 0.45 ± 0.09 |" in text
    assert "PacGAN2" not in text  # only the methods that were run
    assert "| perfect sampler (floor) | 8 |  | 98.9 % |  | 0.0014 |  |" in text
    assert "Lin et al. 2018 (PacGAN), Table 1, 2D-ring" in text
    assert [reproduce._fmt("modes", v) for v in (1000.0, 295.0, 0.0196)] == ["1000", "295", "0.0196"]


def test_unknown_table_and_tables_not_produced_here_say_why():
    with pytest.raises(ValueError, match="unknown table 'cifar'; allowed: \\["):
        paper_tables.get_table("cifar")
    with pytest.raises(ValueError, match="not produced here: needs a GPU"):
        reproduce.run_table(paper_tables.get_table("stacked_mnist"), "/tmp/unused", seeds=1)


def test_reproduce_command_end_to_end_at_a_tiny_budget(tmp_path):
    env = dict(os.environ, XLA_FLAGS=subprocess_xla_flags(1))
    cmd = [sys.executable, "-m", "gan_jax.reproduce", "mixture_grid", "--workdir", str(tmp_path), "--seeds", "1",
           "--steps", "5", "--methods", "GAN,PacGAN2"]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "| GAN |" in p.stdout and "| PacGAN2 |" in p.stdout and "17.3 ± 0.8" in p.stdout
    assert (tmp_path / "mixture_grid.md").read_text().startswith("**Lin et al. 2018 (PacGAN), Table 1, 2D-grid**")
    # A second call resumes the finished runs (no new training) and prints the same table.
    p2 = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    table = lambda out: out[out.index("**Lin"):out.index("Machine:")]  # noqa: E731
    assert p2.returncode == 0 and table(p2.stdout) == table(p.stdout)
    assert "new run" not in p2.stdout


def test_fid_tables_train_their_classifier_once_and_run_every_method_at_one_budget(tmp_path, monkeypatch):
    from gan_jax import experiment
    from gan_jax.metrics import classifier
    trained, runs = [], []

    def fake_classifier(config, workdir):
        trained.append((config.dataset, workdir))
        os.makedirs(workdir)
        open(os.path.join(workdir, classifier.METADATA_FILE), "w").write('{"test_accuracy": 0.9}')

    def fake_run(config, workdir):
        runs.append((config, workdir))
        return {"fid": float(len(runs)), "classifier_score": 5.0}

    def fake_floor(config):
        floors.append(config.eval.classifier_dir)
        return {"fid": 0.5, "classifier_score": 8.5}

    floors = []
    monkeypatch.setattr(classifier, "train_and_evaluate", fake_classifier)
    monkeypatch.setattr(experiment, "train_and_evaluate", fake_run)
    monkeypatch.setattr(experiment, "real_data_floor", fake_floor)
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
    from gan_jax import experiment
    runs = []

    def fake_run(config, workdir):
        runs.append((config.seed, os.path.relpath(workdir, tmp_path)))
        return {"modes": 8.0, "high_quality": 0.9, "reverse_kl": 0.1}

    monkeypatch.setattr(experiment, "train_and_evaluate", fake_run)
    table = paper_tables.get_table("mixture_ring")
    run = reproduce.run_table(table, str(tmp_path), seeds=2, steps=3, methods=["GAN"], first_seed=1)
    assert runs == [(1, "mixture_ring/GAN/seed_1"), (2, "mixture_ring/GAN/seed_2")]
    assert "Ours: 2 seed(s) (seeds 1–2) × 3 generator steps" in reproduce.markdown(table, run)
    assert "Ours: 1 seed(s) (seed 2) ×" in reproduce.markdown(table, {**run, "seeds": 1, "first_seed": 2})
    with pytest.raises(ValueError, match="first_seed=-1"):
        reproduce.run_table(table, str(tmp_path), seeds=1, first_seed=-1)
