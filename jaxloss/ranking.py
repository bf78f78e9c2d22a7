r"""Ranking losses: the listwise softmax loss, as optax's ``ranking_softmax_loss``.

A ranking loss compares the ranking induced by item scores with relevance
labels. It acts on the last axis (a list of items); leading axes are batch
axes (lists). ``where`` marks the valid items of each list (padding of
variable-length lists); a list without valid items has no loss and leaves the
mean. Other listwise or pairwise losses belong here.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxloss import _common as C

Array = C.Array
ArrayLike = C.ArrayLike


@functools.partial(jax.jit, static_argnames=("reduction",))
def _ranking_softmax_kernel(logits, labels, weights, where, *, reduction):
  out_dtype = C.output_dtype(logits)
  dtype = C.compute_dtype(logits)
  x = C.upcast(logits, dtype)
  y = C.upcast(jnp.broadcast_to(labels, x.shape), dtype)
  if weights is not None:
    y = y * C.upcast(jnp.broadcast_to(weights, x.shape), dtype)
  valid_list = None
  if where is not None:
    valid_list = jnp.any(where, axis=-1)
    # Invalid items leave the softmax (a -inf score) and the sum; a list without a
    # valid item is all zeros. All through jnp.where: exactly-zero gradients there.
    x = jnp.where(where, x, jnp.full((), -jnp.inf, dtype))
    x = jnp.where(valid_list[..., None], x, jnp.zeros((), dtype))
    y = jnp.where(where, y, jnp.zeros((), dtype))
  terms = y * jax.nn.log_softmax(x, axis=-1)
  if where is not None:
    terms = jnp.where(where, terms, jnp.zeros((), dtype))
  loss = -jnp.sum(terms, axis=-1)
  if reduction == "mean" and valid_list is not None:
    # optax's _safe_reduce: the mean over valid lists, 0 (not 0/0) if there is none.
    count = jnp.sum(valid_list, dtype=dtype)
    return (jnp.sum(loss) / jnp.maximum(count, 1)).astype(out_dtype)
  return C.reduce_loss(loss, reduction, valid_list, out_dtype=out_dtype)


def ranking_softmax_loss(logits: ArrayLike, labels: ArrayLike, *,
                         where: ArrayLike | None = None, weights: ArrayLike | None = None,
                         reduce_fn: Callable[..., ArrayLike] | None = jnp.mean) -> Array:
  r"""Listwise softmax cross-entropy, ``optax.losses.ranking_softmax_loss``.

  .. math:: \ell(s, y) = -\sum_i w_i y_i \log \frac{e^{s_i}}{\sum_{j \text{ valid}} e^{s_j}}

  per list (the last axis), then reduced over the lists by ``reduce_fn``.
  Labels are relevances (not normalised: a list with two relevant items counts
  both). Values and gradients are optax's.

  Args:
    logits: ``[..., list_size]`` item scores.
    labels: ``[..., list_size]`` relevance labels (cast to ``logits``' dtype).
    where: optional ``[..., list_size]`` bool mask of the valid items; invalid
      items leave the softmax and the sum and get exactly-zero gradients, and
      a list without a valid item is ``0`` and leaves the mean.
    weights: optional ``[..., list_size]`` per-item weights (multiplying the
      labels).
    reduce_fn: optax's reduction: ``jnp.mean`` (default; the mean over valid
      lists, ``0`` if there is none), ``jnp.sum``, ``None`` (per-list values,
      ``0`` for lists without valid items), or another function called as
      ``reduce_fn(per_list_loss, where=valid_lists)``.

  Returns:
    The reduced loss (per-list values for ``reduce_fn=None``), in ``logits``'
    dtype.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> scores = jnp.array([[2.0, 1.0, 0.0], [1.0, 0.5, 1.5]])
    >>> labels = jnp.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    >>> where = jnp.array([[True, True, False], [True, True, True]])
    >>> print(f"{float(jaxloss.ranking_softmax_loss(scores, labels, where=where)):.3f}")
    0.497

  References:
    - Cao et al., "Learning to Rank: From Pairwise Approach to Listwise
      Approach", ICML 2007.
    - Bruch et al., "An Analysis of the Softmax Cross Entropy Loss for
      Learning-to-Rank with Binary Relevance", ICTIR 2019.
    - optax, ``optax.losses.ranking_softmax_loss``.
  """
  fn = "ranking_softmax_loss"
  logits = C.as_float_array(fn, "logits", logits)
  if logits.ndim < 1:
    raise ValueError(f"{fn}: `logits` must have a list axis, got shape ().")
  labels = jnp.asarray(labels)
  C.check_same_shape(fn, "logits", logits, "labels", labels)
  if weights is not None:
    weights = C.as_float_array(fn, "weights", weights)
    C.check_same_shape(fn, "logits", logits, "weights", weights)
  where = C.prepare_where(fn, where, logits.shape, "`logits`")
  if reduce_fn is None or reduce_fn is jnp.mean or reduce_fn is jnp.sum:
    reduction = {None: "none", jnp.mean: "mean", jnp.sum: "sum"}[reduce_fn]
    return _ranking_softmax_kernel(logits, labels, weights, where, reduction=reduction)
  if not callable(reduce_fn):
    raise ValueError(f"{fn}: `reduce_fn` must be callable or None, got {reduce_fn!r}.")
  loss = _ranking_softmax_kernel(logits, labels, weights, where, reduction="none")
  return reduce_fn(loss, where=None if where is None else jnp.any(where, axis=-1))
