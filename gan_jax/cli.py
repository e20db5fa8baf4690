"""The command line of the modules that train one kind of run: ``python -m gan_jax.<module> --config
FILE[:variant] --workdir DIR`` (config overrides as ``--config.<field>=value``)."""
from __future__ import annotations

from typing import Any, Callable


def run(train_and_evaluate: Callable[[Any, str], Any], config_help: str, workdir_help: str) -> None:
    """Define --config / --workdir and call ``train_and_evaluate(config, workdir)``."""
    from absl import app, flags, logging
    from ml_collections import config_flags

    from gan_jax import host_memory

    config_flags.DEFINE_config_file("config", None, config_help, lock_config=True)
    flags.DEFINE_string("workdir", None, workdir_help)
    flags.mark_flags_as_required(["config", "workdir"])

    def main(argv: list[str]) -> None:
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {argv[1:]}")
        logging.set_verbosity("warning")  # orbax logs every save step at info
        host_memory.keep_freed_memory()
        train_and_evaluate(flags.FLAGS.config, flags.FLAGS.workdir)

    app.run(main)
