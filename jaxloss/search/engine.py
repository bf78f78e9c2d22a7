"""The AM-LFS outer step and the search loop (paper section 3.4, algorithm 1).

One outer step (= one epoch) is ONE jitted program:

1. sample ``B`` loss parameters ``theta_i ~ N(mu, sigma^2 I)`` (``random``: around the initial
   mean, never updated; ``baseline``: the fixed ``initial_mu`` for every copy);
2. train every copy one epoch: a ``lax.scan`` over steps, each step gathers its batch by
   index from the device-resident training split and calls the user's ``train_step`` under
   ``jax.vmap`` over the population (common random numbers by default: every copy sees the
   same permutation and the same per-step key);
3. score every copy on the validation split (the reward; never the test split);
4. update ``mu`` by REINFORCE as an optax step (``amlfs`` mode only);
5. select the best finite copy and broadcast its WHOLE training state to all copies.

The population axis is sharded over a mesh axis with ``jax.shard_map`` (steps 2-3 run
locally on every device; the data are replicated), the state buffers are donated, and all
randomness is ``fold_in(key(seed), stream, epoch, ...)``: a run is reproducible and a
resumed run continues exactly where the killed one stopped.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
import warnings
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import PartitionSpec as P

from jaxloss.search import fingerprint as fp
from jaxloss.search import sharding as sh
from jaxloss.search.checkpoint import CheckpointStore
from jaxloss.search.policy import (DEFAULT_SIGMA, GaussianPolicy, PolicyState, check_sigma,
                                   default_mu_optimizer, normalize_rewards)
from jaxloss.search.records import Progress, RecordLog, to_json
from jaxloss.search.task import Task, accuracy, check_split, leading_size, sum_over_batches

Array = jax.Array
PyTree = Any

MODES = ("amlfs", "random", "baseline")

# Compiled outer steps, shared by engines that build the same program.
_COMPILED: dict = {}
_MAX_COMPILED = 16

# Independent random streams derived from the seed (fold_in labels).
_INIT_STREAM, _EPOCH_STREAM = 0, 1
_SAMPLE, _PERMUTATION, _TRAIN = 0, 1, 2


class PopulationDivergedError(RuntimeError):
  """Every copy of the population produced a non-finite loss, state or reward.

  Attributes:
    epoch: the (0-based) epoch at which it happened.
    record: that epoch's record (never written to the log).
    last_checkpoint: the last good checkpoint's step (completed epochs), or ``None``.
  """

  def __init__(self, epoch: int, record: dict, last_checkpoint: int | None):
    self.epoch, self.record, self.last_checkpoint = epoch, record, last_checkpoint
    where = ("no checkpoint was written" if last_checkpoint is None else
             f"the last good checkpoint (after epoch {last_checkpoint - 1}) is kept")
    super().__init__(
        f"search: every copy of the population diverged (non-finite loss, training state or "
        f"reward) in epoch {epoch}; {where}. Lower the learning rate or sigma, or check the "
        f"loss for the sampled thetas: {record.get('thetas')!r:.200}")


@dataclasses.dataclass(frozen=True, eq=False)
class SearchConfig:
  """Options of a search run.

  Attributes:
    initial_mu: the initial mean of the policy (e.g. ``jaxloss.identity_theta(6)``, which
      makes the first distribution centred on cross-entropy); in ``baseline`` mode, the
      fixed ``theta`` of every copy. Any array shape; REQUIRED.
    mode: ``'amlfs'`` (search), ``'random'`` (sample around ``initial_mu`` every epoch, never
      update it: the paper's ablation) or ``'baseline'`` (fixed ``theta``).
    population_size: ``B``, the number of copies (a multiple of the mesh's device count).
    epochs: outer steps (each trains every copy one epoch).
    batch_size: training batch size; an epoch is ``n_train // batch_size`` steps over a fresh
      permutation (the remainder of the permutation is skipped that epoch).
    eval_batch_size: validation batch size (default ``batch_size``); no example is dropped.
    sigma: the policy's standard deviation (NOT a variance); default 0.2.
    mu_optimizer: optax transformation for ``mu`` (default ``optax.adam(0.05)``).
    seed: every random number (initialisation, samples, data order, step keys) derives
      from it and from the epoch number.
    common_random_numbers: True (default): every copy sees the same data permutation and
      the same per-step key (for augmentation/dropout). False: per-copy permutations and keys.
    init: ``'shared'`` (all copies start from one initialisation; default for ``amlfs`` and
      ``random``) or ``'per_copy'`` (independent seeds; default for ``baseline``).
    select_best: broadcast the best copy's whole training state to every copy after each
      epoch (default True for ``amlfs``/``random``, False for ``baseline``, where the
      copies are then independent runs).
    reward_fn: maps the validation totals (summed ``evaluate`` outputs) to the reward;
      default ``correct / count``.
    output_dir: where the checkpoints (``<output_dir>/checkpoints``) and the records
      (``<output_dir>/records.jsonl``) go; None: neither.
    checkpoint: write a checkpoint after every epoch (when ``output_dir`` is set).
    max_to_keep: checkpoints kept (the latest ones).
    async_checkpointing: let orbax finish writing in the background.
    progress: show a progress bar (tqdm if importable, else a line per epoch).
    scan_unroll: ``unroll`` of the epoch's ``lax.scan`` over steps (1: a loop; ``True``: the
      whole epoch unrolled). XLA:CPU runs convolution gradients several times slower inside a
      loop body than outside (jax-ml/jax#12868): on a CPU, a conv net with short epochs
      trains several times faster with ``True``, at the price of compile time growing with
      the number of steps. Matmul-only models and GPUs do not need it.
    compiler_options: XLA options for compiling the outer step and the initialisation
      (``jax.stages.Lowered.compile(compiler_options=...)``), e.g.
      ``{'xla_backend_optimization_level': 0}`` to compile small CPU programs about twice
      as fast, or GPU autotuning options. None: XLA's defaults.
  """
  initial_mu: Any = None
  mode: str = "amlfs"
  population_size: int = 8
  epochs: int = 10
  batch_size: int = 128
  eval_batch_size: int | None = None
  sigma: float = DEFAULT_SIGMA
  mu_optimizer: optax.GradientTransformation | None = None
  seed: int = 0
  common_random_numbers: bool = True
  init: str | None = None
  select_best: bool | None = None
  reward_fn: Callable[[dict], Array] | None = None
  output_dir: str | None = None
  checkpoint: bool = True
  max_to_keep: int = 3
  async_checkpointing: bool = False
  progress: bool = True
  scan_unroll: int | bool = 1
  compiler_options: dict | None = None

  def __post_init__(self):
    def fail(name, expected, got):
      raise ValueError(f"SearchConfig: `{name}` must be {expected}, got {got!r}.")

    if self.mode not in MODES:
      fail("mode", f"one of {MODES}", self.mode)
    if self.initial_mu is None:
      fail("initial_mu", "an array (e.g. jaxloss.identity_theta(6))", None)
    try:
      mu = np.asarray(self.initial_mu)
    except Exception:  # pylint: disable=broad-except
      fail("initial_mu", "an array of numbers", self.initial_mu)
    if mu.dtype == object or not (np.issubdtype(mu.dtype, np.floating)
                                  or np.issubdtype(mu.dtype, np.integer)):
      fail("initial_mu", "an array of numbers", self.initial_mu)
    if mu.size == 0:
      fail("initial_mu", "a non-empty array", self.initial_mu)
    if not np.all(np.isfinite(mu)):
      bad = np.flatnonzero(~np.isfinite(mu.reshape(-1)))
      raise ValueError(f"SearchConfig: `initial_mu` must be finite; entries {bad.tolist()[:8]} "
                       f"are {mu.reshape(-1)[bad][:8].tolist()}.")
    check_sigma(self.sigma, "SearchConfig")
    if self.mu_optimizer is not None and not (hasattr(self.mu_optimizer, "init")
                                              and hasattr(self.mu_optimizer, "update")):
      fail("mu_optimizer", "an optax.GradientTransformation or None", self.mu_optimizer)
    if self.reward_fn is not None and not callable(self.reward_fn):
      fail("reward_fn", "a function of the validation totals or None", self.reward_fn)
    if self.select_best not in (None, True, False):
      fail("select_best", "True, False or None", self.select_best)
    if not isinstance(self.common_random_numbers, (bool, np.bool_)):
      fail("common_random_numbers", "True or False", self.common_random_numbers)
    for name in ("population_size", "epochs", "batch_size", "max_to_keep"):
      value = getattr(self, name)
      if not isinstance(value, (int, np.integer)) or value < (0 if name == "epochs" else 1):
        fail(name, "a positive int", value)
    if self.eval_batch_size is not None and self.eval_batch_size < 1:
      fail("eval_batch_size", "a positive int or None", self.eval_batch_size)
    if self.init not in (None, "shared", "per_copy"):
      fail("init", "'shared', 'per_copy' or None", self.init)

  @property
  def resolved_init(self) -> str:
    return self.init or ("per_copy" if self.mode == "baseline" else "shared")

  @property
  def resolved_select_best(self) -> bool:
    return self.select_best if self.select_best is not None else self.mode != "baseline"

  def fingerprint(self) -> dict:
    """The options a resumed run must share with the run it continues."""
    return to_json({
        "mode": self.mode, "population_size": self.population_size,
        "batch_size": self.batch_size, "eval_batch_size": self.eval_batch_size,
        "sigma": self.sigma, "seed": self.seed,
        "common_random_numbers": self.common_random_numbers, "init": self.resolved_init,
        "select_best": self.resolved_select_best,
        "initial_mu": np.asarray(self.initial_mu).tolist()})


class SearchState(NamedTuple):
  """Everything a search carries from one epoch to the next (and checkpoints).

  ``epoch``: completed outer steps (int32 scalar). ``population``: the user's training
  state with a leading ``B`` axis on every leaf. ``policy``: ``mu`` and its optax state.
  """
  epoch: Array
  population: PyTree
  policy: PolicyState


@dataclasses.dataclass
class SearchResult:
  """What :meth:`Engine.run` returns.

  Attributes:
    state: the final model (the best copy's training state, without the population axis).
    best_index: its index in the final population.
    best_reward: its validation reward in the last epoch.
    mu: the final mean of the policy (numpy).
    records: one dict per epoch (also in ``<output_dir>/records.jsonl``).
    search_state: the final :class:`SearchState` (population, policy, epoch counter).
  """
  state: PyTree
  best_index: int
  best_reward: float
  mu: np.ndarray
  records: list[dict]
  search_state: SearchState


def _is_float(a) -> bool:
  return jnp.issubdtype(a.dtype, jnp.inexact)


def tree_all_finite(tree: PyTree) -> Array:
  """True iff every floating-point leaf of ``tree`` is finite (integers and keys pass)."""
  checks = [jnp.all(jnp.isfinite(a)) for a in jax.tree.leaves(tree) if _is_float(a)]
  return jnp.all(jnp.stack(checks)) if checks else jnp.asarray(True)


def _checked_step(train_step):
  """Wraps ``train_step`` with trace-time checks of its outputs."""

  def step(state, batch, theta, key):
    out = train_step(state, batch, theta, key)
    if not (isinstance(out, tuple) and len(out) == 2):
      raise ValueError("search: `train_step` must return `(state, metrics)`, got "
                       f"{type(out).__name__}.")
    new_state, metrics = out
    if not isinstance(metrics, dict) or "loss" not in metrics:
      raise ValueError("search: the metrics returned by `train_step` must be a dict with a "
                       f"'loss' entry, got {metrics!r:.200}.")
    for name, value in metrics.items():
      if jnp.ndim(value) != 0:
        raise ValueError(f"search: `train_step` metric {name!r} must be a scalar, got shape "
                         f"{jnp.shape(value)}.")
    in_struct, out_struct = jax.tree.structure(state), jax.tree.structure(new_state)
    if in_struct != out_struct:
      raise ValueError("search: `train_step` must return a state with the structure of its "
                       f"input state; got {out_struct} for {in_struct}.")
    paths = jax.tree_util.tree_flatten_with_path(state)[0]
    for (path, old), new in zip(paths, jax.tree.leaves(new_state)):
      old_type = (jnp.shape(old), jnp.result_type(old))
      new_type = (jnp.shape(new), jnp.result_type(new))
      if old_type != new_type:
        raise ValueError(
            f"search: `train_step` must return a state whose leaves keep their shapes and "
            f"dtypes; state{jax.tree_util.keystr(path)} is {new_type[1]}{list(new_type[0])} for "
            f"{old_type[1]}{list(old_type[0])} (cast it back, e.g. `.astype(old.dtype)`).")
    for name, value in metrics.items():
      if not jnp.issubdtype(jnp.result_type(value), jnp.number) and \
          jnp.result_type(value) != jnp.bool_:
        raise ValueError(f"search: `train_step` metric {name!r} must be a number, got dtype "
                         f"{jnp.result_type(value)}.")
    return new_state, metrics

  return step


def _checked_rewards(rewards, b: int) -> Array:
  """``reward_fn`` must map one copy's totals to a real scalar (cast to float32 if integer)."""
  if not isinstance(rewards, jax.Array) or rewards.shape != (b,):
    raise ValueError("search: `reward_fn` must return one scalar per copy (a float), got "
                     f"{jax.tree.map(jnp.shape, rewards)} for {b} copies.")
  if jnp.issubdtype(rewards.dtype, jnp.complexfloating) or not jnp.issubdtype(
      rewards.dtype, jnp.number):
    raise ValueError(f"search: `reward_fn` must return a real number, got dtype {rewards.dtype}.")
  return rewards if jnp.issubdtype(rewards.dtype, jnp.floating) else rewards.astype(jnp.float32)


class Engine:
  """Runs an AM-LFS search (or its ``random``/``baseline`` counterparts) for a :class:`Task`.

  Args:
    task: the user's ``init``/``train_step``/``evaluate``.
    config: a :class:`SearchConfig`.
    mesh: a mesh with an axis ``axis_name`` for the population (default: a 1-D mesh over
      every device, :func:`population_mesh`). ``B`` must be a multiple of its size.
    axis_name: the population axis of ``mesh``.
  """

  def __init__(self, task: Task, config: SearchConfig, *, mesh: jax.sharding.Mesh | None = None,
               axis_name: str = sh.POPULATION_AXIS):
    if not isinstance(task, Task):
      raise ValueError(f"Engine: `task` must be a jaxloss.search.Task, got {type(task).__name__}.")
    self.task, self.config, self.axis_name = task, config, axis_name
    self.mesh = sh.population_mesh(axis_name=axis_name) if mesh is None else mesh
    sh.check_population_size(self.mesh, axis_name, config.population_size)
    self.policy = GaussianPolicy(config.sigma, config.mu_optimizer or default_mu_optimizer())
    mu0 = jnp.asarray(config.initial_mu)
    self._mu0 = mu0 if jnp.issubdtype(mu0.dtype, jnp.floating) else mu0.astype(jnp.float32)
    self._pop_sharding = sh.population_sharding(self.mesh, axis_name)
    self._replicated = sh.replicated_sharding(self.mesh)
    self._train_step = _checked_step(task.train_step)
    self._reward_fn = config.reward_fn or accuracy
    self._init_jit = None
    self._select_jit = None
    self._step_jit = None

  # ------------------------------------------------------------------ state

  def _init_state(self, seed_key: Array, mu0: Array) -> SearchState:
    cfg, b = self.config, self.config.population_size
    key = jax.random.fold_in(jax.random.wrap_key_data(seed_key), _INIT_STREAM)
    if cfg.resolved_init == "shared":
      one = self.task.init(jax.random.fold_in(key, 0))
      population = jax.tree.map(lambda a: jnp.broadcast_to(a, (b,) + jnp.shape(a)), one)
    else:
      keys = jax.vmap(lambda c: jax.random.fold_in(key, c))(jnp.arange(b))
      population = jax.vmap(self.task.init)(keys)
    return SearchState(epoch=jnp.zeros((), jnp.int32), population=population,
                       policy=self.policy.init(mu0))

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

  def init(self) -> SearchState:
    """The initial search state, placed on the mesh."""
    mu0 = sh.put(self._mu0, self._replicated)
    if self._init_jit is None:
      # Shared by engines that initialise alike (other seeds, modes or initial means).
      cfg = self.config
      key = ("init", self.task, cfg.population_size, cfg.resolved_init, self.policy.optimizer,
             self._mu0.shape, self._mu0.dtype, self.mesh, self.axis_name,
             tuple(sorted((cfg.compiler_options or {}).items())))
      try:
        self._init_jit = _COMPILED.get(key)
      except TypeError:  # an unhashable user object: no sharing
        key = None
      if self._init_jit is None:
        self._init_jit = jax.jit(self._init_state, out_shardings=self.state_shardings()).lower(
            self._seed_key(), mu0).compile(self._compiler_options())
        if key is not None:
          _COMPILED[key] = self._init_jit
    return self._init_jit(self._seed_key(), mu0)

  def _compiler_options(self):
    options = self.config.compiler_options
    return dict(options) if options else None

  def put_data(self, data: PyTree) -> PyTree:
    """Places a split on every device of the mesh (replicated); numpy input is fine."""
    return sh.put(data, self._replicated)

  # ------------------------------------------------------------- outer step

  def _train_and_score(self, population, thetas, copy_ids, perm, key, train, val):
    """Trains the local copies one epoch and scores them (runs per shard)."""
    cfg = self.config
    bs = cfg.batch_size
    num_steps = leading_size("search", "train", train) // bs
    crn = cfg.common_random_numbers
    vstep = jax.vmap(self._train_step, in_axes=(0, None, 0, None) if crn else 0)

    def gather(idx):
      return jax.tree.map(lambda a: jnp.take(a, idx, axis=0), train)

    def body(pop, step):
      step_key = jax.random.fold_in(key, step)
      if crn:
        batch = gather(jax.lax.dynamic_slice_in_dim(perm, step * bs, bs))
        return vstep(pop, batch, thetas, step_key)
      batch = jax.vmap(gather)(jax.lax.dynamic_slice_in_dim(perm, step * bs, bs, axis=1))
      keys = jax.vmap(lambda c: jax.random.fold_in(step_key, c))(copy_ids)
      return vstep(pop, batch, thetas, keys)

    population, metrics = jax.lax.scan(body, population, jnp.arange(num_steps),
                                       unroll=cfg.scan_unroll)
    finite = jnp.all(jnp.isfinite(metrics["loss"]), axis=0)
    finite = finite & jax.vmap(tree_all_finite)(population)
    means = {k: jnp.mean(v if _is_float(v) else v.astype(jnp.float32), axis=0)
             for k, v in metrics.items()}
    ebs = cfg.eval_batch_size or bs
    totals = jax.vmap(
        lambda s: sum_over_batches(self.task.evaluate, s, val, ebs))(population)
    return population, means, finite, totals

  def _outer_step(self, state: SearchState, train: PyTree, val: PyTree, monitor: dict,
                  seed_key: Array, flags: dict):
    """One outer step. ``flags`` (traced booleans, so that the three modes and the selection
    share one compiled program): ``sample`` (thetas drawn around mu, else mu itself),
    ``update`` (REINFORCE step on mu), ``select`` (broadcast the best copy)."""
    cfg, b, ax = self.config, self.config.population_size, self.axis_name
    replicate = lambda x: jax.lax.with_sharding_constraint(x, self._replicated)
    key = jax.random.fold_in(
        jax.random.fold_in(jax.random.wrap_key_data(seed_key), _EPOCH_STREAM), state.epoch)
    mu = state.policy.mu
    thetas = jax.lax.cond(
        flags["sample"], lambda: self.policy.sample(jax.random.fold_in(key, _SAMPLE), mu, b),
        lambda: jnp.broadcast_to(mu, (b,) + mu.shape))
    thetas = replicate(thetas)
    copy_ids = jnp.arange(b, dtype=jnp.int32)
    n_train = leading_size("search", "train", train)
    perm_key = jax.random.fold_in(key, _PERMUTATION)
    if cfg.common_random_numbers:
      perm = jax.random.permutation(perm_key, n_train)
    else:
      perm = jax.vmap(lambda c: jax.random.permutation(jax.random.fold_in(perm_key, c),
                                                       n_train))(copy_ids)
    local = jax.shard_map(
        self._train_and_score, mesh=self.mesh,
        in_specs=(P(ax), P(ax), P(ax), P() if cfg.common_random_numbers else P(ax), P(), P(),
                  P()),
        out_specs=(P(ax), P(ax), P(ax), P(ax)))
    population, means, finite, totals = local(
        state.population, thetas, copy_ids, perm, jax.random.fold_in(key, _TRAIN), train, val)

    # Population-wide reductions on replicated values: the same arithmetic on any mesh.
    totals, means, finite = replicate(totals), replicate(means), replicate(finite)
    rewards = _checked_rewards(jax.vmap(self._reward_fn)(totals), b)
    valid = finite & jnp.isfinite(rewards)
    normalized = normalize_rewards(rewards, valid)
    policy = jax.lax.cond(flags["update"],
                          lambda p: self.policy.update(p, thetas, rewards, valid),
                          lambda p: p, state.policy)
    best = jnp.argmax(jnp.where(valid, rewards, -jnp.inf)).astype(jnp.int32)
    population = jax.lax.cond(
        flags["select"],
        lambda pop: jax.tree.map(lambda a: jnp.broadcast_to(a[best], a.shape), pop),
        lambda pop: pop, population)
    population = jax.lax.with_sharding_constraint(
        population, jax.tree.map(lambda _: self._pop_sharding, population))
    new_state = SearchState(epoch=state.epoch + 1, population=population, policy=policy)
    monitored = self._monitor(population, best, monitor)
    outputs = {
        "epoch": state.epoch, "mu": mu, "mu_next": policy.mu, "thetas": thetas,
        "rewards": rewards, "normalized_rewards": normalized, "finite": valid,
        "best_index": best, "best_reward": rewards[best], "train": means, "val": totals,
        "all_diverged": ~jnp.any(valid), "monitor": monitored}
    return new_state, outputs

  def _monitor(self, population: PyTree, best: Array, monitor: dict) -> dict:
    """Evaluates the best copy on the extra splits (never used for the reward)."""
    if not monitor:
      return {}
    best_state = jax.tree.map(lambda a: a[best], population)
    best_state = jax.lax.with_sharding_constraint(
        best_state, jax.tree.map(lambda _: self._replicated, best_state))
    ebs = self.config.eval_batch_size or self.config.batch_size
    out = {}
    for name, data in monitor.items():
      totals = sum_over_batches(self.task.evaluate, best_state, data, ebs)
      out[name] = {**totals, "score": self._reward_fn(totals)}
    return out

  def _seed_key(self) -> Array:
    """The seed's raw key data (uint32), replicated on the mesh (wrapped inside the jit)."""
    data = np.asarray(jax.random.key_data(jax.random.key(self.config.seed)))
    return sh.put(data, self._replicated)

  def _program_key(self) -> tuple:
    """What the compiled outer step depends on (not the seed, epochs or output options)."""
    cfg = self.config
    return (self.task, cfg.population_size, cfg.batch_size, cfg.eval_batch_size, cfg.sigma,
            self.policy.optimizer, cfg.common_random_numbers, self._reward_fn, self.mesh,
            self.axis_name, cfg.scan_unroll,
            tuple(sorted((cfg.compiler_options or {}).items())))

  def _flags(self) -> dict:
    cfg = self.config
    flags = {"sample": cfg.mode != "baseline", "update": cfg.mode == "amlfs",
             "select": cfg.resolved_select_best}
    return {k: sh.put(np.asarray(v), self._replicated) for k, v in flags.items()}

  def _jitted_step(self):
    if self._step_jit is None:
      self._step_jit = jax.jit(self._outer_step, donate_argnums=(0,),
                               out_shardings=(self.state_shardings(), self._replicated))
    return self._step_jit

  def step(self, state: SearchState, train: PyTree, val: PyTree,
           monitor: dict | None = None) -> tuple[SearchState, dict]:
    """One outer step (one jitted program; ``state``'s buffers are donated: do not reuse it)."""
    monitor = monitor or {}
    return self.compile(state, train, val, monitor)(state, train, val, monitor)

  def compile(self, state: SearchState, train: PyTree, val: PyTree,
              monitor: dict | None = None):
    """The compiled outer step for these shapes, as ``fn(state, train, val, monitor)``.

    Compiled ahead of time once per program (see :meth:`_program_key`) and argument
    signature, and shared by engines with the same program (e.g. a resumed run, or the same
    search with another seed).
    """
    args = (state, train, val, monitor or {}, self._seed_key(), self._flags())
    signature = tuple((jnp.shape(a), jnp.result_type(a), getattr(a, "sharding", None))
                      for a in jax.tree.leaves(args))
    key = (self._program_key(), jax.tree.structure(args), signature)
    try:
      hit = _COMPILED.get(key)
    except TypeError:  # an unhashable user object in the program: no sharing
      hit, key = None, None
    if hit is None:
      hit = self._jitted_step().lower(*args).compile(self._compiler_options())
      if key is not None:
        while len(_COMPILED) >= _MAX_COMPILED:  # forget the oldest program
          _COMPILED.pop(next(iter(_COMPILED)))
        _COMPILED[key] = hit
    return _BoundStep(hit, args[-2:])

  def select(self, state: SearchState, index: int) -> PyTree:
    """Copy ``index`` of the population (no population axis), replicated on the mesh."""
    if self._select_jit is None:
      self._select_jit = jax.jit(lambda pop, i: jax.tree.map(lambda a: a[i], pop),
                                 out_shardings=self._replicated)
    return self._select_jit(state.population, jnp.asarray(index, jnp.int32))

  # ------------------------------------------------------------------- run

  def _record(self, host: dict) -> dict:
    record = {
        "epoch": int(host["epoch"]), "mode": self.config.mode,
        "mu": host["mu"], "mu_next": host["mu_next"], "thetas": host["thetas"],
        "rewards": host["rewards"], "normalized_rewards": host["normalized_rewards"],
        "finite": host["finite"], "best_index": int(host["best_index"]),
        "best_reward": host["best_reward"], "train_loss": host["train"]["loss"],
        "train_metrics": {k: v for k, v in host["train"].items() if k != "loss"},
        "val": host["val"]}
    if host["monitor"]:
      record["monitor"] = host["monitor"]
    return to_json(record)

  def fingerprint(self, train: PyTree, val: PyTree, monitor: dict | None = None) -> dict:
    """Everything the result of a run depends on, for the resume check (JSON).

    The options (all but ``epochs`` and the output options), the mu optimiser, the reward
    function and the task's functions (described by :func:`fingerprint.describe`), the
    splits' structures, shapes, dtypes and a content hash of a sample of their examples
    (:func:`fingerprint.data_fingerprint`), and the number and platform of the devices on
    the population axis (they change the rounding). See docs/search_api.md for the rules.
    """
    cfg = self.config
    devices = self.mesh.devices.reshape(-1)
    out = dict(cfg.fingerprint())
    out.update(to_json({
        "scan_unroll": cfg.scan_unroll,
        "compiler_options": sorted((str(k), str(v))
                                   for k, v in (cfg.compiler_options or {}).items()),
        "mu_optimizer": fp.describe(self.policy.optimizer),
        "reward_fn": fp.describe(self._reward_fn),
        "task": {"init": fp.describe(self.task.init),
                 "train_step": fp.describe(self.task.train_step),
                 "evaluate": fp.describe(self.task.evaluate)},
        "train": fp.data_fingerprint(train), "val": fp.data_fingerprint(val),
        "monitor": {name: fp.data_fingerprint(d) for name, d in (monitor or {}).items()},
        "devices": {"count": int(sh.axis_size(self.mesh, self.axis_name)),
                    "platform": str(devices[0].platform)},
    }))
    return out

  def run(self, train: PyTree, val: PyTree, *, monitor: dict[str, PyTree] | None = None,
          resume: bool = False,
          callback: Callable[[dict, SearchState], None] | None = None) -> SearchResult:
    """Runs ``config.epochs`` outer steps (continuing from the latest checkpoint if ``resume``).

    Args:
      train: the training split, a pytree of arrays with a leading example axis (numpy or
        device arrays; placed on every device of the mesh).
      val: the validation split (the reward); never pass the test split here.
      monitor: extra splits to watch, ``{name: data}`` (e.g. ``{'test': (x, y)}``): after
        every epoch the best copy is evaluated on each inside the same jitted program and
        the totals and score go to ``record['monitor'][name]``. They never influence the
        search (rewards, ``mu``, selection); they are for curves such as test error.
      resume: continue from the latest intact checkpoint in ``output_dir`` (a fresh start
        when there is none). The checkpoint's fingerprint must equal this run's (else a
        ``ValueError`` naming the options that differ). Without it, a directory that already
        holds checkpoints is an error.
      callback: ``callback(record, search_state)`` after every epoch, once the checkpoint and
        the record are written; raising from it stops the run (the checkpoint is kept).
        ``search_state`` is donated by the next step: do not keep references to it.
    Returns:
      a :class:`SearchResult`.
    Raises:
      PopulationDivergedError: every copy diverged in some epoch.
    """
    cfg = self.config
    n_train = check_split("search", "train", train)
    if n_train < cfg.batch_size:
      raise ValueError(f"search: the training split ({n_train} examples) is smaller than "
                       f"`batch_size` ({cfg.batch_size}).")
    check_split("search", "val", val)
    for name, data in (monitor or {}).items():
      check_split("search", f"monitor[{name!r}]", data)
    fingerprint = self.fingerprint(train, val, monitor) if cfg.output_dir is not None else None
    train, val = self.put_data(train), self.put_data(val)
    monitor = {name: self.put_data(data) for name, data in (monitor or {}).items()}
    is_main = jax.process_index() == 0
    store = log = None
    if cfg.output_dir is not None:
      log = RecordLog(os.path.join(cfg.output_dir, "records.jsonl"), enabled=is_main)
      if cfg.checkpoint:
        store = CheckpointStore(os.path.join(cfg.output_dir, "checkpoints"),
                                max_to_keep=cfg.max_to_keep, async_save=cfg.async_checkpointing)
    try:
      state, records = self._start(store, log, resume, fingerprint)
      return self._loop(state, records, train, val, monitor, store, log, callback, is_main,
                        fingerprint)
    finally:
      if store is not None:
        store.wait()
        store.close()

  def _start(self, store, log, resume, fingerprint):
    cfg = self.config
    latest = store.latest_step() if store is not None else None
    if latest is None:
      if log is not None:
        log.rewrite([])
      return self.init(), []
    if not resume:
      raise FileExistsError(
          f"search: {store.directory} already holds checkpoints (latest after epoch "
          f"{latest - 1}); pass resume=True to continue that run, or use a new `output_dir`.")
    _, state, meta = store.restore_latest_intact(
        self.abstract_state(), check_meta=lambda meta: _check_resume(meta, fingerprint, cfg),
        required_meta=("config",))
    done = int(state.epoch)
    if meta.get("records") is not None:  # every record so far is in the checkpoint
      records = list(meta["records"])
    else:  # a checkpoint of an older version: the log, plus the checkpoint's last record
      records = [r for r in (log.read() if log is not None else []) if r["epoch"] < done]
      if meta.get("record") is not None and (not records or records[-1]["epoch"] < done - 1):
        records.append(meta["record"])
    if log is not None:
      log.rewrite(records)  # repairs a missing, short, cut or longer log
    return state, records

  def _loop(self, state, records, train, val, monitor, store, log, callback, is_main,
            fingerprint):
    cfg = self.config
    start = int(state.epoch)
    if start < cfg.epochs:
      t = time.perf_counter()
      compiled = self.compile(state, train, val, monitor)
      compile_s = time.perf_counter() - t
      progress = Progress(cfg.epochs, start, enabled=cfg.progress and is_main, desc=cfg.mode)
      checkpoint_s = None  # the previous epoch's checkpoint write, in this invocation
      try:
        for epoch in range(start, cfg.epochs):
          t_epoch = time.perf_counter()
          state, outputs = compiled(state, train, val, monitor)
          jax.block_until_ready((state, outputs))
          step_s = time.perf_counter() - t_epoch
          t = time.perf_counter()
          host = sh.to_host(outputs)
          record = self._record(host)
          if bool(host["all_diverged"]):
            raise PopulationDivergedError(epoch, record,
                                          store.latest_step() if store is not None else None)
          progress.update(epoch, _best_reward(record))
          timing = {"step_s": step_s, "log_s": time.perf_counter() - t}
          if epoch == start:
            timing["compile_s"] = compile_s
          if checkpoint_s is not None:
            timing["checkpoint_s"] = checkpoint_s
          timing["wall_s"] = step_s + timing["log_s"] + (checkpoint_s or 0.0)
          record["time"] = timing  # the record is complete: saved and logged as it is
          records.append(record)
          if store is not None:
            t = time.perf_counter()
            store.save(epoch + 1, state, {"config": cfg.fingerprint(),
                                          "fingerprint": fingerprint, "record": record,
                                          "records": records})
            checkpoint_s = time.perf_counter() - t
          if log is not None:
            log.append(record)
          if callback is not None:
            callback(record, state)
      finally:
        progress.close()
    best = records[-1]["best_index"] if records else 0
    best_reward = records[-1]["best_reward"] if records else float("nan")
    return SearchResult(state=self.select(state, best), best_index=best,
                        best_reward=math.nan if best_reward is None else best_reward,
                        mu=np.asarray(jax.device_get(state.policy.mu)), records=records,
                        search_state=state)


def _check_resume(meta: dict, fingerprint: dict, cfg: SearchConfig) -> None:
  """The checkpoint's fingerprint must equal this run's; the message names what differs."""
  saved = meta.get("fingerprint")
  if saved is None:  # a checkpoint of an older version: only the options can be compared
    saved, now = meta.get("config"), cfg.fingerprint()
    warnings.warn("search: the checkpoint predates the full resume fingerprint; only the "
                  "options are compared (not the task, optimiser, reward or data).",
                  RuntimeWarning, stacklevel=4)
  else:
    now = fingerprint
  differ = _fingerprint_differences(saved or {}, now)
  if differ:
    details = "; ".join(f"`{name}`: checkpoint {_lookup(saved, name)!r:.160}, now "
                        f"{_lookup(now, name)!r:.160}" for name in differ[:6])
    raise ValueError(
        f"search: the checkpoint was written with different options ({', '.join(differ)}); "
        f"resume needs the same run (everything but `epochs` and the output options). "
        f"{details}. Use the original settings or a new `output_dir`.")


# Fingerprint entries compared one level down (their sub-keys are named in messages).
_NESTED = ("task", "monitor", "metadata", "devices")


def _fingerprint_differences(old: dict, new: dict) -> list[str]:
  out = []
  for key in list(old) + [k for k in new if k not in old]:
    a, b = old.get(key, _MISSING), new.get(key, _MISSING)
    if key in _NESTED and isinstance(a, dict) and isinstance(b, dict):
      out.extend(f"{key}.{sub}" for sub in list(a) + [k for k in b if k not in a]
                 if a.get(sub, _MISSING) != b.get(sub, _MISSING))
    elif a != b:
      out.append(key)
  return out


_MISSING = "<missing>"


def _lookup(tree: dict, dotted: str):
  head, _, sub = dotted.partition(".")
  value = tree.get(head, _MISSING)
  if sub and head in _NESTED and isinstance(value, dict):
    value = value.get(sub, _MISSING)
  return value


class _BoundStep:
  """A compiled outer step with its seed key bound: ``fn(state, train, val)``."""

  def __init__(self, compiled, extra_args):
    self.compiled, self.extra_args = compiled, extra_args

  def __call__(self, state, train, val, monitor=None):
    return self.compiled(state, train, val, monitor or {}, *self.extra_args)


def _best_reward(record: dict) -> float:
  rewards = [r for r, ok in zip(record["rewards"], record["finite"]) if ok and r is not None]
  return max(rewards) if rewards else math.nan


def run(task: Task, config: SearchConfig, train: PyTree, val: PyTree, *,
        monitor: dict[str, PyTree] | None = None,
        mesh: jax.sharding.Mesh | None = None, axis_name: str = sh.POPULATION_AXIS,
        resume: bool = False,
        callback: Callable[[dict, SearchState], None] | None = None) -> SearchResult:
  """``Engine(task, config, mesh=mesh).run(train, val, ...)``: see :meth:`Engine.run`."""
  return Engine(task, config, mesh=mesh, axis_name=axis_name).run(
      train, val, monitor=monitor, resume=resume, callback=callback)
