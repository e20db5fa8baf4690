"""Speed of gan_jax's own train step (the one launch.py runs) against PyTorch eager, same job.

    python benchmarks/bench.py --torch                # CPU default: dcgan32 ns / wgan / wgan-gp, batch 64
    python benchmarks/bench.py --gpu --torch          # adds dcgan64 ns at batch 128, more steps
    python benchmarks/bench.py --configs dcgan32:ns:64 --precisions f32 --json out.jsonl
    python benchmarks/bench.py --gpu --configs dcgan64:ns:1024 --precisions bf16   # % of the bf16 peak
    python benchmarks/bench.py --experiments experiments/mixture_ring.py:gan experiments/mixture_ring.py:pacgan2

One step = n_critic critic updates + one generator update (torch_reference.py's definition), run as
`parallel.parallelize(train.make_train_step(gan))`: one compiled program, state buffers donated, the
n_critic loop inside it, the real batch already on the devices, metrics fetched once per repeat.
With --torch, `benchmarks/torch_reference.py`'s own step (`make_step`, eager) runs in the same
process, and the timed repeats of all implementations of a configuration alternate (ours, theirs,
ours, ...) so that a shared machine's load hits both alike; each reports the median of its repeats, and the
table adds the paired ratios (repeat i of theirs over repeat i of ours: median, range, pairs ours won).
On GPU torch runs in fp32, tf32 and bf16 (autocast) and the table also gives the ratio to torch's
best of these. ``--experiments`` times launch.py's step of any GAN experiment config instead, on the first batch
of its own training data, each repeat ~2 s, with paired ratios to the first config listed (an A/B
of configs). ``--conv_impl`` picks gan_jax's convolution form (models.layers: "gemm", the default,
or "xla"); ``--unroll`` unrolls the n_critic loop. Like launch.py, the process first makes glibc keep
freed memory (gan_jax.host_memory; ``--malloc glibc`` leaves the defaults); torch, in the same process,
gets the same allocator.
Prints one JSON line per (configuration, precision, implementation), then a table of steps/s and ratios. FLOPs per step are
counted analytically (benchmarks/flops.py, equal to torch's FlopCounterMode on the same step);
XLA's cost analysis is not used (on GPU it leaves out cuDNN convolutions).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Callable

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from flops import ARCHS, N_CRITIC, step_flops  # noqa: E402

from gan_jax import config as config_lib, host_memory, parallel, tasks, train  # noqa: E402
from gan_jax.config_files import load_config  # noqa: E402
from gan_jax import state as state_lib  # noqa: E402

CPU_CONFIGS = ("dcgan32:ns:64", "dcgan32:wgan:64", "dcgan32:wgan-gp:64")
GPU_CONFIGS = ("dcgan64:ns:128",) + CPU_CONFIGS
PRECISIONS = {"f32": "float32", "bf16": "bfloat16"}
TORCH_PRECISIONS = ("fp32", "tf32", "bf16")
CONV_IMPLS = ("gemm", "xla")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_TORCH_REFERENCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "torch_reference.py")
_COMPILES = [0]  # XLA backend compilations so far in this process


def _count_compiles(event: str, duration: float, **_) -> None:
    if event == "/jax/core/compile/backend_compile_duration":
        _COMPILES[0] += 1


jax.monitoring.register_event_duration_secs_listener(_count_compiles)


def make_config(arch: str, loss: str, batch: int, precision: str, conv_impl: str = "gemm",
                num_devices: int | None = None):
    """The gan_jax config of torch_reference's (arch, loss) step: same nets, losses and optimisers."""
    size, channels, widths = ARCHS[arch]
    c = config_lib.base_config()
    c.name = f"bench_{arch}_{loss}"
    c.batch_size = batch
    c.model.latent_dim = 100
    c.model.dtype = PRECISIONS[precision]
    net = dict(name="dcgan", image_size=size, channels=channels, widths=widths, conv_impl=conv_impl)
    c.model.generator = net
    c.model.critic = dict(net, batch_norm=loss != "wgan-gp")
    c.loss.n_critic = N_CRITIC[loss]
    if loss in ("ns", "hinge"):
        c.loss.name = "non_saturating" if loss == "ns" else "hinge"
        opt = dict(name="adam", learning_rate=2e-4, b1=0.5, b2=0.999)
        c.optim.generator, c.optim.critic = opt, opt
    elif loss == "wgan":
        c.loss.name = "wasserstein"
        c.optim.generator = dict(name="rmsprop", learning_rate=5e-5)
        c.optim.critic = dict(name="rmsprop", learning_rate=5e-5, weight_clip=0.01)
    else:
        c.loss.name = "wasserstein"
        c.loss.gradient_penalty = 10.0
        opt = dict(name="adam", learning_rate=1e-4, b1=0.0, b2=0.9)
        c.optim.generator, c.optim.critic = opt, opt
    config_lib.validate(c, num_devices=num_devices or jax.device_count())
    return c


class Runner:
    """One implementation's step, compiled and warmed up: `run(n)` runs n steps and waits for them.

    `row` names the step and holds its global `batch` and `n_critic`; with `arch` and `loss` (a DCGAN
    configuration) its FLOPs are counted too."""

    def __init__(self, row: dict, run: Callable[[int], None], check: Callable[[], None] = lambda: None):
        self.row, self.run, self.check, self.times, self.compiles = row, run, check, [], 0

    def time(self, steps: int) -> None:
        compiles, t0 = _COMPILES[0], time.perf_counter()
        self.run(steps)
        self.times.append((time.perf_counter() - t0) / steps)
        self.compiles += _COMPILES[0] - compiles

    def result(self) -> dict:
        self.check()
        sec = statistics.median(self.times)
        r = self.row
        out = {**r, "compiles_while_timed": self.compiles, "g_steps_per_s": round(1 / sec, 3)}
        if "arch" in r:
            flops = step_flops(r["arch"], r["loss"], r["batch"])
            out.update(images_per_s=round(r["batch"] * (r["n_critic"] + 1) / sec, 1), flops_per_step=flops,
                       achieved_tflops=round(flops / sec / 1e12, 4))
        else:
            out["real_examples_per_s"] = round(r["batch"] * r["n_critic"] / sec, 1)
        return {**out, "step_ms_repeats": [round(t * 1e3, 3) for t in self.times],
                "load_avg_1m": round(os.getloadavg()[0], 2)}


def launch_step_runner(cfg, gan: train.GAN, init: Callable, host: dict[str, np.ndarray], warmup: int, row: dict,
                       seed: int = 0, unroll: bool = False, num_devices: int | None = None,
                       train_module=train) -> Runner:
    """launch.py's data-parallel train step of `cfg` on the real batch `host` ([n_critic, batch, ...] arrays),
    from `init(key)`, over the first `num_devices` devices (default: all): one compiled program, state buffers
    donated, the batch already on the devices; compiled (timed) and warmed up. `train_module`: the module whose
    `make_train_step` is timed (another version of gan_jax.train for an A/B, benchmarks/ab_train_step.py)."""
    mesh = parallel.make_mesh(jax.devices()[:num_devices])
    step = parallel.parallelize(train_module.make_train_step(gan, unroll), cfg.parallel, mesh)
    state = jax.jit(init, out_shardings=NamedSharding(mesh, P()))(jax.random.key(seed))
    box = {"state": step.put_state(state)}
    batch_x = step.put_batch(host)
    jax.block_until_ready((box["state"], batch_x))
    # Multi-device CPU collectives deadlock with > 16 steps in flight (ENVIRONMENT.md): sync every <= 8.
    chunk = 8 if mesh.size > 1 else 1 << 30

    def run(n: int) -> None:
        for i in range(n):
            box["state"], box["metrics"] = step(box["state"], batch_x)
            if (i + 1) % chunk == 0:
                jax.block_until_ready(box["metrics"])
        box["metrics"] = jax.device_get(box["metrics"])  # metrics fetched once per repeat

    t0 = time.perf_counter()
    run(1)
    compile_s = time.perf_counter() - t0
    run(warmup)
    row = {"impl": "gan_jax", "jax": jax.__version__, "device": jax.devices()[0].device_kind,
           "num_devices": mesh.size, **row, "batch": cfg.batch_size, "n_critic": cfg.loss.n_critic,
           "precision": {v: k for k, v in PRECISIONS.items()}.get(cfg.model.dtype, cfg.model.dtype),
           "unroll_critic": unroll, "xla_flags": os.environ.get("XLA_FLAGS", ""), "compile_s": round(compile_s, 2)}

    def check() -> None:
        if not bool(state_lib.all_finite((box["metrics"], box["state"]))):
            raise FloatingPointError(f"non-finite values after benchmarking {row}: {box['metrics']}")
    return Runner(row, run, check)


def gan_jax_runner(arch: str, loss: str, batch: int, precision: str, warmup: int, seed: int = 0,
                   conv_impl: str = "gemm", unroll: bool = False, num_devices: int | None = None) -> Runner:
    """gan_jax's step (launch.py's) of torch_reference's (arch, loss) configuration on uniform noise."""
    cfg = make_config(arch, loss, batch, precision, conv_impl, num_devices)
    size, channels, _ = ARCHS[arch]
    gan = train.build(cfg)
    data_shape = (size, size, channels)
    host = {"x": np.random.default_rng(seed).uniform(-1, 1, (cfg.loss.n_critic, batch, *data_shape)).astype(np.float32)}
    return launch_step_runner(cfg, gan, lambda k: train.init_state(gan, k, data_shape), host, warmup,
                              {"arch": arch, "loss": loss, "conv_impl": conv_impl}, seed, unroll, num_devices)


def experiment_runner(spec: str, precision: str | None, warmup: int, unroll: bool = False,
                      num_devices: int | None = None) -> Runner:
    """launch.py's step of the experiment config `spec` ("experiments/<file>.py[:variant]", e.g.
    "experiments/mixture_ring.py:pacgan2"), at `precision` (None: the config's own), on the first
    n_critic x batch examples of the config's own training data."""
    cfg = load_config(spec, ROOT)
    if cfg.task != "gan":
        raise ValueError(f"experiment {spec!r} has task {cfg.task!r}: bench.py times the GAN train step")
    if precision:
        cfg.model.dtype = PRECISIONS[precision]
    task = tasks.build(cfg, num_devices=num_devices or jax.device_count())
    n_critic, batch = cfg.loss.n_critic, cfg.batch_size
    if len(task.source) < n_critic * batch:
        raise ValueError(f"experiment {spec!r}: {len(task.source)} training examples, fewer than n_critic x batch = "
                         f"{n_critic * batch}")
    host = task.batches(0, 1)(0)
    return launch_step_runner(cfg, task.gan, lambda k: task.init(k, host), host, warmup,
                              {"experiment": spec, "config_name": cfg.name}, cfg.seed, unroll, num_devices)


def torch_device() -> str:
    import torch
    return "cuda" if torch.cuda.is_available() else "cpu"


def check_torch_precisions(precisions: list[str], device: str) -> None:
    """torch_reference autocasts to bf16 and enables tf32 on CUDA only: on CPU those would time fp32 under another name."""
    unknown = [q for q in precisions if q not in TORCH_PRECISIONS]
    cuda_only = [q for q in precisions if q != "fp32" and device != "cuda"]
    if unknown or cuda_only:
        raise ValueError(f"torch precisions {unknown or cuda_only} on {device!r}: allowed "
                         f"{list(TORCH_PRECISIONS) if device == 'cuda' else ['fp32']} (torch_reference.py runs "
                         "tf32 and bf16 only on CUDA)")


def torch_runner(reference: str, arch: str, loss: str, batch: int, precision: str, warmup: int) -> Runner:
    """torch_reference.py's own step (`make_step`, eager), its real batches, warmed up like its `run()`."""
    spec = importlib.util.spec_from_file_location("torch_reference", reference)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    import torch
    device = torch_device()  # main() has refused CUDA-only precisions off CUDA
    tp = precision
    torch.backends.cuda.matmul.allow_tf32 = tp == "tf32"
    torch.backends.cudnn.allow_tf32 = tp == "tf32"
    torch.backends.cudnn.benchmark = True
    size, channels, _ = ARCHS[arch]
    step, n_critic = module.make_step(arch, loss, batch, device, tp)
    reals = [torch.rand(batch, channels, size, size, device=device) * 2 - 1 for _ in range(n_critic + 1)]

    def run(n: int) -> None:
        for _ in range(n):
            step(reals)
        if device == "cuda":
            torch.cuda.synchronize()

    t0 = time.perf_counter()
    run(1 + warmup)
    row = {"impl": "torch-eager", "torch": torch.__version__,
           "device": torch.cuda.get_device_name() if device == "cuda" else "cpu", "threads": torch.get_num_threads(),
           "arch": arch, "loss": loss, "batch": batch, "n_critic": n_critic, "precision": tp, "warmup_s": round(time.perf_counter() - t0, 2)}
    return Runner(row, run)


def parse_config(text: str) -> tuple[str, str, int]:
    try:
        arch, loss, batch = text.split(":")
        batch = int(batch)
    except ValueError:
        raise ValueError(f"config {text!r} must be ARCH:LOSS:BATCH, e.g. dcgan32:ns:64") from None
    if arch not in ARCHS or loss not in N_CRITIC or batch < 1:
        raise ValueError(f"config {text!r}: arch must be one of {sorted(ARCHS)}, loss one of {sorted(N_CRITIC)}, "
                         f"batch >= 1")
    return arch, loss, batch


def source_commit() -> str | None:
    """The checkout's commit (with "+dirty" for uncommitted changes), or None outside a git checkout."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", ROOT, *args], capture_output=True, text=True, check=True).stdout.strip()
    try:
        return git("rev-parse", "--short", "HEAD") + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def cpu_model() -> str:
    """The host CPU's model name (/proc/cpuinfo), or the platform's processor string."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def paired_ratios(ours_ms: list[float], theirs_ms: list[float]) -> list[float]:
    """Speed ratio (their step time / ours) of each pair of adjacent repeats: the repeats alternate, so a pair
    saw the same machine load, and the spread of these ratios is the measurement's own error bar."""
    return [t / o for o, t in zip(ours_ms, theirs_ms)]


def paired_cell(ours: dict, theirs: dict | None) -> str:
    """'median [min-max], k/n' of the paired ratios, k = pairs where ours was faster."""
    if not theirs or "step_ms_repeats" not in theirs:
        return "-"
    q = paired_ratios(ours["step_ms_repeats"], theirs["step_ms_repeats"])
    return (f"{statistics.median(q):.2f}x [{min(q):.2f}-{max(q):.2f}], "
            f"{sum(x > 1 for x in q)}/{len(q)}")


def table(rows: list[dict]) -> str:
    """Markdown table: our steps/s, torch's at the same precision and its best, and the ratios."""
    theirs: dict[tuple, dict[str, dict]] = {}
    for r in rows:
        if r.get("impl") == "torch-eager":
            theirs.setdefault((r["arch"], r["loss"], r["batch"]), {})[r["precision"]] = r
    lines = ["| config | precision | conv | gan_jax steps/s | torch eager, same precision | ratio | paired ratio "
             "| torch eager best | ratio to best | gan_jax TFLOP/s | compile s | load (ours / torch) |", "|---" * 12 + "|"]
    for r in rows:
        if r.get("impl") != "gan_jax":
            continue
        runs = theirs.get((r["arch"], r["loss"], r["batch"]), {})
        same = runs.get({"f32": "fp32"}.get(r["precision"], r["precision"]))
        best = max(runs.values(), key=lambda t: t["g_steps_per_s"], default=None)
        cells = [f"{t['g_steps_per_s']:.2f}" + (f" ({t['precision']})" if t is best else "") if t else "-"
                 for t in (same, best)]
        ratios = [f"{r['g_steps_per_s'] / t['g_steps_per_s']:.2f}x" if t else "-" for t in (same, best)]
        load = " / ".join(f"{t['load_avg_1m']:.1f}" if "load_avg_1m" in t else "-" for t in (r, same) if t)
        lines.append(f"| {r['arch']} {r['loss']} b{r['batch']} | {r['precision']} | {r['conv_impl']} | "
                     f"{r['g_steps_per_s']:.2f} | {cells[0]} | {ratios[0]} | {paired_cell(r, same)} | {cells[1]} | {ratios[1]} | "
                     f"{r['achieved_tflops']:.3f} | {r['compile_s']:.1f} | {load} |")
    return "\n".join(lines)


def _warm_step_seconds(runner: Runner, steps: int = 5) -> float:
    t0 = time.perf_counter()
    runner.run(steps)
    return (time.perf_counter() - t0) / steps


def experiment_table(rows: list[dict]) -> str:
    """Markdown table of the experiment rows, each with its paired ratio to the first (step time of the
    first over this one's: > 1 means this one is faster)."""
    rows = [r for r in rows if "experiment" in r]
    lines = ["| experiment | precision | devices | steps/s | real examples/s | compile s | paired ratio to the first |",
             "|---" * 7 + "|"]
    for r in rows:
        q = paired_ratios(r["step_ms_repeats"], rows[0]["step_ms_repeats"])
        paired = (f"{statistics.median(q):.2f}x [{min(q):.2f}-{max(q):.2f}], {sum(x > 1 for x in q)}/{len(q)}"
                  if r is not rows[0] else "-")
        lines.append(f"| {r['experiment']} | {r['precision']} | {r['num_devices']} | {r['g_steps_per_s']:.2f} | "
                     f"{r['real_examples_per_s']:.0f} | {r['compile_s']:.1f} | {paired} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gpu", action="store_true", help="GPU mode: adds dcgan64:ns:128; 50 steps per repeat, 10 warm-up")
    p.add_argument("--configs", nargs="+", help="ARCH:LOSS:BATCH entries (default: the CPU or GPU set)")
    p.add_argument("--experiments", nargs="+", metavar="FILE[:VARIANT]",
                   help="time launch.py's step of these experiment configs (e.g. experiments/mixture_ring.py:pacgan2) "
                        "on their own data, instead of the DCGAN configurations (unless --configs is given too)")
    p.add_argument("--num_devices", type=int, help="run gan_jax's step on the first N devices (default: all)")
    p.add_argument("--precisions", nargs="+", choices=sorted(PRECISIONS),
                   help="default: f32 and bf16 for --configs; each experiment's own dtype")
    p.add_argument("--steps", type=int, help="timed steps per repeat (default: CPU 10 ns / 4 n_critic=5; GPU 50; "
                                             "experiments: as many as take each one ~2 s)")
    p.add_argument("--warmup", type=int, help="untimed steps after the first (default: CPU 2, GPU 10)")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats per implementation (median reported)")
    p.add_argument("--torch", action="store_true", help="also time torch_reference.py's step, interleaved with ours, and print ratios")
    p.add_argument("--torch_reference", default=DEFAULT_TORCH_REFERENCE)
    p.add_argument("--torch_precisions", nargs="+", choices=TORCH_PRECISIONS,
                   help="torch_reference precisions (default: CPU fp32; GPU fp32 tf32 bf16)")
    p.add_argument("--conv_impl", default="gemm", choices=CONV_IMPLS, help="gan_jax's convolution form")
    p.add_argument("--unroll", action="store_true", help="unroll the n_critic loop (train.make_train_step)")
    p.add_argument("--malloc", default="keep", choices=["keep", "glibc"],
                   help="keep: gan_jax.host_memory.keep_freed_memory() as launch.py does (applies to torch too, "
                        "same process); glibc: the allocator's defaults")
    p.add_argument("--json", help="append the JSON lines to this file")
    p.add_argument("--label", help="a label stored with each row (as 'code'), e.g. which run of a series it is")
    a = p.parse_args(argv)
    if a.num_devices is not None and not 1 <= a.num_devices <= jax.device_count():
        p.error(f"--num_devices {a.num_devices}: allowed 1 .. {jax.device_count()} (the devices of this process)")
    # torch_reference autocasts to bf16 on CUDA only, and tf32 is a CUDA mode: on CPU both would be fp32 again.
    torch_precisions = a.torch_precisions or (list(TORCH_PRECISIONS) if a.gpu else ["fp32"])
    if a.torch:
        try:
            check_torch_precisions(torch_precisions, torch_device())
        except ValueError as e:
            p.error(str(e))
    malloc = a.malloc if a.malloc == "glibc" or host_memory.keep_freed_memory() else "glibc (keep unavailable)"
    configs = [parse_config(c) for c in (a.configs or ([] if a.experiments else GPU_CONFIGS if a.gpu else CPU_CONFIGS))]
    print(json.dumps({"host_cpus_usable": len(os.sched_getaffinity(0)), "load_avg_1m": os.getloadavg()[0], "malloc": malloc,
                      "devices": [str(d) for d in jax.devices()], "date": time.strftime("%Y-%m-%d %H:%M")}),
          flush=True)
    rows = []

    provenance = {**({"code": a.label} if a.label else {}), "commit": source_commit(), "date": time.strftime("%Y-%m-%d"), "cpu": cpu_model(),
                  "host_cpus_usable": len(os.sched_getaffinity(0))}

    def emit(row):
        row.update(malloc=malloc, **provenance)
        rows.append(row)
        print(json.dumps(row), flush=True)
        if a.json:
            with open(a.json, "a") as f:
                f.write(json.dumps(row) + "\n")

    def counts(loss):
        steps = a.steps or (50 if a.gpu else (10 if N_CRITIC[loss] == 1 else 4))
        return steps, (a.warmup if a.warmup is not None else (10 if a.gpu else 2))

    for arch, loss, batch in configs:
        steps, warmup = counts(loss)
        runners = [gan_jax_runner(arch, loss, batch, q, warmup, conv_impl=a.conv_impl,
                                  unroll=a.unroll, num_devices=a.num_devices) for q in a.precisions or ["f32", "bf16"]]
        if a.torch:
            runners += [torch_runner(a.torch_reference, arch, loss, batch, q, warmup) for q in torch_precisions]
        # Repeats alternate between the implementations, so that both see the same machine load.
        for _ in range(a.repeats):
            for r in runners:
                r.time(steps)
        for r in runners:
            emit(r.result())
    if a.experiments:
        warmup = a.warmup if a.warmup is not None else 10
        runners = [experiment_runner(e, q, warmup, a.unroll, a.num_devices) for e in a.experiments for q in a.precisions or [None]]
        steps = [a.steps or max(1, round(2.0 / _warm_step_seconds(r))) for r in runners]
        for _ in range(a.repeats):
            for r, n in zip(runners, steps):
                r.time(n)
        for r in runners:
            emit(r.result())
        print(experiment_table(rows), flush=True)
    if a.torch:
        print(table(rows), flush=True)
    return rows


if __name__ == "__main__":
    main()
