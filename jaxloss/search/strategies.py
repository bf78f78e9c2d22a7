r"""Search strategies over the loss parameters ``theta``, behind one ask/tell contract.

Every strategy is a frozen (hashable) dataclass of pure, jit-able methods::

  state = strategy.init(mu0)                         # a pytree with at least ``.mu``
  thetas = strategy.ask(key, state, num)             # (num, D): one theta per copy
  state, info = strategy.tell(state, thetas, rewards, valid)
  mu = strategy.mean(state)

``info['normalized_rewards']`` (``(num,)``) is the fitness the update used; invalid copies
(diverged, non-finite reward) get the worst value.

* :class:`Gaussian`: AM-LFS's ``theta ~ N(mu, sigma^2)`` with REINFORCE on ``mu``
  (:data:`PAPER` is the paper's algorithm exactly), plus options no public implementation
  has: a **mean copy** (copy 0 trains with ``mu`` itself), **antithetic** (mirrored)
  sampling, **rank** fitness shaping, a standard deviation **per part** of theta
  (``t`` slopes, ``t`` biases, ``tau`` slopes, ``tau`` biases), and a **drift guard** (a
  coordinate of ``mu`` moves only when its estimated gradient exceeds ``k`` standard errors).
  ``update_mean=False`` is random search around ``mu_0`` (the paper's ablation).
* :class:`Grid`: every copy keeps its own fixed theta from a user list (CosFace margins,
  focal-like taus, or the loss parameters of any user loss): the equal-compute competitor.
* :class:`EvosaxStrategy`: an evosax (>= 0.2, ``evosax.algorithms``) distribution-based
  strategy (e.g. ``Open_ES``, ``SNES``, ``CMA_ES``) driving ``mu`` through its own ask/tell.

The measured choice of the default (:data:`DEFAULT`) and its evidence are in
``docs/search_study.md``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

Array = jax.Array

#: The four parts of ``theta = [a_t, b_t, a_tau, b_tau]`` (``M`` numbers each).
PARTS = ("t_slopes", "t_biases", "tau_slopes", "tau_biases")
FITNESS = ("zscore", "rank")


# ----------------------------------------------------------------------------------------------
# Fitness shaping
# ----------------------------------------------------------------------------------------------


def normalize_rewards(rewards: Array, valid: Array | None = None) -> Array:
  """Normalises rewards to zero mean and unit variance over the ``valid`` entries.

  The mean and the (population, ``ddof=0``) standard deviation are computed over the valid
  (finite) entries only, so a diverged copy cannot corrupt the others. If every valid
  reward is equal (standard deviation 0), their normalised rewards are 0.

  An invalid entry gets ``min(-1, min of the valid normalised rewards)``: never better than
  any valid copy and at least one standard deviation below their mean, so REINFORCE pushes
  ``mu`` away from the ``theta`` that made a copy diverge. With no valid entry, every
  normalised reward is 0 (no update direction).

  Args:
    rewards: ``(B,)`` rewards (non-finite values allowed where ``valid`` is False).
    valid: ``(B,)`` booleans; default: ``isfinite(rewards)``.
  Returns:
    ``(B,)`` normalised rewards in ``rewards``' floating dtype.
  """
  rewards = jnp.asarray(rewards)
  if not jnp.issubdtype(rewards.dtype, jnp.floating):
    rewards = rewards.astype(jnp.float32)
  finite = jnp.isfinite(rewards)
  valid = finite if valid is None else jnp.logical_and(jnp.asarray(valid, bool), finite)
  safe = jnp.where(valid, rewards, 0)
  count = jnp.sum(valid)
  n = jnp.maximum(count, 1).astype(rewards.dtype)
  mean = jnp.sum(safe) / n
  centred = jnp.where(valid, safe - mean, 0)
  std = jnp.sqrt(jnp.sum(centred * centred) / n)
  z = jnp.where(std > 0, centred / jnp.where(std > 0, std, 1), 0)
  worst_valid = jnp.min(jnp.where(valid, z, jnp.inf))
  worst = jnp.where(count > 0, jnp.minimum(worst_valid, -1), 0).astype(rewards.dtype)
  return jnp.where(valid, z, worst)



def centered_ranks(rewards: Array, valid: Array | None = None) -> Array:
  """Ranks of the valid rewards mapped to ``[-0.5, 0.5]`` and scaled to unit variance.

  Ties share their average rank, so the result depends only on the ORDER of the rewards:
  any strictly increasing transform of the rewards gives the same output. Invalid entries
  get ``min(-1, lowest valid value)``, as :func:`normalize_rewards`; all
  equal (or fewer than two valid) gives 0.
  """
  rewards = jnp.asarray(rewards)
  if not jnp.issubdtype(rewards.dtype, jnp.floating):
    rewards = rewards.astype(jnp.float32)
  finite = jnp.isfinite(rewards)
  valid = finite if valid is None else jnp.logical_and(jnp.asarray(valid, bool), finite)
  r = jnp.where(valid, rewards, 0)
  pair = valid[:, None] & valid[None, :]
  below = jnp.sum(pair & (r[None, :] < r[:, None]), axis=1)
  equal = jnp.sum(pair & (r[None, :] == r[:, None]), axis=1)
  rank = below + 0.5 * (equal - 1)                       # 0 .. count-1, ties averaged
  count = jnp.sum(valid)
  centred = jnp.where(valid, rank / jnp.maximum(count - 1, 1) - 0.5, 0).astype(rewards.dtype)
  # Unit variance over the valid copies and the worst value for the others: the z-scoring
  # of the paper's rewards, applied to the ranks.
  return normalize_rewards(centred, valid)


def shape_fitness(kind: str, rewards: Array, valid: Array | None = None) -> Array:
  """``'zscore'`` (the paper: zero mean, unit variance) or ``'rank'`` (:func:`centered_ranks`)."""
  if kind == "zscore":
    return normalize_rewards(rewards, valid)
  if kind == "rank":
    return centered_ranks(rewards, valid)
  raise ValueError(f"shape_fitness: `fitness` must be one of {FITNESS}, got {kind!r}.")


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------


def sigma_vector(sigma, dim: int, dtype=jnp.float32) -> Array:
  """The per-coordinate standard deviations of ``sigma``.

  ``sigma`` is a float (every coordinate), a 4-tuple (one value per part of theta,
  :data:`PARTS`; ``dim`` must be ``4 M`` or ``4 M + 1``), a 5-tuple (the four parts and the
  label-smoothing coordinate of a ``4 M + 1`` theta, ``jaxloss.amlfs_loss``) or a
  ``dim``-tuple. A 0 freezes its coordinates (they are never perturbed and never move); a
  4-tuple freezes the label-smoothing coordinate of a ``4 M + 1`` theta at ``mu_0``'s value.
  """
  values = np.atleast_1d(np.asarray(sigma, np.float64))
  if values.size == 1:
    out = np.full((dim,), float(values[0]))
  elif values.size in (4, 5) and dim >= 4 and dim % 4 in (0, 1) and values.size != dim:
    smoothing = values[4:] if values.size == 5 else np.zeros((1,))
    if values.size == 5 and dim % 4 == 0:
      raise ValueError(f"sigma: 5 values (the parts {PARTS} and label smoothing) need a "
                       f"theta of 4 M + 1 numbers, got {dim}.")
    out = np.concatenate([np.repeat(values[:4], dim // 4), smoothing[:dim % 4]])
  elif values.size == dim:
    out = values
  else:
    raise ValueError(f"sigma: expected a float, 4 values (one per part {PARTS}), 5 (and the "
                     f"label-smoothing coordinate) or {dim} values, got {values.size}.")
  return jnp.asarray(out, dtype)


def _check_sigma(name: str, sigma) -> None:
  flat = sigma if isinstance(sigma, (tuple, list)) else (sigma,)
  if not all(_is_real(v) for v in flat):
    raise ValueError(f"{name}: `sigma` must be a non-negative float or tuple of floats with "
                     f"at least one positive value (standard deviations), got {sigma!r}.")
  values = np.atleast_1d(np.asarray(sigma, np.float64))
  if values.ndim != 1 or not np.all(np.isfinite(values)) or np.any(values < 0) or not np.any(
      values > 0):
    raise ValueError(f"{name}: `sigma` must be a non-negative float or tuple of floats with "
                     f"at least one positive value (standard deviations), got {sigma!r}.")


def _is_real(value) -> bool:
  """A finite real Python/numpy number (not a bool)."""
  return (isinstance(value, (int, float, np.integer, np.floating))
          and not isinstance(value, (bool, np.bool_)) and math.isfinite(float(value)))


def _hashable(value):
  """Tuples all the way down (lists and arrays in a frozen dataclass field would not hash)."""
  if isinstance(value, (list, tuple, np.ndarray)) or hasattr(value, "__array__"):
    arr = np.asarray(value)
    if arr.ndim == 0:
      return float(arr)
    return tuple(_hashable(v) for v in arr)
  return value


def make_optimizer(optimizer, learning_rate: float) -> optax.GradientTransformation:
  """``'adam'`` / ``'sgd'`` with ``learning_rate``, or an optax transformation as it is."""
  if isinstance(optimizer, str):
    if optimizer == "adam":
      return optax.adam(learning_rate)
    if optimizer == "sgd":
      return optax.sgd(learning_rate)
    raise ValueError(f"`optimizer` must be 'adam', 'sgd' or an optax transformation, got "
                     f"{optimizer!r}.")
  if not (hasattr(optimizer, "init") and hasattr(optimizer, "update")):
    raise ValueError(f"`optimizer` must be 'adam', 'sgd' or an optax transformation, got "
                     f"{type(optimizer).__name__}.")
  return optimizer


# Cached so that one strategy object always uses one optax instance (optax transformations
# compare by identity; the cache key is the hashable strategy field).
_optimizer = functools.lru_cache(maxsize=None)(make_optimizer)


def _float_dtype(mu) -> Array:
  mu = jnp.asarray(mu)
  return mu if jnp.issubdtype(mu.dtype, jnp.floating) else mu.astype(jnp.float32)


# ----------------------------------------------------------------------------------------------
# Gaussian (AM-LFS and its options)
# ----------------------------------------------------------------------------------------------


class GaussianState(NamedTuple):
  """``mu``, the optax state of its optimiser, and the number of updates told so far."""
  mu: Array
  opt_state: Any
  count: Array


@dataclasses.dataclass(frozen=True)
class Gaussian:
  """``theta ~ N(mu, diag(sigma)^2)``, ``mu`` moved by REINFORCE through optax.

  Attributes:
    sigma: a float (the paper: 0.2 for every coordinate), or 4 floats, one per part of
      theta (:data:`PARTS`; a label-smoothing coordinate, if theta has one, is then
      frozen), 5 floats (the parts and the label-smoothing coordinate), or one per
      coordinate. Standard deviations, not variances.
      A 0 freezes that part at ``mu_0``.
    optimizer: ``'adam'`` (the paper), ``'sgd'`` or any optax transformation; it receives
      the NEGATED ascent direction as the gradient.
    learning_rate: for ``'adam'``/``'sgd'`` (the paper: 0.05).
    antithetic: mirrored sampling: the samples come in pairs ``mu +- sigma eps`` (with an
      odd number of samples, the last one is unpaired).
    fitness: ``'zscore'`` (the paper: rewards normalised to zero mean, unit variance) or
      ``'rank'`` (centred ranks: only the order of the rewards counts).
    mean_copy: copy 0 trains with ``mu`` itself (``theta_0 = mu`` exactly) and the other
      ``num - 1`` copies are samples. Its ``theta - mu`` is 0, so it adds nothing to the
      REINFORCE estimate; it is ALSO left out of the fitness statistics (the estimate is
      exactly that of the ``num - 1`` samples), and its ``normalized_rewards`` entry is its
      reward normalised with the samples' mean and spread (rank: 0 = the median). Its role
      is the selection: the best copy then is never worse on validation than training with
      ``mu``.
    drift_guard: ``k >= 0``; 0 (the paper) moves ``mu`` on every estimate. With ``k > 0`` a
      coordinate's gradient is zeroed (and its update dropped) unless ``|g_j| > k se_j``,
      ``se_j`` the standard error of the REINFORCE mean over the independent samples (a
      mirrored pair counts as one sample).
    update_mean: False: ``mu`` never moves (random search around ``mu_0``).
    whiten: the optimiser works in units of sigma: it sees the gradient with respect to
      ``z = mu / sigma`` (``sigma * g``) and its step is multiplied back by ``sigma``, so an
      Adam step moves every coordinate by about ``learning_rate * sigma_j`` (the paper,
      unwhitened, moves each by about ``learning_rate`` whatever its sigma: 0.05 is a
      quarter of sigma = 0.2, but five sigmas of a part sampled at 0.01).
  """
  sigma: float | tuple = 0.2
  optimizer: Any = "adam"
  learning_rate: float = 0.05
  antithetic: bool = False
  fitness: str = "zscore"
  mean_copy: bool = False
  drift_guard: float = 0.0
  update_mean: bool = True
  whiten: bool = False

  def __post_init__(self):
    object.__setattr__(self, "sigma", _hashable(self.sigma))
    _check_sigma("Gaussian", self.sigma)
    if self.fitness not in FITNESS:
      raise ValueError(f"Gaussian: `fitness` must be one of {FITNESS}, got {self.fitness!r}.")
    if not (_is_real(self.drift_guard) and self.drift_guard >= 0):
      raise ValueError(f"Gaussian: `drift_guard` must be a float >= 0, got {self.drift_guard!r}.")
    if not (_is_real(self.learning_rate) and self.learning_rate > 0):
      # A negative rate would move mu toward LOWER reward; nan would make mu nan.
      raise ValueError(f"Gaussian: `learning_rate` must be a positive finite float, got "
                       f"{self.learning_rate!r}.")
    for name in ("antithetic", "mean_copy", "update_mean", "whiten"):
      if not isinstance(getattr(self, name), (bool, np.bool_)):
        raise ValueError(f"Gaussian: `{name}` must be True or False, got "
                         f"{getattr(self, name)!r}.")
    make_optimizer(self.optimizer, self.learning_rate)

  @property
  def mu_optimizer(self) -> optax.GradientTransformation:
    return _optimizer(self.optimizer, self.learning_rate)

  def init(self, mu: Array) -> GaussianState:
    mu = _float_dtype(mu)
    sigma_vector(self.sigma, mu.size)  # shape check
    return GaussianState(mu=mu, opt_state=self.mu_optimizer.init(mu),
                         count=jnp.zeros((), jnp.int32))

  def mean(self, state: GaussianState) -> Array:
    return state.mu

  def num_samples(self, num: int) -> int:
    n = num - (1 if self.mean_copy else 0)
    if n < 1:
      raise ValueError(f"Gaussian: `num` = {num} leaves no sampled copy.")
    return n

  def noise(self, key: Array, num: int, dim: int, dtype) -> Array:
    """The standard normal ``eps`` of the ``num - mean_copy`` samples, ``(n, dim)``."""
    n = self.num_samples(num)
    if not self.antithetic:
      return jax.random.normal(key, (n * dim,), dtype).reshape(n, dim)
    half = n // 2
    eps = jax.random.normal(key, ((half + n % 2) * dim,), dtype).reshape(half + n % 2, dim)
    return jnp.concatenate([eps[:half], -eps[:half], eps[half:]], axis=0)

  def ask(self, key: Array, state: GaussianState, num: int) -> Array:
    mu = state.mu
    flat = mu.reshape(-1)
    sig = sigma_vector(self.sigma, flat.size, flat.dtype)
    thetas = flat + sig * self.noise(key, num, flat.size, flat.dtype)
    if self.mean_copy:
      thetas = jnp.concatenate([flat[None], thetas], axis=0)
    return thetas.reshape((num,) + mu.shape)

  def _units(self, contrib: Array) -> Array:
    """The independent units of the per-sample contributions ``(n, D)``: each sample, or,
    with mirrored sampling, the mean of each pair (and the unpaired last sample)."""
    if not self.antithetic:
      return contrib
    n = contrib.shape[0]
    half = n // 2
    pairs = 0.5 * (contrib[:half] + contrib[half:2 * half])
    return jnp.concatenate([pairs, contrib[2 * half:]], axis=0)

  def tell(self, state: GaussianState, thetas: Array, rewards: Array,
           valid: Array | None = None) -> tuple[GaussianState, dict]:
    mu = state.mu
    num = thetas.shape[0]
    flat_mu = mu.reshape(-1)
    flat = thetas.reshape(num, -1)
    sig = sigma_vector(self.sigma, flat_mu.size, flat_mu.dtype)
    rewards = jnp.asarray(rewards, flat.dtype)
    valid = jnp.isfinite(rewards) if valid is None else (jnp.asarray(valid, bool)
                                                         & jnp.isfinite(rewards))
    m = 1 if self.mean_copy else 0
    self.num_samples(num)  # at least one sampled copy (a clear error otherwise)
    shaped = shape_fitness(self.fitness, rewards[m:], valid[m:])
    normalized = shaped
    if self.mean_copy:
      normalized = jnp.concatenate([self._mean_copy_fitness(rewards, valid, shaped), shaped])
    # REINFORCE: (1/n) sum_i R_i (theta_i - mu) / sigma^2 = (1/n) sum_i R_i eps_i / sigma.
    safe = jnp.where(sig > 0, sig, 1)
    eps = jnp.where(sig > 0, (flat[m:] - flat_mu) / safe, 0)
    contrib = shaped[:, None] * eps / safe                  # (n, D)
    ascent = jnp.mean(contrib, axis=0)
    units = self._units(contrib)                           # (U, D), independent
    u = units.shape[0]
    se = jnp.std(units, axis=0, ddof=1) / math.sqrt(u) if u > 1 else jnp.full_like(ascent, jnp.inf)
    if self.drift_guard > 0:
      gate = jnp.abs(ascent) > self.drift_guard * se
    else:
      gate = jnp.ones_like(ascent, bool)
    gate = gate & (sig > 0)
    grad = jnp.where(gate, -ascent, 0)
    if self.whiten:
      grad = grad * sig
    if self.update_mean:
      updates, opt_state = self.mu_optimizer.update(grad.reshape(mu.shape), state.opt_state, mu)
      if self.whiten:
        updates = updates * sig.reshape(mu.shape)
      updates = jnp.where(gate.reshape(mu.shape), updates, 0)
      new_mu = optax.apply_updates(mu, updates).astype(mu.dtype)
    else:
      opt_state, new_mu = state.opt_state, mu
    info = {"normalized_rewards": normalized, "ascent": ascent.reshape(mu.shape),
            "standard_error": se.reshape(mu.shape), "moved": gate.reshape(mu.shape)}
    return GaussianState(mu=new_mu, opt_state=opt_state, count=state.count + 1), info

  def _mean_copy_fitness(self, rewards, valid, shaped):
    """Copy 0's fitness on the samples' scale (never used by the update)."""
    r0, ok0 = rewards[0], valid[0]
    samples, sv = rewards[1:], valid[1:]
    cnt = jnp.maximum(jnp.sum(sv), 1)
    if self.fitness == "zscore":
      mean = jnp.sum(jnp.where(sv, samples, 0)) / cnt
      std = jnp.sqrt(jnp.sum(jnp.where(sv, samples - mean, 0) ** 2) / cnt)
      z = jnp.where(std > 0, (r0 - mean) / jnp.where(std > 0, std, 1), 0)
    else:  # the fraction of valid samples below it, centred: 0 is the median
      below = jnp.sum(sv & (samples < r0)) + 0.5 * jnp.sum(sv & (samples == r0))
      z = below / cnt - 0.5
    worst = jnp.minimum(jnp.min(jnp.where(sv, shaped, jnp.inf)), -1)
    return jnp.where(ok0, z, worst).astype(shaped.dtype)[None]


# ----------------------------------------------------------------------------------------------
# Grid
# ----------------------------------------------------------------------------------------------


def _grid_thetas(owner: str, thetas) -> tuple:
  """``thetas`` as a tuple of equal-length tuples of finite floats (else one clear error)."""
  if isinstance(thetas, (str, bytes)) or not isinstance(
      thetas, (list, tuple, np.ndarray)) and not hasattr(thetas, "__array__"):
    raise ValueError(f"{owner}: `thetas` must be a sequence of loss parameter vectors (one per "
                     f"copy), got {type(thetas).__name__}.")
  rows = [np.atleast_1d(np.asarray(t)) for t in thetas]
  if not rows:
    raise ValueError(f"{owner}: `thetas` must hold at least one loss parameter vector, got an "
                     "empty sequence.")
  for i, row in enumerate(rows):
    if row.ndim != 1 or not (np.issubdtype(row.dtype, np.floating)
                             or np.issubdtype(row.dtype, np.integer)) or row.dtype == bool:
      raise ValueError(f"{owner}: `thetas[{i}]` must be a vector of numbers, got "
                       f"{np.asarray(thetas[i])!r:.80}.")
  lengths = sorted({row.size for row in rows})
  if len(lengths) != 1:
    raise ValueError(f"{owner}: every entry of `thetas` must have the same length (a ragged "
                     f"grid), got lengths {lengths}.")
  grid = np.stack(rows).astype(np.float64)
  if not np.all(np.isfinite(grid)):
    bad = sorted({int(i) for i in np.argwhere(~np.isfinite(grid))[:, 0]})
    raise ValueError(f"{owner}: every entry of `thetas` must be finite; entries {bad[:8]} are "
                     "not.")
  return tuple(tuple(float(v) for v in row) for row in grid)


class GridState(NamedTuple):
  """A grid's state never changes; ``mu`` is the mean of its thetas (for reports only)."""
  mu: Array


@dataclasses.dataclass(frozen=True)
class Grid:
  """Every copy trains with its own FIXED theta (copy ``i`` with ``thetas[i]``), every epoch.

  ``thetas`` is a sequence of ``num`` vectors (AM-LFS thetas, e.g. ``cosface_theta(0.2)``,
  or the loss parameters of a user loss, such as ``[smoothing]`` or ``[gamma]``). ``ask``
  ignores the key and returns them; ``tell`` returns the state unchanged (its
  ``normalized_rewards`` is the z-score, for the record). With the engine's per-epoch
  selection this is the equal-compute competitor of the search.
  """
  thetas: tuple

  def __post_init__(self):
    object.__setattr__(self, "thetas", _grid_thetas("Grid", self.thetas))

  def array(self, dtype=jnp.float32) -> Array:
    return jnp.asarray(np.asarray(self.thetas, np.float64), dtype)

  def init(self, mu: Array | None = None) -> GridState:
    dtype = jnp.float32 if mu is None else _float_dtype(mu).dtype
    return GridState(mu=jnp.mean(self.array(dtype), axis=0))

  def mean(self, state: GridState) -> Array:
    return state.mu

  def ask(self, key: Array, state: GridState, num: int) -> Array:
    del key
    if num != len(self.thetas):
      raise ValueError(f"Grid: {len(self.thetas)} thetas for a population of {num}; give one "
                       f"theta per copy (repeat entries to fill the population).")
    return self.array(state.mu.dtype)

  def tell(self, state: GridState, thetas: Array, rewards: Array,
           valid: Array | None = None) -> tuple[GridState, dict]:
    del thetas
    return state, {"normalized_rewards": normalize_rewards(rewards, valid)}


# ----------------------------------------------------------------------------------------------
# Fixed
# ----------------------------------------------------------------------------------------------


class FixedState(NamedTuple):
  """``mu``, which never changes."""
  mu: Array


@dataclasses.dataclass(frozen=True)
class Fixed:
  """Every copy trains with ``mu_0`` itself, every epoch; ``mu`` never moves.

  The plain-loss baseline: with ``initial_mu=jaxloss.identity_theta(M)`` every copy trains
  with cross-entropy. With ``SearchConfig(selection='none')`` the copies are independent runs
  (``init='per_copy'``), and the best of them on validation is the equal-compute baseline of
  a search with as many copies.
  """

  def init(self, mu: Array) -> FixedState:
    return FixedState(mu=_float_dtype(mu))

  def mean(self, state: FixedState) -> Array:
    return state.mu

  def ask(self, key: Array, state: FixedState, num: int) -> Array:
    del key
    return jnp.broadcast_to(state.mu, (num,) + state.mu.shape)

  def tell(self, state: FixedState, thetas: Array, rewards: Array,
           valid: Array | None = None) -> tuple[FixedState, dict]:
    del thetas
    return state, {"normalized_rewards": normalize_rewards(rewards, valid)}


# ----------------------------------------------------------------------------------------------
# evosax
# ----------------------------------------------------------------------------------------------


class EvosaxState(NamedTuple):
  """``mu`` (the evosax mean), the evosax state and its params."""
  mu: Array
  inner: Any
  params: Any


@functools.lru_cache(maxsize=32)
def _evosax_algorithm(name: str, population_size: int, dim: int, dtype_name: str,
                      sigma: float, learning_rate: float, kwargs: tuple):
  import inspect  # pylint: disable=import-outside-toplevel

  import evosax.algorithms as algorithms  # pylint: disable=import-outside-toplevel

  cls = getattr(algorithms, name, None)
  if cls is None:
    raise ValueError(f"EvosaxStrategy: evosax.algorithms has no {name!r}.")
  options = dict(kwargs)
  accepted = inspect.signature(cls.__init__).parameters
  if "std_schedule" in accepted and "std_schedule" not in options:
    options["std_schedule"] = optax.constant_schedule(sigma)
  if "optimizer" in accepted and "optimizer" not in options:
    options["optimizer"] = optax.adam(learning_rate)
  return cls(population_size, jnp.zeros((dim,), jnp.dtype(dtype_name)), **options)


@dataclasses.dataclass(frozen=True)
class EvosaxStrategy:
  """An evosax distribution-based strategy driving ``mu`` (its ``state.mean``).

  Attributes:
    algorithm: a class name in ``evosax.algorithms`` (``'Open_ES'``, ``'SNES'``,
      ``'CMA_ES'``, ``'SimpleES'``, ...).
    population_size: evosax fixes it at construction: ``ask``'s ``num`` must equal it.
    sigma: the initial / fixed standard deviation where the algorithm takes a
      ``std_schedule`` (Open_ES); others use their own ``std_init`` param (set it with
      ``params``).
    learning_rate: Adam's on the mean where the algorithm takes an ``optimizer``.
    kwargs: extra constructor options, a tuple of ``(name, value)`` pairs.
    params: overrides of the algorithm's ``default_params``, ``(name, value)`` pairs.

  evosax minimises: ``tell`` passes ``-reward`` as the fitness, and invalid copies get one
  more than the worst valid fitness.
  """
  algorithm: str = "Open_ES"
  population_size: int = 8
  sigma: float = 0.2
  learning_rate: float = 0.05
  kwargs: tuple = ()
  params: tuple = ()

  def _es(self, mu: Array):
    return _evosax_algorithm(self.algorithm, self.population_size, mu.size, str(mu.dtype),
                             float(self.sigma), float(self.learning_rate), tuple(self.kwargs))

  def init(self, mu: Array) -> EvosaxState:
    mu = _float_dtype(mu).reshape(-1)
    es = self._es(mu)
    params = es.default_params
    if self.params:
      params = params.replace(**dict(self.params))
    inner = es.init(jax.random.key(0), mu, params)
    return EvosaxState(mu=inner.mean.astype(mu.dtype), inner=inner, params=params)

  def mean(self, state: EvosaxState) -> Array:
    return state.mu

  def ask(self, key: Array, state: EvosaxState, num: int) -> Array:
    if num != self.population_size:
      raise ValueError(f"EvosaxStrategy: population_size is {self.population_size}, asked for "
                       f"{num}.")
    es = self._es(state.mu)
    population, _ = es.ask(key, state.inner, state.params)
    return population.astype(state.mu.dtype)

  def tell(self, state: EvosaxState, thetas: Array, rewards: Array,
           valid: Array | None = None) -> tuple[EvosaxState, dict]:
    rewards = jnp.asarray(rewards, jnp.float32)
    valid = jnp.isfinite(rewards) if valid is None else (jnp.asarray(valid, bool)
                                                         & jnp.isfinite(rewards))
    fitness = jnp.where(valid, -rewards, 0)
    worst = jnp.max(jnp.where(valid, fitness, -jnp.inf))
    fitness = jnp.where(valid, fitness, jnp.where(jnp.isfinite(worst), worst + 1, 0))
    es = self._es(state.mu)
    key = jax.random.fold_in(jax.random.key(1), state.inner.generation_counter)
    inner, metrics = es.tell(key, thetas, fitness, state.inner, state.params)
    del metrics
    info = {"normalized_rewards": normalize_rewards(rewards, valid)}
    return EvosaxState(mu=inner.mean.astype(state.mu.dtype), inner=inner,
                       params=state.params), info


# ----------------------------------------------------------------------------------------------
# Named configurations
# ----------------------------------------------------------------------------------------------

#: The paper's algorithm exactly (section 3.4): sigma 0.2 on every coordinate, Adam 0.05,
#: z-scored rewards, independent samples, no mean copy, no guard.
PAPER = Gaussian()

#: Random search around ``mu_0`` (the paper's ablation): the same samples, ``mu`` fixed.
RANDOM = Gaussian(update_mean=False)

#: The default of the search (docs/search_study.md, section 4, for the evidence): per-part
#: standard deviations from the one-part-at-a-time diagnosis (t slopes 0.1, t biases 0.05, tau
#: slopes 0.05, tau biases 0.01: sigma 0.2 on every coordinate makes every sampled loss worse
#: than cross-entropy in the first epoch, the tau biases near p = 1/C most), Adam steps in
#: units of sigma (0.25 sigma per coordinate, the paper's 0.05 / 0.2 ratio), a drift guard at
#: one standard error, mirrored samples, rank fitness, and a mean copy (copy 0 trains with mu,
#: so the broadcast copy is never worse on validation than mu's own loss).
DEFAULT = Gaussian(sigma=(0.1, 0.05, 0.05, 0.01), antithetic=True, fitness="rank",
                   mean_copy=True, drift_guard=1.0, whiten=True, learning_rate=0.25)

#: Every copy trains with ``mu_0`` itself (cross-entropy for ``jaxloss.identity_theta(M)``).
FIXED = Fixed()

#: The names ``SearchConfig(strategy=...)`` accepts, and the objects they stand for.
NAMES = ("default", "paper", "random", "fixed")


def resolve(strategy) -> Any:
  """The strategy object for a name (:data:`NAMES`), or ``strategy`` itself (validated)."""
  if isinstance(strategy, str):
    named = {"default": DEFAULT, "paper": PAPER, "random": RANDOM, "fixed": FIXED}
    if strategy not in named:
      raise ValueError(f"`strategy` must be one of {NAMES} or a strategy object, got "
                       f"{strategy!r}.")
    return named[strategy]
  if isinstance(strategy, type):
    raise ValueError(f"`strategy` must be a strategy object, got the class "
                     f"{strategy.__name__}: instantiate it, e.g. {strategy.__name__}(...).")
  missing = [m for m in ("init", "ask", "tell", "mean") if not callable(getattr(strategy, m,
                                                                                   None))]
  if missing:
    raise ValueError(f"`strategy` must be one of {NAMES} or an object with init/ask/tell/mean "
                     f"methods (missing {', '.join(missing)}), got {strategy!r:.120}.")
  try:
    hash(strategy)
  except TypeError:
    raise ValueError("`strategy` must be hashable (e.g. a frozen dataclass): it keys the "
                     "compiled program.") from None
  return strategy
