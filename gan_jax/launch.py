"""Train an experiment: gan-jax-launch --config NAME[:variant] --workdir DIR [--config.FIELD=VALUE ...].

--config names an installed config (`dcgan_mnist`, `mixture_ring:pacgan2`; an unknown name is refused listing
them) or a config file by path (`experiments/<name>.py[:variant]`, or a file of one's own); see
gan_jax.config_files. `python launch.py` in a checkout and `python -m gan_jax.launch` are the same command.

Every config (GANs, pix2pix, CycleGAN, the VAE, ADDA, the classifier) names its task (`config.task`) and runs
on the one loop of gan_jax.loop: on every local device (data parallel); with --coordinator_address,
--num_processes and --process_id (or on a TPU pod / under SLURM, detected by jax.distributed) on several
hosts. Restarting with the same workdir resumes from its latest checkpoint. Any config field, every option
of the chosen networks included, is set with --config.FIELD=VALUE (a Python literal, or text for strings).
"""
import numbers
import os
import sys

from absl import app, flags, logging

FLAGS = flags.FLAGS
flags.DEFINE_string("config", None, "Experiment config: an installed config's name (dcgan_mnist) or a config "
                    "file's path (experiments/<name>.py), then optionally :variant.")
flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and samples.")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0, for multi-host runs.")
flags.DEFINE_integer("num_processes", None, "Number of processes in a multi-host run.")
flags.DEFINE_integer("process_id", None, "This process's index in a multi-host run.")
flags.DEFINE_boolean("distributed", False, "Call jax.distributed.initialize() with auto-detection (TPU pod, SLURM).")
flags.DEFINE_enum("log_level", "warning", ["debug", "info", "warning", "error"],
                  "Level of library logs on stderr (orbax logs every save at info).")
flags.DEFINE_boolean("overwrite", False, "Move another run's files in --workdir aside (into replaced-<time>/) "
                     "instead of refusing them.")
flags.DEFINE_boolean("verbose", False, "Show the traceback of user errors too (also: GAN_JAX_VERBOSE=1).")
flags.mark_flags_as_required(["config", "workdir"])
_OVERRIDES: list[str] = []


def _parse(argv: list[str]) -> list[str]:
    from gan_jax.config_files import split_overrides
    rest, _OVERRIDES[:] = split_overrides(argv)
    return FLAGS(rest)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(FLAGS.log_level)
    try:
        run()
    except Exception as e:  # a user error in one line; anything else with its traceback
        from gan_jax.errors import user_message
        message = user_message(e)
        if message is None or FLAGS.verbose or os.environ.get("GAN_JAX_VERBOSE"):
            raise
        sys.stderr.write(f"error: {message}\n")
        sys.exit(2)


def run() -> None:
    from gan_jax import host_memory
    host_memory.keep_freed_memory()  # before JAX starts its threads
    from gan_jax.config_files import load_experiment
    config = load_experiment(FLAGS.config, _OVERRIDES)
    import jax
    if FLAGS.coordinator_address or FLAGS.num_processes is not None or FLAGS.process_id is not None:
        missing = [n for n in ("coordinator_address", "num_processes", "process_id") if getattr(FLAGS, n) is None]
        if missing:
            raise ValueError(f"multi-host runs need all of --coordinator_address, --num_processes, "
                             f"--process_id; missing: {missing}")
        jax.distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
    elif FLAGS.distributed:
        jax.distributed.initialize()
    print(f"process {jax.process_index()}/{jax.process_count()}: {jax.local_device_count()} local devices "
          f"of {jax.device_count()} ({jax.devices()[0].platform})", flush=True)
    from gan_jax import loop
    results = loop.train_and_evaluate(config, FLAGS.workdir, overwrite=FLAGS.overwrite)
    scalars = {k: v for k, v in (results or {}).items() if isinstance(v, numbers.Number)}
    if jax.process_index() == 0 and scalars:
        print("final evaluation: " + ", ".join(f"{k} = {v:.4g}" for k, v in scalars.items()))


def cli() -> None:
    """The gan-jax-launch command."""
    app.run(main, flags_parser=_parse)


if __name__ == "__main__":
    cli()
