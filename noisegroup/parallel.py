"""Sharding the seed axis over devices (a 1-D ``jax.sharding.Mesh`` named "seed").

Every array whose leading axis is the seed axis (train state, per-seed keys, per-seed batches) is placed with the
same `NamedSharding`, so a vmapped step runs each device's seeds locally. With one device, or a seed count that no
device count above one divides, nothing is sharded.
"""

from __future__ import annotations

from typing import Any

import jax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P


def seed_mesh(num_seeds: int, devices=None) -> Mesh | None:
    """A mesh over the most devices that evenly divide `num_seeds`, or None if that is one device."""
    devices = list(jax.devices() if devices is None else devices)
    count = max(n for n in range(1, len(devices) + 1) if num_seeds % n == 0)
    if count == 1:
        return None
    return Mesh(devices[:count], ("seed",))


def shard_seeds(tree: Any, mesh: Mesh | None) -> Any:
    """Places every leaf of `tree` (leading axis = seeds) split over the mesh's seed axis; no-op without a mesh."""
    if mesh is None:
        return tree
    return jax.device_put(tree, NamedSharding(mesh, P("seed")))


def seed_shardings(abstract_tree: Any, mesh: Mesh | None) -> Any:
    """`abstract_tree` (ShapeDtypeStructs) with the seed sharding attached: the restore target for checkpoints."""
    if mesh is None:
        return abstract_tree
    sharding = NamedSharding(mesh, P("seed"))
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding), abstract_tree)
