"""benchmarks/: the analytic FLOP count equals torch's FlopCounterMode, and bench.py times launch.py's step."""
import importlib.util
import os
import sys

import pytest

BENCH = os.path.join(os.path.dirname(__file__), "..", "benchmarks")
sys.path.insert(0, BENCH)
import bench  # noqa: E402
import flops  # noqa: E402
import matmul  # noqa: E402

TORCH_REFERENCE = bench.DEFAULT_TORCH_REFERENCE


# torch.utils.flop_counter.FlopCounterMode around one torch_reference.py step (torch 2.13.0, CPU).
@pytest.mark.parametrize("arch,loss,batch,torch_count", [
    ("dcgan32", "ns", 64, 29_186_588_672),
    ("dcgan32", "wgan", 64, 91_551_694_848),
    ("dcgan64", "ns", 128, 344_513_839_104),
])
def test_step_flops_equal_torch_flop_counter_records(arch, loss, batch, torch_count):
    assert flops.step_flops(arch, loss, batch) == torch_count


@pytest.mark.parametrize("arch,loss", [("dcgan32", "ns"), ("dcgan32", "wgan"), ("dcgan32", "hinge")])
def test_step_flops_equal_torch_flop_counter_live(arch, loss):
    torch = pytest.importorskip("torch")
    if not os.path.exists(TORCH_REFERENCE):
        pytest.skip(f"no {TORCH_REFERENCE}")
    from torch.utils.flop_counter import FlopCounterMode
    spec = importlib.util.spec_from_file_location("torch_reference", TORCH_REFERENCE)
    ref = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ref)
    batch = 4
    step, n_critic = ref.make_step(arch, loss, batch, "cpu", "fp32")
    size, channels, _ = flops.ARCHS[arch]
    reals = [torch.rand(batch, channels, size, size) * 2 - 1 for _ in range(n_critic)]
    with FlopCounterMode(display=False) as counter:
        step(reals)
    assert flops.step_flops(arch, loss, batch) == counter.get_total_flops()


def test_bench_times_the_launch_step_without_recompiling():
    rows = bench.main(["--configs", "dcgan32:wgan:8", "--precisions", "f32", "--steps", "2", "--warmup", "0",
                       "--repeats", "2", "--malloc", "glibc"])
    (row,) = rows
    assert row["impl"] == "gan_jax" and row["loss"] == "wgan" and row["malloc"] == "glibc"
    assert row["compiles_while_timed"] == 0
    assert len(row["step_ms_repeats"]) == 2 and row["g_steps_per_s"] > 0
    assert row["flops_per_step"] == flops.step_flops("dcgan32", "wgan", 8)
    assert row["images_per_s"] == pytest.approx(row["g_steps_per_s"] * 8 * 6, rel=1e-2)


@pytest.mark.slow  # ~11 s; test_bench_times_the_launch_step_without_recompiling covers the timing path in CI
def test_bench_times_an_experiment_configs_launch_step_on_its_own_data():
    spec = "experiments/mixture_ring.py:pacgan2"
    rows = bench.main(["--experiments", spec, "experiments/mixture_ring.py:gan", "--steps", "3", "--warmup", "0",
                       "--repeats", "2", "--malloc", "glibc", "--num_devices", "1"])
    pac, gan = rows
    assert pac["num_devices"] == 1
    assert pac["experiment"] == spec and pac["config_name"] == "mixture_ring_pacgan2" and pac["precision"] == "f32"
    assert pac["compiles_while_timed"] == 0 == gan["compiles_while_timed"]
    assert pac["batch"] == 2 * gan["batch"] and pac["n_critic"] == 1  # PacGAN2 packs two samples per critic input
    assert pac["real_examples_per_s"] == pytest.approx(pac["g_steps_per_s"] * pac["batch"], rel=1e-2)
    assert "flops_per_step" not in pac and len(pac["step_ms_repeats"]) == 2
    ratios = bench.paired_ratios(gan["step_ms_repeats"], pac["step_ms_repeats"])
    assert f"{sorted(ratios)[0]:.2f}-{sorted(ratios)[1]:.2f}]" in bench.experiment_table(rows).splitlines()[3]


def test_bench_refuses_an_experiment_whose_task_is_not_the_gan():
    with pytest.raises(ValueError, match=r"'experiments/pix2pix_inpainting.py:mnist' has task 'pix2pix'"):
        bench.experiment_runner("experiments/pix2pix_inpainting.py:mnist", None, 0)


def test_bench_refuses_a_device_count_this_process_lacks(capsys):
    with pytest.raises(SystemExit):
        bench.main(["--experiments", "experiments/mixture_ring.py:gan", "--num_devices", "0"])
    assert "--num_devices 0: allowed 1 .. 8" in capsys.readouterr().err


@pytest.mark.parametrize("text,message", [
    ("dcgan32:ns", "must be ARCH:LOSS:BATCH"),
    ("dcgan48:ns:64", "arch must be one of"),
    ("dcgan32:lsgan:64", "loss one of"),
    ("dcgan32:ns:0", "batch >= 1"),
])
def test_bad_config_names_the_value_and_the_allowed_ones(text, message):
    with pytest.raises(ValueError, match=message) as e:
        bench.parse_config(text)
    assert repr(text) in str(e.value)
    with pytest.raises(ValueError, match="unknown loss 'lsgan'"):
        flops.step_flops("dcgan32", "lsgan", 64)


def test_torch_precisions_other_than_fp32_are_refused_off_cuda():
    # torch_reference would time fp32 and the table would call it bf16.
    with pytest.raises(ValueError, match=r"\['bf16'\] on 'cpu': allowed \['fp32'\]"):
        bench.check_torch_precisions(["fp32", "bf16"], "cpu")
    with pytest.raises(ValueError, match=r"\['fp16'\] on 'cuda'"):
        bench.check_torch_precisions(["fp16"], "cuda")
    bench.check_torch_precisions(["fp32"], "cpu")
    bench.check_torch_precisions(["fp32", "tf32", "bf16"], "cuda")


def test_profile_counts_asynchronous_ops_from_start_to_their_end_event():
    import profile_step
    meta = {"fusion.1": ("f32[4]", "x"), "conv.2": ("f32[4]", "y")}
    events = [{"ph": "X", "name": "fusion.1", "ts": 0, "dur": 2000},          # synchronous: 2 ms
              {"ph": "X", "name": "conv.2", "ts": 2000, "dur": 30},            # async start ...
              {"ph": "X", "name": "end: conv.2", "ts": 9000, "dur": 1000},     # ... ends at 10 ms: 8 ms
              {"ph": "X", "name": "fusion.1", "ts": 10000, "dur": 4000},
              {"ph": "X", "name": "other", "ts": 0, "dur": 99999}]
    times = profile_step.op_times(events, meta, steps=2)
    assert times == {"fusion.1": 3.0, "conv.2": 4.0}


def test_table_gives_the_paired_ratio_of_alternating_repeats():
    common = {"arch": "dcgan32", "loss": "ns", "batch": 64, "load_avg_1m": 2.0}
    ours = {**common, "impl": "gan_jax", "precision": "f32", "conv_impl": "gemm", "g_steps_per_s": 5.0,
            "achieved_tflops": 0.15, "compile_s": 5.0, "step_ms_repeats": [200.0, 190.0, 210.0, 180.0]}
    theirs = {**common, "impl": "torch-eager", "precision": "fp32", "g_steps_per_s": 5.1,
              "step_ms_repeats": [210.0, 171.0, 231.0, 198.0]}
    assert bench.paired_ratios(ours["step_ms_repeats"], theirs["step_ms_repeats"]) == pytest.approx(
        [1.05, 0.9, 1.1, 1.1])
    row = bench.table([ours, theirs]).splitlines()[2]
    assert "| 0.98x | 1.08x [0.90-1.10], 3/4 |" in row  # the medians' ratio 5.0/5.1, then the paired one


def test_matmul_rates_are_positive_per_shape_and_dtype_and_bad_shapes_are_named():
    rows = matmul.main(["--shapes", "64x32x16", "--repeats", "1", "--no_torch"])
    assert [(r["shape"], r["dtype"]) for r in rows] == [([64, 32, 16], "float32"), ([64, 32, 16], "bfloat16")]
    assert all(r["gflops"] > 0 for r in rows)
    with pytest.raises(ValueError, match="'64x0x16' must be MxKxN"):
        matmul.parse_shape("64x0x16")


def test_benchmarks_page_equals_what_its_raw_results_generate():
    import report
    assert report.main(["--check"]) == 0, "BENCHMARKS.md is stale: python benchmarks/report.py"


def test_benchmarks_report_refuses_a_block_without_results(tmp_path):
    import report
    with pytest.raises(ValueError, match="'tpu' is not in"):
        report.render("<!-- bench:tpu:begin -->\n<!-- bench:tpu:end -->\n", {}, str(tmp_path))
