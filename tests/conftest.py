"""Test set-up: 8 fake CPU devices, fast failure of stuck collectives, a compilation cache, no LLVM
optimisation for the CI suite, and no data of the machine's: tiny fake MNIST / Fashion-MNIST instead.

XLA flags must be set before JAX initialises its backend: here, at import time and in
`pytest_configure` (both before any test module runs a JAX operation).
"""
import os
import tempfile

from gan_jax.data import DATA_ENV
from tests import fake_data

_FLAGS = ("--xla_force_host_platform_device_count=8 "
          "--xla_cpu_collective_call_warn_stuck_timeout_seconds=3 "
          "--xla_cpu_collective_call_terminate_timeout_seconds=6")
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _FLAGS).strip()
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), "gan_jax_jax_cache"))

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def pytest_configure(config):
    """Compile without LLVM optimisation unless slow tests are selected: the CI suite's nets are tiny, so
    the optimisation passes cost far more than they save (1,128 s -> 770 s on a 2-core machine, same
    results); the slow end-to-end tests train real nets and keep the default. Subprocesses inherit it."""
    if "slow" not in config.getoption("markexpr", "").replace("not slow", ""):
        os.environ["XLA_FLAGS"] += " --xla_backend_optimization_level=0"


@pytest.fixture(scope="session", autouse=True)
def no_data_of_the_machine(tmp_path_factory):
    """Every test, and every process it starts, sees no folder of real original files ($GAN_JAX_DATA unset) and an
    empty default TFDS data_dir, so none reads the machine's data by accident; the tests of the real files read
    fake_data.REAL_ORIGINALS, taken when the tests were imported."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv(DATA_ENV, raising=False)
        patch.setenv("TFDS_DATA_DIR", str(tmp_path_factory.mktemp("default_tfds")))
        yield


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> str:
    """A TFDS data dir holding fake MNIST and Fashion-MNIST (tests/fake_data.py), 128 train and 128 test images
    each, built offline from their original files (not the published ones: unverified). Tests only read it."""
    return fake_data.build_tfds(tmp_path_factory.mktemp("fake_data"), 128, 128)
