"""Train an experiment from a checkout: python launch.py --config experiments/<name>.py[:variant] --workdir DIR
[--config.FIELD=VALUE ...]; the gan-jax-launch command of an installed gan_jax (see gan_jax/launch.py)."""
from gan_jax.launch import cli

if __name__ == "__main__":
    cli()
