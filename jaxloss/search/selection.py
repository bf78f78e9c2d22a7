"""What happens to the population after each epoch's scoring: one class per rule.

Every rule is a frozen (hashable) dataclass with one pure, jit-able method::

  population, index = rule.select(key, population, rewards, valid, examples)

``population`` is the copies' training states (a leading ``B`` axis on every leaf),
``rewards``/``valid`` the ``(B,)`` validation rewards and validity, ``examples`` the ``(B,
n_val)`` per-example scores (``evaluate``'s ``'examples'`` output) or None. ``index`` is the
copy the run's result is (its state is ``SearchResult.state`` after the last epoch).

* :class:`Best` (``'best'``, the paper): the best valid copy's whole state goes to every copy.
* :class:`Guarded` (``'guarded'``): the best copy replaces the population only when its paired
  lead over copy 0 on the same validation examples exceeds ``k`` standard errors; otherwise
  copy 0 (the mean copy of a strategy with ``mean_copy=True``, cross-entropy in a grid that
  starts with it) goes to every copy. Noise never moves the trajectory.
* :class:`Average` (``'average'``): every copy receives the (weighted) average of the copies'
  states: parameters, batch statistics and optimiser state (integer leaves and keys: the best
  copy's).
* :class:`Truncation` (``'truncation'``): Population Based Training's rule: each copy of the
  worst quarter gets the state of a random copy of the best quarter; the others keep theirs.
* :class:`Independent` (``'none'``): nothing; the copies are independent runs.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
PyTree = Any


def best_valid(rewards: Array, valid: Array) -> Array:
  """Index of the best valid copy (int32; 0 when none is valid)."""
  return jnp.argmax(jnp.where(valid, rewards, -jnp.inf)).astype(jnp.int32)


def broadcast_copy(population: PyTree, index: Array) -> PyTree:
  """Copy ``index``'s state on every copy."""
  return jax.tree.map(lambda a: jnp.broadcast_to(a[index], a.shape), population)


def _check_number(owner: str, name: str, value, low: float, *, integer: bool = False,
                  above: bool = False) -> None:
  ok = (isinstance(value, (int, float, np.integer, np.floating))
        and not isinstance(value, (bool, np.bool_)) and math.isfinite(float(value))
        and (value > low if above else value >= low)
        and (not integer or float(value).is_integer()))
  if not ok:
    what = "an integer" if integer else "a finite number"
    raise ValueError(f"{owner}: `{name}` must be {what} {'>' if above else '>='} {low}, got "
                     f"{value!r}.")


@dataclasses.dataclass(frozen=True)
class Best:
  """The paper's rule: the best valid copy's whole training state goes to every copy."""
  needs_examples = False

  def select(self, key, population, rewards, valid, examples=None):
    del key, examples
    best = best_valid(rewards, valid)
    return broadcast_copy(population, best), best


@dataclasses.dataclass(frozen=True)
class Independent:
  """No selection: the copies are independent runs (the result: the best on validation)."""
  needs_examples = False

  def select(self, key, population, rewards, valid, examples=None):
    del key, examples
    return population, best_valid(rewards, valid)


@dataclasses.dataclass(frozen=True)
class Guarded:
  """The best copy replaces the population only when it leads copy 0 by ``k`` standard errors.

  For copy ``i`` the paired differences ``d = e_i - e_0`` of the per-example scores on the
  same validation examples (McNemar's setting for accuracy) give its lead ``mean(d)`` and the
  standard error ``std(d) / sqrt(n)``. Among the valid copies whose lead exceeds ``k``
  standard errors the best rewarded one goes to every copy; when none does (ties included),
  copy 0 does. With an invalid copy 0 the rule is :class:`Best`'s. Needs ``evaluate`` to
  return ``'examples'`` (``classification_metrics(..., per_example=True)``).
  """
  k: float = 2.0
  needs_examples = True

  def __post_init__(self):
    _check_number("Guarded", "k", self.k, 0.0)

  def leads(self, examples: Array) -> tuple[Array, Array]:
    """``(lead, standard error)`` of every copy over copy 0, each ``(B,)``."""
    d = examples - examples[:1]
    n = d.shape[1]
    lead = jnp.mean(d, axis=1)
    se = jnp.std(d, axis=1, ddof=1) / math.sqrt(n) if n > 1 else jnp.zeros_like(lead)
    return lead, se

  def select(self, key, population, rewards, valid, examples=None):
    del key
    if examples is None:
      raise ValueError("search: selection='guarded' compares copies example by example: "
                       "`evaluate` must return 'examples' (e.g. "
                       "search.classification_metrics(logits, labels, per_example=True)).")
    lead, se = self.leads(examples)
    ahead = valid & (lead > self.k * se) & (lead > 0)
    candidate = best_valid(rewards, ahead)
    chosen = jnp.where(jnp.any(ahead), candidate, 0)
    chosen = jnp.where(valid[0], chosen, best_valid(rewards, valid)).astype(jnp.int32)
    return broadcast_copy(population, chosen), chosen


@dataclasses.dataclass(frozen=True)
class Average:
  """Every copy receives the average of the copies' training states.

  ``top_k``: average the ``top_k`` best valid copies only (None: every valid copy);
  ``weighted``: weights proportional to the rewards (else equal). Floating-point leaves
  (parameters, batch statistics, optimiser moments) are averaged; integer leaves (step
  counters) and keys take the best copy's value. The result index is the best copy's (whose
  reward was measured before averaging).
  """
  top_k: int | None = None
  weighted: bool = False
  needs_examples = False

  def __post_init__(self):
    if self.top_k is not None:
      _check_number("Average", "top_k", self.top_k, 1, integer=True)
    if not isinstance(self.weighted, (bool, np.bool_)):
      raise ValueError(f"Average: `weighted` must be True or False, got {self.weighted!r}.")

  def weights(self, rewards: Array, valid: Array) -> Array:
    """The ``(B,)`` averaging weights (they sum to 1 over the averaged copies)."""
    keep = valid
    if self.top_k is not None:
      order = jnp.argsort(jnp.where(valid, -rewards, jnp.inf))
      rank = jnp.zeros_like(order).at[order].set(jnp.arange(order.size))
      keep = keep & (rank < self.top_k)
    w = jnp.where(keep, rewards if self.weighted else 1.0, 0.0).astype(rewards.dtype)
    total = jnp.sum(w)
    # No valid copy (or zero rewards): every copy counts the same, the fallback of a mean.
    return jnp.where(total > 0, w / jnp.where(total > 0, total, 1), 1.0 / w.size)

  def select(self, key, population, rewards, valid, examples=None):
    del key, examples
    best = best_valid(rewards, valid)

    def mean(a):
      if not jnp.issubdtype(a.dtype, jnp.inexact):
        return jnp.broadcast_to(a[best], a.shape)
      w = self.weights(rewards.astype(a.dtype), valid)  # in the leaf's precision
      return jnp.broadcast_to(jnp.tensordot(w, a, axes=1), a.shape)

    return jax.tree.map(mean, population), best


@dataclasses.dataclass(frozen=True)
class Truncation:
  """Population Based Training's truncation: the worst ``fraction`` of the copies each take
  the state of a random copy of the best ``fraction``; the others keep their own state."""
  fraction: float = 0.25
  needs_examples = False

  def __post_init__(self):
    _check_number("Truncation", "fraction", self.fraction, 0.0, above=True)
    if self.fraction > 0.5:
      raise ValueError(f"Truncation: `fraction` must be at most 0.5 (the worst and the best "
                       f"fractions must not overlap), got {self.fraction!r}.")

  def sources(self, key: Array, rewards: Array, valid: Array) -> Array:
    """``(B,)``: the copy whose state each copy continues from."""
    b = rewards.shape[0]
    q = max(1, int(self.fraction * b))
    order = jnp.argsort(jnp.where(valid, -rewards, jnp.inf))   # best first, invalid last
    pick = order[jax.random.randint(key, (q,), 0, q)]           # a best-quarter copy each
    return jnp.arange(b).at[order[b - q:]].set(pick).astype(jnp.int32)

  def select(self, key, population, rewards, valid, examples=None):
    del examples
    source = self.sources(key, rewards, valid)
    return (jax.tree.map(lambda a: a[source], population), best_valid(rewards, valid))


#: The names ``SearchConfig(selection=...)`` accepts, and the rules they stand for.
NAMES = {"best": Best(), "guarded": Guarded(), "average": Average(),
         "truncation": Truncation(), "none": Independent()}


def resolve(selection) -> Any:
  """The rule for a name (:data:`NAMES`), or ``selection`` itself (validated)."""
  if isinstance(selection, str):
    if selection not in NAMES:
      raise ValueError(f"`selection` must be one of {tuple(NAMES)} or a selection rule, got "
                       f"{selection!r}.")
    return NAMES[selection]
  if isinstance(selection, type) or not callable(getattr(selection, "select", None)):
    raise ValueError(f"`selection` must be one of {tuple(NAMES)} or a selection rule object "
                     f"(e.g. jaxloss.search.selection.Guarded(k=2)), got {selection!r:.100}.")
  try:
    hash(selection)
  except TypeError:
    raise ValueError("`selection` must be hashable (a frozen dataclass): it keys the compiled "
                     "program.") from None
  return selection
