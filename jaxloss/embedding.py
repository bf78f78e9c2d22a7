"""Embedding losses: cosine embedding and triplet margin losses, as in torch 2.13.

* :func:`cosine_embedding_loss` mirrors ``aten/src/ATen/native/Loss.cpp``:
  ``cos = <x1, x2> / sqrt((|x1|^2 + eps) (|x2|^2 + eps))`` with torch's
  ``eps = float32(1e-12)`` added to each *squared* norm (so zero vectors give
  ``cos = 0`` and finite gradients).
* :func:`pairwise_distance` mirrors ``at::pairwise_distance``:
  ``||x1 - x2 + eps||_p`` over the last axis (``eps`` is added to the
  *difference*), with torch's norm subgradients (``linalg_vector_norm``'s
  backward: ``0`` at a zero norm, ties of the ``inf``-norm share the gradient,
  ``p = 0`` has a zero gradient).
* :func:`triplet_margin_loss` and :func:`triplet_margin_with_distance_loss`:
  ``max(0, margin + d(a, p) - d(a, n))`` with the optional distance swap
  ``d(a, n) -> min(d(a, n), d(p, n))`` (ties share the gradient equally, as
  ``torch.minimum``); the hinge passes the gradient at exactly ``0``
  (``clamp_min``).

``where`` masks samples (the per-sample loss, ``(N,)`` for batched input, ``()``
for unbatched); masked rows of the inputs are replaced by fixed finite vectors
before any distance is evaluated, so their gradients are exactly zero.

Each public function validates its arguments in Python (trace time) and then
calls a jitted kernel (except around a user's ``distance_function``), so that
eager calls run one compiled program.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxloss import _common as C

Array = C.Array
ArrayLike = C.ArrayLike

# torch's ``constexpr float EPSILON = 1e-12`` in Loss.cpp: a float32 constant,
# which is 9.99999996e-13 once promoted to float64.
_COSINE_EPS = float(np.float32(1e-12))


# ----------------------------------------------------------------------------
# Private helpers
# ----------------------------------------------------------------------------


def _check_same_ndim(fn: str, names, arrays) -> None:
  if len({a.ndim for a in arrays}) > 1:
    shapes = ", ".join(f"`{n}` {tuple(a.shape)}" for n, a in zip(names, arrays, strict=True))
    raise ValueError(
        f"{fn}: the inputs must have the same number of dimensions, got {shapes}."
    )


def _mask_rows(where: Array | None, *xs: Array) -> tuple[Array, ...]:
  """Replaces masked rows by fixed, finite, pairwise distinct vectors.

  ``xs`` are (anchor, positive, negative) or (input1, input2), broadcast to one
  shape ``batch + (D,)``; ``where`` has shape ``batch``. The safe rows are
  ``1``, ``1 + e_0`` and ``1 - 2 e_{D-1}``: distinct and (for ``D >= 2``) not
  parallel, so that a smooth distance (Euclidean, cosine) has finite gradients
  there, which the mask then zeroes exactly.
  """
  if where is None:
    return xs
  out = []
  for i, x in enumerate(xs):
    if x.ndim == 0:
      safe = jnp.asarray((1.0, 2.0, -1.0)[i], x.dtype)
      out.append(jnp.where(where, x, safe))
      continue
    idx = jnp.arange(x.shape[-1])
    safe = jnp.ones(x.shape[-1], x.dtype)
    if i == 1:
      safe = safe + (idx == 0)
    elif i == 2:
      safe = safe - 2 * (idx == x.shape[-1] - 1)
    out.append(jnp.where(where[..., None], x, safe.astype(x.dtype)))
  return tuple(out)


# ----------------------------------------------------------------------------
# Vector norm with torch's subgradients
# ----------------------------------------------------------------------------


def _norm_value(x: Array, p: float) -> Array:
  ax = jnp.abs(x)
  if p == 2.0:
    return jnp.sqrt(jnp.sum(x * x, axis=-1))
  if p == 1.0:
    return jnp.sum(ax, axis=-1)
  if p == float("inf"):
    return jnp.max(ax, axis=-1)
  if p == float("-inf"):
    return jnp.min(ax, axis=-1)
  if p == 0.0:
    return jnp.sum(x != 0, axis=-1).astype(x.dtype)
  return jnp.sum(ax ** p, axis=-1) ** (1.0 / p)


def _norm_grad_factor(x: Array, norm: Array, p: float) -> Array:
  """``d norm / d x`` as torch's ``norm_backward`` (FunctionsManual.cpp)."""
  zero = jnp.zeros((), x.dtype)
  n = norm[..., None]
  if p == 0.0:
    return jnp.zeros_like(x)
  if p == 1.0:
    return jnp.sign(x)
  if p == 2.0:
    return jnp.where(n == 0, zero, x / jnp.where(n == 0, 1, n))
  if np.isinf(p):
    ax = jnp.abs(x)
    mask = (ax == n) | jnp.isnan(x)
    return jnp.sign(x) * mask / jnp.sum(mask, axis=-1, keepdims=True)
  ax = jnp.abs(x)
  if p < 1.0:
    scaled = jnp.where(x == 0, zero, jnp.sign(x) * jnp.where(x == 0, 1, ax) ** (p - 1))
    return scaled * n ** (1 - p)
  if p < 2.0:
    scaled = jnp.sign(x) * ax ** (p - 1)
  else:
    scaled = x * ax ** (p - 2)
  return jnp.where(n == 0, zero, scaled / jnp.where(n == 0, 1, n) ** (p - 1))


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _vector_norm(x: Array, p: float) -> Array:
  """``torch.linalg.vector_norm(x, p, dim=-1)`` with torch's gradient."""
  return _norm_value(x, p)


@_vector_norm.defjvp
def _vector_norm_jvp(p, primals, tangents):
  (x,), (dx,) = primals, tangents
  norm = _norm_value(x, p)
  return norm, jnp.sum(_norm_grad_factor(x, norm, p) * dx, axis=-1)


def _pairwise(x1: Array, x2: Array, p: float, eps: float, keepdim: bool = False) -> Array:
  """``at::pairwise_distance`` on already validated, broadcastable arrays."""
  diff = x1 - x2 + eps
  if diff.ndim == 0:  # torch: the norm of a scalar is its absolute value
    return _vector_norm(diff[None], p)
  out = _vector_norm(diff, p)
  return out[..., None] if keepdim else out


# ----------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------


def pairwise_distance(x1: ArrayLike, x2: ArrayLike, p: float = 2.0, eps: float = 1e-6,
                      keepdim: bool = False) -> Array:
  r"""``torch.nn.functional.pairwise_distance``: the p-norm of ``x1 - x2 + eps``.

  .. math:: d = \Bigl(\sum_k |x_{1k} - x_{2k} + \epsilon|^p\Bigr)^{1/p}

  over the last axis of the broadcast inputs (a scalar's absolute value for
  0-D inputs). ``p`` may be any real number, ``inf`` or ``-inf`` (as torch's
  ``linalg.vector_norm``); the gradient is torch's, including its choices at
  zero norms and ties.

  Args:
    x1, x2: ``(..., D)`` arrays, broadcastable (the ranks may differ).
    p: the norm's order (static).
    eps: added to the difference to avoid a zero norm.
    keepdim: keep the reduced axis with size 1.

  Returns:
    The distances, shape ``broadcast(x1, x2).shape[:-1]`` (``[..., 1]`` with
    ``keepdim``), in the promoted dtype.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> x1 = jnp.array([[0.0, 0.0], [1.0, 1.0]])
    >>> x2 = jnp.array([[3.0, 4.0], [1.0, 1.0]])
    >>> d = jaxloss.pairwise_distance(x1, x2)
    >>> print([round(float(v), 4) for v in d])
    [5.0, 0.0]

  References:
    - PyTorch, ``torch.nn.functional.pairwise_distance``:
      https://pytorch.org/docs/stable/generated/torch.nn.functional.pairwise_distance.html
  """
  fn = "pairwise_distance"
  x1 = C.as_float_array(fn, "x1", x1)
  x2 = C.as_float_array(fn, "x2", x2)
  p = C.static_float(fn, "p", p)
  C.broadcast_shape(fn, x1=x1, x2=x2)
  return _pairwise_kernel(x1, x2, eps, p=p, keepdim=bool(keepdim),
                          dtype=C.compute_dtype(x1, x2), out_dtype=C.output_dtype(x1, x2))


@functools.partial(jax.jit, static_argnames=("p", "keepdim", "dtype", "out_dtype"))
def _pairwise_kernel(x1, x2, eps, *, p, keepdim, dtype, out_dtype):
  out = _pairwise(C.upcast(x1, dtype), C.upcast(x2, dtype), p, eps, keepdim)
  return out.astype(out_dtype)


def cosine_embedding_loss(input1: ArrayLike, input2: ArrayLike, target: ArrayLike,
                          margin: float = 0, size_average=None, reduce=None,
                          reduction: str = "mean", *,
                          where: ArrayLike | None = None) -> Array:
  r"""Cosine embedding loss, ``torch.nn.functional.cosine_embedding_loss``.

  .. math::
     \ell_n = \begin{cases} 1 - \cos(x^{(1)}_n, x^{(2)}_n) & y_n = 1 \\
              \max(0, \cos(x^{(1)}_n, x^{(2)}_n) - \text{margin}) & y_n = -1 \\
              0 & \text{otherwise (torch's choice)} \end{cases}

  with torch's ``cos = <x1, x2> / sqrt((|x1|^2 + 1e-12)(|x2|^2 + 1e-12))``. The
  ``y = -1`` hinge passes the gradient at exactly ``0`` (``clamp_min``), and
  ``target`` gets no gradient.

  Args:
    input1, input2: ``(N, D)`` with a ``(N,)`` target, or unbatched ``(D,)`` with
      a scalar target; ``input2`` has ``input1``'s rank and broadcasts with it.
    target: ``±1`` labels, floating or integer, 0-D or 1-D (broadcastable to
      ``(N,)``).
    margin: the margin for dissimilar pairs (torch suggests ``[0, 0.5]``).
    size_average, reduce: deprecated in torch; must be ``None``.
    reduction: ``'none' | 'mean' | 'sum'``.
    where: optional bool mask of the per-sample loss, ``(N,)`` or ``()``.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> x1 = jnp.array([[1.0, 0.0], [0.0, 1.0]])
    >>> x2 = jnp.array([[1.0, 1.0], [1.0, 1.0]])
    >>> loss = jaxloss.cosine_embedding_loss(x1, x2, jnp.array([1, -1]), margin=0.5)
    >>> print(f"{float(loss):.4f}")
    0.2500

  References:
    - PyTorch, ``torch.nn.functional.cosine_embedding_loss``:
      https://pytorch.org/docs/stable/generated/torch.nn.functional.cosine_embedding_loss.html
  """
  fn = "cosine_embedding_loss"
  C.reject_legacy_args(fn, size_average, reduce)
  C.check_reduction(fn, reduction)
  input1 = C.as_float_array(fn, "input1", input1)
  input2 = C.as_float_array(fn, "input2", input2)
  target = jnp.asarray(target)
  if not (jnp.issubdtype(target.dtype, jnp.floating)
          or jnp.issubdtype(target.dtype, jnp.integer)):
    raise ValueError(
        f"{fn}: `target` must be a floating-point or integer array, got dtype {target.dtype}."
    )
  if target.ndim > 1:
    raise ValueError(
        f"{fn}: `target` must be 0-D or 1-D (multi-target is not supported), got shape "
        f"{tuple(target.shape)}."
    )
  expected_ndim = target.ndim + 1
  for name, x in (("input1", input1), ("input2", input2)):
    if x.ndim != expected_ndim:
      layout = "(N, D) for a 1-D `target`" if target.ndim else "(D,) for a 0-D `target`"
      raise ValueError(f"{fn}: `{name}` must be {layout}, got shape {tuple(x.shape)}.")
  shape = C.broadcast_shape(fn, input1=input1, input2=input2)
  batch = shape[:-1]
  try:
    target = jnp.broadcast_to(target, batch)
  except ValueError:
    raise ValueError(
        f"{fn}: `target` must have shape {batch} (one label per pair), got "
        f"{tuple(target.shape)}."
    ) from None
  where = C.prepare_where(fn, where, batch, "the per-sample loss")
  return _cosine_embedding(input1, input2, target, margin, where, reduction=reduction,
                           dtype=C.compute_dtype(input1, input2),
                           out_dtype=C.output_dtype(input1, input2))


@functools.partial(jax.jit, static_argnames=("reduction", "dtype", "out_dtype"))
def _cosine_embedding(input1, input2, target, margin, where, *, reduction, dtype, out_dtype):
  shape = jnp.broadcast_shapes(input1.shape, input2.shape)
  x1, x2 = _mask_rows(where, C.upcast(jnp.broadcast_to(input1, shape), dtype),
                      C.upcast(jnp.broadcast_to(input2, shape), dtype))
  prod_sum = jnp.sum(x1 * x2, axis=-1)
  mag_square1 = jnp.sum(x1 * x1, axis=-1) + _COSINE_EPS
  mag_square2 = jnp.sum(x2 * x2, axis=-1) + _COSINE_EPS
  cos = prod_sum / jnp.sqrt(mag_square1 * mag_square2)
  zero = jnp.zeros((), dtype)
  y = jax.lax.stop_gradient(target)
  loss = jnp.where(y == 1, 1 - cos, zero) + jnp.where(y == -1, C.clamp_min0(cos - margin), zero)
  return C.reduce_loss(loss, reduction, where, out_dtype=out_dtype)


def _triplet_prepare(fn, anchor, positive, negative, margin, reduction, where):
  """Shared validation of the two triplet losses.

  Returns the inputs as arrays, their broadcast shape, the prepared ``where``
  (of the per-sample shape ``shape[:-1]``), the compute and the output dtype.
  """
  C.check_reduction(fn, reduction)
  try:
    concrete_margin = float(margin)
  except (TypeError, jax.errors.ConcretizationTypeError):
    concrete_margin = None  # a traced margin (e.g. searched) cannot be checked here
  if concrete_margin is not None and not concrete_margin > 0:
    raise ValueError(f"{fn}: `margin` must be greater than 0, got {margin}.")
  names = ("anchor", "positive", "negative")
  inputs = (anchor, positive, negative)
  arrays = [C.as_float_array(fn, n, a) for n, a in zip(names, inputs, strict=True)]
  _check_same_ndim(fn, names, arrays)
  shape = C.broadcast_shape(fn, **dict(zip(names, arrays, strict=True)))
  where = C.prepare_where(fn, where, shape[:-1], "the per-sample loss")
  # A traced margin is checked when the data arrives (torch raises for margin <= 0).
  check = fn if concrete_margin is None else None
  return arrays, shape, where, C.compute_dtype(*arrays), C.output_dtype(*arrays), check


def _triplet_inputs(arrays, shape, where, dtype):
  arrays = [C.upcast(jnp.broadcast_to(a, shape), dtype) for a in arrays]
  return _mask_rows(where, *arrays)


def _invalid_margin(fn: str | None, margin) -> Array | None:
  """For a traced margin: checks ``margin > 0`` under checkify; ``True`` where it fails."""
  if fn is None:
    return None
  margin = jnp.asarray(margin)
  ok = margin > 0
  C.value_check(jnp.all(ok), f"{fn}: `margin` must be greater than 0, got {{m}}.",
                m=jnp.min(margin))
  return ~ok


def _poison_triplet(bad, a, pos, neg):
  """Inputs whose gradients are nan where ``bad`` (a traced margin <= 0); see _common."""
  if bad is None:
    return a, pos, neg
  return C.nan_gradient_rows(bad, a, pos, neg)


def _triplet_hinge(distance, a, pos, neg, margin, swap):
  dist_pos = distance(a, pos)
  dist_neg = distance(a, neg)
  if swap:
    dist_neg = jnp.minimum(dist_neg, distance(pos, neg))
  return C.clamp_min0(margin + dist_pos - dist_neg)


def triplet_margin_loss(anchor: ArrayLike, positive: ArrayLike, negative: ArrayLike,
                        margin: float = 1.0, p: float = 2, eps: float = 1e-6,
                        swap: bool = False, size_average=None, reduce=None,
                        reduction: str = "mean", *, where: ArrayLike | None = None) -> Array:
  r"""Triplet margin loss, ``torch.nn.functional.triplet_margin_loss``.

  .. math::
     \ell_n = \max\bigl(0,\; \text{margin} + d(a_n, p_n) - d(a_n, n_n)\bigr),
     \qquad d(x, y) = \lVert x - y + \epsilon \rVert_p

  (:func:`pairwise_distance`). With ``swap`` (Balntas et al., BMVC 2016),
  ``d(a, n)`` becomes ``min(d(a, n), d(p, n))``.

  Args:
    anchor, positive, negative: ``(N, D)`` (or unbatched ``(D,)``, or
      ``(..., D)``), same rank, broadcastable.
    margin: the margin, ``> 0`` (``ValueError`` otherwise; a traced margin is
      checked under ``checkify`` and gives ``nan`` when it is not positive).
    p: the norm's order (any real, ``inf``), static.
    eps: added to the differences (torch's ``pairwise_distance``).
    swap: use the distance swap.
    size_average, reduce: deprecated in torch; must be ``None``.
    reduction: ``'none' | 'mean' | 'sum'``.
    where: optional bool mask of the per-sample loss, ``(N,)`` or ``()``.

  Returns:
    The loss; ``(N,)`` (the inputs' leading shape) for ``'none'``.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> anchor = jnp.array([[0.0, 0.0], [1.0, 0.0]])
    >>> positive = jnp.array([[0.0, 0.5], [1.0, 0.2]])
    >>> negative = jnp.array([[1.0, 0.0], [0.0, 0.0]])
    >>> loss = jaxloss.triplet_margin_loss(anchor, positive, negative, margin=1.0)
    >>> print(f"{float(loss):.4f}")
    0.3500

  References:
    - PyTorch, ``torch.nn.functional.triplet_margin_loss``:
      https://pytorch.org/docs/stable/generated/torch.nn.functional.triplet_margin_loss.html
    - Schroff et al., "FaceNet: A Unified Embedding for Face Recognition and
      Clustering", CVPR 2015.
    - Balntas et al., "Learning local feature descriptors with triplets and shallow
      convolutional neural networks", BMVC 2016 (the distance swap).
  """
  fn = "triplet_margin_loss"
  C.reject_legacy_args(fn, size_average, reduce)
  p = C.static_float(fn, "p", p)
  arrays, shape, where, dtype, out_dtype, check = _triplet_prepare(
      fn, anchor, positive, negative, margin, reduction, where)
  return _triplet_pairwise(*arrays, margin, eps, where, p=p, swap=bool(swap), shape=shape,
                           reduction=reduction, dtype=dtype, out_dtype=out_dtype,
                           check_margin=check)


@functools.partial(jax.jit, static_argnames=("p", "swap", "shape", "reduction", "dtype",
                                             "out_dtype", "check_margin"))
def _triplet_pairwise(anchor, positive, negative, margin, eps, where, *, p, swap, shape,
                      reduction, dtype, out_dtype, check_margin):
  a, pos, neg = _triplet_inputs((anchor, positive, negative), shape, where, dtype)
  bad = _invalid_margin(check_margin, margin)
  a, pos, neg = _poison_triplet(bad, a, pos, neg)
  distance = functools.partial(_pairwise, p=p, eps=eps)
  loss = _triplet_hinge(distance, a, pos, neg, margin, swap)
  return C.reduce_loss(loss, reduction, where, out_dtype=out_dtype, bad=bad)


def triplet_margin_with_distance_loss(
    anchor: ArrayLike, positive: ArrayLike, negative: ArrayLike, *,
    distance_function: Callable[[Array, Array], Array] | None = None,
    margin: float = 1.0, swap: bool = False, reduction: str = "mean",
    where: ArrayLike | None = None) -> Array:
  r"""Triplet loss with any distance, ``torch.nn.functional.triplet_margin_with_distance_loss``.

  .. math::
     \ell_n = \max\bigl(0,\; \text{margin} + d(a_n, p_n) - d(a_n, n_n)\bigr)

  Args:
    anchor, positive, negative: ``(N, D)`` (or unbatched ``(D,)``), same rank,
      broadcastable.
    distance_function: a JAX-traceable ``d(x, y)`` returning the per-sample
      distances (``(N,)`` for ``(N, D)`` inputs); default
      :func:`pairwise_distance` (``p = 2``, ``eps = 1e-6``). It receives the
      inputs in the compute dtype (float32 for half precision).
    margin: the margin, ``> 0`` (as for :func:`triplet_margin_loss`).
    swap: use the distance swap ``d(a, n) -> min(d(a, n), d(p, n))``.
    reduction: ``'none' | 'mean' | 'sum'``.
    where: optional bool mask of the per-sample loss, ``(N,)`` or ``()``; the
      distance must then return the per-sample shape ``(N,)``. Masked rows are
      replaced by fixed finite vectors before ``distance_function`` sees them.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> anchor = jnp.array([[0.0, 0.0], [1.0, 0.0]])
    >>> positive = jnp.array([[0.0, 0.5], [1.0, 0.2]])
    >>> negative = jnp.array([[1.0, 0.0], [0.0, 0.0]])
    >>> def l1(x, y):
    ...   return jnp.sum(jnp.abs(x - y), axis=-1)
    ...
    >>> loss = jaxloss.triplet_margin_with_distance_loss(
    ...     anchor, positive, negative, distance_function=l1)
    >>> print(f"{float(loss):.4f}")
    0.3500

  References:
    - PyTorch, ``torch.nn.functional.triplet_margin_with_distance_loss``:
      https://pytorch.org/docs/stable/generated/torch.nn.functional.triplet_margin_with_distance_loss.html
    - Schroff et al., "FaceNet: A Unified Embedding for Face Recognition and
      Clustering", CVPR 2015.
  """
  fn = "triplet_margin_with_distance_loss"
  arrays, shape, where, dtype, out_dtype, check = _triplet_prepare(
      fn, anchor, positive, negative, margin, reduction, where)
  if distance_function is None:  # torch's default, torch.pairwise_distance
    return _triplet_pairwise(*arrays, margin, 1e-6, where, p=2.0, swap=bool(swap),
                             shape=shape, reduction=reduction, dtype=dtype,
                             out_dtype=out_dtype, check_margin=check)
  # A user's callable is not jitted here: a fresh lambda per call would recompile.
  a, pos, neg = _triplet_inputs(arrays, shape, where, dtype)
  bad = _invalid_margin(check, margin)
  a, pos, neg = _poison_triplet(bad, a, pos, neg)
  loss = _triplet_hinge(distance_function, a, pos, neg, margin, swap)
  batch = shape[:-1]
  if where is not None and tuple(loss.shape) != tuple(batch):
    raise ValueError(
        f"{fn}: with `where`, `distance_function` must return the per-sample shape "
        f"{batch}, got {tuple(loss.shape)}."
    )
  return C.reduce_loss(loss, reduction, where, out_dtype=out_dtype, bad=bad)


# ----------------------------------------------------------------------------
# cosine_similarity (torch's function; optax's cosine_similarity / cosine_distance)
# ----------------------------------------------------------------------------


@jax.custom_jvp
def _clamp_min_straight_through(x: Array, low: Array) -> Array:
  """``max(x, low)`` with derivative ``1`` w.r.t. ``x`` (torch clamps the norm under no_grad)."""
  return jnp.maximum(x, low)


@_clamp_min_straight_through.defjvp
def _clamp_min_straight_through_jvp(primals, tangents):
  (x, low), (x_dot, _) = primals, tangents
  return jnp.maximum(x, low), x_dot


@functools.partial(jax.jit, static_argnames=("dim",))
def _cosine_similarity_kernel(x1, x2, eps, where, *, dim):
  out_dtype = C.output_dtype(x1, x2)
  dtype = C.compute_dtype(x1, x2)
  shape = jnp.broadcast_shapes(x1.shape, x2.shape)
  a, b = (C.upcast(jnp.moveaxis(jnp.broadcast_to(x, shape), dim, -1), dtype) for x in (x1, x2))
  if where is not None:
    a, b = C.mask_inputs(jnp.moveaxis(where, dim, -1), 0, a, b)
  eps = jnp.asarray(eps, dtype)
  n1 = _clamp_min_straight_through(_vector_norm(a, 2.0), eps)[..., None]
  n2 = _clamp_min_straight_through(_vector_norm(b, 2.0), eps)[..., None]
  return jnp.sum((a / n1) * (b / n2), axis=-1).astype(out_dtype)


def cosine_similarity(x1: ArrayLike, x2: ArrayLike, dim: int = 1, eps: float = 1e-8, *,
                      where: ArrayLike | None = None) -> Array:
  r"""Cosine similarity along ``dim``, ``torch.nn.functional.cosine_similarity``.

  .. math:: \frac{x_1}{\max(\lVert x_1\rVert_2, \epsilon)} \cdot
     \frac{x_2}{\max(\lVert x_2\rVert_2, \epsilon)}

  ``x1`` and ``x2`` broadcast together; the result has the broadcast shape
  without ``dim``. As torch 2.13 (``at::cosine_similarity``), each norm is
  clamped separately and the clamp is invisible to the gradient (torch clamps
  under ``no_grad``), and the norm's gradient at a zero vector is ``0``.

  It is also optax's ``cosine_similarity(predictions, targets, epsilon=e,
  axis=a)`` with ``dim=a, eps=sqrt(e)`` (optax clamps the *squared* norms at
  ``e``): the same values everywhere, and the same gradients wherever both norms
  exceed ``sqrt(e)`` (always, for optax's default ``e = 0``); below the clamp
  optax's gradient is that of the clamped function. optax's ``cosine_distance``
  is ``1 - cosine_similarity(...)``.

  Args:
    x1, x2: arrays broadcastable together.
    dim: the axis of the vectors (torch's default ``1``; optax's is ``-1``).
    eps: the smallest norm used in a denominator (``> = 0``).
    where: optional bool mask of elements (broadcastable to the broadcast shape),
      as optax's ``where``: masked entries leave both norms and the dot product
      and get exactly-zero gradients. Beyond torch.

  Returns:
    The cosine similarities, in the inputs' dtype.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> x1 = jnp.array([[1.0, 0.0], [3.0, 4.0]])
    >>> x2 = jnp.array([[1.0, 1.0], [-3.0, -4.0]])
    >>> out = jaxloss.cosine_similarity(x1, x2)
    >>> print([round(v, 4) for v in out.tolist()])
    [0.7071, -1.0]

  References:
    - PyTorch, ``torch.nn.functional.cosine_similarity``:
      https://pytorch.org/docs/stable/generated/torch.nn.functional.cosine_similarity.html
    - optax, ``optax.losses.cosine_similarity`` and ``cosine_distance``.
  """
  fn = "cosine_similarity"
  x1 = C.as_float_array(fn, "x1", x1)
  x2 = C.as_float_array(fn, "x2", x2)
  shape = C.broadcast_shape(fn, x1=x1, x2=x2)
  if not shape:
    raise ValueError(f"{fn}: `x1` and `x2` must have at least one dimension, got shape ().")
  dim = C.normalize_axis(fn, dim, len(shape), "dim")
  eps = C.static_float(fn, "eps", eps) if not isinstance(eps, jax.Array) else eps
  where = C.prepare_where(fn, where, shape, "the broadcast shape of `x1` and `x2`")
  return _cosine_similarity_kernel(x1, x2, eps, where, dim=dim)
