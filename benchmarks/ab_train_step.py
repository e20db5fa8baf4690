"""A/B speed of the GAN train step: gan_jax/train.py against another version of that file, in one process.

    cp gan_jax/train.py /tmp/train_before.py      # before editing the step
    python benchmarks/ab_train_step.py --baseline /tmp/train_before.py
    python benchmarks/ab_train_step.py --baseline /tmp/train_before.py --configs dcgan32:ns:64 --repeats 9

Both versions run bench.py's DCGAN configurations (`make_config`: the same nets, losses and optimisers, f32) on
the same uniform-noise batch, each as `bench.launch_step_runner` times launch.py's step: one compiled
program, state buffers donated, the batch already on the devices. Their timed repeats alternate (baseline,
current, baseline, ...) so that a shared machine's load hits both alike. Prints one JSON line per
(configuration, version), then a table: the median steps/s of each, the paired ratios (repeat i of the
current version's speed over repeat i of the baseline's: median, range), and the same two for the process's
CPU seconds per step (all threads), which other processes' load disturbs far less than the wall clock.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import time
from types import ModuleType

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402
from flops import ARCHS  # noqa: E402

from gan_jax import train  # noqa: E402

DEFAULT_CONFIGS = ("dcgan32:ns:64", "dcgan32:wgan:64", "dcgan32:wgan-gp:64")


def load_module(path: str, name: str = "train_baseline") -> ModuleType:
    """The Python file `path` as a module `name` (registered, as flax's dataclasses need)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def runner(module: ModuleType, version: str, arch: str, loss: str, batch: int, steps_warmup: int) -> bench.Runner:
    cfg = bench.make_config(arch, loss, batch, "f32", num_devices=1)
    size, channels, _ = ARCHS[arch]
    shape = (size, size, channels)
    gan = module.build(cfg)
    host = {"x": np.random.default_rng(0).uniform(-1, 1, (cfg.loss.n_critic, batch, *shape)).astype(np.float32)}
    return bench.launch_step_runner(cfg, gan, lambda k: module.init_state(gan, k, shape), host, steps_warmup,
                                    {"arch": arch, "loss": loss, "conv_impl": "gemm", "version": version},
                                    num_devices=1, train_module=module)


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--baseline", required=True, help="path of the other version of gan_jax/train.py")
    p.add_argument("--configs", nargs="+", default=list(DEFAULT_CONFIGS), help="ARCH:LOSS:BATCH entries")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats per version (median reported)")
    p.add_argument("--steps", type=int, help="timed steps per repeat (default: 3 for n_critic = 1, else 1)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps after the first (compiling) one")
    a = p.parse_args(argv)
    baseline = load_module(a.baseline)
    rows, lines = [], ["| config | steps/s baseline | steps/s current | paired ratio current/baseline [range] "
                       "| CPU s/step baseline | CPU s/step current | paired CPU ratio baseline/current [range] |",
                       "|---|---|---|---|---|---|---|"]
    for spec in a.configs:
        arch, loss, batch = bench.parse_config(spec)
        runners = [runner(m, v, arch, loss, batch, a.warmup) for m, v in ((baseline, "baseline"), (train, "current"))]
        steps = a.steps or (3 if runners[0].row["n_critic"] == 1 else 1)
        cpu: list[list[float]] = [[], []]
        for _ in range(a.repeats):
            for r, seconds in zip(runners, cpu):
                t0 = time.process_time()
                r.time(steps)
                seconds.append((time.process_time() - t0) / steps)
        results = [{**r.result(), "cpu_s_per_step_repeats": [round(t, 4) for t in c]} for r, c in zip(runners, cpu)]
        for row in results:
            rows.append(row)
            print(json.dumps(row), flush=True)
        wall = bench.paired_ratios(results[1]["step_ms_repeats"], results[0]["step_ms_repeats"])
        cpu_ratio = bench.paired_ratios(cpu[1], cpu[0])
        lines.append(f"| {spec} | {results[0]['g_steps_per_s']:.3f} | {results[1]['g_steps_per_s']:.3f} | "
                     f"{statistics.median(wall):.3f} [{min(wall):.3f}-{max(wall):.3f}] | "
                     f"{statistics.median(cpu[0]):.3f} | {statistics.median(cpu[1]):.3f} | "
                     f"{statistics.median(cpu_ratio):.3f} [{min(cpu_ratio):.3f}-{max(cpu_ratio):.3f}] |")
    print("\n".join(lines), flush=True)
    return rows


if __name__ == "__main__":
    main()
