"""The package as a user installs it: setup.cfg declares exactly the distributions gan_jax and the experiment
configs import (read from the source with `ast`), the wheel holds every config and the console scripts, and
(slow) the wheel installed into a fresh virtual environment launches a config by name from an unrelated directory.
"""
from __future__ import annotations

import ast
import configparser
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.helpers import subprocess_xla_flags

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("gan_jax", "experiments")
# Import name -> distribution name, where they differ.
DISTRIBUTIONS = {"PIL": "pillow", "absl": "absl-py", "sklearn": "scikit-learn", "orbax": "orbax-checkpoint",
                 "tensorflow_datasets": "tensorflow-datasets", "pytorch_fid": "pytorch-fid"}
# Declared though never imported by gan_jax: TFDS uses them for what gan_jax asks of it (see setup.cfg).
USED_THROUGH_TFDS = {"array-record", "importlib-resources"}
CONSOLE_SCRIPTS = {"gan-jax-launch": "gan_jax.launch:cli", "gan-jax-reproduce": "gan_jax.reproduce:cli",
                   "gan-jax-sample": "gan_jax.sample:main"}


def normalise(distribution: str) -> str:
    """A distribution's name as PEP 503 compares them: lower case, runs of - _ . as one -."""
    return re.sub(r"[-_.]+", "-", distribution).lower()


def requirement_names(text: str) -> dict[str, str]:
    """{normalised name: requirement} of a setup.cfg list of requirements (comment lines dropped by configparser)."""
    requirements = [line.strip() for line in text.splitlines() if line.strip()]
    return {normalise(re.split(r"[\s<>=!~;\[]", r, maxsplit=1)[0]): r for r in requirements}


def setup_cfg() -> configparser.ConfigParser:
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    return parser


def imported_distributions() -> dict[str, bool]:
    """{normalised distribution: whether some module imports it at module level} over every import statement of
    the installed packages' source, outside the standard library and the packages themselves; an import inside a
    function is lazy."""
    found: dict[str, bool] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
            lazy = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                    for n in ast.walk(f)}
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and not node.level:
                    modules = [node.module]
                else:
                    continue
                for top in {m.split(".")[0] for m in modules} - set(sys.stdlib_module_names) - set(PACKAGES):
                    name = normalise(DISTRIBUTIONS.get(top, top))
                    found[name] = found.get(name, False) or id(node) not in lazy
    return found


def test_install_requires_is_what_the_package_imports():
    config = setup_cfg()
    required = set(requirement_names(config["options"]["install_requires"]))
    extras = {name: set(requirement_names(text)) for name, text in config["options.extras_require"].items()}
    imported = imported_distributions()
    assert required - set(imported) == USED_THROUGH_TFDS, "declared but not imported"
    # Anything imported but not required is optional: imported only inside functions, and offered by an extra.
    for name in set(imported) - required:
        assert not imported[name], f"{name} is imported at module level but not in install_requires"
        assert any(name in extra for extra in extras.values()), f"{name} is imported but in no extra"
    assert {"jax", "flax", "optax", "numpy", "tensorflow-datasets", "pillow"} <= required


def test_extras():
    extras = {name: requirement_names(text) for name, text in setup_cfg()["options.extras_require"].items()}
    assert set(extras["test"]) == {"chex", "pytest", "pytest-xdist", "setuptools"}
    assert extras["test"]["setuptools"] == "setuptools>=70.1"  # pyproject.toml's build backend
    assert extras["bench"] == {"torch": "torch>=2.9,<3"}
    assert extras["reference"] == {"torch": "torch>=2.9,<3", "torchvision": "torchvision",
                                   "pytorch-fid": "pytorch-fid"}


def takes_no_required_arguments(path: Path, function: str) -> bool:
    """Whether the module-level function `function` of the source file `path` exists and can be called without
    arguments (read with `ast`: importing two absl command lines into one process would clash on their flags)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    (node,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == function] or [None]
    if node is None:
        return False
    a = node.args
    return len(a.defaults) == len(a.posonlyargs) + len(a.args) and all(d is not None for d in a.kw_defaults)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel of a copy of the sources (building in the checkout would write build/ there), built offline with
    the setuptools of this environment (the test extra's)."""
    source, out = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("wheel")
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for package in PACKAGES:
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation",
                    "--no-index", "-q", "-w", str(out)], check=True, capture_output=True, timeout=300)
    (path,) = out.glob("gan_jax-*.whl")
    return path


def test_the_wheel_holds_every_config_and_the_console_scripts(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        scripts = configparser.ConfigParser()
        scripts.read_string(z.read(entry_points).decode())
    for package in PACKAGES:
        assert {str(p.relative_to(ROOT)) for p in (ROOT / package).rglob("*.py")} <= names, package
    assert not [n for n in names if n.startswith("tests/")]
    assert dict(scripts["console_scripts"]) == CONSOLE_SCRIPTS
    for target in CONSOLE_SCRIPTS.values():  # a console script calls its function without arguments
        module, _, function = target.partition(":")
        assert takes_no_required_arguments(ROOT / (module.replace(".", "/") + ".py"), function), target


@pytest.mark.slow
def test_the_installed_wheel_launches_a_config_by_name_from_any_directory(wheel, tmp_path):
    """A fresh venv holding only the wheel (its dependencies: this environment's, through a .pth file; nothing is
    downloaded): the console scripts run from an unrelated directory, the code and configs come from the venv."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--no-deps",
                    "--no-index", "-q", str(wheel)], check=True, capture_output=True, timeout=300)
    site = next((venv / "lib").glob("python*/site-packages"))  # after the install: pip sees only the venv
    here = [p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()]
    (site / "dependencies.pth").write_text("\n".join(here) + "\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["XLA_FLAGS"] = subprocess_xla_flags(1)

    def run(*command: str) -> subprocess.CompletedProcess:
        return subprocess.run(command, capture_output=True, text=True, cwd=elsewhere, env=env, timeout=600)

    where = run(str(venv / "bin" / "python"), "-c", "import gan_jax, experiments; print(gan_jax.__file__); "
                                                     "print(experiments.__file__)")
    assert where.stdout.split() == [str(site / "gan_jax" / "__init__.py"), str(site / "experiments" / "__init__.py")]
    launch = run(str(venv / "bin" / "gan-jax-launch"), "--config", "mixture_ring", "--workdir", str(tmp_path / "run"),
                 "--config.steps=2", "--config.eval.num_samples=256")
    assert launch.returncode == 0, launch.stderr[-3000:]
    assert "final evaluation: " in launch.stdout and (tmp_path / "run" / "checkpoints" / "2").is_dir()
    sample = run(str(venv / "bin" / "gan-jax-sample"), "--workdir", str(tmp_path / "run"), "--out", "s.npz")
    assert sample.returncode == 0 and (elsewhere / "s.npz").is_file(), sample.stderr[-3000:]
    unknown = run(str(venv / "bin" / "gan-jax-launch"), "--config", "mixture_rign", "--workdir", str(tmp_path / "x"))
    assert unknown.returncode == 2 and "error: unknown config 'mixture_rign'; allowed: [" in unknown.stderr
    reproduce = run(str(venv / "bin" / "gan-jax-reproduce"))
    assert reproduce.returncode == 1 and "usage: python -m gan_jax.reproduce TABLE" in reproduce.stderr
