"""Host batches to devices: overlapped transfer, and the [devices, per-device batch, ...] layout of pmap."""
from __future__ import annotations

import collections
import itertools
from typing import Any, Iterable, Iterator

import jax
import numpy as np


def _to_devices(batch: Any, sharding: jax.sharding.Sharding | None) -> Any:
    if sharding is None:
        return jax.device_put(batch)
    # Each host holds its slice of the global batch; on one host this is device_put(batch, sharding).
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), batch)


def prefetch_to_devices(iterator: Iterable[Any], size: int = 2, sharding: jax.sharding.Sharding | None = None
                        ) -> Iterator[Any]:
    """Yield the batches of `iterator` as device arrays, keeping `size` transfers in flight.

    sharding None: the default device. A sharding (e.g. NamedSharding(mesh, P("data"))) lays each
    host-local batch out as this host's part of a global array (jax.make_array_from_process_local_data).
    """
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    iterator = iter(iterator)
    in_flight: collections.deque = collections.deque()

    def enqueue(n: int) -> None:
        for batch in itertools.islice(iterator, n):
            in_flight.append(_to_devices(batch, sharding))

    enqueue(size)
    while in_flight:
        yield in_flight.popleft()
        enqueue(1)


def split_for_devices(batch: Any, num_devices: int) -> Any:
    """Reshape every leaf [B, ...] -> [num_devices, B // num_devices, ...] (the layout pmap expects)."""
    def split(x: np.ndarray) -> np.ndarray:
        if x.shape[0] % num_devices:
            raise ValueError(f"batch dimension {x.shape[0]} must be divisible by num_devices {num_devices}")
        return x.reshape(num_devices, x.shape[0] // num_devices, *x.shape[1:])
    return jax.tree.map(split, batch)
