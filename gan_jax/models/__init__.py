"""Model registry: architectures by config name, and PacGAN packing.

Every generator is called as `G(z, train) -> x` and every critic as `D(x, train) -> scores [B]`;
batch statistics live in the `batch_stats` collection.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from gan_jax.models.mlp import MLPCritic, MLPGenerator

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def _dcgan(kind: str) -> type[nn.Module]:
    from gan_jax.models import dcgan
    return dcgan.DCGANGenerator if kind == "generator" else dcgan.DCGANDiscriminator


# name -> (kind -> module class); imported lazily so that a model's dependencies load only when used.
GENERATORS = {"mlp": lambda kind: MLPGenerator, "dcgan": _dcgan}
CRITICS = {"mlp": lambda kind: MLPCritic, "dcgan": _dcgan}


def _build(registry: dict, kind: str, spec: dict[str, Any], dtype: str, axis_name: str | None) -> nn.Module:
    spec = dict(spec)
    name = spec.pop("name")
    if name not in registry:
        raise ValueError(f"unknown {kind} {name!r}; allowed: {sorted(registry)}")
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; allowed: {sorted(DTYPES)}")
    cls = registry[name](kind)
    if "bn_axis_name" in {f.name for f in dataclasses.fields(cls)}:
        spec["bn_axis_name"] = axis_name
    try:
        return cls(dtype=DTYPES[dtype], **spec)
    except TypeError as e:
        raise ValueError(f"bad options for {kind} {name!r}: {e}") from None


def build_generator(spec: dict[str, Any], dtype: str = "float32", axis_name: str | None = None) -> nn.Module:
    return _build(GENERATORS, "generator", spec, dtype, axis_name)


def build_critic(spec: dict[str, Any], dtype: str = "float32", axis_name: str | None = None) -> nn.Module:
    return _build(CRITICS, "critic", spec, dtype, axis_name)


def pack(x: jnp.ndarray, m: int) -> jnp.ndarray:
    """PacGAN packing (Lin et al. 2018): m consecutive samples concatenated along the last axis.

    [B, ..., C] → [B/m, ..., m·C]: vectors are concatenated, images stacked along channels.
    """
    if m == 1:
        return x
    if x.shape[0] % m:
        raise ValueError(f"batch {x.shape[0]} is not divisible by the packing degree {m}")
    g = x.reshape(x.shape[0] // m, m, *x.shape[1:])
    g = jnp.moveaxis(g, 1, -2)
    return g.reshape(*g.shape[:-2], m * x.shape[-1])
