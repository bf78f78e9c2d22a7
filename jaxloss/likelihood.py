"""Divergence and likelihood losses: KL divergence, Poisson and Gaussian NLL.

As ``torch.nn.functional``'s ``kl_div``, ``poisson_nll_loss`` and
``gaussian_nll_loss``, with torch 2.13's values and gradients. All three
broadcast ``input`` against ``target`` without a warning, as torch does (they
are composite operations in torch), and differentiate both.

torch quirks mirrored on purpose (a ported model must see the same numbers):

* ``kl_div``'s ``'mean'`` divides by the number of elements, not the batch size,
  and warns (``UserWarning``, as torch does) on every call that uses it, the
  default included; ``'batchmean'`` divides by ``input.shape[0]``.
* ``kl_div`` with ``log_target=False`` uses ``xlogy(target, target)``: the loss
  is ``0`` where ``target == 0``, but torch's gradient w.r.t. ``target`` there is
  ``nan`` (``log(t) + t / t`` at ``0``), and so is ours.
* ``poisson_nll_loss(full=True)``: the Stirling term is added only where
  ``target > 1``, yet its gradient w.r.t. ``target`` is ``nan`` where
  ``target <= 0`` (``0 * log(0)`` in the backward pass), in torch and here.
* ``gaussian_nll_loss`` clamps ``var`` at ``eps`` inside ``torch.no_grad()``:
  the value uses ``max(var, eps)``, the gradient w.r.t. ``var`` is the one of
  the unclamped formula evaluated at the clamped value (a straight-through
  clamp), never zero.
"""

from __future__ import annotations

import functools
import math
import warnings

import jax
import jax.numpy as jnp

from jaxloss import _common as C

Array = C.Array
ArrayLike = C.ArrayLike

KL_REDUCTIONS = ("none", "batchmean", "sum", "mean")

# torch's text, so that warning filters written for torch also match.
_KL_MEAN_WARNING = (
    "reduction: 'mean' divides the total loss by both the batch size and the support size."
    "'batchmean' divides only by the batch size, and aligns with the KL div math definition."
    "'mean' will be changed to behave the same as 'batchmean' in the next major release."
)


# ----------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------


def _prepare_pair(fn, input, target, where, extra=()):
  """Validates and broadcasts ``input``/``target`` (no warning), upcasts, masks."""
  input = C.as_float_array(fn, "input", input)
  target = C.as_float_array(fn, "target", target)
  out_dtype = C.output_dtype(input, target, *extra)
  dtype = C.compute_dtype(input, target, *extra)
  input, target = C.broadcast_pair(fn, "input", input, "target", target, warn=False)
  where = C.prepare_where(fn, where, input.shape)
  return C.upcast(input, dtype), C.upcast(target, dtype), where, dtype, out_dtype


@jax.custom_jvp
def _clamp_min_straight_through(x: Array, low: Array) -> Array:
  """``max(x, low)`` whose derivative w.r.t. ``x`` is ``1`` everywhere.

  torch's ``gaussian_nll_loss`` clamps ``var`` in place under ``no_grad``: the
  clamp is invisible to autograd, whose gradient flows as through the identity.
  """
  return jnp.maximum(x, low)


@_clamp_min_straight_through.defjvp
def _clamp_min_straight_through_jvp(primals, tangents):
  return _clamp_min_straight_through(*primals), tangents[0]


def _xlogy_self(t: Array) -> Array:
  """torch's ``xlogy(t, t)``: ``0`` where ``t == 0`` (and nan for nan ``t``).

  Differentiated as in torch, ``log(t) + t / t``, which is nan at ``t = 0``.
  """
  return jnp.where(t == 0, jnp.zeros((), t.dtype), t * jnp.log(t))


# ----------------------------------------------------------------------------
# KL divergence
# ----------------------------------------------------------------------------


def kl_div(input: ArrayLike, target: ArrayLike, size_average=None, reduce=None,
           reduction: str = "mean", log_target: bool = False, *,
           where: ArrayLike | None = None) -> Array:
  r"""Kullback-Leibler divergence loss, ``torch.nn.functional.kl_div``.

  With ``input`` :math:`x` holding log-probabilities,

  .. math::
     \ell_i = \begin{cases} y_i (\log y_i - x_i) & \text{log\_target=False
              (} 0 \text{ where } y_i = 0\text{)} \\
              e^{y_i} (y_i - x_i) & \text{log\_target=True} \end{cases}

  Summed, :math:`\sum_i \ell_i` is :math:`\mathrm{KL}(y \,\|\, e^x)`.

  Element-wise, so there is no class ``axis`` (any layout works as it is; only
  ``'batchmean'`` reads an axis, the first, as torch). optax's
  ``kl_divergence(log_p, q, axis=-1)`` sums over ``axis`` per sample: here that is
  ``reduction='none'`` summed over that axis.

  Args:
    input: log-probabilities, any shape.
    target: probabilities (or log-probabilities if ``log_target``),
      broadcastable against ``input``.
    size_average: deprecated in torch; must be ``None``.
    reduce: deprecated in torch; must be ``None``.
    reduction: ``'none' | 'batchmean' | 'sum' | 'mean'``. ``'batchmean'`` is the
      sum divided by ``input.shape[0]`` (the sum itself for a 0-d ``input``),
      the true KL divergence per sample. ``'mean'`` (the default, as in torch)
      divides by the number of elements and warns, as torch does.
    log_target: whether ``target`` holds log-probabilities.
    where: optional bool mask broadcastable to the broadcast shape of ``input``
      and ``target``; masked elements are left out of the sum and of the
      denominators. With ``'batchmean'`` the denominator becomes the number of
      rows (slices along the first axis of the unreduced loss) that keep at
      least one element; it equals ``input.shape[0]`` with an all-true mask
      whenever ``input`` has the loss's shape.

  Returns:
    The loss, a scalar unless ``reduction='none'``.

  Examples:
    >>> import jax
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> log_q = jax.nn.log_softmax(jnp.array([[1.0, 0.0, -1.0]]))
    >>> p = jnp.array([[0.5, 0.3, 0.2]])
    >>> loss = jaxloss.kl_div(log_q, p, reduction="batchmean")
    >>> print(f"{float(loss):.4f}")
    0.0780

  References:
    - PyTorch, ``torch.nn.functional.kl_div``:
      https://pytorch.org/docs/stable/generated/torch.nn.functional.kl_div.html
    - Kullback and Leibler, "On Information and Sufficiency", Annals of
      Mathematical Statistics, 1951.
  """
  fn = "kl_div"
  C.reject_legacy_args(fn, size_average, reduce)
  C.check_reduction(fn, reduction, KL_REDUCTIONS)
  if reduction == "mean":
    warnings.warn(_KL_MEAN_WARNING, UserWarning, stacklevel=2)
  return _kl_div_kernel(input, target, where, reduction=reduction, log_target=bool(log_target))


@functools.partial(jax.jit, static_argnames=("reduction", "log_target"))
def _kl_div_kernel(input, target, where, *, reduction, log_target):
  fn = "kl_div"
  input_ndim = jnp.ndim(input)
  batch = jnp.shape(input)[0] if input_ndim else None
  input, target, where, _, out_dtype = _prepare_pair(fn, input, target, where)
  # A safe (target, input) pair: finite loss and gradients (log-space or not).
  input, target = C.mask_inputs(where, 0.5 if not log_target else -1.0, input, target)
  if log_target:
    loss = jnp.exp(target) * (target - input)
  else:
    loss = _xlogy_self(target) - target * input
  if reduction != "batchmean":
    return C.reduce_loss(loss, reduction, where, out_dtype=out_dtype)
  total = C.reduce_loss(loss, "sum", where)
  if input_ndim == 0:  # torch: a 0-d input's 'batchmean' is the sum
    return total.astype(out_dtype)
  if where is None:
    rows = batch
  else:
    kept = jnp.any(where, axis=tuple(range(1, where.ndim)))
    rows = jnp.sum(kept, dtype=total.dtype)
  return (total / jnp.asarray(rows, total.dtype)).astype(out_dtype)


# ----------------------------------------------------------------------------
# Poisson negative log-likelihood
# ----------------------------------------------------------------------------


def poisson_nll_loss(input: ArrayLike, target: ArrayLike, log_input: bool = True,
                     full: bool = False, size_average=None, eps: float = 1e-8, reduce=None,
                     reduction: str = "mean", *, where: ArrayLike | None = None) -> Array:
  r"""Poisson negative log-likelihood, ``torch.nn.functional.poisson_nll_loss``.

  .. math::
     \ell_i = \begin{cases} e^{x_i} - y_i x_i & \text{log\_input=True} \\
              x_i - y_i \log(x_i + \epsilon) & \text{log\_input=False} \end{cases}
              \; + \; [\text{full} \wedge y_i > 1]
              \big(y_i \log y_i - y_i + \tfrac12 \log(2\pi y_i)\big)

  The optional Stirling term approximates :math:`\log(y_i!)`; as in torch it is
  added only where ``target > 1`` (its gradient w.r.t. ``target`` is nan where
  ``target <= 0``, as torch's).

  Args:
    input: the log-rate (``log_input=True``) or the rate, any shape.
    target: observed counts, broadcastable against ``input``.
    log_input: whether ``input`` is the log of the Poisson rate.
    full: whether to add the Stirling approximation term.
    size_average: deprecated in torch; must be ``None``.
    eps: added to the rate before the log when ``log_input=False``.
    reduce: deprecated in torch; must be ``None``.
    reduction: ``'none' | 'mean' | 'sum'``.
    where: optional bool mask broadcastable to the broadcast shape; masked
      elements are left out of the sum and the mean's denominator.

  Returns:
    The loss, a scalar unless ``reduction='none'``.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> log_rate, counts = jnp.array([0.0, 1.0, 2.0]), jnp.array([1.0, 3.0, 6.0])
    >>> loss = jaxloss.poisson_nll_loss(log_rate, counts)
    >>> print(f"{float(loss):.4f}")
    -1.2976

  References:
    - PyTorch, ``torch.nn.functional.poisson_nll_loss``:
      https://pytorch.org/docs/stable/generated/torch.nn.functional.poisson_nll_loss.html
  """
  fn = "poisson_nll_loss"
  C.reject_legacy_args(fn, size_average, reduce)
  C.check_reduction(fn, reduction)
  return _poisson_nll_kernel(input, target, eps, where, log_input=bool(log_input),
                             full=bool(full), reduction=reduction)


@functools.partial(jax.jit, static_argnames=("log_input", "full", "reduction"))
def _poisson_nll_kernel(input, target, eps, where, *, log_input, full, reduction):
  fn = "poisson_nll_loss"
  input, target, where, _, out_dtype = _prepare_pair(fn, input, target, where)
  # Rate 1 and count 1: finite whatever `log_input`, `eps` and `full`.
  input, target = C.mask_inputs(where, 1.0, input, target)
  if log_input:
    loss = jnp.exp(input) - target * input
  else:
    loss = input - target * jnp.log(input + eps)
  if full:
    stirling = target * jnp.log(target) - target + 0.5 * jnp.log(2 * math.pi * target)
    # torch's masked_fill(target <= 1, 0): a nan target keeps a nan term.
    loss = loss + jnp.where(target <= 1, jnp.zeros((), loss.dtype), stirling)
  return C.reduce_loss(loss, reduction, where, out_dtype=out_dtype)


# ----------------------------------------------------------------------------
# Gaussian negative log-likelihood
# ----------------------------------------------------------------------------


def _var_shape_ok(input_shape: tuple[int, ...], var_shape: tuple[int, ...]) -> bool:
  """torch's rule: var has ``input``'s shape up to one dimension of size 1."""
  return (len(input_shape) == len(var_shape)
          and sum(v for i, v in zip(input_shape, var_shape, strict=True) if i != v) == 1)


def _prepare_var(fn, var, input_shape):
  """Returns ``var`` as an array broadcastable as torch broadcasts it, or a scalar."""
  if var is None or isinstance(var, (bool, complex, str, bytes)):
    raise ValueError(
        f"{fn}: `var` must be a floating-point array or a Python float, got "
        f"{type(var).__name__}.")
  if isinstance(var, (int, float)):
    if var < 0:  # static: raise like torch
      raise ValueError(f"{fn}: `var` has negative entry/entries, got {var}.")
    return float(var)
  var = C.as_float_array(fn, "var", var)
  shape = tuple(var.shape)
  if var.ndim == 0 or shape == input_shape:
    return var  # beyond torch: a 0-d array broadcasts like a Python float
  if shape == input_shape[:-1]:  # homoscedastic over the last dimension
    return var[..., None]
  if _var_shape_ok(input_shape, shape):
    return var
  raise ValueError(
      f"{fn}: `var` must have the shape of `input` {input_shape}, that shape without "
      f"its last dimension {input_shape[:-1]}, or that shape with one dimension "
      f"replaced by 1 (or be a scalar), got {shape}.")


def gaussian_nll_loss(input: ArrayLike, target: ArrayLike, var: ArrayLike | float,
                      full: bool = False, eps: float = 1e-6, reduction: str = "mean", *,
                      where: ArrayLike | None = None) -> Array:
  r"""Gaussian negative log-likelihood, ``torch.nn.functional.gaussian_nll_loss``.

  .. math::
     \ell_i = \tfrac12\Big(\log \max(v_i, \epsilon) + \frac{(x_i - y_i)^2}{\max(v_i,
              \epsilon)}\Big) + [\text{full}]\,\tfrac12\log(2\pi)

  As in torch, the clamp of ``var`` at ``eps`` is invisible to differentiation:
  the gradient w.r.t. ``var`` is :math:`\tfrac12(1/\tilde v - (x - y)^2 /
  \tilde v^2)` at the clamped :math:`\tilde v = \max(v, \epsilon)`.

  Args:
    input: the Gaussian means, any shape.
    target: samples, broadcastable against ``input``.
    var: non-negative variances: an array of ``input``'s shape
      (heteroscedastic), of ``input``'s shape without its last dimension or
      with one dimension of size 1 (homoscedastic along it), or a scalar (a
      Python float, or beyond torch a 0-d array) shared by all elements.
    full: whether to add the constant :math:`\tfrac12\log(2\pi)`.
    eps: the lower clamp of ``var``, for stability.
    reduction: ``'none' | 'mean' | 'sum'``.
    where: optional bool mask broadcastable to the broadcast shape of
      ``input``, ``target`` and ``var``; masked elements are left out of the
      sum and the mean's denominator.

  Returns:
    The loss, a scalar unless ``reduction='none'``.

  Raises:
    ValueError: at trace time for a ``var`` of the wrong shape, a negative
      Python-float ``var``, non-floating dtypes or an unknown ``reduction``.
      Negative entries of an array ``var`` (torch raises for them) are reported
      under ``checkify.checkify``; without it their elements are ``nan`` (the
      loss, any reduction over it, and the gradients).

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> mean, target = jnp.array([0.0, 1.0, 2.0]), jnp.array([0.5, 1.0, 3.0])
    >>> loss = jaxloss.gaussian_nll_loss(mean, target, jnp.array([1.0, 0.5, 2.0]))
    >>> print(f"{float(loss):.4f}")
    0.1250

  References:
    - PyTorch, ``torch.nn.functional.gaussian_nll_loss``:
      https://pytorch.org/docs/stable/generated/torch.nn.functional.gaussian_nll_loss.html
    - Nix and Weigend, "Estimating the mean and variance of the target probability
      distribution", ICNN 1994.
  """
  fn = "gaussian_nll_loss"
  input = C.as_float_array(fn, "input", input)
  target = C.as_float_array(fn, "target", target)
  var = _prepare_var(fn, var, tuple(input.shape))
  C.check_reduction(fn, reduction)
  static_var = var if isinstance(var, float) else None
  return _gaussian_nll_kernel(input, target, None if static_var is not None else var, eps,
                              where, static_var=static_var, full=bool(full),
                              reduction=reduction)


@functools.partial(jax.jit, static_argnames=("static_var", "full", "reduction"))
def _gaussian_nll_kernel(input, target, var, eps, where, *, static_var, full, reduction):
  """``var`` is an array, or ``None`` with the Python float ``static_var``."""
  fn = "gaussian_nll_loss"
  if var is None:
    var = static_var
  arrays = (input, target) + ((var,) if isinstance(var, jax.Array) else ())
  out_dtype = C.output_dtype(*arrays)
  dtype = C.compute_dtype(*arrays)
  shape = C.broadcast_shape(fn, input=input, target=target, var=var)
  input, target = (C.upcast(jnp.broadcast_to(a, shape), dtype) for a in (input, target))
  var = jnp.broadcast_to(jnp.asarray(var, dtype), shape)
  where = C.prepare_where(fn, where, shape)
  input, target = C.mask_inputs(where, 0, input, target)
  (var,) = C.mask_inputs(where, 1, var)
  C.value_check(jnp.all(~(var < 0)),
                f"{fn}: `var` has negative entry/entries; found {{bad}}.",
                bad=jnp.min(var, initial=0.0))
  # torch raises for a negative variance; here its elements are nan (values and
  # gradients), rather than the clamp's finite and wrong number.
  bad = var < 0
  input, target, var = C.nan_gradient_rows(bad, input, target, var)
  var = _clamp_min_straight_through(var, jnp.asarray(eps, dtype))
  loss = 0.5 * (jnp.log(var) + jnp.square(input - target) / var)
  if full:
    loss = loss + 0.5 * math.log(2 * math.pi)
  return C.reduce_loss(loss, reduction, where, out_dtype=out_dtype, bad=bad)


# ----------------------------------------------------------------------------
# optax's generalized KL divergence (no torch counterpart)
# ----------------------------------------------------------------------------


def _sum_axes(fn: str, axis, ndim: int) -> tuple[int, ...]:
  """optax's ``axis``: an int, a tuple of ints, or ``None`` (every axis)."""
  if axis is None:
    return tuple(range(ndim))
  axes = axis if isinstance(axis, tuple) else (axis,)
  axes = tuple(C.normalize_axis(fn, a, ndim) for a in axes)
  if len(set(axes)) != len(axes):
    raise ValueError(f"{fn}: `axis` {axis!r} repeats an axis.")
  return axes


@jax.custom_jvp
def _xlogx(x: Array) -> Array:
  """``x log x`` with ``0 log 0 = 0``; derivative ``log x + 1`` (``-inf`` at ``0``, not ``nan``)."""
  safe = jnp.where(x == 0, jnp.ones((), x.dtype), x)
  return jnp.where(x == 0, jnp.zeros((), x.dtype), x * jnp.log(safe))


@_xlogx.defjvp
def _xlogx_jvp(primals, tangents):
  (x,), (x_dot,) = primals, tangents
  return _xlogx(x), (jnp.log(x) + 1) * x_dot


@functools.partial(jax.jit, static_argnames=("axes", "reduction"))
def _generalized_kl_kernel(log_predictions, targets, where, *, axes, reduction):
  fn = "generalized_kl_divergence"
  out_dtype = C.output_dtype(log_predictions, targets)
  dtype = C.compute_dtype(log_predictions, targets)
  shape = jnp.broadcast_shapes(log_predictions.shape, targets.shape)
  log_p, t = (C.upcast(jnp.broadcast_to(a, shape), dtype) for a in (log_predictions, targets))
  if where is not None and len(axes) == 1:  # a per-sample mask gains the summed axis
    where = C.optax_where(fn, where, shape, axes[0], "the element-wise divergence")
  else:
    where = C.prepare_where(fn, where, shape, "the element-wise divergence")
  (log_p,) = C.mask_inputs(where, 0, log_p)
  (t,) = C.mask_inputs(where, 1, t)
  # t log t - t log p + p - t, with 0 log 0 = 0 (its derivative w.r.t. t at t = 0
  # is the true -inf, where optax's where(t == 0, 0, log t) gives nan).
  terms = _xlogx(t) - t * log_p + jnp.exp(log_p) - t
  counted = None
  if where is not None:
    terms = jnp.where(where, terms, jnp.zeros((), dtype))
    counted = jnp.any(where, axis=axes)
  return C.reduce_loss(jnp.sum(terms, axis=axes), reduction, counted, out_dtype=out_dtype)


def generalized_kl_divergence(log_predictions: ArrayLike, targets: ArrayLike, *,
                              axis: int | tuple[int, ...] | None = -1,
                              reduction: str = "none",
                              where: ArrayLike | None = None) -> Array:
  r"""Generalized KL divergence, ``optax.losses.generalized_kl_divergence``.

  .. math:: \ell = \sum_c \bigl(t_c \log t_c - t_c \log p_c + p_c - t_c\bigr),
     \qquad p_c = \exp(\texttt{log\_predictions}_c)

  The Bregman divergence of :math:`x \log x - x`: the KL divergence extended to
  unnormalised non-negative measures (it is :func:`kl_div`'s pointwise term
  plus :math:`p - t`, and equals the KL divergence when both sum to one).
  ``0 log 0 = 0``. Values and gradients are optax's, except the gradient
  w.r.t. a zero target: ``-inf`` here (the derivative of :math:`t \log t` at
  ``0``), ``nan`` in optax.

  Args:
    log_predictions: log of the predicted measure, ``[..., dim]``.
    targets: the target measure (non-negative), broadcastable with
      ``log_predictions``.
    axis: the axis or axes summed over (keyword-only; optax's positional
      ``axis``): an int, a tuple, or ``None`` for all.
    reduction: ``'none'`` (default, optax's: the divergence per sample, the
      broadcast shape without ``axis``), ``'mean'`` or ``'sum'`` over samples.
    where: optional bool mask of elements (broadcastable to the broadcast
      shape), as optax's: masked elements leave the sum and get exactly-zero
      gradients; a sample without any counted element is ``0`` and leaves the
      mean's denominator. With a single ``axis``, a mask with one dimension
      fewer masks samples.

  Returns:
    The divergence per sample, or its mean or sum.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> log_p = jnp.log(jnp.array([[0.5, 1.0, 0.25], [1.0, 1.0, 1.0]]))
    >>> t = jnp.array([[1.0, 0.0, 0.5], [2.0, 1.0, 0.5]])
    >>> out = jaxloss.generalized_kl_divergence(log_p, t)
    >>> print([round(v, 4) for v in out.tolist()])
    [1.2897, 0.5397]

  References:
    - Bregman, "The relaxation method of finding the common point of convex
      sets ...", USSR Comput. Math. and Math. Phys., 1967.
    - optax, ``optax.losses.generalized_kl_divergence``.
  """
  fn = "generalized_kl_divergence"
  C.check_reduction(fn, reduction)
  log_predictions = C.as_float_array(fn, "log_predictions", log_predictions)
  targets = C.as_float_array(fn, "targets", targets)
  shape = C.broadcast_shape(fn, log_predictions=log_predictions, targets=targets)
  axes = _sum_axes(fn, axis, len(shape))
  return _generalized_kl_kernel(log_predictions, targets, where, axes=axes, reduction=reduction)


def convex_kl_divergence(log_predictions: ArrayLike, targets: ArrayLike, *,
                         axis: int | tuple[int, ...] | None = -1, reduction: str = "none",
                         where: ArrayLike | None = None) -> Array:
  """Deprecated: :func:`generalized_kl_divergence` (optax's deprecated alias, which warns).

  Warns ``DeprecationWarning`` on every call, as ``optax.losses.convex_kl_divergence``
  does, and returns :func:`generalized_kl_divergence` of the same arguments.

  Examples:
    >>> import warnings
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> with warnings.catch_warnings(record=True) as caught:
    ...   warnings.simplefilter("always")
    ...   loss = jaxloss.convex_kl_divergence(jnp.zeros(2), jnp.ones(2))
    >>> print(float(loss), caught[0].category.__name__)
    0.0 DeprecationWarning

  References:
    - optax, ``optax.losses.convex_kl_divergence``.
  """
  warnings.warn("jaxloss.convex_kl_divergence is deprecated: use "
                "jaxloss.generalized_kl_divergence instead.", DeprecationWarning, stacklevel=2)
  return generalized_kl_divergence(log_predictions, targets, axis=axis, reduction=reduction,
                                   where=where)
