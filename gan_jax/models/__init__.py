"""Model registry: architectures by config name, and PacGAN packing.

Every generator is called as `G(z, train) -> x` and every critic as `D(x, train) -> scores [B]`;
conditional ones (config.model.num_classes > 0) as `G(z, labels, train)` and `D(x, labels, train)`,
an ACGAN critic returning `(scores, class_logits)`. Conditional models wrap an unconditional `base`
spec, e.g. `dict(name="acgan", base=dict(name="dcgan", image_size=28, channels=1))`. Batch
statistics live in the `batch_stats` collection; dropout draws from the "dropout" RNG stream.
"""
from __future__ import annotations

import dataclasses
import importlib
from typing import Any

import flax.linen as nn
import jax.numpy as jnp


DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


# name -> "module:Class", imported on first use so a model's dependencies load only when used.
GENERATORS = {
    "mlp": "mlp:MLPGenerator",
    "dcgan": "dcgan:DCGANGenerator",
    "dcgan_tf": "dcgan_tf:DCGANTFGenerator",                # carpedm20's DCGAN, Stacked MNIST / PacGAN Table 2
    "goodfellow": "goodfellow:GoodfellowGenerator",
    "metz": "metz:MetzGenerator",                           # Stacked MNIST, Metz et al. 2016 / PacGAN Table 3
    "sngan": "sngan:SNGANGenerator",                        # SN-GAN standard CNN, Miyato et al. 2018 Table 3
    "conditional": "conditional:ConditionalGenerator",      # wraps `base` (cGAN, Mirza & Osindero 2014)
}
CRITICS = {
    "mlp": "mlp:MLPCritic",
    "dcgan": "dcgan:DCGANDiscriminator",
    "dcgan_tf": "dcgan_tf:DCGANTFDiscriminator",
    "goodfellow": "goodfellow:GoodfellowDiscriminator",
    "metz": "metz:MetzDiscriminator",
    "sngan": "sngan:SNGANDiscriminator",
    "label_concat": "conditional:LabelConcatCritic",        # wraps `base` (cGAN)
    "acgan": "conditional:ACGANCritic",                     # wraps `base` (Odena et al. 2017)
    "projection": "conditional:ProjectionCritic",           # wraps `base` (Miyato & Koyama 2018)
}
# The field through which a conditional wrapper takes its unconditional network.
_WRAPPED_FIELD = {"ConditionalGenerator": "generator", "LabelConcatCritic": "critic", "ACGANCritic": "critic",
                  "ProjectionCritic": "critic"}


def _class(path: str) -> type[nn.Module]:
    module, name = path.split(":")
    return getattr(importlib.import_module(f"gan_jax.models.{module}"), name)


def _build(registry: dict, kind: str, spec: dict[str, Any], dtype: str, axis_name: str | None,
           num_classes: int, pack: int = 1) -> nn.Module:
    spec = dict(spec)
    name = spec.pop("name", None)
    if name not in registry:
        raise ValueError(f"unknown {kind} {name!r}; allowed: {sorted(registry)}")
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; allowed: {sorted(DTYPES)}")
    cls = _class(registry[name])
    fields = {f.name for f in dataclasses.fields(cls)}
    if cls.__name__ in _WRAPPED_FIELD:
        if "base" not in spec or not num_classes:
            raise ValueError(f"{kind} {name!r} is conditional: it needs a `base` network spec and "
                             f"config.model.num_classes > 0 (got num_classes={num_classes})")
        base = _build(registry, kind, spec.pop("base"), dtype, axis_name, 0)
        spec[_WRAPPED_FIELD[cls.__name__]] = base
        spec["num_classes"] = num_classes
    elif "base" in spec:
        raise ValueError(f"{kind} {name!r} takes no `base`; conditional wrappers: "
                         f"{sorted(n for n, p in registry.items() if p.split(':')[1] in _WRAPPED_FIELD)}")
    if "bn_axis_name" in fields:
        spec["bn_axis_name"] = axis_name
    if "pack" in fields:
        spec["pack"] = pack
    if "dtype" in fields:
        spec["dtype"] = DTYPES[dtype]
    try:
        return cls(**spec)
    except TypeError as e:
        raise ValueError(f"bad options for {kind} {name!r}: {e}") from None


def option_defaults(kind: str, name: str) -> dict[str, Any]:
    """The options a config may give the `kind` ("generator" / "critic") network `name`, with their defaults
    ({} for a name not registered)."""
    registry = {"generator": GENERATORS, "critic": CRITICS}[kind]
    if name not in registry:
        return {}
    return {f.name: f.default for f in dataclasses.fields(_class(registry[name]))
            if f.default is not dataclasses.MISSING and f.name not in ("parent", "name")}


def build_generator(spec: dict[str, Any], dtype: str = "float32", axis_name: str | None = None,
                    num_classes: int = 0, pack: int = 1) -> nn.Module:
    """`pack`: the critic's packing degree (config.model.pack), for generators that normalise each packed
    slot alone."""
    return _build(GENERATORS, "generator", spec, dtype, axis_name, num_classes, pack)


def build_critic(spec: dict[str, Any], dtype: str = "float32", axis_name: str | None = None,
                 num_classes: int = 0) -> nn.Module:
    return _build(CRITICS, "critic", spec, dtype, axis_name, num_classes)


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
