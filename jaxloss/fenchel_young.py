r"""Fenchel-Young losses: sparsemax losses and ``make_fenchel_young_loss``, as optax.

A Fenchel-Young loss (Blondel, Martins and Niculae, JMLR 2020) is built from a
regularised max function :math:`\Omega^*`:

.. math:: L(s; y) = \Omega^*(s) + \Omega(y) - \langle s, y\rangle,

whose gradient is :math:`\nabla\Omega^*(s) - y`: the model's prediction minus
the target. ``logsumexp`` gives the softmax cross-entropy; the Gini
regulariser :math:`\Omega(p) = \tfrac12(\lVert p\rVert^2 - 1)` gives the
sparsemax loss, whose prediction :math:`\operatorname{sparsemax}(s)` (the
Euclidean projection of :math:`s` onto the simplex) is sparse.

optax's names, arguments and layout (the class axis is the keyword-only
``axis``, default ``-1``; per-sample values by default).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jaxloss import _common as C

Array = C.Array
ArrayLike = C.ArrayLike


# ----------------------------------------------------------------------------
# Binary sparsemax loss
# ----------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("reduction",))
def _sparsemax_binary_kernel(logits, labels, where, *, reduction):
  out_dtype = C.output_dtype(logits)
  dtype = C.compute_dtype(logits)
  shape = jnp.broadcast_shapes(logits.shape, labels.shape)
  x = C.upcast(jnp.broadcast_to(logits, shape), dtype)
  positive = jnp.broadcast_to(labels, shape) != 0
  (x,) = C.mask_inputs(where, 0, x)
  return C.reduce_loss(jax.nn.sparse_plus(jnp.where(positive, -x, x)), reduction, where,
                       out_dtype=out_dtype)


def sparsemax_loss(logits: ArrayLike, labels: ArrayLike, *, reduction: str = "none",
                   where: ArrayLike | None = None) -> Array:
  r"""Binary sparsemax loss, ``optax.losses.sparsemax_loss``.

  .. math:: \ell_i = \operatorname{sparse\_plus}(-x_i) \text{ if } y_i = 1,
     \quad \operatorname{sparse\_plus}(x_i) \text{ if } y_i = 0,

  with :math:`\operatorname{sparse\_plus}(z) = 0` for :math:`z \le -1`,
  :math:`(z + 1)^2 / 4` for :math:`|z| < 1` and :math:`z` for :math:`z \ge 1`:
  the Fenchel-Young loss of the sparse sigmoid, zero exactly when
  ``jax.nn.sparse_sigmoid(logits) == labels``. Its gradient is
  :math:`\operatorname{sparse\_sigmoid}(x) - y`.

  Args:
    logits: scores, any shape.
    labels: binary labels broadcastable to ``logits`` (any dtype; a non-zero
      label is the positive class, as optax's ``jnp.where(labels, ...)``).
    reduction: ``'none'`` (default, optax's element-wise values), ``'mean'`` or
      ``'sum'``.
    where: optional bool mask broadcastable to the broadcast shape; masked
      elements are ``0``, leave the mean's denominator and get exactly-zero
      gradients.

  Returns:
    The loss in ``logits``' dtype.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> logits = jnp.array([-2.0, -0.5, 0.5, 3.0])
    >>> print(jaxloss.sparsemax_loss(logits, jnp.array([0, 1, 0, 1])))
    [0.     0.5625 0.5625 0.    ]

  References:
    - Blondel, Martins and Niculae, "Learning with Fenchel-Young Losses", JMLR
      2020, sec. 4.4. https://arxiv.org/abs/1901.02324
    - optax, ``optax.losses.sparsemax_loss``.
  """
  fn = "sparsemax_loss"
  C.check_reduction(fn, reduction)
  logits = C.as_float_array(fn, "logits", logits)
  labels = jnp.asarray(labels)
  shape = C.broadcast_shape(fn, logits=logits, labels=labels)
  where = C.prepare_where(fn, where, shape)
  return _sparsemax_binary_kernel(logits, labels, where, reduction=reduction)


# ----------------------------------------------------------------------------
# Multiclass sparsemax loss
# ----------------------------------------------------------------------------


def sparsemax(scores: Array) -> Array:
  """The Euclidean projection of ``scores`` onto the simplex, over the last axis.

  Martins and Astudillo's sort-based algorithm: ``max(s - tau, 0)`` with the
  threshold ``tau`` that makes the result sum to one.
  """
  num_classes = scores.shape[-1]
  z = jnp.flip(jnp.sort(scores, axis=-1), axis=-1)
  cumsum = jnp.cumsum(z, axis=-1)
  k = jnp.arange(1, num_classes + 1, dtype=scores.dtype)
  support = jnp.sum(1 + k * z > cumsum, axis=-1, keepdims=True)  # >= 1 always
  tau = (jnp.take_along_axis(cumsum, support - 1, axis=-1) - 1) / support.astype(scores.dtype)
  return jnp.maximum(scores - tau, 0)


@jax.custom_jvp
def _multiclass_sparsemax(scores: Array, is_label: Array) -> Array:
  """``<p, s - s_y> + (1 - |p|^2) / 2`` with ``p = sparsemax(s)`` (optax's form)."""
  p = sparsemax(scores)
  picked = jnp.sum(jnp.where(is_label, scores, 0), axis=-1, keepdims=True)
  gap = jnp.where(is_label, jnp.zeros((), scores.dtype), scores - picked)
  return jnp.sum(p * gap, axis=-1) + 0.5 * (1 - jnp.sum(p * p, axis=-1))


@_multiclass_sparsemax.defjvp
def _multiclass_sparsemax_jvp(primals, tangents):
  # The Fenchel-Young gradient sparsemax(s) - onehot(y), exactly (no autodiff
  # through the sort); differentiable again through sparsemax.
  scores, is_label = primals
  s_dot, _ = tangents
  p = sparsemax(scores)
  grad = p - is_label.astype(scores.dtype)
  return _multiclass_sparsemax(scores, is_label), jnp.sum(grad * s_dot, axis=-1)


@functools.partial(jax.jit, static_argnames=("axis", "reduction"))
def _multiclass_sparsemax_kernel(scores, index, counted, bad, *, axis, reduction):
  out_dtype = C.output_dtype(scores)
  dtype = C.compute_dtype(scores)
  s = C.upcast(jnp.moveaxis(scores, axis, -1), dtype)
  if counted is not None:
    (s,) = C.mask_inputs(counted[..., None], 0, s)
  (s,) = C.nan_gradient_rows(bad, s)
  is_label = jax.lax.broadcasted_iota(index.dtype, s.shape, s.ndim - 1) == index[..., None]
  loss = _multiclass_sparsemax(s, is_label)
  return C.reduce_loss(loss, reduction, counted, out_dtype=out_dtype, bad=bad)


def multiclass_sparsemax_loss(scores: ArrayLike, labels: ArrayLike, *, axis: int = -1,
                              reduction: str = "none",
                              where: ArrayLike | None = None) -> Array:
  r"""Multiclass sparsemax loss, ``optax.losses.multiclass_sparsemax_loss``.

  .. math:: \ell_n = \langle p_n, s_n - s_{n y_n}\rangle + \tfrac12\bigl(1 -
     \lVert p_n\rVert^2\bigr), \qquad p_n = \operatorname{sparsemax}(s_n)

  the Fenchel-Young loss of the Gini regulariser (Martins and Astudillo's
  sparsemax loss): zero exactly when ``sparsemax(s)`` is the label's one-hot,
  with gradient ``sparsemax(s) - onehot(y)``. The gradient is that formula
  (a custom derivative), not autodiff through the sort; it equals optax's.
  optax takes ``(N, C)`` scores only (a ``vmap`` over rows); any number of
  sample axes works here.

  Args:
    scores: class scores, class axis at ``axis``.
    labels: integer class indices, ``scores``' shape without ``axis``.
    axis: the class axis (keyword-only), ``-1`` as optax.
    reduction: ``'none'`` (default, optax's), ``'mean'`` or ``'sum'``.
    where: optional bool mask of the per-sample shape; masked samples are ``0``,
      leave the mean's denominator and get exactly-zero gradients.

  Returns:
    The per-sample loss (a scalar unless ``reduction='none'``). A label outside
    ``[0, C)`` gives ``nan`` (reported under ``checkify``).

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> scores = jnp.array([[2.0, 0.5, -1.0], [0.1, 0.3, 0.2]])
    >>> out = jaxloss.multiclass_sparsemax_loss(scores, jnp.array([0, 0]))
    >>> print([round(v, 4) for v in out.tolist()])
    [0.0, 0.4433]

  References:
    - Martins and Astudillo, "From Softmax to Sparsemax: A Sparse Model of
      Attention and Multi-Label Classification", ICML 2016.
      https://arxiv.org/abs/1602.02068
    - optax, ``optax.losses.multiclass_sparsemax_loss``.
  """
  fn = "multiclass_sparsemax_loss"
  C.check_reduction(fn, reduction)
  scores, axis, counted, index, bad = C.prepare_index_labels(fn, scores, labels, axis, where)
  return _multiclass_sparsemax_kernel(scores, index, counted, bad, axis=axis,
                                      reduction=reduction)


# ----------------------------------------------------------------------------
# make_fenchel_young_loss
# ----------------------------------------------------------------------------


def _call_with(max_fun, args, kwargs, scores):
  return max_fun(scores, *args, **kwargs)


def make_fenchel_young_loss(max_fun: Callable[..., ArrayLike]) -> Callable[..., Array]:
  r"""A Fenchel-Young loss from a max function, ``optax.losses.make_fenchel_young_loss``.

  Returns ``loss(scores, targets, *args, **kwargs) = max_fun(scores, *args,
  **kwargs) - <targets, scores>`` over the last axis (leading axes are batch
  axes: ``max_fun`` sees one vector at a time, through ``jnp.vectorize``, as in
  optax). Extra arguments are passed to every call of ``max_fun`` unchanged
  (not vectorized). optax 0.2.8 hands them to the vectorized function itself,
  which raises for positional extras and silently drops keyword ones. With
  ``max_fun=logsumexp`` and one-hot targets it is the softmax cross-entropy.
  ``max_fun`` is the user's: it is not jitted here.

  Args:
    max_fun: a function of a 1-D score vector (and any extra arguments)
      returning a scalar: the regularised max :math:`\Omega^*`.

  Returns:
    The loss function; its values have ``scores``' shape without the last axis.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jax.scipy.special import logsumexp
    >>> import jaxloss
    >>> fy_loss = jaxloss.make_fenchel_young_loss(max_fun=logsumexp)
    >>> scores = jnp.array([[1.2, -0.8, -0.5], [0.9, -1.2, 1.1]])
    >>> out = fy_loss(scores, jnp.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
    >>> print([round(v, 4) for v in out.tolist()])
    [0.2761, 2.9518]

  References:
    - Blondel, Martins and Niculae, "Learning with Fenchel-Young Losses", JMLR
      2020. https://arxiv.org/abs/1901.02324
    - optax, ``optax.losses.make_fenchel_young_loss``.
  """
  if not callable(max_fun):
    raise ValueError(f"make_fenchel_young_loss: `max_fun` must be callable, got {max_fun!r}.")
  vdot_last_dim = jnp.vectorize(jnp.vdot, signature="(n),(n)->()")

  def fenchel_young_loss(scores: ArrayLike, targets: ArrayLike, *args: Any,
                         **kwargs: Any) -> Array:
    bound = functools.partial(_call_with, max_fun, args, kwargs)
    max_fun_last_dim = jnp.vectorize(bound, signature="(n)->()")
    return max_fun_last_dim(scores) - vdot_last_dim(targets, scores)

  return fenchel_young_loss
