"""The AM-LFS outer step (paper section 3.4, algorithm 1) as pure functions, without a mesh.

:func:`outer_step` is one epoch of the search, five named calls:

1. :func:`sample`: ``B`` loss parameters asked of the strategy (``theta_i ~ N(mu, sigma^2
   I)`` for the paper's; a grid's fixed thetas; ``mu`` itself for ``strategies.FIXED``);
2. :func:`train_epoch`: every copy trains one epoch with its own ``theta`` (a ``lax.scan``
   over steps; each step gathers its batch by index from the device-resident split and calls
   the user's ``train_step`` under ``jax.vmap`` over the copies);
3. :func:`score`: every copy is evaluated on the validation split, and its reward is
   ``reward_fn`` of the totals (a copy with a non-finite loss, state or reward is invalid);
4. :func:`update_mean`: the strategy is told the rewards (REINFORCE on ``mu`` as an optax
   step, for the paper's), which normalises them once;
5. :func:`select`: the selection rule (the paper's: the best valid copy's WHOLE training
   state goes to every copy; :mod:`jaxloss.search.selection` for the others).

Everything the step reads is in its :class:`~jaxloss.search.config.StepSpec` (and the
traced arguments); where the arrays live is the business of a :class:`Placement`, which the
engine implements with a mesh (``jax.shard_map`` for the per-copy work, sharding
constraints for the population-wide values); the base class is the trivial one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxloss.search.config import StepSpec
from jaxloss.search.task import EXAMPLES, leading_size, sum_over_batches, without_examples

Array = jax.Array
PyTree = Any

# Independent random streams derived from the seed (fold_in labels).
INIT_STREAM, EPOCH_STREAM = 0, 1
_SAMPLE, _PERMUTATION, _TRAIN, _SELECT = 0, 1, 2, 3

# How an argument of a per-shard function is laid out: split along the copies, or whole.
COPIES, SHARED = "copies", "shared"


class SearchState(NamedTuple):
  """Everything a search carries from one epoch to the next (and checkpoints).

  ``epoch``: completed outer steps (int32 scalar). ``population``: the user's training
  state with a leading ``B`` axis on every leaf. ``policy``: the strategy's state (for a
  ``strategies.Gaussian``: ``mu``, its optax state and a counter).
  """
  epoch: Array
  population: PyTree
  policy: PyTree


class Data(NamedTuple):
  """The splits of a run (device-resident): ``train``, ``val`` (the reward), ``monitor``."""
  train: PyTree
  val: PyTree
  monitor: dict


class Score(NamedTuple):
  """Step 3's output: per-copy validation ``totals``, ``rewards`` and ``valid`` flags, and the
  per-example scores (``(B, n_val)``, when ``evaluate`` returns ``'examples'``; else None)."""
  totals: dict
  rewards: Array
  valid: Array
  examples: Array | None = None


class Placement:
  """Where the arrays live. This one: a single device, nothing to place."""

  def per_shard(self, fn: Callable, in_layout: tuple, out_layout: tuple) -> Callable:
    """``fn`` run on every shard of the copies (``COPIES``/``SHARED`` per argument)."""
    del in_layout, out_layout
    return fn

  def whole(self, tree: PyTree) -> PyTree:
    """``tree`` as one value on every device (population-wide reductions)."""
    return tree

  def copies(self, tree: PyTree) -> PyTree:
    """``tree`` split along its leading (copy) axis."""
    return tree


def outer_step(spec: StepSpec, place: Placement, state: SearchState, data: Data,
               seed_key: Array, select_now: Array) -> tuple[SearchState, dict]:
  """One epoch of algorithm 1 (one jitted program)."""
  keys = epoch_keys(seed_key, state.epoch)
  thetas = sample(spec, place, state.policy, keys[_SAMPLE])                            # 1.
  population, train = train_epoch(spec, place, state.population, thetas, data.train,  # 2.
                                  keys[_PERMUTATION], keys[_TRAIN])
  result = score(spec, place, population, train["finite"], data.val)                 # 3.
  policy, info = update_mean(spec, state.policy, thetas, result)                      # 4.
  population, best = select(spec, place, population, result, keys[_SELECT],         # 5.
                            select_now)
  new_state = SearchState(epoch=state.epoch + 1, population=population, policy=policy)
  outputs = {
      "epoch": state.epoch, "mu": spec.strategy.mean(state.policy),
      "mu_next": spec.strategy.mean(policy), "thetas": thetas, "rewards": result.rewards,
      "normalized_rewards": info["normalized_rewards"], "finite": result.valid,
      "best_index": best, "best_reward": result.rewards[best], "train": train["means"],
      "val": result.totals, "all_diverged": ~jnp.any(result.valid),
      "monitor": monitor(spec, place, population, best, data.monitor)}
  return new_state, outputs


def epoch_keys(seed_key: Array, epoch: Array) -> tuple[Array, Array, Array]:
  """The epoch's keys for sampling, the data order and the steps (``fold_in`` of the seed)."""
  key = jax.random.fold_in(
      jax.random.fold_in(jax.random.wrap_key_data(seed_key), EPOCH_STREAM), epoch)
  return tuple(jax.random.fold_in(key, stream)
               for stream in (_SAMPLE, _PERMUTATION, _TRAIN, _SELECT))


# ------------------------------------------------------------------------ 1. sample


def sample(spec: StepSpec, place: Placement, policy: PyTree, key: Array) -> Array:
  """``(B, ...)`` thetas asked of the strategy, in the shape of its mean."""
  mu = spec.strategy.mean(policy)
  thetas = spec.strategy.ask(key, policy, spec.population_size)
  return place.whole(thetas.reshape((spec.population_size,) + mu.shape))


# ------------------------------------------------------------------- 2. train an epoch


def for_copies(spec: StepSpec, fn: Callable[[Array], Any], key: Array,
               copy_ids: Array) -> tuple[Any, int | None]:
  """The ONE switch of common random numbers: ``(fn(key), None)`` shared by every copy, or
  ``(fn(fold_in(key, copy)) per copy, 0)``; the second value is the vmap axis."""
  if spec.common_random_numbers:
    return fn(key), None
  return jax.vmap(lambda c: fn(jax.random.fold_in(key, c)))(copy_ids), 0


def train_epoch(spec: StepSpec, place: Placement, population: PyTree, thetas: Array,
                train: PyTree, perm_key: Array, step_key: Array) -> tuple[PyTree, dict]:
  """Every copy trains one epoch (``n_train // batch_size`` steps of a fresh permutation).

  Returns the trained population and ``{'means': per-copy mean metrics, 'finite': the
  copies whose loss (every step) and trained state are finite}``.
  """
  n_train = leading_size("search", "train", train)
  copy_ids = jnp.arange(spec.population_size, dtype=jnp.int32)
  perm, perm_axis = for_copies(spec, lambda k: jax.random.permutation(k, n_train), perm_key,
                               copy_ids)
  local = place.per_shard(
      lambda *args: _train_local(spec, perm_axis, *args),
      in_layout=(COPIES, COPIES, COPIES, SHARED if perm_axis is None else COPIES, SHARED,
                 SHARED),
      out_layout=(COPIES, COPIES))
  population, train_out = local(population, thetas, copy_ids, perm, step_key, train)
  return population, place.whole(train_out)


def _train_local(spec: StepSpec, perm_axis, population, thetas, copy_ids, perm, key, train):
  bs = spec.batch_size
  num_steps = leading_size("search", "train", train) // bs
  gather = lambda idx: jax.tree.map(lambda a: jnp.take(a, idx, axis=0), train)
  step_fn = checked_train_step(spec.task.train_step)

  def body(pop, step):
    idx = jax.lax.dynamic_slice_in_dim(perm, step * bs, bs, axis=perm.ndim - 1)
    batch = gather(idx) if perm_axis is None else jax.vmap(gather)(idx)
    keys, key_axis = for_copies(spec, lambda k: k, jax.random.fold_in(key, step), copy_ids)
    return jax.vmap(step_fn, in_axes=(0, perm_axis, 0, key_axis))(pop, batch, thetas, keys)

  population, metrics = jax.lax.scan(body, population, jnp.arange(num_steps),
                                     unroll=spec.unroll)
  finite = jnp.all(jnp.isfinite(metrics["loss"]), axis=0)
  finite = finite & jax.vmap(tree_all_finite)(population)
  means = {k: jnp.mean(v if _is_float(v) else v.astype(jnp.float32), axis=0)
           for k, v in metrics.items()}
  return population, {"means": means, "finite": finite}


# ----------------------------------------------------------------------------- 3. score


def score(spec: StepSpec, place: Placement, population: PyTree, finite: Array,
          val: PyTree) -> Score:
  """Validation totals of every copy (per shard), then the rewards (population-wide)."""
  evaluate = lambda pop, data: jax.vmap(
      lambda s: sum_over_batches(spec.task.evaluate, s, data, spec.eval_batch_size))(pop)
  totals = place.per_shard(evaluate, in_layout=(COPIES, SHARED), out_layout=COPIES)(
      population, val)
  totals = place.whole(totals)
  examples = totals.get(EXAMPLES)
  totals = without_examples(totals)
  rewards = checked_rewards(jax.vmap(spec.reward_fn)(totals), spec.population_size)
  return Score(totals=totals, rewards=rewards, valid=finite & jnp.isfinite(rewards),
               examples=examples)


# ----------------------------------------------------------------------- 4. update mu


def update_mean(spec: StepSpec, policy: PyTree, thetas: Array,
                result: Score) -> tuple[PyTree, dict]:
  """Tells the strategy the rewards (whether ``mu`` moves is the strategy's business).

  ``info['normalized_rewards']`` is the fitness the strategy computed (once).
  """
  return spec.strategy.tell(policy, thetas, result.rewards, result.valid)


# ----------------------------------------------------------------- 5. broadcast the best


def select(spec: StepSpec, place: Placement, population: PyTree, result: Score, key: Array,
           select_now: Array) -> tuple[PyTree, Array]:
  """The selection rule (:mod:`jaxloss.search.selection`) when ``select_now`` (a traced bool:
  ``select_until``), else nothing; returns the population and the result copy's index."""
  rule = spec.selection

  def apply(pop):
    return rule.select(key, pop, result.rewards, result.valid, result.examples)

  def keep(pop):
    return pop, jnp.argmax(jnp.where(result.valid, result.rewards, -jnp.inf)).astype(jnp.int32)

  population, index = jax.lax.cond(select_now, apply, keep, population)
  return place.copies(population), index


# ------------------------------------------------------------------------ monitoring


def monitor(spec: StepSpec, place: Placement, population: PyTree, best: Array,
            splits: dict) -> dict:
  """The best copy's totals and score on the monitored splits (never used by the search)."""
  if not splits:
    return {}
  best_state = place.whole(jax.tree.map(lambda a: a[best], population))
  out = {}
  for name, data in splits.items():
    totals = without_examples(
        sum_over_batches(spec.task.evaluate, best_state, data, spec.eval_batch_size))
    out[name] = {**totals, "score": spec.reward_fn(totals)}
  return out


# --------------------------------------------------------------------------- checks


def _is_float(a) -> bool:
  return jnp.issubdtype(a.dtype, jnp.inexact)


def tree_all_finite(tree: PyTree) -> Array:
  """True iff every floating-point leaf of ``tree`` is finite (integers and keys pass)."""
  checks = [jnp.all(jnp.isfinite(a)) for a in jax.tree.leaves(tree) if _is_float(a)]
  return jnp.all(jnp.stack(checks)) if checks else jnp.asarray(True)


def checked_rewards(rewards, b: int) -> Array:
  """``reward_fn`` must map one copy's totals to a real scalar (cast to float32 if integer)."""
  if not isinstance(rewards, jax.Array) or rewards.shape != (b,):
    raise ValueError("search: `reward_fn` must return one scalar per copy (a float), got "
                     f"{jax.tree.map(jnp.shape, rewards)} for {b} copies.")
  if jnp.issubdtype(rewards.dtype, jnp.complexfloating) or not jnp.issubdtype(
      rewards.dtype, jnp.number):
    raise ValueError(f"search: `reward_fn` must return a real number, got dtype {rewards.dtype}.")
  return rewards if jnp.issubdtype(rewards.dtype, jnp.floating) else rewards.astype(jnp.float32)


def checked_train_step(train_step: Callable) -> Callable:
  """Wraps ``train_step`` with trace-time checks of its outputs (naming ``train_step``)."""

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
      if not (jnp.issubdtype(jnp.result_type(value), jnp.number)
              or jnp.result_type(value) == jnp.bool_):
        raise ValueError(f"search: `train_step` metric {name!r} must be a number, got dtype "
                         f"{jnp.result_type(value)}.")
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
    return new_state, metrics

  return step
