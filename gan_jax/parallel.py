"""Running a task's per-device train step on every device: `jax.shard_map` over a mesh (default) or `jax.pmap`.

The same per-device function (written with the named axis `AXIS`) runs either way; only where the state
and the batch live differs:
  * shard_map: the state is replicated by sharding (`P()`), every batch array is split along its example
    axis (`batch_axis`: 0 for [B, ...], 1 for the GAN's [n_critic, B, ...]) over the mesh (multi-host:
    each process feeds its own slice);
  * pmap: the state carries a leading device axis, each batch array one more in front of its example axis.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

AXIS = "batch"
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
    batch_axis: int = 1

    @property
    def num_devices(self) -> int:
        return self.mesh.size

    def put_state(self, state):
        """Place a (host or replicated) state for `step`."""
        if self.mode == "pmap":
            n = len(self.mesh.local_devices)
            # Stack on the host: a state already replicated over the mesh cannot be stacked as it lies.
            return jax.tree.map(lambda x: jnp.stack([_to_host(x)] * n), state)
        return jax.device_put(state, NamedSharding(self.mesh, P()))

    def get_state(self, state):
        """The replicated state as global arrays (what checkpoints store)."""
        if self.mode == "pmap":
            return jax.tree.map(lambda x: x[0], state)
        return state

    def put_batch(self, host_batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
        """A host's batch (its examples on axis `batch_axis`) → device arrays for `step`."""
        a = self.batch_axis
        if self.mode == "pmap":
            n = len(self.mesh.local_devices)

            def split(x):
                b = x.shape[a]
                return np.moveaxis(x.reshape(*x.shape[:a], n, b // n, *x.shape[a + 1:]), a, 0)
            return jax.tree.map(split, host_batch)
        sharding = NamedSharding(self.mesh, _batch_spec(a))
        return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), host_batch)

    def __call__(self, state, batch):
        return self.step(state, batch)


def _to_host(x: jax.Array) -> Any:
    """A replicated array's value on the host (a typed PRNG key stays a key, on the first local device)."""
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        return jax.random.wrap_key_data(np.asarray(jax.random.key_data(x).addressable_data(0)),
                                        impl=jax.random.key_impl(x))
    return np.asarray(x.addressable_data(0))


def _batch_spec(batch_axis: int) -> P:
    return P(*([None] * batch_axis), AXIS)


def example_index(local_batch: int) -> jax.Array:
    """Global indices [local_batch] of this device's examples (inside a step over `AXIS`): per-example keys
    folded from them make a step's randomness independent of the device count."""
    return jax.lax.axis_index(AXIS) * local_batch + jnp.arange(local_batch)


def parallelize(step_fn: StepFn, mode: str = "shard_map", mesh: Mesh | None = None, batch_axis: int = 1
                ) -> ParallelStep:
    """Compile `step_fn` over all devices of `mesh` (the batch split along `batch_axis`); the state argument's
    buffers are donated."""
    mesh = mesh if mesh is not None else make_mesh()
    if mode == "shard_map":
        # check_vma=False gives pmap's autodiff semantics: gradients stay per device until the step's
        # own lax.pmean. With vma typing, the gradient w.r.t. the replicated (invariant) parameters
        # would already be summed over devices, and the all-gathered losses counted once per device.
        fn = jax.shard_map(step_fn, mesh=mesh, in_specs=(P(), _batch_spec(batch_axis)),
                           out_specs=(P(), P()), check_vma=False)
        return ParallelStep(mode, mesh, jax.jit(fn, donate_argnums=0), batch_axis)
    if mode == "pmap":
        return ParallelStep(mode, mesh, jax.pmap(step_fn, axis_name=AXIS, devices=mesh.local_devices,
                                                 donate_argnums=0), batch_axis)
    raise ValueError(f"unknown parallel mode {mode!r}; allowed: ['shard_map', 'pmap']")
