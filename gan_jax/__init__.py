"""gan_jax: functional JAX/Flax research code for Generative Adversarial Networks."""

__version__ = "0.1.0"
