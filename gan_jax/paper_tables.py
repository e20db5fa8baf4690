"""The registry of paper tables we reproduce: published values, protocols and metric floors.

One machine-readable source for `python -m gan_jax.reproduce`, the generated result pages and the tests.
Values are read in the papers' tables, protocols in the papers and their official code: Lin et al. 2018
(PacGAN; github.com/fjxmlzn/PacGAN), Srivastava et al. 2017 (VEEGAN; github.com/akashgit/VEEGAN), Metz et
al. 2016 (Unrolled GANs; github.com/poolio/unrolled_gan), Goodfellow et al. 2014 (github.com/goodfeli/
adversarial) and Lucic et al. 2018 (github.com/google/compare_gan). A method the paper did not report has
no paper values. Spreads are as published (PacGAN: standard error over 10 or 50 trials; Goodfellow:
standard error over test examples), and each table's `Tolerance` says when our mean reproduces a published
value.
"""
from __future__ import annotations

import dataclasses
import math
import statistics
from typing import Any, Sequence


@dataclasses.dataclass(frozen=True)
class Row:
    method: str
    config: str                                   # "experiments/<file>.py:<variant>"
    paper: dict[str, tuple[float, float | None]]  # metric -> (value, spread); {} if not in the paper


@dataclasses.dataclass(frozen=True)
class Tolerance:
    """When our mean over seeds reproduces a published value: |ours - paper| <= z * sqrt(se_ours**2 + se_paper**2),
    with se_ours = std over seeds / sqrt(seeds) (0 for one seed) and se_paper the published spread, a standard
    error in every table that has a tolerance. At z = 2 this is a two-sided normal test at about 5 %."""
    z: float = 2.0

    def check(self, ours: Sequence[float], paper: tuple[float, float | None]) -> tuple[bool, float]:
        """(within tolerance, the distance |mean(ours) - paper| in combined standard errors)."""
        if len(ours) == 0 or not all(math.isfinite(v) for v in ours):
            return False, math.inf
        var = statistics.variance(ours) if len(ours) > 1 else 0.0
        se = math.sqrt(var / len(ours) + (paper[1] or 0.0) ** 2)
        diff = abs(statistics.fmean(ours) - paper[0])
        distance = diff / se if se > 0 else (0.0 if diff == 0 else math.inf)
        # On the band's edge counts as inside: 8 modes against 7.8 ± 0.1 is 2.0000000000000018 SE in floats.
        return distance <= self.z or math.isclose(distance, self.z, rel_tol=1e-9), distance


@dataclasses.dataclass(frozen=True)
class Table:
    name: str
    source: str
    protocol: str
    metrics: tuple[str, ...]
    rows: tuple[Row, ...]
    floor: dict[str, float]          # what a perfect sampler scores under this protocol
    paper_steps: int | None          # generator updates in the paper's runs
    paper_seeds: int
    pending: str = ""                # why results/<name>/ holds no runs yet, shown on its page ("" once it does)
    budget_note: str = ""            # the budget we run this table at, where it differs from the paper's
    overrides: dict[str, Any] = dataclasses.field(default_factory=dict)  # flattened config keys set in every run
    classifier: str = ""             # classifier config whose features the runs are evaluated with ("" = none)
    tolerance: Tolerance | None = Tolerance()  # None: the paper's values are on another scale (ranking only)

    def row(self, method: str) -> Row:
        for r in self.rows:
            if r.method == method:
                return r
        raise ValueError(f"table {self.name!r} has no method {method!r}; methods: {[r.method for r in self.rows]}")


def _mixture_table(dataset: str, paper: dict[str, tuple[tuple[float, float], ...]], floor: dict[str, float]) -> Table:
    methods = (("GAN", "gan"), ("PacGAN2", "pacgan2"), ("PacGAN3", "pacgan3"), ("PacGAN4", "pacgan4"),
               ("WGAN-GP", "wgan_gp"))
    rows = tuple(Row(m, f"experiments/mixture_{dataset}.py:{v}",
                     dict(zip(("modes", "high_quality", "reverse_kl"), paper[m])) if m in paper else {})
                 for m, v in methods)
    return Table(
        name=f"mixture_{dataset}",
        source=f"Lin et al. 2018 (PacGAN), Table 1, 2D-{dataset}",
        protocol=("2,500 samples per run; high quality = per-axis Mahalanobis distance < 3 to the nearest mode; "
                  "modes = modes with at least one high-quality sample; reverse KL = KL(high-quality mode "
                  "histogram || uniform). PacGAN nets (G 4x400 BN-ReLU, D 3x maxout 200x5), Adam 1e-4 beta1 "
                  "0.8, batch 100. WGAN-GP is not in the paper (same nets, lambda 0.1, n_critic 5)."),
        metrics=("modes", "high_quality", "reverse_kl"), rows=rows, floor=floor, paper_steps=400_000,
        paper_seeds=10)


def _fid_table(dataset: str, lucic: dict[str, tuple[float, float]], floor: dict[str, float]) -> Table:
    methods = (("NS-GAN", "dcgan"), ("WGAN", "wgan"), ("WGAN-GP", "wgan_gp"), ("LSGAN", "lsgan"),
               ("hinge-SN", "hinge_sn"), ("RaSGAN", "rasgan"))
    rows = tuple(Row(m, f"experiments/{f}_mnist.py:{dataset}", {"fid": lucic[m]} if m in lucic else {})
                 for m, f in methods)
    return Table(
        name=f"fid_{dataset}",
        source=(f"our own table: classifier FID on {dataset}, one equal budget; paper column: Lucic et al. 2018, "
                "Table 2 (Inception FID, best of a large search, InfoGAN nets, 20 epochs): compare the ranking only"),
        protocol=("10,000 samples vs the 10,000 test images, features of our LeNet classifier (its dense hidden "
                  "layer; trained by the table into <workdir>/<table>/classifier); classifier_score = exp E KL"
                  "(p(y|x) || p(y)) over the samples (IS analogue, at most 10). Every run: its config's nets and "
                  "optimisers, batch 64, the same number of generator steps. Floor: the first 10,000 training "
                  "images scored as the samples, with the table's own classifier (measured when the table "
                  "runs; the registry keeps the values of the first classifiers trained, 99.16 % MNIST and "
                  "91.48 % Fashion-MNIST test accuracy). Compare FIDs only under one classifier: classifiers "
                  "retrained with other seeds move the FIDs as much as a new training seed does, while keeping "
                  "the methods' ranking (the classifier tables of docs/results/fid_*.md)."),
        metrics=("fid", "classifier_score"), rows=rows, floor=floor, paper_steps=None, paper_seeds=1,
        overrides={"batch_size": 64, "eval.num_samples": 10_000},
        classifier=f"experiments/classifier_{dataset}.py", tolerance=None)


def _stacked_metz_table(paper: dict[tuple[str, str], tuple[tuple[float, float], ...]]) -> Table:
    sizes = {"quarter": "0.25", "half": "0.5"}  # PacGAN's directory names; method names are path parts
    rows = tuple(Row(f"{m} D={sizes[size]}G", f"experiments/stacked_mnist_metz.py:{m.lower()}_{size}",
                     dict(zip(("modes", "kl"), values)))
                 for (m, size), values in paper.items())
    return Table(
        name="stacked_mnist_metz",
        source=("Lin et al. 2018 (PacGAN), Table 3 (Metz et al. 2016 setting; its DCGAN and PacDCGAN rows, PacGAN's "
                "implementation; the Unrolled GAN rows are not implemented here)"),
        protocol=("3 uniformly drawn MNIST-train digits per image in [-1, 1]; Metz et al.'s small nets (G 256-d z -> "
                  "4x4x64 -> 7x7x32 -> 14x14x16 -> 28x28x8 -> 3; D 3x3 stride-2 convolutions 2-4-8 (1/4) or 4-8-16 "
                  "(1/2), BN, LeakyReLU 0.3); non-saturating loss, Adam D 2e-4 / G 1e-4, betas (0.5, 0.99), 128 "
                  "packed examples per step; 25,600 samples, each channel read by our MNIST classifier; modes = "
                  "distinct digit triples (of 1000), KL(generated triples || uniform). Not in the paper: "
                  "confident = samples whose 3 digits all get class probability >= 0.9 (the floor row's 97.2 % is "
                  "real data: 25,600 images of this setting, which score 1000 modes and KL 0.0257). Paper: mean "
                  "+- standard error over 50 trials."),
        metrics=("modes", "kl", "confident"), rows=rows, floor={"modes": 1000, "kl": 0.0196, "confident": 0.972},
        paper_steps=500_000,
        paper_seeds=50, classifier="experiments/classifier_mnist.py")


TABLES: dict[str, Table] = {t.name: t for t in (
    _mixture_table("ring", {
        "GAN": ((6.3, 0.5), (0.982, 0.002), (0.45, 0.09)),
        "PacGAN2": ((7.9, 0.1), (0.956, 0.020), (0.07, 0.03)),
        "PacGAN3": ((7.8, 0.1), (0.977, 0.003), (0.10, 0.02)),
        "PacGAN4": ((7.8, 0.1), (0.959, 0.014), (0.07, 0.02)),
    }, floor={"modes": 8, "high_quality": 0.98889, "reverse_kl": 0.0014}),
    _mixture_table("grid", {
        "GAN": ((17.3, 0.8), (0.948, 0.007), (0.70, 0.07)),
        "PacGAN2": ((23.8, 0.7), (0.913, 0.008), (0.13, 0.04)),
        "PacGAN3": ((24.6, 0.4), (0.942, 0.004), (0.06, 0.02)),
        "PacGAN4": ((24.8, 0.2), (0.936, 0.006), (0.04, 0.01)),
    }, floor={"modes": 25, "high_quality": 0.98895, "reverse_kl": 0.0048}),
    Table(
        name="stacked_mnist",
        source="Lin et al. 2018 (PacGAN), Table 2 (VEEGAN setting); Srivastava et al. 2017 (VEEGAN), Table 2",
        protocol=("128,000 stacked images from MNIST train+test; 26,000 samples classified channel by channel "
                  "by an MNIST CNN; modes = distinct digit triples (of 1000); KL(generated triples || uniform)."),
        metrics=("modes", "kl"),
        rows=(Row("DCGAN", "experiments/stacked_mnist.py:dcgan", {"modes": (78.9, 6.46), "kl": (4.50, 0.127)}),
              Row("PacDCGAN2", "experiments/stacked_mnist.py:pacdcgan2", {"modes": (1000.0, 0.0), "kl": (0.06, 0.003)}),
              Row("PacDCGAN3", "experiments/stacked_mnist.py:pacdcgan3", {"modes": (1000.0, 0.0), "kl": (0.06, 0.003)}),
              Row("PacDCGAN4", "experiments/stacked_mnist.py:pacdcgan4", {"modes": (1000.0, 0.0), "kl": (0.07, 0.005)})),
        floor={"modes": 1000, "kl": 0.0193}, paper_steps=100_000, paper_seeds=10,
        classifier="experiments/classifier_mnist.py",
        budget_note=("2,000 steps (2 % of the paper's 100k) × 1 seed: a step takes seconds on one core of a 2-core "
                     "CPU, and each run had to finish on the machine it started on")),
    _stacked_metz_table({
        ("DCGAN", "quarter"): ((78.5, 17.56), (5.21, 0.19)), ("PacDCGAN2", "quarter"): ((484.5, 32.99), (2.61, 0.22)),
        ("PacDCGAN3", "quarter"): ((601.3, 32.18), (2.00, 0.17)), ("PacDCGAN4", "quarter"): ((667.4, 29.00), (1.81, 0.15)),
        ("DCGAN", "half"): ((487.7, 34.59), (2.24, 0.15)), ("PacDCGAN2", "half"): ((840.7, 15.92), (1.00, 0.05)),
        ("PacDCGAN3", "half"): ((866.6, 12.10), (0.90, 0.04)), ("PacDCGAN4", "half"): ((820.2, 25.50), (1.15, 0.14)),
    }),
    Table(
        name="parzen_mnist",
        source="Goodfellow et al. 2014, Table 1 (MNIST column)",
        protocol=("Gaussian Parzen window on 10,000 generated samples, sigma from logspace(-1, 0, 10) by the mean "
                  "log-likelihood of validation images train[50000:51000], reported on the 10,000 test images "
                  "(pixels in [0, 1]) +- standard error; G trained on train[0:50000]. Real training images as "
                  "samples score 241-243, so nn_distance_ratio (median nearest-training-image distance of 1,000 "
                  "samples over that of 1,000 test images; ~1 without copying, 0 for a memorising G) goes with it."),
        metrics=("parzen_log_likelihood", "nn_distance_ratio"),
        rows=(Row("Adversarial nets", "experiments/goodfellow2014_mnist.py", {"parzen_log_likelihood": (225.0, 2.0)}),),
        floor={"parzen_log_likelihood": 242.0, "nn_distance_ratio": 1.0}, paper_steps=None, paper_seeds=1),
    _fid_table("mnist", {"NS-GAN": (6.8, 0.5), "WGAN": (6.7, 0.4), "WGAN-GP": (20.3, 5.0), "LSGAN": (7.8, 0.6)},
               floor={"fid": 2.30, "classifier_score": 9.83}),
    _fid_table("fashion_mnist", {"NS-GAN": (26.5, 1.6), "WGAN": (21.5, 1.6), "WGAN-GP": (24.5, 2.1),
                                 "LSGAN": (30.7, 2.2)},
               floor={"fid": 0.42, "classifier_score": 8.44}),
)}


def get_table(name: str) -> Table:
    if name not in TABLES:
        raise ValueError(f"unknown table {name!r}; allowed: {sorted(TABLES)}")
    return TABLES[name]
