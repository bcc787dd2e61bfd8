"""Seeds and data over devices and processes: a 2-D mesh ("seed", "data"), and seed-axis programs.

    mesh = make_mesh(num_seeds=4, data_parallel=2)         # None on one device: nothing is sharded
    states = shard(states, mesh, P("seed"))                # per-seed arrays: split over the seed axis
    batch = global_batch(images, indices, mesh)             # [S, b, ...]: seeds over "seed", examples over "data"
    step = seed_jit(train_step, (0, 0, 0), batching)       # fn over a leading seed axis, one jitted program

Several processes (`jax.distributed`, see `initialize`) see one global mesh; each process gathers only the rows of
the batch its own devices hold (`global_batch`), and runs the same program.

Seed batching (`seed_jit`):
    "vmap"    `jax.vmap` over seeds: the form for accelerators and meshes.
    "unroll"  one unbatched copy of the function per seed, results stacked: one program, compile time grows with S.
    "loop"    the one-seed program, compiled once, called for each seed (reading and writing seed s of the
              stacked state in place): S seeds cost S times one seed, which XLA:CPU's batched products do not.
    "auto"    "loop" on a single CPU device, "vmap" elsewhere.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

SEED_BATCHING = ("auto", "vmap", "unroll", "loop")


def initialize(coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None,
               *, timeout_s: int = 60) -> bool:
    """Joins a multi-process run (`jax.distributed.initialize`), before any other JAX call.

    Arguments default to the environment (`NOISEGROUP_COORDINATOR` "host:port", `NOISEGROUP_NUM_PROCESSES`,
    `NOISEGROUP_PROCESS_ID`); with none of them set, and none given, this is a single-process run and nothing
    happens. On CPU the processes talk over gloo collectives.

    Returns:
        True if this process joined a multi-process run.

    Raises:
        ValueError: an incomplete or inconsistent setting (naming it).
        RuntimeError: the coordinator was not reachable within `timeout_s`.
    """
    coordinator = coordinator or os.environ.get("NOISEGROUP_COORDINATOR")
    num_processes = num_processes if num_processes is not None else os.environ.get("NOISEGROUP_NUM_PROCESSES")
    process_id = process_id if process_id is not None else os.environ.get("NOISEGROUP_PROCESS_ID")
    given = {"coordinator": coordinator, "num_processes": num_processes, "process_id": process_id}
    if all(v is None for v in given.values()):
        return False
    missing = [k for k, v in given.items() if v is None]
    if missing:
        raise ValueError(f"a multi-process run needs coordinator, num_processes and process_id; missing {missing}")
    num_processes, process_id = int(num_processes), int(process_id)
    if num_processes < 1 or not 0 <= process_id < num_processes:
        raise ValueError(f"process_id must lie in [0, num_processes={num_processes}), got {process_id}")
    if jax.config.jax_platforms in (None, "", "cpu") or "cpu" in str(jax.config.jax_platforms):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if process_id != 0:  # process 0 serves the coordinator; the others would be killed by XLA, not told, on failure
        _wait_for_coordinator(coordinator, process_id, num_processes, timeout_s)
    try:
        jax.distributed.initialize(coordinator, num_processes, process_id, initialization_timeout=timeout_s)
    except Exception as e:  # noqa: BLE001 - the runtime raises several kinds; all mean "could not join"
        raise RuntimeError(f"process {process_id} of {num_processes} could not join the run at coordinator "
                           f"{coordinator!r} within {timeout_s} s: {e}") from e
    return True


def _wait_for_coordinator(address: str, process_id: int, num_processes: int, timeout_s: float) -> None:
    """Returns once a TCP connection to `address` ("host:port") opens; RuntimeError after `timeout_s` seconds."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"coordinator must be 'host:port', got {address!r}")
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection((host, int(port)), timeout=1.0).close()
            return
        except OSError as e:
            if time.monotonic() >= deadline:
                raise RuntimeError(f"process {process_id} of {num_processes} could not join the run at coordinator "
                                   f"{address!r} within {timeout_s} s: {e} (is process 0 running there?)") from e
            time.sleep(0.2)


def make_mesh(num_seeds: int, data_parallel: int = 1, devices=None) -> Mesh | None:
    """A ("seed", "data") mesh: `data_parallel` devices per seed group, seeds over as many groups as divide them.

    In a multi-process run the mesh must use every device (each process then holds part of every array); on one
    process it takes the most devices that divide the work. None when that is one device.

    Raises:
        ValueError: a data axis that the devices cannot hold, or (multi-process) seeds that cannot fill the devices.
    """
    devices = list(jax.devices() if devices is None else devices)
    if data_parallel < 1 or len(devices) % data_parallel:
        raise ValueError(f"data_parallel={data_parallel} must divide the {len(devices)} devices")
    groups = len(devices) // data_parallel
    seed_axis = max(n for n in range(1, groups + 1) if num_seeds % n == 0)
    if jax.process_count() > 1 and seed_axis * data_parallel != len(devices):
        raise ValueError(f"{num_seeds} seeds x data_parallel={data_parallel} cannot use all {len(devices)} devices "
                         f"of the {jax.process_count()} processes: choose seeds and data_parallel so that "
                         "seeds_on_mesh x data_parallel equals the device count")
    if seed_axis * data_parallel == 1:
        return None
    grid = np.asarray(devices[:seed_axis * data_parallel]).reshape(seed_axis, data_parallel)
    return Mesh(grid, ("seed", "data"))


def shard(tree: Any, mesh: Mesh | None, spec: P = P("seed")) -> Any:
    """Places every leaf of `tree` with `spec` on the mesh; no-op without a mesh.

    Leaves are global values: host arrays (or single-device arrays) that every process holds in full, or global
    arrays from an earlier program. In a multi-process run each process keeps only its devices' parts.
    """
    if mesh is None:
        return tree
    sharding = NamedSharding(mesh, spec)
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)
    return jax.tree.map(lambda x: _global_array(x, sharding), tree)


def _global_array(x: Any, sharding: NamedSharding) -> jax.Array:
    if isinstance(x, jax.Array) and not x.is_fully_addressable:  # already global: reshard in one program
        return jax.jit(lambda y: y, out_shardings=sharding)(x)
    if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        data = _global_array(jax.random.key_data(x), sharding)  # [..., key words]: the spec splits leading axes
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
    value = np.asarray(x)
    return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])


def abstract_on_mesh(abstract_tree: Any, mesh: Mesh | None, spec: P = P("seed")) -> Any:
    """`abstract_tree` (ShapeDtypeStructs) with its sharding attached (the mesh's, or this process's first device
    without a mesh): the restore target of a checkpoint, which may have been written by another process count."""
    sharding = NamedSharding(mesh, spec) if mesh is not None else jax.sharding.SingleDeviceSharding(jax.devices()[0])
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding), abstract_tree)


BATCH_SPEC = P("seed", "data")


def global_batch(arrays: dict[str, np.ndarray], indices: np.ndarray, mesh: Mesh | None) -> dict[str, jax.Array]:
    """The batch `{name: arrays[name][indices]}` `[S, b, ...]`, seeds over the "seed" axis, examples over "data".

    Each process gathers only the rows that its own devices hold (`jax.make_array_from_callback`), so in a
    multi-process run no process builds the global batch.
    """
    if mesh is None:
        return {k: jnp.asarray(v[indices]) for k, v in arrays.items()}
    sharding = NamedSharding(mesh, BATCH_SPEC)

    def one(values):
        shape = (*indices.shape, *values.shape[1:])
        return jax.make_array_from_callback(shape, sharding, lambda index: values[indices[index[:2]]])

    return {k: one(v) for k, v in arrays.items()}


def resolve_seed_batching(batching: str, sharded: bool) -> str:
    """"auto": "loop" on a single CPU device, "vmap" on accelerators and meshes."""
    if batching not in SEED_BATCHING:
        raise ValueError(f"seed_batching must be one of {SEED_BATCHING}, got {batching!r}")
    if batching == "auto":
        return "loop" if jax.default_backend() == "cpu" and not sharded else "vmap"
    if batching == "loop" and sharded:
        return "vmap"  # a mesh needs the seeds in one program
    return batching


def _seed_count(args, axes) -> int:
    (size,) = {jax.tree.leaves(a)[0].shape[0] for a, ax in zip(args, axes) if ax == 0}
    return size


def seed_map(fn: Callable, in_axes=0, batching: str = "vmap") -> Callable:
    """`fn` over the leading seed axis of its arguments (those with axis 0 in `in_axes`), as one traced function.

    "vmap" batches the seeds; "unroll" (and "loop", which only `seed_jit` distinguishes) traces one unbatched copy
    of `fn` per seed and stacks the results. One seed is always run unbatched.
    """

    def run(*args):
        axes = in_axes if isinstance(in_axes, (tuple, list)) else (in_axes,) * len(args)
        size = _seed_count(args, axes)
        if batching == "vmap" and size > 1:
            return jax.vmap(fn, in_axes=in_axes)(*args)
        per_seed = [fn(*(jax.tree.map(lambda x: x[s], a) if ax == 0 else a for a, ax in zip(args, axes)))
                    for s in range(size)]
        return jax.tree.map(lambda *xs: jnp.stack(xs), *per_seed)

    return run


def seed_jit(fn: Callable, in_axes, batching: str, *, donate: bool = False) -> Callable:
    """`fn(state, *args) -> (state, aux)` over a leading seed axis, jitted (the state donated if `donate`).

    With "loop", one program runs one seed: it reads seed s of every seed-axis argument, and writes the new state
    back into the stacked state in place; the auxiliary outputs are stacked on the host side of the loop.
    """
    if batching != "loop":
        return jax.jit(seed_map(fn, in_axes, batching), donate_argnums=0 if donate else ())

    def one_seed(states, s, *args):
        picked = [jax.tree.map(lambda x: x[s], a) if ax == 0 else a for a, ax in zip(args, in_axes[1:])]
        new, aux = fn(jax.tree.map(lambda x: x[s], states), *picked)
        return jax.tree.map(lambda whole, part: whole.at[s].set(part), states, new), aux

    program = jax.jit(one_seed, donate_argnums=0 if donate else ())

    def run(states, *args):
        auxes = []
        for s in range(jax.tree.leaves(states)[0].shape[0]):
            states, aux = program(states, jnp.int32(s), *args)
            auxes.append(aux)
        return states, jax.tree.map(lambda *xs: jnp.stack(xs), *auxes)

    return run
