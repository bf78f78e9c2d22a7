"""The search engine: the mesh, the shardings, the compiled programs and their one cache.

The outer step itself is :func:`jaxloss.search.outer_step.outer_step` (pure, no mesh); the
run loop (resume, records, checkpoints, callback) is :func:`jaxloss.search.loop.run`, which
drives an engine (the loop imports the engine, never the reverse). Here:

* :class:`MeshPlacement` puts the step's arrays on a 1-D mesh: the per-copy work runs under
  ``jax.shard_map`` with specs built from the layout names the step declares (``'copies'``:
  split along the population axis, ``'shared'``: whole on every device), population-wide
  values are replicated, the population stays sharded;
* :class:`Engine` compiles the outer step and the initialisation ahead of time, once per
  program: the cache key is the :class:`~jaxloss.search.config.StepSpec` (exactly what the
  step reads), the placement and the argument signature, so engines that build the same
  program (a resumed run, another seed) share it, and a changed field compiles anew.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

from jaxloss.search import sharding as sh
from jaxloss.search.config import InitSpec, SearchConfig, StepSpec
from jaxloss.search.outer_step import (
  COPIES,
  INIT_STREAM,
  SHARED,
  Data,
  Placement,
  SearchState,
  outer_step,
)
from jaxloss.search.resume import run_fingerprint
from jaxloss.search.task import Task

Array = jax.Array
PyTree = Any

__all__ = ["Engine", "MeshPlacement"]

# Compiled programs (outer steps and initialisations), shared by engines that build the same
# program; the oldest is forgotten beyond _MAX_COMPILED.
_COMPILED: dict = {}
_MAX_COMPILED = 16


def _cached(key, build: Callable[[], Any]):
  """``_COMPILED[key]``, built (and the oldest entry evicted) on a miss."""
  try:
    hit = _COMPILED.get(key)
  except TypeError:  # an unhashable user object in the program: no sharing
    return build()
  if hit is None:
    hit = build()
    while len(_COMPILED) >= _MAX_COMPILED:
      _COMPILED.pop(next(iter(_COMPILED)))
    _COMPILED[key] = hit
  return hit


@dataclasses.dataclass(frozen=True)
class MeshPlacement(Placement):
  """The step's arrays on a 1-D mesh: copies split along ``axis_name``, the rest replicated."""
  mesh: jax.sharding.Mesh
  axis_name: str

  def _spec(self, layout):
    if isinstance(layout, tuple):
      return tuple(self._spec(x) for x in layout)
    return {COPIES: P(self.axis_name), SHARED: P()}[layout]

  def per_shard(self, fn, in_layout, out_layout):
    return jax.shard_map(fn, mesh=self.mesh, in_specs=self._spec(tuple(in_layout)),
                         out_specs=self._spec(out_layout))

  def whole(self, tree):
    return jax.lax.with_sharding_constraint(tree, sh.replicated_sharding(self.mesh))

  def copies(self, tree):
    sharding = sh.population_sharding(self.mesh, self.axis_name)
    return jax.lax.with_sharding_constraint(tree, jax.tree.map(lambda _: sharding, tree))


class Engine:
  """Compiles and runs the outer step of a search for a :class:`Task` (the loop around it,
  with checkpoints and records, is :func:`jaxloss.search.run`).

  Args:
    task: the user's ``init``/``train_step``/``evaluate``.
    config: a :class:`SearchConfig`.
    mesh: a mesh with an axis ``axis_name`` for the population (default: a 1-D mesh over
      every device, :func:`population_mesh`). ``B`` must be a multiple of its size.
    axis_name: the population axis of ``mesh``.

  Attributes:
    strategy: the strategy object that is asked and told (``config.strategy`` resolved).
    spec: the :class:`StepSpec` of the compiled outer step.
  """

  def __init__(self, task: Task, config: SearchConfig, *, mesh: jax.sharding.Mesh | None = None,
               axis_name: str = sh.POPULATION_AXIS):
    if not isinstance(task, Task):
      raise ValueError(f"Engine: `task` must be a jaxloss.search.Task, got {type(task).__name__}.")
    if not isinstance(config, SearchConfig):
      raise ValueError("Engine: `config` must be a jaxloss.search.SearchConfig, got "
                       f"{type(config).__name__}.")
    self.task, self.config, self.axis_name = task, config, axis_name
    self.mesh = sh.population_mesh(axis_name=axis_name) if mesh is None else mesh
    sh.check_population_size(self.mesh, axis_name, config.population_size)
    self.spec = StepSpec.from_config(task, config)
    self.strategy = self.spec.strategy
    self.placement = MeshPlacement(self.mesh, axis_name)
    mu0 = jnp.asarray(config.initial_mu)
    self._mu0 = mu0 if jnp.issubdtype(mu0.dtype, jnp.floating) else mu0.astype(jnp.float32)
    self._pop_sharding = sh.population_sharding(self.mesh, axis_name)
    self._replicated = sh.replicated_sharding(self.mesh)
    self._init_spec = InitSpec(init=task.init, population_size=config.population_size,
                               shared=config.resolved_init == "shared",
                               compiler_options=self.spec.compiler_options)
    self._select_jit = None

  # ------------------------------------------------------------------ state

  def _init_state(self, seed_key: Array, mu0: Array) -> SearchState:
    spec, b = self._init_spec, self._init_spec.population_size
    key = jax.random.fold_in(jax.random.wrap_key_data(seed_key), INIT_STREAM)
    if spec.shared:
      one = spec.init(jax.random.fold_in(key, 0))
      population = jax.tree.map(lambda a: jnp.broadcast_to(a, (b,) + jnp.shape(a)), one)
    else:
      keys = jax.vmap(lambda c: jax.random.fold_in(key, c))(jnp.arange(b))
      population = jax.vmap(spec.init)(keys)
    return SearchState(epoch=jnp.zeros((), jnp.int32), population=population,
                       policy=self.strategy.init(mu0))

  def state_shardings(self, abstract: SearchState | None = None) -> SearchState:
    """Shardings of a :class:`SearchState`: population leaves split, the rest replicated."""
    abstract = self._abstract_init() if abstract is None else abstract
    return SearchState(
        epoch=self._replicated,
        population=jax.tree.map(lambda _: self._pop_sharding, abstract.population),
        policy=jax.tree.map(lambda _: self._replicated, abstract.policy))

  def abstract_state(self) -> SearchState:
    """Shapes, dtypes and shardings of the search state (what a restore needs)."""
    abstract = self._abstract_init()
    shardings = self.state_shardings(abstract)
    return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                        abstract, shardings)

  def _abstract_init(self) -> SearchState:
    seed = jax.eval_shape(lambda: jax.random.key_data(jax.random.key(0)))
    return jax.eval_shape(self._init_state, seed, self._mu0)

  def init(self, initial_state: PyTree | None = None) -> SearchState:
    """The initial search state, placed on the mesh (the program is shared by engines that
    initialise alike: other seeds or initial means).

    ``initial_state``: a training state of ONE copy (e.g. ``SearchResult.state`` of an
    earlier run, or a pretrained model in the task's state structure): every copy starts
    from it instead of ``task.init``.
    """
    mu0 = sh.put(self._mu0, self._replicated)
    args = (self._seed_key(), mu0)
    key = ("init", self._init_spec, self.strategy, self.placement, _signature(args))
    compiled = _cached(key, lambda: jax.jit(
        self._init_state, out_shardings=self.state_shardings()).lower(*args).compile(
            self._compiler_options()))
    state = compiled(*args)
    if initial_state is None:
      return state
    return state._replace(population=self._broadcast(initial_state, state.population))

  def _broadcast(self, one: PyTree, population: PyTree) -> PyTree:
    """``one`` copy's state on every copy, checked against the task's state structure."""
    want = jax.tree.map(lambda a: (a.shape[1:], a.dtype), population)
    got = jax.tree.map(lambda a: (jnp.shape(a), jnp.result_type(a)), one)
    if jax.tree.structure(want) != jax.tree.structure(got) or jax.tree.leaves(
        want) != jax.tree.leaves(got):
      raise ValueError("search: `initial_state` must be ONE copy's training state, with the "
                       "structure, shapes and dtypes `task.init` gives; got "
                       f"{jax.tree.structure(got)} for {jax.tree.structure(want)}.")
    b = self.config.population_size
    return jax.tree.map(
        lambda a: jax.device_put(jnp.broadcast_to(a, (b,) + jnp.shape(a)), self._pop_sharding),
        one)

  def _compiler_options(self):
    return dict(self.spec.compiler_options) or None

  def put_data(self, data: PyTree) -> PyTree:
    """Places a split on every device of the mesh (replicated); numpy input is fine."""
    return sh.put(data, self._replicated)

  def _seed_key(self) -> Array:
    """The seed's raw key data (uint32), replicated on the mesh (wrapped inside the jit)."""
    data = np.asarray(jax.random.key_data(jax.random.key(self.config.seed)))
    return sh.put(data, self._replicated)

  # ------------------------------------------------------------- outer step

  def compile(self, state: SearchState, train: PyTree, val: PyTree,
              monitor: dict | None = None):
    """The compiled outer step for these shapes, as ``fn(state, train, val, monitor)``.

    Compiled ahead of time once per program: the key is the :class:`StepSpec`, the
    placement and the arguments' shapes, dtypes and shardings.
    """
    args = (state, Data(train, val, monitor or {}), self._seed_key(),
            sh.put(np.asarray(True), self._replicated))

    def build():
      step = jax.jit(functools.partial(outer_step, self.spec, self.placement),
                     donate_argnums=(0,), out_shardings=(self.state_shardings(), self._replicated))
      return step.lower(*args).compile(self._compiler_options())

    key = ("step", self.spec, self.placement, jax.tree.structure(args), _signature(args))
    return _BoundStep(_cached(key, build), args[2], self._replicated)

  def step(self, state: SearchState, train: PyTree, val: PyTree,
           monitor: dict | None = None) -> tuple[SearchState, dict]:
    """One outer step (one jitted program; ``state``'s buffers are donated: do not reuse it)."""
    return self.compile(state, train, val, monitor)(state, train, val, monitor)

  def select(self, state: SearchState, index: int) -> PyTree:
    """Copy ``index`` of the population (no population axis), replicated on the mesh."""
    if self._select_jit is None:
      self._select_jit = jax.jit(lambda pop, i: jax.tree.map(lambda a: a[i], pop),
                                 out_shardings=self._replicated)
    return self._select_jit(state.population, jnp.asarray(index, jnp.int32))

  def fingerprint(self, train: PyTree, val: PyTree, monitor: dict | None = None,
                  metadata: dict | None = None, initial_state: PyTree | None = None) -> dict:
    """Everything the result of a run depends on (:func:`resume.run_fingerprint`)."""
    devices = {"count": int(sh.axis_size(self.mesh, self.axis_name)),
               "platform": str(self.mesh.devices.reshape(-1)[0].platform)}
    return run_fingerprint(self.config, self.spec, devices=devices, train=train, val=val,
                           monitor=monitor, metadata=metadata, initial_state=initial_state)


def _signature(args) -> tuple:
  return tuple((jnp.shape(a), jnp.result_type(a), getattr(a, "sharding", None))
               for a in jax.tree.leaves(args))


class _BoundStep:
  """A compiled outer step with its seed key bound: ``fn(state, train, val, monitor,
  select=True)`` (``select``: whether the selection rule runs after this epoch)."""

  def __init__(self, compiled, seed_key, replicated):
    self.compiled, self.seed_key = compiled, seed_key
    self._flags = {flag: sh.put(np.asarray(flag), replicated) for flag in (True, False)}

  def __call__(self, state, train, val, monitor=None, select=True):
    return self.compiled(state, Data(train, val, monitor or {}), self.seed_key,
                         self._flags[bool(select)])
