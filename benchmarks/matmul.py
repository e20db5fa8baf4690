"""Matrix-product throughput of XLA:CPU (jax) and of PyTorch in f32 and bf16: whether a precision reaches the CPU's units.

    python benchmarks/matmul.py [--shapes 4096x4096x4096 4096x1024x128] [--repeats 5] [--no_torch]

Prints one JSON line per (implementation, shape, dtype) with GFLOP/s (2·M·K·N per product, median of the repeats).
The default shapes are a large square product and the im2col GEMMs of DCGAN32's second and third critic convolutions
at batch 64 (M = batch·output pixels, K = 4·4·input channels, N = output channels). On a CPU with AMX,
PyTorch's bf16 matmul (oneDNN) runs far above its f32 one while XLA:CPU's does not (BENCHMARKS.md).
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Callable

import jax
import jax.numpy as jnp


def gflops(run: Callable[[], object], m: int, k: int, n: int, repeats: int) -> float:
    run()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    return 2 * m * k * n / statistics.median(times) / 1e9


def parse_shape(text: str) -> tuple[int, int, int]:
    parts = text.split("x")
    if len(parts) != 3 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ValueError(f"shape {text!r} must be MxKxN with positive integers, e.g. 4096x1024x128")
    return tuple(int(p) for p in parts)


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", nargs="+", default=["4096x4096x4096", "4096x1024x128", "1024x2048x256"])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--no_torch", action="store_true", help="time jax only")
    a = p.parse_args(argv)
    try:
        shapes = [parse_shape(s) for s in a.shapes]
    except ValueError as e:
        p.error(str(e))
    if not a.no_torch:
        import torch
    rows = []
    matmul = jax.jit(jnp.matmul)
    for m, k, n in shapes:
        for name in ("float32", "bfloat16"):
            x, y = jnp.ones((m, k), name), jnp.ones((k, n), name)
            rate = gflops(lambda: matmul(x, y).block_until_ready(), m, k, n, a.repeats)
            rows.append({"impl": "jax", "device": str(jax.devices()[0]), "shape": [m, k, n], "dtype": name,
                         "gflops": rate})
            if not a.no_torch:
                tx, ty = torch.ones(m, k, dtype=getattr(torch, name)), torch.ones(k, n, dtype=getattr(torch, name))
                rate = gflops(lambda: tx @ ty, m, k, n, a.repeats)
                rows.append({"impl": "torch", "threads": torch.get_num_threads(), "shape": [m, k, n], "dtype": name,
                             "gflops": rate})
    for row in rows:
        print(json.dumps({**row, "gflops": round(row["gflops"], 1)}), flush=True)
    return rows


if __name__ == "__main__":
    main()
