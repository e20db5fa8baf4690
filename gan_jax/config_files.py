"""Loading an experiment config, "PATH[:variant]" or "NAME[:variant]", with command-line overrides.

The configs of the `experiments` package are installed with gan_jax: "dcgan_mnist" names experiments/dcgan_mnist.py,
and so does the path "experiments/dcgan_mnist.py" where no such file exists relative to the working directory
(a run launched outside a checkout). Any other file is loaded by its path; config files import each other as
`experiments.<name>`.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
from pathlib import Path
from types import ModuleType

import ml_collections

from gan_jax import config as config_lib

CONFIGS_PACKAGE = "experiments"


def configs_dir() -> Path:
    """The folder of the installed experiment configs (the `experiments` package)."""
    return Path(importlib.import_module(CONFIGS_PACKAGE).__file__).resolve().parent


def config_names() -> list[str]:
    """The names of the installed configs: the files of the `experiments` package that define `get_config`."""
    return sorted(p.stem for p in configs_dir().glob("*.py") if "def get_config" in p.read_text(encoding="utf-8"))


def _installed_name(path: str) -> str | None:
    """The config name that `path` spells as "NAME", "NAME.py" or "experiments/NAME.py"; None for other paths."""
    p = Path(path)
    if p.parent == Path(".") and p.suffix in ("", ".py"):
        return p.stem
    return p.stem if p.parent == Path(CONFIGS_PACKAGE) and p.suffix == ".py" else None


def resolve_config(path: str, root: str | None = None) -> Path:
    """The config file that `path` names: the file at `path` (relative to `root`, default the working directory)
    when there is one, else the installed config it spells (see `_installed_name`); ValueError naming the
    installed configs otherwise."""
    given = Path(root or ".") / path
    if given.is_file():
        return given.resolve()
    name, names = _installed_name(path), config_names()
    if name in names:
        return configs_dir() / f"{name}.py"
    if Path(path).suffix == "" and Path(path).parent == Path("."):
        raise ValueError(f"unknown config {path!r}; allowed: {names} (or the path of a config file)")
    raise ValueError(f"config file {path!r} not found (from {os.path.abspath(root or '.')}), nor an installed config; "
                     f"installed: {names}")


def _config_module(path: Path) -> ModuleType:
    """The module of config file `path`: an installed config is imported as `experiments.<name>` (the module
    the other configs import), any other file executed as a module of its own."""
    if path.parent == configs_dir():
        return importlib.import_module(f"{CONFIGS_PACKAGE}.{path.stem}")
    module_spec = importlib.util.spec_from_file_location("_experiment", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def load_config(spec: str, root: str | None = None) -> ml_collections.ConfigDict:
    """The config of `spec`, "PATH[:variant]" or "NAME[:variant]" (see `resolve_config`; a relative PATH is
    resolved against `root`, default the working directory): the file's `get_config(variant)`, or `get_config()`
    without a variant."""
    path, _, variant = spec.partition(":")
    try:
        module = _config_module(resolve_config(path, root))
    except SyntaxError as e:
        raise ValueError(f"config file {e.filename}, line {e.lineno}: {e.msg}") from None
    if not hasattr(module, "get_config"):
        raise ValueError(f"config file {module.__file__} defines no get_config(variant); installed configs: "
                         f"{config_names()}")
    return module.get_config(variant) if variant else module.get_config()


def split_overrides(argv: list[str]) -> tuple[list[str], list[str]]:
    """(argv without the --config.FIELD[=VALUE] arguments, those as "FIELD=VALUE")."""
    rest, overrides, i = [], [], 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--config."):
            field = arg[len("--config."):]
            if "=" not in field and i + 1 < len(argv):
                i += 1
                field = f"{field}={argv[i]}"
            overrides.append(field)
        else:
            rest.append(arg)
        i += 1
    return rest, overrides


def load_experiment(spec: str, overrides: list[str], root: str | None = None) -> ml_collections.ConfigDict:
    """The config of `spec` (see `load_config`) as the launch command runs it: every network option filled in,
    the command line's "FIELD=VALUE" overrides applied, locked."""
    config = load_config(spec, root)
    config_lib.fill_model_options(config)
    config_lib.apply_overrides(config, overrides)
    config.lock()
    return config
