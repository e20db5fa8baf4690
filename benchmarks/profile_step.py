"""Where gan_jax's train step spends its time: a jax.profiler trace, aggregated per compiled HLO op.

    python benchmarks/profile_step.py --config dcgan32:ns:64 [--precision f32] [--top 30] [--hlo out.txt]
    python benchmarks/profile_step.py --plain_lax_conv     # the "before": layers as plain lax convolutions

Prints the step's ops by total time with their HLO shape and source op_name (e.g.
``transpose(jvp(D))/Conv_1/dot_general`` is a critic convolution's backward matmul) and the
share of matrix products (YNNPACK/oneDNN fusions, dots), convolutions, random numbers (threefry
runs as rolled while loops on CPU) and everything else.
XLA:CPU runs independent ops concurrently on the two cores, so op times can sum to more than the step;
asynchronous ops (convolutions, Eigen dots) count from their start to their ``end:`` event.
"""
from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import sys
import tempfile

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import ARCHS, make_config, parse_config  # noqa: E402

from gan_jax import host_memory, parallel, train  # noqa: E402
from gan_jax.models import layers  # noqa: E402


def use_plain_lax_convolutions() -> None:
    """Swap gan_jax's layer functions for plain lax convolutions (same semantics, XLA's own gradients)."""
    dn = ("NHWC", "HWIO", "NHWC")

    def conv2d(x, kernel, strides=1, padding=0):
        s = layers._pair(strides, "strides")
        pads = layers._pads(padding, x.shape[1:3], kernel.shape[:2], s, allow_str=True)
        return jax.lax.conv_general_dilated(x, kernel, s, pads, dimension_numbers=dn)

    def conv_transpose2d(x, kernel, strides=1, padding=0):
        s = layers._pair(strides, "strides")
        pads = layers._pads(padding, x.shape[1:3], kernel.shape[:2], s, allow_str=False)
        k = kernel.shape[:2]
        return jax.lax.conv_transpose(x, kernel.swapaxes(2, 3), s, [(k[d] - 1 - pads[d][0], k[d] - 1 - pads[d][1])
                                                                    for d in range(2)],
                                      dimension_numbers=dn, transpose_kernel=True)

    layers.conv2d, layers.conv_transpose2d = conv2d, conv_transpose2d


def op_metadata(hlo_text: str) -> dict[str, tuple[str, str]]:
    """HLO instruction name -> (result shape, op_name metadata)."""
    meta = {}
    for line in hlo_text.splitlines():
        m = re.match(r"\s*(?:ROOT )?%?([\w.\-]+) = (\S+) .*?op_name=\"([^\"]+)\"", line)
        if m:
            meta[m.group(1)] = (m.group(2), m.group(3))
    return meta


def category(name: str, op_name: str) -> str:
    if name.startswith("call") or any(k in op_name for k in ("threefry", "random_bits", "erf_inv", "_normal")):
        return "rng"
    if "ynn" in name or "onednn" in name or name.startswith("dot") or op_name.endswith("dot_general"):
        return "matmul"
    if "convolution" in name or op_name.endswith("conv_general_dilated"):
        return "convolution"
    return "other"


def op_times(events: list[dict], meta: dict, steps: int) -> collections.Counter:
    """ms per step of each HLO op. XLA:CPU runs convolutions and Eigen dots asynchronously: the trace
    has a short start event and an ``end: <op>`` event, so those count from start to end (which
    includes any time queued behind concurrent work); the others count their event's duration."""
    starts, ends = collections.defaultdict(list), collections.defaultdict(list)
    for e in events:
        if e.get("ph") != "X":
            continue
        name = e.get("name", "")
        if name in meta:
            starts[name].append(e)
        elif name.startswith("end: ") and name[5:] in meta:
            ends[name[5:]].append(e)
    per_op = collections.Counter()
    for name, evs in starts.items():
        evs, done = sorted(evs, key=lambda e: e["ts"]), sorted(ends.get(name, []), key=lambda e: e["ts"])
        if len(done) == len(evs):
            per_op[name] = sum(d["ts"] + d["dur"] - e["ts"] for e, d in zip(evs, done)) / 1e3 / steps
        else:
            per_op[name] = sum(e.get("dur", 0) for e in evs) / 1e3 / steps
    return per_op


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="dcgan32:ns:64")
    p.add_argument("--precision", default="f32", choices=["f32", "bf16"])
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--hlo", help="write the compiled HLO text here")
    p.add_argument("--plain_lax_conv", action="store_true",
                   help="profile with plain lax convolutions in the layers (the slow 'before' state)")
    a = p.parse_args(argv)
    host_memory.keep_freed_memory()  # as launch.py does
    if a.plain_lax_conv:
        use_plain_lax_convolutions()
    arch, loss, batch = parse_config(a.config)
    cfg = make_config(arch, loss, batch, a.precision)
    size, channels, _ = ARCHS[arch]
    gan = train.build(cfg)
    mesh = parallel.make_mesh()
    step = parallel.parallelize(train.make_train_step(gan), cfg.parallel, mesh)
    state = step.put_state(jax.jit(lambda k: train.init_state(gan, k, (size, size, channels)),
                                   out_shardings=NamedSharding(mesh, P()))(jax.random.key(0)))
    x = np.random.default_rng(0).uniform(-1, 1, (cfg.loss.n_critic, batch, size, size, channels)).astype(np.float32)
    data = step.put_batch({"x": x})
    hlo = step.step.lower(state, data).compile().as_text()
    if a.hlo:
        with open(a.hlo, "w") as f:
            f.write(hlo)
    for _ in range(2):
        state, metrics = step(state, data)
    jax.block_until_ready((state, metrics))
    trace_dir = tempfile.mkdtemp(prefix="gan_jax_profile_")
    with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
        for _ in range(a.steps):
            state, metrics = step(state, data)
            jax.block_until_ready((state, metrics))
    path = sorted(glob.glob(os.path.join(trace_dir, "**", "*perfetto_trace.json.gz"), recursive=True))[-1]
    events = json.load(gzip.open(path))
    events = events["traceEvents"] if isinstance(events, dict) else events
    meta = op_metadata(hlo)
    per_op = op_times(events, meta, a.steps)
    shares = collections.Counter()
    for name, ms in per_op.items():
        shares[category(name, meta[name][1])] += ms
    label = " (plain lax convolutions)" if a.plain_lax_conv else ""
    print(f"{a.config} {a.precision}{label}: op time {sum(per_op.values()):.1f} ms/step; "
          + ", ".join(f"{k} {v:.1f} ms" for k, v in shares.most_common()))
    for name, ms in per_op.most_common(a.top):
        shape, op_name = meta[name]
        print(f"{ms:8.2f} ms  {name:30s} {shape[:30]:30s} {op_name.split('/', 1)[-1][-80:]}")


if __name__ == "__main__":
    main()
