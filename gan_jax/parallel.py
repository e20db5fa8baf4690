"""Running the per-device train step on every device: `jax.shard_map` over a mesh (default) or `jax.pmap`.

The same per-device function (written with the named axis `train.AXIS`) runs either way; only
where the state and the batch live differs:
  * shard_map: the state is replicated by sharding (`P()`), the batch [n_critic, B, ...] is split
    along its batch axis over the mesh (multi-host: each process feeds its own slice);
  * pmap: the state carries a leading device axis, the batch is [devices, n_critic, b, ...].
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from gan_jax.train import AXIS

StepFn = Callable[[Any, dict], tuple[Any, dict]]


def make_mesh(devices: list | None = None) -> Mesh:
    """A 1-D mesh over `devices` (default: every device of every process) with axis `AXIS`."""
    return Mesh(np.asarray(devices if devices is not None else jax.devices()), (AXIS,))


@dataclasses.dataclass(frozen=True)
class ParallelStep:
    """A compiled data-parallel train step plus the placement of its inputs and outputs."""

    mode: str
    mesh: Mesh
    step: Callable

    @property
    def num_devices(self) -> int:
        return self.mesh.size

    def put_state(self, state):
        """Place a (host or replicated) state for `step`."""
        if self.mode == "pmap":
            n = len(self.mesh.local_devices)
            return jax.tree.map(lambda x: jnp.stack([x] * n), state)
        return jax.device_put(state, NamedSharding(self.mesh, P()))

    def get_state(self, state):
        """The replicated state as global arrays (what checkpoints store)."""
        if self.mode == "pmap":
            return jax.tree.map(lambda x: x[0], state)
        return state

    def put_batch(self, host_batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
        """A host's batch [n_critic, host batch, ...] → device arrays for `step`."""
        if self.mode == "pmap":
            n = len(self.mesh.local_devices)

            def split(x):
                k, b = x.shape[:2]
                return np.swapaxes(x.reshape(k, n, b // n, *x.shape[2:]), 0, 1)
            return jax.tree.map(split, host_batch)
        sharding = NamedSharding(self.mesh, P(None, AXIS))
        return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), host_batch)

    def __call__(self, state, batch):
        return self.step(state, batch)


def parallelize(step_fn: StepFn, mode: str = "shard_map", mesh: Mesh | None = None) -> ParallelStep:
    """Compile `step_fn` over all devices of `mesh`; the state argument's buffers are donated."""
    mesh = mesh if mesh is not None else make_mesh()
    if mode == "shard_map":
        # check_vma=False gives pmap's autodiff semantics: gradients stay per device until the step's
        # own lax.pmean. With vma typing, the gradient w.r.t. the replicated (invariant) parameters
        # would already be summed over devices, and the all-gathered losses counted once per device.
        fn = jax.shard_map(step_fn, mesh=mesh, in_specs=(P(), P(None, AXIS)), out_specs=(P(), P()),
                           check_vma=False)
        return ParallelStep(mode, mesh, jax.jit(fn, donate_argnums=0))
    if mode == "pmap":
        return ParallelStep(mode, mesh, jax.pmap(step_fn, axis_name=AXIS, devices=mesh.local_devices,
                                                 donate_argnums=0))
    raise ValueError(f"unknown parallel mode {mode!r}; allowed: ['shard_map', 'pmap']")
