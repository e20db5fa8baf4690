"""Reproduce a paper table: train (or load) its runs and print our numbers beside the paper's.

    python -m gan_jax.reproduce mixture_ring --workdir DIR [--seeds 3] [--first_seed 0] [--steps N] [--methods GAN,PacGAN2] [--eval_every N] [--set loss.simultaneous=True]
    python -m gan_jax.reproduce fid_mnist --workdir OUT --merge a/fid_mnist.json,b/fid_mnist.json
    python -m gan_jax.reproduce mixture_ring --workdir OUT --merge a/mixture_ring.json,... --at_steps 320000,360000,400000
    python -m gan_jax.reproduce mixture_ring --workdir OUT --merge a/mixture_ring.json,... --at_steps last5
    python -m gan_jax.reproduce mixture_ring --workdir OUT --merge runs_80k.json,runs_400k.json --at_steps 80000

Each (method, seed) trains in DIR/<table>/<method>/seed_<s> through the same `train_and_evaluate`
as launch.py, so an interrupted table resumes, a finished run is only evaluated again, and a run
directory of another config is refused. The Markdown table (also
written to DIR/<table>.md, with the raw numbers in DIR/<table>.json) gives mean ± std over seeds and
Welch's t-test between methods adjacent in the first metric. `--eval_every N` also evaluates every run
every N steps: the JSON then holds each seed's curve and the Markdown each method's mean curve. `--set KEY=VALUE`
(repeatable) changes a flattened config key in every run, to test a protocol variant; the JSON records it and
`--merge` pools only runs with the same settings. `--merge`
pools the JSON files of seeds run apart (other workdirs, machines or days) into one table without training
anything, and their curves with them. `--at_steps S[,S...]` reads each seed at those evaluations of its curve
(their mean) instead of its last: the table at another checkpoint, where `--merge` also pools runs of
different lengths that all evaluated those steps (80k-step runs beside 400k-step ones, read at 80000);
`--at_steps last5` averages each seed's last five evaluations. The JSON's `wall_s` is this command's wall time; `train_s` sums the runs' own training clocks
over their resumed legs (absent where a run was resumed from logs older than that clock). The JSON also records its
provenance: date, commit (`git rev-parse HEAD`; null outside a git checkout), machine (CPU, core count, JAX device
kind and count), the generator steps and seeds, and the command line.

    python -m gan_jax.reproduce --write-docs

regenerates the result pages from the run files committed in results/<table>/ (each folder's headline.json names the
runs pooled for the headline rows and for the ablation tables, and the table's known protocol differences):
docs/results/<table>.md, the summary RESULTS.md and README.md's results table between its `<!-- results:begin -->`
and `<!-- results:end -->` lines. It trains nothing; tests/test_results_docs.py keeps the committed pages equal to it.
"""
from __future__ import annotations

import ast
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence

import numpy as np
from absl import app, flags, logging
from scipy import stats

from gan_jax import host_memory, paper_tables, writers
from gan_jax.config_files import load_config
from gan_jax.metrics import features

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the checkout: configs, results/, docs
PERCENT = ("high_quality", "confident")
FLOOR_FILE = "real_data_floor.json"
PRECISE_BN_KEY = "precise_bn"  # a run's per-method results evaluated with recomputed batch statistics


def parse_settings(items: list[str] | None) -> dict:
    """["loss.simultaneous=True", "loss.name=hinge"] -> {"loss.simultaneous": True, "loss.name": "hinge"}; a
    value that is no Python literal stays a string. Keys the command sets itself are refused (use its flags)."""
    own = {"seed": "--first_seed/--seeds", "steps": "--steps", "eval_every": "--eval_every"}
    settings = {}
    for item in items or []:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set takes KEY=VALUE (a flattened config key, e.g. loss.simultaneous=True), got {item!r}")
        if key in own:
            raise ValueError(f"--set {key}: the command sets {key} itself; use {own[key]}")
        try:
            settings[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            settings[key] = text
    return settings


def _set_existing(config, key: str, value, where: str) -> None:
    """config[key] = value for a flattened key the config already has (ConfigDict would add a new one: a typo
    would then change nothing)."""
    parent, _, leaf = key.rpartition(".")
    node = config
    for part in parent.split(".") if parent else []:
        node = node.get(part) if hasattr(node, "get") else None
    if not hasattr(node, "keys") or leaf not in node:
        siblings = sorted(node.keys()) if hasattr(node, "keys") else []
        raise ValueError(f"--set {key}: {where} has no key {key!r}"
                         + (f"; keys under {parent or 'the top level'}: {siblings}" if siblings else ""))
    try:
        config.update_from_flattened_dict({key: value})
    except TypeError as e:
        raise ValueError(f"--set {key}={value!r}: {e}") from e


def run_table(table: paper_tables.Table, workdir: str, *, seeds: int, steps: int | None = None,
              methods: list[str] | None = None, root: str | None = None, first_seed: int = 0,
              eval_every: int = 0, settings: dict | None = None) -> dict:
    """Train or load every (method, seed) run, seeds first_seed .. first_seed + seeds - 1; returns
    {method: [eval dict per seed]} plus run facts. eval_every > 0 also evaluates each run every that many
    steps (config.eval_every: its metrics.jsonl then holds the metrics against budget). `settings`
    ({flattened key: value}, after the table's own overrides) changes every run's config; it is recorded."""
    from gan_jax import loop
    from gan_jax.tasks.gan import PRECISE_BN
    if seeds < 1 or first_seed < 0:
        raise ValueError(f"need seeds >= 1 and first_seed >= 0, got seeds={seeds}, first_seed={first_seed}")
    root = root or ROOT
    rows = [table.row(m) for m in methods] if methods else list(table.rows)
    results, t0 = {}, time.time()
    classifier_dir = accuracy = None

    def run_config(row: paper_tables.Row, seed: int):
        config = load_config(row.config, root)
        config.update_from_flattened_dict(table.overrides)
        for key, value in (settings or {}).items():
            _set_existing(config, key, value, row.config)
        if classifier_dir:
            config.eval.classifier_dir = classifier_dir
        config.seed = seed
        config.eval_every = eval_every
        return config

    feature_net = features.chosen_features(run_config(rows[0], first_seed))
    # Inception features replace the classifier's FID and score; Stacked MNIST still reads digits with it.
    if feature_net == "classifier" or "fid" not in table.metrics:
        classifier_dir, accuracy = _classifier(table, workdir, root)
    keys = _eval_keys(table, run_config(rows[0], first_seed))

    curves, precise, train_s, lengths = {}, {}, [], []
    for row in rows:
        results[row.method], curves[row.method] = [], []
        for seed in range(first_seed, first_seed + seeds):
            config = run_config(row, seed)
            if steps is not None:
                config.steps = steps
            lengths.append(config.steps)
            run_dir = os.path.join(workdir, table.name, row.method, f"seed_{seed}")
            ev = loop.train_and_evaluate(config, run_dir)
            results[row.method].append({m: float(ev[keys[m]]) for m in table.metrics})
            if all(keys[m] + PRECISE_BN in ev for m in table.metrics):
                precise.setdefault(row.method, []).append({m: float(ev[keys[m] + PRECISE_BN])
                                                           for m in table.metrics})
            if eval_every:
                renamed = {k: m for m, k in keys.items() if k != m}
                curves[row.method].append({step: {renamed.get(k, k): v for k, v in values.items()}
                                           for step, values in _curve(run_dir, tuple(_numbers(ev))).items()})
            train_s.append(_train_seconds(run_dir))
    run = {"table": table.name, "results": results, "steps": _pooled_steps(lengths), "seeds": seeds,
           "first_seed": first_seed, "wall_s": time.time() - t0}
    if None not in train_s:
        run["train_s"] = sum(train_s)
    if eval_every:
        run["curves"] = curves
    if precise and set(precise) == set(results):
        run[PRECISE_BN_KEY] = precise
    if settings:
        run["settings"] = dict(settings)
    if classifier_dir:
        run["classifier_test_accuracy"] = accuracy
    if feature_net != "classifier":
        run["features"] = feature_net
    if "fid" in table.metrics:
        floor_dir = classifier_dir or os.path.join(workdir, table.name, feature_net)
        floor = _real_data_floor(run_config(table.rows[0], 0), floor_dir)
        run["floor"] = {m: floor[k] for m, k in keys.items() if k in floor}
    return run


def _eval_keys(table: paper_tables.Table, config) -> dict[str, str]:
    """{table metric: the eval.json key holding it}: a table's "classifier_score" is the Inception Score of the
    chosen feature network's class probabilities (`inception_score` for Inception features)."""
    return {m: features.score_name(config) if m == "classifier_score" else m for m in table.metrics}


def merge_runs(table: paper_tables.Table, runs: list[dict], names: list[str],
               methods: list[str] | None = None, read_at: Sequence[int] = ()) -> dict:
    """Pool runs of one table made apart (other workdirs, machines or days; `names` label them in errors)
    into one run over all their seeds, of `methods` only if given (one run: itself, to print it again).
    Each method pools the seeds of the files that have it (a GAN file and a PacGAN2 file make a table of
    both; a method's seed may be in one file only). They must share the budget and, for tables read by a
    classifier, the classifier itself, identified by its test accuracy and measured floor (equal to the
    last bit for one classifier): FIDs read by two classifiers of one config differ as much as those of two
    training seeds (docs/results/fid_mnist.md).

    `read_at`: the step counts the pooled table will be read at (`at_steps`). Runs of different lengths then
    pool, since a run's state at a step does not depend on its length (`steps` is one of the config's
    `RESUMABLE_FIELDS`); the pooled `steps` lists their lengths."""
    if not runs or len(runs) != len(names):
        raise ValueError(f"merge needs one or more runs with one name each, got {len(runs)} and {len(names)}")
    if methods:
        for run, name in zip(runs, names):
            missing = sorted(set(methods) - set(run["results"]))
            if missing:
                raise ValueError(f"{name} has no runs of {missing}; it has {sorted(run['results'])}")
        runs = [{**run, "results": {m: run["results"][m] for m in methods}} for run in runs]
    for run, name in zip(runs, names):
        if run.get("table", table.name) != table.name:
            raise ValueError(f"{name} is a run of table {run['table']!r}, not {table.name!r}")
        for method, evals in run["results"].items():
            table.row(method)  # refuses a method the table does not have
            if any(set(e) != set(table.metrics) for e in evals):
                raise ValueError(f"{name}: {method} has metrics {sorted(evals[0])}, table {table.name!r} "
                                 f"has {sorted(table.metrics)}")
    budgets = ((("steps", "generator steps"),) if not read_at else ())
    for key, what in (*budgets, ("settings", "config settings (--set)"),
                      ("at_steps", "checkpoints (--at_steps)"),
                      ("features", "feature networks (eval.features)"),
                      ("classifier_test_accuracy", "feature classifiers (test accuracy)"),
                      ("floor", "feature classifiers (floor)")):
        values = [run.get(key) for run in runs]
        if any(v != values[0] for v in values):
            hint = ("; score one set of run directories with the other's classifier instead (copy its classifier "
                    "directory into the workdir and rerun the table: finished runs are only evaluated)"
                    if "classifier" in what else
                    "; to compare them at a step all of them evaluated, read them there with --at_steps STEP"
                    if key == "steps" else "")
            raise ValueError(f"cannot pool runs with different {what}: "
                             + ", ".join(f"{n}: {v}" for n, v in zip(names, values)) + hint)
    owner: dict[tuple[str, int], str] = {}
    pooled: dict[str, list[tuple[int, dict, dict | None]]] = {}
    for run, name in zip(runs, names):
        for method, evals in run["results"].items():
            curves = run.get("curves", {}).get(method) or [None] * len(evals)
            for seed, result, curve in zip(_seeds(run, method), evals, curves, strict=True):
                if (method, seed) in owner:
                    raise ValueError(f"seed {seed} of {method} is in both {owner[method, seed]} and {name}")
                owner[method, seed] = name
                pooled.setdefault(method, []).append((seed, result, curve))
    for method in pooled:
        pooled[method].sort(key=lambda p: p[0])
    seed_lists = {m: [seed for seed, _, _ in pooled[m]] for m in sorted(pooled)}
    merged = {"table": table.name, "results": {m: [r for _, r, _ in pooled[m]] for m in seed_lists},
              "steps": _pooled_steps([run["steps"] for run in runs]), "wall_s": sum(run["wall_s"] for run in runs),
              "merged_from": list(names)}
    if all("train_s" in run for run in runs):
        merged["train_s"] = sum(run["train_s"] for run in runs)
    curves = {m: [c for _, _, c in pooled[m]] for m in seed_lists if all(c is not None for _, _, c in pooled[m])}
    if curves:  # a method's curves pool only where every one of its seeds has one
        merged["curves"] = curves
    first = next(iter(seed_lists.values()))
    if all(seeds == first for seeds in seed_lists.values()):
        merged.update(seeds=len(first), first_seed=first[0], seed_list=first)
    else:
        merged["method_seeds"] = seed_lists
    for key in ("settings", "at_steps", "features", "classifier_test_accuracy", "floor"):
        if key in runs[0]:
            merged[key] = runs[0][key]
    if all(PRECISE_BN_KEY in run for run in runs):  # pooled only where every file has them
        merged[PRECISE_BN_KEY] = merge_runs(table, [{k: v for k, v in run.items() if k != PRECISE_BN_KEY}
                                                    | {"results": run[PRECISE_BN_KEY]} for run in runs],
                                            names, methods, read_at)["results"]
    return merged


def _pooled_steps(steps: list[int | None | list[int | None]]) -> int | None | list[int | None]:
    """The pooled runs' length: one step count, or the sorted distinct lengths of runs of several (None: a run of
    its config's default length, last)."""
    distinct = sorted({s for entry in steps for s in (entry if isinstance(entry, list) else [entry])},
                      key=lambda s: (s is None, s or 0))
    return distinct[0] if len(distinct) == 1 else distinct


def at_steps(table: paper_tables.Table, run: dict, steps: list[int] = (), last: int = 0) -> dict:
    """The run with each seed's result replaced by the mean of its curve's evaluations at `steps` (one step: the
    table as it stood then; several: an average that damps one checkpoint's noise), or at its `last` evaluations,
    instead of its final evaluation. Recomputed-BN results are replaced the same way where every curve holds them,
    else dropped."""
    from gan_jax.tasks.gan import PRECISE_BN
    if bool(steps) == bool(last) or any(s < 1 for s in steps) or last < 0:
        raise ValueError(f"--at_steps takes one or more positive step counts or lastN, got steps={list(steps)}, "
                         f"last={last}")
    curves = run.get("curves") or {}
    missing = sorted(set(run["results"]) - set(curves))
    if missing:
        raise ValueError(f"--at_steps needs each run's curve (train with --eval_every); {missing} have none")

    def keys_of(seed: int, method: str, curve: dict) -> list[str]:
        have = sorted(curve, key=int)
        if last:
            if len(have) < last:
                raise ValueError(f"seed {seed} of {method} has {len(have)} evaluations, fewer than last{last}")
            return have[-last:]
        absent = [str(s) for s in steps if str(s) not in curve]
        if absent:
            raise ValueError(f"seed {seed} of {method} has no evaluation at step(s) {', '.join(absent)}; "
                             f"its curve has {', '.join(have)}")
        return [str(s) for s in steps]

    def select(suffix: str) -> dict[str, list[dict]] | None:
        out = {}
        for method, per_seed in curves.items():
            out[method] = []
            for seed, curve in zip(_seeds(run, method), per_seed, strict=True):
                keys = keys_of(seed, method, curve)
                if any(m + suffix not in curve[k] for k in keys for m in table.metrics):
                    return None
                out[method].append({m: float(np.mean([curve[k][m + suffix] for k in keys])) for m in table.metrics})
        return out

    spec = f"last{last}" if last else list(steps)
    results = select("")
    if results is None:
        raise ValueError(f"the curves lack some of {list(table.metrics)} at --at_steps {spec}")
    selected = {k: v for k, v in run.items() if k != PRECISE_BN_KEY} | {"results": results, "at_steps": spec}
    precise = select(PRECISE_BN) if PRECISE_BN_KEY in run else None
    if precise:
        selected[PRECISE_BN_KEY] = precise
    return selected


def _seeds(run: dict, method: str) -> list[int]:
    """The seeds of `method`'s results in `run`, in their order."""
    if "method_seeds" in run:
        return list(run["method_seeds"][method])
    first = run.get("first_seed", 0)
    return list(run.get("seed_list") or range(first, first + run["seeds"]))


def welch(a, b) -> tuple[float, float, float]:
    """(mean(b) - mean(a), Welch's t, two-sided p) for two samples of at least two values each; t and p
    are NaN when neither sample varies."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"Welch's t-test needs two or more values per sample, got {len(a)} and {len(b)}")
    diff = float(b.mean() - a.mean())
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    if va == 0 and vb == 0:
        return diff, float("nan"), float("nan")
    # Written out rather than scipy's ttest_ind, which warns of precision loss whenever one sample is
    # constant (e.g. 8 of 8 ring modes in both seeds), a common and exact case here.
    t = diff / np.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))  # Welch-Satterthwaite
    return diff, float(t), float(2 * stats.t.sf(abs(t), df))


def adjacent_differences(table: paper_tables.Table, run: dict) -> list[str]:
    """One line per pair of methods adjacent in the mean of the table's first metric: the difference and
    Welch's t-test over seeds (methods with fewer than two seeds or a non-finite value are left out)."""
    metric = table.metrics[0]
    values = {m: [r[metric] for r in rs] for m, rs in run["results"].items()}
    values = {m: v for m, v in values.items() if len(v) > 1 and np.all(np.isfinite(v))}
    order = sorted(values, key=lambda m: np.mean(values[m]))
    lines = []
    for a, b in zip(order, order[1:]):
        diff, t, p = welch(values[a], values[b])
        test = "neither varies over seeds" if np.isnan(t) else f"t = {t:.2f}, p = {p:.2g}"
        lines.append(f"- {a} ({_fmt(metric, float(np.mean(values[a])))}) → {b} "
                     f"({_fmt(metric, float(np.mean(values[b])))}): +{_fmt(metric, diff)}, {test}")
    return lines


def _real_data_floor(config, directory: str) -> dict[str, float]:
    """The table's floor measured with its feature network (training images as the samples), computed once and
    kept in `directory`: beside the classifier (a retrained classifier gets its own), or the table's folder of
    that feature network."""
    from gan_jax.tasks.gan import real_data_floor
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, FLOOR_FILE)
    if not os.path.exists(path):
        floor = real_data_floor(config)
        with open(path, "w") as f:
            json.dump(floor, f)
    with open(path) as f:
        return json.load(f)


def _classifier(table: paper_tables.Table, workdir: str, root: str) -> tuple[str, float | None]:
    """(directory, test accuracy) of the table's feature classifier, trained there first if it is not
    saved yet; ("", None) for tables without one."""
    if not table.classifier:
        return "", None
    from gan_jax import loop
    from gan_jax.metrics import classifier
    directory = os.path.join(workdir, table.name, "classifier")
    path = os.path.join(directory, classifier.METADATA_FILE)
    if not os.path.exists(path):
        loop.train_and_evaluate(load_config(table.classifier, root), directory)
    with open(path) as f:
        return directory, json.load(f).get("test_accuracy")


def _fmt(metric: str, value: float, spread: float | None = None) -> str:
    if not np.isfinite(value):
        return "∞" if value > 0 else "NaN"
    scale, unit = (100.0, " %") if metric in PERCENT else (1.0, "")
    v = value * scale
    text = f"{int(v)}" if v.is_integer() and abs(v) < 1e6 else f"{v:.3g}"  # 1000 modes, not 1e+03
    if spread is not None:
        s = spread * scale
        text += f" ± {s:.2g}" if abs(s) < 100 else f" ± {s:.0f}"  # 119 modes, not 1.2e+02
    return text + unit


def _seed_count(run: dict) -> str:
    """"3 seed(s) (seeds 2–4)", or per method where the methods were run with different seeds."""
    if "method_seeds" not in run:
        return f"{run['seeds']} seed(s){_seed_range(_seeds(run, next(iter(run['results']))))}"
    return ", ".join(f"{m} {len(s)} seed(s){_seed_range(s, always=True)}" for m, s in run["method_seeds"].items())


def _seed_range(seeds: list[int], always: bool = False) -> str:
    """" (seeds 2–4)"; "" for seeds 0 .. n-1 unless `always`."""
    if seeds == list(range(len(seeds))) and not always:
        return ""
    return f" (seed{'s' if len(seeds) > 1 else ''} {_seed_list(seeds)})"


def _seed_list(seeds: list[int]) -> str:
    """"2–4" for consecutive seeds, else "0, 1, 3"."""
    if len(seeds) > 1 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}–{seeds[-1]}"
    return ", ".join(map(str, seeds))


def _verdicts(table: paper_tables.Table, row: paper_tables.Row, values: np.ndarray) -> str:
    """Each published metric of the row against the table's tolerance, e.g. "modes yes (0.6), kl no (9.1)"."""
    out = []
    for j, m in enumerate(table.metrics):
        if m in row.paper:
            ok, distance = table.tolerance.check(values[:, j].tolist(), row.paper[m])
            out.append(f"{m} {'yes' if ok else 'no'} ({distance:.1f})")
    return ", ".join(out) or "—"


def _numbers(ev: dict) -> dict[str, float]:
    """The numeric entries of an evaluation (eval.json also holds the protocol and per-mode lists)."""
    return {k: v for k, v in ev.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _curve(run_dir: str, metrics: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """{step: {metric: value}} from the eval/* rows of a run's metrics.jsonl (config.eval_every and the end); a
    metric a row lacks (a run resumed under code that added it) is left out of that step."""
    rows = writers.read_rows(os.path.join(run_dir, writers.METRICS_FILE))
    return {str(r["step"]): {m: r[f"eval/{m}"] for m in metrics if f"eval/{m}" in r}
            for r in rows if f"eval/{metrics[0]}" in r}


def _train_seconds(run_dir: str) -> float | None:
    """The run's own training clock at its last metrics row, summed over resumed legs (writers.MetricWriter); None
    where the run has no metrics file or was resumed from one written before the clock existed."""
    path = os.path.join(run_dir, writers.METRICS_FILE)
    if not os.path.exists(path):
        return None
    rows = writers.read_rows(path)
    return rows[-1].get(writers.WALL_KEY) if rows else None


def _curve_lines(table: paper_tables.Table, curves: dict[str, list[dict]]) -> list[str]:
    """Each metric's mean over seeds against training steps, at the steps every seed of a method evaluated."""
    lines = ["", "Against training steps (`--eval_every`; mean over seeds):"]
    for method, per_seed in curves.items():
        steps = sorted(set.intersection(*(set(c) for c in per_seed)), key=int) if per_seed else []
        if not steps:
            continue
        lines += ["", f"| {method} | " + " | ".join(steps) + " |", "|" + "---|" * (len(steps) + 1)]
        for m in table.metrics:
            means = [_fmt(m, float(np.mean([c[s][m] for c in per_seed]))) for s in steps]
            lines.append(f"| {m} | " + " | ".join(means) + " |")
    return lines


def _header(table: paper_tables.Table, lead: Sequence[str] = ("method",)) -> list[str]:
    """The Markdown table's header and rule: `lead`, then ours and the paper's value per metric, then the verdict."""
    header = [*lead] + [f"{m} (ours)" if i % 2 == 0 else f"{m} (paper)" for m in table.metrics for i in range(2)]
    if table.tolerance:
        header.append("paper within tolerance (distance in SE)")
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]


def _cells(table: paper_tables.Table, row: paper_tables.Row, evals: list[dict]) -> list[str]:
    """One method's cells: our mean ± std over seeds and the paper's value per metric, then the verdict."""
    values = np.array([[r[m] for m in table.metrics] for r in evals])
    cells = []
    for j, m in enumerate(table.metrics):
        col = values[:, j]
        spread = float(np.std(col, ddof=1)) if len(col) > 1 and np.all(np.isfinite(col)) else None
        cells.append(_fmt(m, float(np.mean(col)), spread))
        cells.append(_fmt(m, *row.paper[m]) if m in row.paper else "—")
    if table.tolerance:
        cells.append(_verdicts(table, row, values))
    return cells


def _floor_line(table: paper_tables.Table, measured_floor: dict | None, lead: int = 1) -> str:
    """The perfect sampler's row: the floor measured with the runs' classifier, else the registry's."""
    cells = ([f"perfect sampler (floor{', this classifier' if measured_floor else ''})"] + [""] * (lead - 1)
             + [c for m in table.metrics for c in (_fmt(m, (measured_floor or table.floor)[m]), "")]
             + ([""] if table.tolerance else []))
    return "| " + " | ".join(cells) + " |"


def _rows(table: paper_tables.Table, results: dict, measured_floor: dict | None) -> list[str]:
    """The Markdown table: our mean ± std over seeds beside the paper's value, one row per method, and the floor."""
    lines = _header(table)
    for row in table.rows:
        if row.method in results:
            lines.append("| " + " | ".join([row.method, *_cells(table, row, results[row.method])]) + " |")
    return lines + [_floor_line(table, measured_floor)]


def _steps_text(steps: int | list[int | None] | None) -> str:
    """A run's length, or the lengths of pooled runs of several ("80000 or 400000"); "" for the config's default."""
    if isinstance(steps, list):
        return " or ".join(str(s or "config default") for s in steps) + " (runs of several lengths)"
    return str(steps or "")


def _at_steps_sentence(steps: list[int] | str) -> str:
    """How a run read with `--at_steps` got its values; "" for a run read at its last evaluation."""
    if not steps:
        return ""
    if isinstance(steps, str):
        which = f"the mean of its last {steps.removeprefix('last')} evaluations"
    elif len(steps) == 1:
        which = f"its evaluation at step {steps[0]}"
    else:
        which = f"the mean of its evaluations at steps {', '.join(map(str, steps))}"
    return f" Each seed's value is {which} (`--at_steps`), not its last."


def _tolerance_sentence(table: paper_tables.Table) -> str:
    """The table's tolerance as a formula, or why its paper column allows a ranking only."""
    if table.tolerance is None:
        return " The paper's values are on another scale: compare the ranking only."
    return f" Tolerance: |ours − paper| ≤ {table.tolerance.z:g}·√(SE_ours² + SE_paper²), SE_ours = std/√seeds."


def _run_facts(run: dict) -> str:
    """What else a run's numbers depend on: the checkpoint read (`--at_steps`), the batch statistics evaluated with,
    the feature classifier and the config settings changed in every run (`--set`); "" for none."""
    return (_at_steps_sentence(run.get("at_steps", ()))
            + (" Evaluated with G's batch statistics recomputed at the evaluated parameters "
               "(`eval.precise_bn_batches`), as the paper's code does." if run.get("evaluation") == PRECISE_BN_KEY
               else "")
            + (f" Feature classifier: {run['classifier_test_accuracy']:.2%} test accuracy."
               if run.get("classifier_test_accuracy") is not None else "")
            + (f" Features: {run['features']} (eval.features); classifier_score is that network's Inception Score."
               if run.get("features") else "")
            + (" Config changed in every run (`--set`): "
               + ", ".join(f"`{k}={v!r}`" for k, v in run["settings"].items()) + "."
               if run.get("settings") else ""))


def markdown(table: paper_tables.Table, run: dict, steps_default: int | None = None) -> str:
    """Our mean ± std over seeds beside the paper's value, one row per method."""
    lines = [f"**{table.source}**", "",
             f"Protocol: {table.protocol}",
             f"Ours: {_seed_count(run)} × {_steps_text(run['steps']) or steps_default or 'config default'} "
             f"generator steps "
             f"(paper: {table.paper_seeds} trials × {table.paper_steps or 'unstated'} steps); mean ± std over seeds. "
             f"Paper: mean ± its published spread." + _tolerance_sentence(table) + _run_facts(run),
             "", *_rows(table, run["results"], run.get("floor"))]
    if run.get(PRECISE_BN_KEY):
        lines += ["", "The same runs and samples with G's batch statistics recomputed at the evaluated parameters "
                      "(`eval.precise_bn_batches`) instead of its running averages (the protocol above, as the "
                      "paper's code):", "", *_rows(table, run[PRECISE_BN_KEY], run.get("floor"))]
    differences = adjacent_differences(table, run)
    if differences:
        lines += ["", f"Methods adjacent in mean {table.metrics[0]}: the difference of the means and Welch's t-test "
                      f"over seeds (two-sided p):", *differences]
    if run.get("curves"):
        lines += _curve_lines(table, run["curves"])
    if run.get("merged_from"):
        lines += ["", f"Runs from: {', '.join(run['merged_from'])}."]
    return "\n".join(lines)


# Results are data: the run files in results/<table>/ (and each folder's headline.json, which picks the runs of the
# headline and the ablations) are the only source of the result pages docs/results/<table>.md, RESULTS.md and the
# block of README.md between the markers; `--write-docs` generates them and tests/test_results_docs.py keeps them so.
RESULTS_DIR = "results"
DOCS_DIR = "docs/results"
MANIFEST = "headline.json"
MANIFEST_KEYS = ("headline", "ablations", "figures", "differences", "notes")
GROUP_KEYS = ("title", "files", "methods", "at_steps", "curve", "evaluation")
PROVENANCE_KEYS = ("commit", "date", "machine", "command", "steps")
README_BEGIN, README_END = "<!-- results:begin -->", "<!-- results:end -->"
GENERATED = "Generated by `python -m gan_jax.reproduce --write-docs` from the run files in `results/`; do not edit."


def provenance(root: str, argv: Sequence[str]) -> dict:
    """Where a run file comes from: today's date, the checkout's commit (None outside a git checkout), the machine
    (architecture, CPU model and count, JAX device kind and count) and the command line (argv without the program)."""
    import jax
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=60).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    devices = jax.devices()
    return {"date": time.strftime("%Y-%m-%d"), "commit": commit,
            "machine": {"arch": platform.machine(), "cpu": _cpu_model(), "cpu_count": os.cpu_count(),
                        "device_kind": devices[0].device_kind, "device_count": len(devices)},
            "command": shlex.join(["python", "-m", "gan_jax.reproduce", *argv])}


def _cpu_model() -> str | None:
    """The CPU's model name from /proc/cpuinfo, else the platform's processor string; None if neither says."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or None


def _read_json(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def _check_keys(entry: dict, allowed: Sequence[str], where: str) -> None:
    unknown = sorted(set(entry) - set(allowed))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; allowed: {list(allowed)}")


def load_manifest(root: str, table: paper_tables.Table) -> dict | None:
    """results/<table>/headline.json, checked: known keys, and every file it names present in the folder; None for a
    table without one, which must then say in the registry why it has no results (`pending`)."""
    folder = os.path.join(RESULTS_DIR, table.name)
    path = os.path.join(folder, MANIFEST)
    if not os.path.exists(os.path.join(root, path)):
        if not table.pending:
            raise ValueError(f"{path} is missing: add it, or give table {table.name!r} a `pending` reason in "
                             "gan_jax/paper_tables.py")
        return None
    if table.pending:
        raise ValueError(f"table {table.name!r} has {path} and a `pending` reason; clear `pending`")
    manifest = _read_json(os.path.join(root, path))
    _check_keys(manifest, MANIFEST_KEYS, path)
    if not manifest.get("headline"):
        raise ValueError(f"{path} has no headline groups")
    present = set(os.listdir(os.path.join(root, folder)))
    for group in manifest["headline"] + manifest.get("ablations", []):
        _check_keys(group, GROUP_KEYS, path)
    named = [f for g in manifest["headline"] + manifest.get("ablations", []) for f in g["files"]]
    missing = sorted(set(named + manifest.get("figures", [])) - present)
    if missing:
        raise ValueError(f"{path} names {missing}, which are not in {folder}/")
    return manifest


def pool(root: str, table: paper_tables.Table, group: dict) -> dict:
    """The run files of one manifest group pooled by `merge_runs` (of its `methods` only, if it names them), read
    at its `at_steps` (step counts, or "lastN") if it has them, and with `"evaluation": "precise_bn"` read from their
    evaluations with recomputed batch statistics instead of the running averages."""
    names = [f"{RESULTS_DIR}/{table.name}/{f}" for f in group["files"]]
    runs = [_read_json(os.path.join(root, n)) for n in names]
    spec = group.get("at_steps")
    steps, last = ([], int(spec.removeprefix("last"))) if isinstance(spec, str) else (list(spec or []), 0)
    run = merge_runs(table, runs, names, group.get("methods"), read_at=steps)
    run = at_steps(table, run, steps, last) if spec else run
    evaluation = group.get("evaluation")
    if evaluation is None:
        return run
    if evaluation != PRECISE_BN_KEY:
        raise ValueError(f"unknown evaluation {evaluation!r} in {RESULTS_DIR}/{table.name}/{MANIFEST}; allowed: "
                         f"[{PRECISE_BN_KEY!r}] (omit it for the running averages)")
    if PRECISE_BN_KEY not in run:
        raise ValueError(f"{names} lack the {PRECISE_BN_KEY} results that evaluation {evaluation!r} reads")
    # Its curves were read with the running averages: they do not describe these numbers.
    return {k: v for k, v in run.items() if k not in (PRECISE_BN_KEY, "curves")} | {
        "results": run[PRECISE_BN_KEY], "evaluation": PRECISE_BN_KEY}


def headline(root: str, table: paper_tables.Table, manifest: dict) -> list[tuple[paper_tables.Row, dict]]:
    """Each headline row, in the registry's order, with the pooled run it is read from."""
    pooled = {}
    for group in manifest["headline"]:
        run = pool(root, table, group)
        for method in run["results"]:
            if method in pooled:
                raise ValueError(f"{RESULTS_DIR}/{table.name}/{MANIFEST}: {method} is in two headline groups")
            pooled[method] = run
    return [(row, pooled[row.method]) for row in table.rows if row.method in pooled]


def _budget(run: dict, method: str) -> str:
    """"400000 × 5": a method's generator steps × seeds in a pooled run."""
    return f"{_steps_text(run['steps']) or 'config default'} × {len(run['results'][method])}"


def _paper_budget(table: paper_tables.Table) -> str:
    return f"{table.paper_steps or 'unstated'} × {table.paper_seeds}"


def _shared(runs: Sequence[dict], key: str):
    """The value of `key` that every run has alike, else None."""
    values = [run.get(key) for run in runs]
    return values[0] if all(v == values[0] for v in values) else None


def _budget_sentence(table: paper_tables.Table, ours: str) -> str:
    note = f"; {table.budget_note}" if table.budget_note else ""
    return (f"**Budget** (generator steps × seeds): paper {_paper_budget(table)}, ours {ours}{note}. Values: ours "
            "mean ± std over seeds, paper mean ± its published spread." + _tolerance_sentence(table))


def _machine_text(machine: dict | None) -> str:
    if not machine:
        return "—"
    text = f"{machine['arch']}, {machine['cpu_count']} CPUs" + (f" ({machine['cpu']})" if machine.get("cpu") else "")
    if machine["device_kind"] != "cpu":
        text += f", {machine['device_count']}× {machine['device_kind']}"
    return text


def _seeds_text(run: dict) -> str:
    """"0–4", "1, 3" or, where a file's methods have different seeds, per method."""
    if "method_seeds" in run:
        return "; ".join(f"{m}: {_seed_list(s)}" for m, s in run["method_seeds"].items())
    return _seed_list(_seeds(run, next(iter(run["results"]))))


def _runs_lines(root: str, table: paper_tables.Table, manifest: dict) -> list[str]:
    """Every run file of the table with its provenance and the tables it is shown in."""
    shown: dict[str, list[str]] = {}
    for label, group in [("headline", g) for g in manifest["headline"]] + [
            (str(i), g) for i, g in enumerate(manifest.get("ablations", []), 1)]:
        for f in group["files"]:
            shown.setdefault(f, []).append(label)
    folder = os.path.join(root, RESULTS_DIR, table.name)
    lines = ["| file | methods | seeds | steps | date | machine | commit | shown in |", "|" + "---|" * 8]
    for name in sorted(n for n in os.listdir(folder) if n.endswith(".json") and n != MANIFEST):
        run = _read_json(os.path.join(folder, name))
        methods = "all" if set(run["results"]) == {r.method for r in table.rows} else ", ".join(run["results"])
        commit = f"`{run['commit'][:7]}`" if run.get("commit") else "—"
        cells = [f"[{name}](../../{RESULTS_DIR}/{table.name}/{name})", methods, _seeds_text(run),
                 _steps_text(run["steps"]) or "config default", run.get("date") or "—",
                 _machine_text(run.get("machine")), commit, ", ".join(dict.fromkeys(shown.get(name, []))) or "—"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _headline_lines(table: paper_tables.Table, rows: list[tuple[paper_tables.Row, dict]]) -> list[str]:
    """The headline table: each row's budget and our values beside the paper's, then the floor."""
    lines = _header(table, lead=("method", "steps × seeds"))
    for row, run in rows:
        lines.append("| " + " | ".join([row.method, _budget(run, row.method),
                                         *_cells(table, row, run["results"][row.method])]) + " |")
    return lines + [_floor_line(table, _shared([run for _, run in rows], "floor"), lead=2)]


def _pending_page(table: paper_tables.Table) -> str:
    lines = [f"# {table.name}", "", f"**{table.source}**", "", GENERATED, "",
             f"**Not produced yet:** {table.pending}.", "", f"**Protocol.** {table.protocol}", "",
             _budget_sentence(table, "none yet"), "", "## The paper's values", "",
             "| method | " + " | ".join(f"{m} (paper)" for m in table.metrics) + " |",
             "|" + "---|" * (len(table.metrics) + 1)]
    lines += ["| " + " | ".join([row.method] + [_fmt(m, *row.paper[m]) if m in row.paper else "—"
                                                for m in table.metrics]) + " |" for row in table.rows]
    return "\n".join(lines) + "\n"


def table_page(root: str, table: paper_tables.Table, manifest: dict | None,
               rows: list[tuple[paper_tables.Row, dict]]) -> str:
    """docs/results/<table>.md: protocol and budget from the registry, the headline rows against the paper, the
    sample figures, the known protocol differences and notes of the manifest, its ablation tables and every run
    file's provenance."""
    if manifest is None:
        return _pending_page(table)
    runs = [run for _, run in rows]
    ours = "per row below" if len({_steps_text(r["steps"]) for r in runs}) > 1 else (
        f"{_steps_text(runs[0]['steps']) or 'config default'} × seeds per row below")
    lines = [f"# {table.name}", "", f"**{table.source}**", "", GENERATED, "", f"**Protocol.** {table.protocol}", "",
             _budget_sentence(table, ours), "", "## Ours against the paper", "", *_headline_lines(table, rows)]
    facts: dict[str, list[str]] = {}   # what else the numbers depend on → the rows it applies to
    for row, run in rows:
        if text := _run_facts(run).strip():
            facts.setdefault(text, []).append(row.method)
    lines += ["", *(text if len(methods) == len(rows) else f"{', '.join(methods)}: {text}"
                    for text, methods in sorted(facts.items()))] if facts else []
    if len(manifest["headline"]) == 1:
        differences = adjacent_differences(table, runs[0])
        if differences:
            lines += ["", f"Methods adjacent in mean {table.metrics[0]}: the difference of the means and Welch's "
                          "t-test over seeds (two-sided p):", *differences]
    for figure in manifest.get("figures", []):
        lines += ["", f"![{figure}](../../{RESULTS_DIR}/{table.name}/{figure})"]
    for key, title in (("differences", "Known protocol differences"), ("notes", "Notes")):
        if manifest.get(key):
            lines += ["", f"## {title}", "", *(f"- {text}" for text in manifest[key])]
    for i, group in enumerate(manifest.get("ablations", []), 1):
        run = pool(root, table, group)
        lines += ["", f"## {i}. {group['title']}", "",
                  f"Ours: {_seed_count(run)} × {_steps_text(run['steps']) or 'config default'} generator steps."
                  + _run_facts(run), "", *_rows(table, run["results"], run.get("floor"))]
        if run.get(PRECISE_BN_KEY):
            lines += ["", "The same runs with G's batch statistics recomputed at the evaluated parameters "
                          "(`eval.precise_bn_batches`):", "", *_rows(table, run[PRECISE_BN_KEY], run.get("floor"))]
        if group.get("curve") and run.get("curves"):
            lines += _curve_lines(table, run["curves"])
    lines += ["", "## Runs", "", "Every run file of this table; each also records the command that made it.", "",
              *_runs_lines(root, table, manifest)]
    return "\n".join(lines) + "\n"


def _summary_lines(tables: list[tuple[paper_tables.Table, list[tuple[paper_tables.Row, dict]]]]) -> list[str]:
    """One line per headline row of every table (one per table not produced yet), linking the table's page."""
    lines = ["| table | method | metrics | ours | paper | verdict (distance in SE) | steps × seeds (paper's) |",
             "|" + "---|" * 7]
    for table, rows in tables:
        link = f"[{table.name}]({DOCS_DIR}/{table.name}.md)"
        metrics = " / ".join(table.metrics)
        if not rows:
            lines.append(f"| {link} | — | {metrics} | not produced yet: {table.pending} | | | "
                         f"{table.budget_note or '—'} ({_paper_budget(table)}) |")
        for row, run in rows:
            cells = _cells(table, row, run["results"][row.method])
            values = cells[:2 * len(table.metrics)]
            verdict = cells[-1] if table.tolerance else "ranking only"
            lines.append(f"| {link} | {row.method} | {metrics} | {' / '.join(values[::2])} | "
                         f"{' / '.join(values[1::2])} | {verdict} | {_budget(run, row.method)} "
                         f"({_paper_budget(table)}) |")
    return lines


def render_docs(root: str) -> tuple[dict[str, str], str]:
    """({path under root: text} of docs/results/<table>.md and RESULTS.md, README.md's results block), all computed
    from the run files in results/ and the registry."""
    pages, tables = {}, []
    for table in paper_tables.TABLES.values():
        manifest = load_manifest(root, table)
        rows = headline(root, table, manifest) if manifest else []
        pages[f"{DOCS_DIR}/{table.name}.md"] = table_page(root, table, manifest, rows)
        tables.append((table, rows))
    summary = _summary_lines(tables)
    pages["RESULTS.md"] = "\n".join([
        "# Results", "", GENERATED, "",
        "Each row pools the runs its table's `results/<table>/headline.json` names: the largest budget we ran, over "
        "all its seeds. Each table's page (linked) gives the protocol, the known differences from the paper's, "
        "further tables (ablations, other budgets, other classifiers) and every run's provenance. Ours: mean ± std "
        "over seeds; paper: mean ± its published spread; a verdict says whether |ours − paper| ≤ z·√(SE_ours² + "
        "SE_paper²) (z in each page's tolerance) and the distance in those standard errors.", "", *summary]) + "\n"
    block = "\n".join(["Generated from `results/` by `python -m gan_jax.reproduce --write-docs`; per-table pages with "
                       "protocols, ablations and provenance: [RESULTS.md](RESULTS.md).", "", *summary])
    return pages, block


def readme_with_results(text: str, block: str) -> str:
    """README.md's text with `block` between its results markers, each of which it must hold once."""
    if text.count(README_BEGIN) != 1 or text.count(README_END) != 1 or text.index(README_BEGIN) > text.index(README_END):
        raise ValueError(f"README.md needs one {README_BEGIN} line and, after it, one {README_END} line where the "
                         "results table goes; add them and rerun")
    head, rest = text.split(README_BEGIN)
    return head + README_BEGIN + "\n" + block + "\n" + README_END + rest.split(README_END, 1)[1]


def write_docs(root: str) -> list[str]:
    """Regenerate docs/results/<table>.md, RESULTS.md and README.md's results block from results/; returns the paths
    written. Checks README.md's markers before writing anything."""
    pages, block = render_docs(root)
    with open(os.path.join(root, "README.md")) as f:
        pages["README.md"] = readme_with_results(f.read(), block)
    os.makedirs(os.path.join(root, DOCS_DIR), exist_ok=True)
    for path, text in pages.items():
        with open(os.path.join(root, path), "w") as f:
            f.write(text)
    return sorted(pages)


FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Where the table's runs live (trained if missing, loaded if complete).")
flags.DEFINE_integer("seeds", 3, "Seeds per method.")
flags.DEFINE_integer("first_seed", 0, "Seeds first_seed .. first_seed + seeds - 1 (e.g. to add seeds run "
                     "elsewhere: their directories seed_<s> can then sit beside each other).")
flags.DEFINE_integer("steps", None, "Generator steps per run (default: each config's own).")
flags.DEFINE_integer("eval_every", 0, "Also evaluate each run every N steps (config.eval_every; each run's "
                     "metrics.jsonl then holds eval/* against steps); 0: only at the end.")
flags.DEFINE_multi_string("set", None, "KEY=VALUE: set this flattened config key in every run (repeatable), "
                          "e.g. --set loss.simultaneous=True; recorded in the JSON.")
flags.DEFINE_list("methods", None, "Only these methods (default: all of the table's; with --merge: all in the files).")
flags.DEFINE_list("at_steps", None, "Report each seed's evaluation at this step (several: their mean) from its "
                  "curve (--eval_every) instead of its last, e.g. to read the table at another checkpoint; lastN: "
                  "the mean of each seed's last N evaluations.")
flags.DEFINE_bool("write-docs", False, "Regenerate docs/results/<table>.md, RESULTS.md and README.md's results "
                  "block from the run files in results/ (no table, no other flag).")
flags.DEFINE_list("merge", None, "Pool these <table>.json files of finished runs (seeds run apart; one file: "
                  "print it again with today's registry) into one table in --workdir instead of training; they "
                  "must share budget and classifier (each method pools the files that have it).")


def parse_at_steps(values: list[str]) -> tuple[list[int], int]:
    """--at_steps' values as (step counts, 0) or ([], N) for lastN: each seed's last N evaluations."""
    if len(values) == 1 and values[0].startswith("last") and values[0][4:].isdigit() and int(values[0][4:]) > 0:
        return [], int(values[0][4:])
    bad = [v for v in values if not v.isdigit() or int(v) < 1]
    if bad:
        raise app.UsageError(f"--at_steps takes step counts such as 400000, or lastN such as last5, got {bad}")
    return [int(v) for v in values], 0


def _write_docs_command(argv) -> None:
    """--write-docs: regenerate the result pages from results/, training and pooling nothing."""
    if len(argv) != 1:
        raise app.UsageError(f"--write-docs regenerates every table's page and takes no table, got {argv[1:]}")
    given = [f"--{f}" for f in ("workdir", "seeds", "first_seed", "steps", "eval_every", "set", "methods", "at_steps",
                                "merge") if FLAGS[f].present]
    if given:
        raise app.UsageError(f"--write-docs only reads results/ and trains nothing; drop {', '.join(given)}")
    try:
        written = write_docs(ROOT)
    except ValueError as e:
        sys.stderr.write(f"error: {e}\n")
        sys.exit(2)
    print("wrote " + ", ".join(written))


def main(argv):
    if FLAGS["write-docs"].value:
        return _write_docs_command(argv)
    if len(argv) != 2:
        raise app.UsageError(f"usage: python -m gan_jax.reproduce TABLE --workdir DIR; tables: {sorted(paper_tables.TABLES)}")
    if not FLAGS.workdir:
        raise app.UsageError("--workdir is required")
    logging.set_verbosity(logging.WARNING)
    os.makedirs(FLAGS.workdir, exist_ok=True)
    host_memory.keep_freed_memory()
    table = paper_tables.get_table(argv[1])
    steps, last = parse_at_steps(FLAGS.at_steps or [])  # before any training
    if FLAGS.merge:
        training = [f"--{f}" for f in ("seeds", "first_seed", "steps", "eval_every", "set") if FLAGS[f].present]
        if training:
            raise app.UsageError(f"--merge pools finished runs and trains nothing; drop {', '.join(training)}")
        runs = []
        for path in FLAGS.merge:
            with open(path) as f:
                runs.append(json.load(f))
        run = merge_runs(table, runs, FLAGS.merge, FLAGS.methods, read_at=steps)
        facts = f"\n\nWall time {run['wall_s']:.0f} s summed over the pooled files; pooled {time.strftime('%Y-%m-%d')}."
    else:
        run = run_table(table, FLAGS.workdir, seeds=FLAGS.seeds, steps=FLAGS.steps, methods=FLAGS.methods,
                        first_seed=FLAGS.first_seed, eval_every=FLAGS.eval_every,
                        settings=parse_settings(FLAGS.set))
        facts = (f"\n\nMachine: {platform.machine()}, {os.cpu_count()} CPU cores; wall time {run['wall_s']:.0f} s "
                 f"(training or loading and evaluating every run and any feature classifier; not the floor); "
                 f"{time.strftime('%Y-%m-%d')}.")
    if "train_s" in run:
        facts += f" The runs' own training clocks, summed over seeds and resumed legs: {run['train_s']:.0f} s."
    if FLAGS.at_steps:
        try:
            run = at_steps(table, run, steps, last)
        except ValueError as e:
            kept = "" if FLAGS.merge else (" (the runs are finished in --workdir: rerun with other --at_steps to "
                                           "read them; nothing trains again)")
            raise app.UsageError(str(e) + kept) from e
    text = markdown(table, run)
    print(text + facts)
    with open(os.path.join(FLAGS.workdir, f"{table.name}.md"), "w") as f:
        f.write(text + facts + "\n")
    with open(os.path.join(FLAGS.workdir, f"{table.name}.json"), "w") as f:
        json.dump({"table": table.name} | provenance(ROOT, sys.argv[1:]) | run, f, indent=1)


def cli() -> None:
    """The gan-jax-reproduce command."""
    app.run(main)


if __name__ == "__main__":
    cli()
