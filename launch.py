"""Train a GAN experiment: python launch.py --config experiments/<name>.py --workdir DIR [--config.steps=N ...].

Trains on every local device (data parallel); with --coordinator_address, --num_processes and
--process_id (or on a TPU pod / under SLURM, detected by jax.distributed) on several hosts.
Restarting with the same workdir resumes from its latest checkpoint. Configs with a `trainer` field
(pix2pix / CycleGAN, the VAE, ADDA) run their own module's single-device loop.
"""
import numbers

from absl import app, flags, logging
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Experiment config file (experiments/*.py).", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and samples.")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0, for multi-host runs.")
flags.DEFINE_integer("num_processes", None, "Number of processes in a multi-host run.")
flags.DEFINE_integer("process_id", None, "This process's index in a multi-host run.")
flags.DEFINE_boolean("distributed", False, "Call jax.distributed.initialize() with auto-detection (TPU pod, SLURM).")
flags.DEFINE_enum("log_level", "warning", ["debug", "info", "warning", "error"],
                  "Level of library logs on stderr (orbax logs every save at info).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(FLAGS.log_level)
    from gan_jax import host_memory
    host_memory.keep_freed_memory()  # before JAX starts its threads
    import jax
    if FLAGS.coordinator_address or FLAGS.num_processes is not None or FLAGS.process_id is not None:
        missing = [n for n in ("coordinator_address", "num_processes", "process_id") if getattr(FLAGS, n) is None]
        if missing:
            raise app.UsageError(f"multi-host runs need all of --coordinator_address, --num_processes, "
                                 f"--process_id; missing: {missing}")
        jax.distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
    elif FLAGS.distributed:
        jax.distributed.initialize()
    print(f"process {jax.process_index()}/{jax.process_count()}: {jax.local_device_count()} local devices "
          f"of {jax.device_count()} ({jax.devices()[0].platform})", flush=True)
    from gan_jax import experiment
    results = experiment.trainer(FLAGS.config)(FLAGS.config, FLAGS.workdir)
    scalars = {k: v for k, v in (results or {}).items() if isinstance(v, numbers.Number)}
    if jax.process_index() == 0 and scalars:
        print("final evaluation: " + ", ".join(f"{k} = {v:.4g}" for k, v in scalars.items()))


if __name__ == "__main__":
    app.run(main)
