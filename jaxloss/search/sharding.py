"""The population axis on a device mesh.

The population (the B model copies) is the leading axis of every array of the training
state. It is split over a 1-D :class:`jax.sharding.Mesh` with one named axis (default
``'population'``): each device trains ``B / num_devices`` copies, the data are replicated.
The same code runs on one device (a 1-device mesh), on several local devices and on
several hosts (after ``jax.distributed.initialize()``, ``jax.devices()`` lists the devices
of every process and the mesh spans them all).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

POPULATION_AXIS = "population"


def population_mesh(devices: Sequence[jax.Device] | None = None,
                    axis_name: str = POPULATION_AXIS) -> Mesh:
  """A 1-D mesh over ``devices`` (default: every device of every process)."""
  devices = jax.devices() if devices is None else list(devices)
  if not devices:
    raise ValueError("population_mesh: `devices` must not be empty.")
  return Mesh(np.asarray(devices, dtype=object), (axis_name,))


def axis_size(mesh: Mesh, axis_name: str) -> int:
  if axis_name not in mesh.shape:
    raise ValueError(f"search: the mesh has no axis {axis_name!r} (axes: {tuple(mesh.shape)}); "
                     "build it with jaxloss.search.population_mesh() or pass `axis_name`.")
  return mesh.shape[axis_name]


def check_population_size(mesh: Mesh, axis_name: str, population_size: int) -> None:
  """B must be a positive multiple of the number of devices along the population axis."""
  n = axis_size(mesh, axis_name)
  if population_size < 1 or population_size % n:
    raise ValueError(
        f"search: `population_size` must be a positive multiple of the number of devices on "
        f"the mesh axis {axis_name!r} ({n}), got {population_size}. Change B or pass a mesh "
        f"over fewer devices, e.g. jaxloss.search.population_mesh(jax.devices()[:k]).")


def population_sharding(mesh: Mesh, axis_name: str) -> NamedSharding:
  return NamedSharding(mesh, P(axis_name))


def replicated_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def put(tree: Any, sharding: NamedSharding) -> Any:
  """Places every leaf with ``sharding``; works for multi-process meshes too.

  Every process must pass the same host values (for the data: the whole split).
  """

  def place(x):
    if isinstance(x, jax.Array) and x.sharding == sharding:
      return x
    if sharding.is_fully_addressable:
      return jax.device_put(x, sharding)
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])

  return jax.tree.map(place, tree)


def to_host(tree: Any) -> Any:
  """``device_get`` for replicated (fully-replicated, possibly multi-process) arrays."""
  return jax.device_get(tree)
