"""Checkpoints of the whole search state with orbax (one per outer step, the last few kept).

Each checkpoint ``<dir>/<k>`` (``k`` = number of completed outer steps) holds two items:
``state`` (the :class:`SearchState` pytree: population, policy, epoch counter; saved with
``StandardSave``) and ``meta`` (JSON: the config fingerprint and the record of epoch
``k - 1``, so that a run killed between the checkpoint and the log write loses nothing).
Orbax writes into a temporary directory and renames it when complete, so a run killed
mid-write leaves the previous checkpoint as the latest one.

Typed PRNG key arrays (``jax.random.key``) inside a user state are stored as their raw key
data and re-wrapped on restore.
"""

from __future__ import annotations

import os
import shutil
import warnings
from typing import Any

import jax
import orbax.checkpoint as ocp


class CheckpointDamagedError(RuntimeError):
  """Every checkpoint of a directory failed to restore."""


def _is_typed_key(x) -> bool:
  return isinstance(x, (jax.Array, jax.ShapeDtypeStruct)) and jax.dtypes.issubdtype(
      x.dtype, jax.dtypes.prng_key)


def _to_storable(tree):
  return jax.tree.map(lambda a: jax.random.key_data(a) if _is_typed_key(a) else a, tree)


def _abstract_storable(abstract):

  def convert(a):
    if not _is_typed_key(a):
      return a
    data = jax.eval_shape(jax.random.key_data, a)
    return jax.ShapeDtypeStruct(data.shape, data.dtype, sharding=getattr(a, "sharding", None))

  return jax.tree.map(convert, abstract)


def _from_storable(tree, abstract):

  def convert(a, ref):
    if _is_typed_key(ref):
      return jax.random.wrap_key_data(a, impl=jax.random.key_impl(ref) if isinstance(
          ref, jax.Array) else ref.dtype._impl)
    return a

  return jax.tree.map(convert, tree, abstract)


def _retention(max_to_keep: int) -> dict:
  """``preservation_policy=LatestN(n)`` (current orbax); ``max_to_keep`` on older releases."""
  managers = getattr(ocp, "checkpoint_managers", None)
  fields = getattr(ocp.CheckpointManagerOptions, "__dataclass_fields__", {})
  if managers is not None and hasattr(managers, "LatestN") and "preservation_policy" in fields:
    return {"preservation_policy": managers.LatestN(max_to_keep)}
  return {"max_to_keep": max_to_keep}


class CheckpointStore:
  """A thin wrapper over ``ocp.CheckpointManager`` (current, non-legacy API).

  Retention uses ``preservation_policy=LatestN(max_to_keep)``; saving is synchronous unless
  ``async_save`` (then the blocking part, the device-to-host copy, is what is timed and
  :meth:`wait` must be called before reading the checkpoint back).
  """

  def __init__(self, directory: str, *, max_to_keep: int = 3, async_save: bool = False):
    if max_to_keep < 1:
      raise ValueError(f"CheckpointStore: `max_to_keep` must be >= 1, got {max_to_keep}.")
    self.directory = os.path.abspath(directory)
    options = ocp.CheckpointManagerOptions(enable_async_checkpointing=async_save, create=True,
                                           **_retention(max_to_keep))
    self._manager = ocp.CheckpointManager(self.directory, options=options)

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def save(self, step: int, state: Any, meta: dict) -> None:
    args = ocp.args.Composite(state=ocp.args.StandardSave(_to_storable(state)),
                              meta=ocp.args.JsonSave(meta))
    self._manager.save(step, args=args, force=True)

  def restore(self, step: int | None, abstract_state: Any) -> tuple[Any, dict]:
    """Restores ``(state, meta)``; ``abstract_state`` gives shapes, dtypes and shardings."""
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"CheckpointStore: no checkpoint in {self.directory}.")
    args = ocp.args.Composite(
        state=ocp.args.StandardRestore(_abstract_storable(abstract_state)),
        meta=ocp.args.JsonRestore())
    restored = self._manager.restore(step, args=args)
    return _from_storable(restored.state, abstract_state), dict(restored.meta)

  def restore_meta(self, step: int) -> dict:
    """Only the JSON item of checkpoint ``step``."""
    restored = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
    return dict(restored.meta)

  def restore_latest_intact(self, abstract_state: Any, check_meta=None,
                            required_meta: tuple[str, ...] = ()) -> tuple[int, Any, dict]:
    """``(step, state, meta)`` of the newest checkpoint that restores.

    For each checkpoint, newest first: the JSON item is read and must hold the
    ``required_meta`` keys, then ``check_meta(meta)`` runs (its errors propagate: e.g. a
    resume with other options), then the state is restored. A damaged checkpoint (an
    unreadable or truncated item, a missing file) gives a warning and the next older one is
    tried; the damaged newer ones are deleted so that the resumed run can write those steps
    again.

    Raises:
      FileNotFoundError: there is no checkpoint at all.
      CheckpointDamagedError: every checkpoint is damaged (the message names the directory).
    """
    steps = sorted(self.all_steps(), reverse=True)
    if not steps:
      raise FileNotFoundError(f"CheckpointStore: no checkpoint in {self.directory}.")
    damaged = []

    def report(step, error):
      damaged.append(step)
      warnings.warn(f"search: checkpoint {os.path.join(self.directory, str(step))} is damaged "
                    f"({type(error).__name__}: {str(error)[:300]}); falling back to an older "
                    "checkpoint.", RuntimeWarning, stacklevel=4)

    for step in steps:
      try:
        meta = self.restore_meta(step)
        missing = [k for k in required_meta if k not in meta]
        if missing:
          raise ValueError(f"its metadata lacks {missing}")
      except Exception as error:  # pylint: disable=broad-except  (orbax, JSON, tensorstore)
        report(step, error)
        continue
      if check_meta is not None:
        check_meta(meta)
      try:
        state, _ = self.restore(step, abstract_state)
      except Exception as error:  # pylint: disable=broad-except
        report(step, error)
        continue
      for bad in damaged:
        self._delete(bad)
      return step, state, meta
    raise CheckpointDamagedError(
        f"search: every checkpoint in {self.directory} is damaged (steps {sorted(damaged)}); "
        "nothing to resume from. Restore a backup, or remove the directory (or use a new "
        "`output_dir`) to start afresh.")

  def _delete(self, step: int) -> None:
    try:
      self._manager.delete(step)
    except Exception:  # pylint: disable=broad-except  (a damaged step orbax cannot read)
      import jax  # pylint: disable=import-outside-toplevel
      if jax.process_index() == 0:
        shutil.rmtree(os.path.join(self.directory, str(step)), ignore_errors=True)
    reload = getattr(self._manager, "reload", None)
    if reload is not None:
      reload()

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()
