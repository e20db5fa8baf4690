"""gan_jax: functional JAX/Flax research code for Generative Adversarial Networks.

`gan_jax.load(workdir)` restores a trained run to sample from (gan_jax/api.py); it is imported on first use, so
importing the package does not import JAX.
"""
import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {"load": "gan_jax.api", "Run": "gan_jax.api"}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
