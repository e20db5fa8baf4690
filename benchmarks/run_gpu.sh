#!/usr/bin/env bash
# The GPU benchmark job behind BENCHMARKS.md's GPU rows: one job, one GPU, gan_jax and torch_reference.py.
#   OUT=/tmp/bench_gpu bash benchmarks/run_gpu.sh [path/to/torch_reference.py]
# Writes $OUT/bench_gpu.jsonl (one JSON line per run), $OUT/torch_compile.jsonl and the logs.
set -u
OUT=${OUT:-/tmp/bench_gpu}
REF=${1:-benchmarks/torch_reference.py}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_MEM_FRACTION=0.45  # leave the rest of the GPU to torch
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
python3 -c "import jax, flax, optax, torch; print('jax', jax.__version__, 'flax', flax.__version__, 'optax',
optax.__version__, 'torch', torch.__version__, jax.devices())" | tee -a "$OUT/gpu.txt"
# 1. The four configurations (DCGAN64 NS b128, DCGAN32 NS / WGAN / WGAN-GP b64) in f32 and bf16; torch eager
#    in fp32, tf32 and bf16, timed repeats interleaved with ours.
timeout 330 python3 benchmarks/bench.py --gpu --torch --torch_reference "$REF" --json "$OUT/bench_gpu.jsonl" \
  2>&1 | tee "$OUT/bench_gpu.log"
# 2. Share of the bf16 matrix peak: DCGAN64 NS at batch 1024, torch eager bf16 beside it.
timeout 90 python3 benchmarks/bench.py --gpu --torch --torch_reference "$REF" --torch_precisions bf16 \
  --configs dcgan64:ns:1024 --precisions bf16 --steps 20 --warmup 5 --repeats 3 --json "$OUT/bench_gpu.jsonl" \
  2>&1 | tee "$OUT/bench_1024.log"
# 3. XLA's own (cuDNN) convolutions instead of gan_jax's GEMM rules, and the unrolled n_critic loop.
timeout 90 python3 benchmarks/bench.py --gpu --precisions bf16 --conv_impl xla \
  --json "$OUT/bench_gpu.jsonl" 2>&1 | tee "$OUT/bench_xla.log"
timeout 60 python3 benchmarks/bench.py --gpu --configs dcgan32:wgan:64 dcgan32:wgan-gp:64 --precisions bf16 --unroll \
  --json "$OUT/bench_gpu.jsonl" 2>&1 | tee "$OUT/bench_unroll.log"
# 4. torch.compile, for PyTorch's best.
for cfg in "dcgan64 ns 128" "dcgan32 wgan 64"; do
  set -- $cfg
  timeout 100 python3 "$REF" --arch "$1" --loss "$2" --batch "$3" --precision bf16 --compile \
    --json "$OUT/torch_compile.jsonl" 2>&1 | tail -3
done
