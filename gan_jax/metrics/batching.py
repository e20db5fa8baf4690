"""Applying a function to a large array in fixed-size batches on the host, one batch in flight."""
from __future__ import annotations

from typing import Any, Callable

import jax
import numpy as np


def batched_apply(fn: Callable[[jax.Array], Any], images: np.ndarray | jax.Array, batch_size: int) -> Any:
    """fn over images [N, ...] in batches of `batch_size` -> its outputs concatenated as numpy arrays.

    The last batch is padded to full size (one compiled shape) and the padding dropped; each batch's
    output is fetched before the next is dispatched, so only one batch is in flight.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = images.shape[0]
    if n == 0:
        raise ValueError("no images to apply the network to (N = 0)")
    size = min(batch_size, n)
    outputs = []
    for start in range(0, n, size):
        chunk = images[start:start + size]
        valid = chunk.shape[0]
        if valid < size:
            chunk = np.concatenate([np.asarray(chunk), np.zeros((size - valid, *chunk.shape[1:]), chunk.dtype)])
        outputs.append(jax.tree.map(lambda o: np.asarray(o)[:valid], fn(chunk)))
    return jax.tree.map(lambda *parts: np.concatenate(parts), *outputs)
