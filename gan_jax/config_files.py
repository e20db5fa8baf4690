"""Loading an experiment config file, "experiments/<file>.py[:variant]", by path, with command-line overrides."""
from __future__ import annotations

import importlib.util
import os
import sys

import ml_collections

from gan_jax import config as config_lib


def load_config(spec: str, root: str) -> ml_collections.ConfigDict:
    """The config of "experiments/<file>.py[:variant]", resolved against the project root: the file's
    `get_config(variant)`, or `get_config()` without a variant."""
    path, _, variant = spec.partition(":")
    module_spec = importlib.util.spec_from_file_location("_experiment", os.path.join(root, path))
    module = importlib.util.module_from_spec(module_spec)
    if root not in sys.path:
        sys.path.insert(0, root)
    try:
        module_spec.loader.exec_module(module)
    except SyntaxError as e:
        raise ValueError(f"config file {e.filename}, line {e.lineno}: {e.msg}") from None
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


def load_experiment(spec: str, overrides: list[str], root: str) -> ml_collections.ConfigDict:
    """The config of `spec` ("PATH[:variant]", PATH relative to the working directory) as launch.py runs it:
    every network option filled in, the command line's "FIELD=VALUE" overrides applied, locked. `root`: the
    directory the config's own imports (`experiments.*`) resolve from."""
    path, sep, variant = spec.partition(":")
    if not os.path.isfile(path):
        raise ValueError(f"config file {path!r} not found (from {os.getcwd()})")
    config = load_config(os.path.abspath(path) + sep + variant, root)
    config_lib.fill_model_options(config)
    config_lib.apply_overrides(config, overrides)
    config.lock()
    return config
