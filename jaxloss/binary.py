"""Binary cross-entropy on probabilities and on logits, as in ``torch.nn.functional``.

Both losses require ``target`` to have ``input``'s shape (torch raises otherwise) and
accept a ``weight`` that broadcasts to ``input``'s shape; ``'mean'`` is the plain
mean of the weighted terms (``sum(w * l) / numel``), as in torch.

Gradients follow torch 2.13's backward formulas, including where they differ from
the derivative of the forward formula:

* :func:`binary_cross_entropy` clamps each logarithm at ``-100`` in the forward
  pass, but its input gradient is ``(x - y) / max(x (1 - x), 1e-12)`` (torch's
  ``EPSILON`` is the float32 ``1e-12``, also in float64) and its target gradient
  is the *unclamped* ``-logit(x)`` (``+-inf`` at ``x = 0`` or ``1``).
* Beyond torch: torch raises when ``weight`` (or ``pos_weight``) requires a
  gradient; here they are differentiable like any argument, with the exact
  derivative of the loss.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_derivatives import SymbolicZero

from jaxloss import _common as C

Array = C.Array
ArrayLike = C.ArrayLike

# torch's ``constexpr float EPSILON = 1e-12`` of aten/src/ATen/native/Loss.cpp; it
# stays a float32 constant in the float64 kernel too (9.999999960041972e-13).
_BCE_EPSILON = float(np.float32(1e-12))
_LOG_CLAMP = -100.0


# ----------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------


@jax.custom_jvp
def _bce_terms(x: Array, y: Array) -> Array:
  """torch's element-wise BCE: ``(y - 1) max(log1p(-x), -100) - y max(log x, -100)``."""
  log_x = jnp.maximum(jnp.log(x), _LOG_CLAMP)
  log_1mx = jnp.maximum(jnp.log1p(-x), _LOG_CLAMP)
  return (y - 1) * log_1mx - y * log_x


def _bce_terms_jvp(primals, tangents):
  # torch's ``binary_cross_entropy_backward`` and ``..._target_backward``. Zero
  # tangents stay symbolic: ``0 * inf`` (the target slope at x = 0 or 1) must not
  # turn the input's gradient into nan when only the input is differentiated.
  x, y = primals
  x_dot, y_dot = tangents
  out = _bce_terms(x, y)
  out_dot = jnp.zeros_like(out)
  if not isinstance(x_dot, SymbolicZero):
    out_dot = out_dot + x_dot * ((x - y) / jnp.maximum((1 - x) * x, _BCE_EPSILON))
  if not isinstance(y_dot, SymbolicZero):
    out_dot = out_dot - y_dot * jnp.log(x / (1 - x))
  return out, out_dot


_bce_terms.defjvp(_bce_terms_jvp, symbolic_zeros=True)


def _broadcast_weight(fn: str, name: str, w: ArrayLike | None, shape: tuple[int, ...],
                      dtype: jnp.dtype, hint: str = "") -> Array | None:
  """Broadcasts a weight to ``input``'s shape; raises if it would change that shape."""
  if w is None:
    return None
  w = C.as_float_array(fn, name, w)
  try:
    ok = jnp.broadcast_shapes(w.shape, shape) == tuple(shape)
  except ValueError:
    ok = False
  if not ok:
    raise ValueError(
        f"{fn}: `{name}` must be broadcastable to the shape of `input` {tuple(shape)}"
        f"{hint}, got {tuple(w.shape)}."
    )
  return C.upcast(jnp.broadcast_to(w, shape), dtype)


def _prepare(fn, input, target, where):
  input = C.as_float_array(fn, "input", input)
  target = C.as_float_array(fn, "target", target)
  C.check_same_shape(fn, "input", input, "target", target)
  out_dtype = C.output_dtype(input, target)
  dtype = C.compute_dtype(input, target)
  where = C.prepare_where(fn, where, input.shape)
  return C.upcast(input, dtype), C.upcast(target, dtype), where, dtype, out_dtype


# ----------------------------------------------------------------------------
# Losses
# ----------------------------------------------------------------------------


def binary_cross_entropy(input: ArrayLike, target: ArrayLike, weight: ArrayLike | None = None,
                         size_average=None, reduce=None, reduction: str = "mean", *,
                         where: ArrayLike | None = None) -> Array:
  r"""Binary cross-entropy on probabilities, ``torch.nn.functional.binary_cross_entropy``.

  .. math::
     \ell_i = -w_i \big[y_i \max(\log x_i, -100) + (1 - y_i) \max(\log(1 - x_i), -100)\big]

  The clamp at ``-100`` keeps the loss finite at ``x = 0`` and ``x = 1`` (torch's
  choice); ``log(1 - x)`` is computed as ``log1p(-x)``, as torch does. Gradients
  are torch's: :math:`\partial\ell/\partial x = w (x - y) / \max(x(1-x), 10^{-12})`
  and :math:`\partial\ell/\partial y = -w\,\mathrm{logit}(x)` (unclamped). Prefer
  :func:`binary_cross_entropy_with_logits` for numerical stability.

  Args:
    input: probabilities in ``[0, 1]``, any shape.
    target: targets in ``[0, 1]``, ``input``'s shape (torch allows no broadcasting).
    weight: optional rescaling weight, broadcastable to ``input``'s shape.
    size_average: deprecated in torch; must be ``None``.
    reduce: deprecated in torch; must be ``None``.
    reduction: ``'none' | 'mean' | 'sum'``; ``'mean'`` is ``sum(w * l) / numel``.
    where: optional bool mask broadcastable to ``input``'s shape; masked
      elements are left out of the sum and of the mean's denominator.

  Returns:
    The loss, a scalar unless ``reduction='none'``.

  Raises:
    ValueError: at trace time, for mismatched shapes, non-floating dtypes, an
      unknown ``reduction`` or the legacy arguments. Elements of ``input`` or
      ``target`` outside ``[0, 1]`` (or nan), for which torch raises, are
      reported under ``checkify.checkify``; without it they give ``nan``: the
      element's loss, any reduction over it, and the gradients.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> loss = jaxloss.binary_cross_entropy(jnp.array([0.9, 0.2, 0.6]), jnp.array([1.0, 0.0, 1.0]))
    >>> print(f"{float(loss):.4f}")
    0.2798

  References:
    - PyTorch, ``torch.nn.functional.binary_cross_entropy``:
      https://pytorch.org/docs/stable/generated/torch.nn.functional.binary_cross_entropy.html
  """
  fn = "binary_cross_entropy"
  C.reject_legacy_args(fn, size_average, reduce)
  C.check_reduction(fn, reduction)
  return _bce_kernel(input, target, weight, where, reduction=reduction)


@functools.partial(jax.jit, static_argnames=("reduction",))
def _bce_kernel(input, target, weight, where, *, reduction):
  fn = "binary_cross_entropy"
  input, target, where, dtype, out_dtype = _prepare(fn, input, target, where)
  weight = _broadcast_weight(fn, "weight", weight, input.shape, dtype)
  # 0.5 is a safe probability and a safe target: finite loss and gradients.
  input, target = C.mask_inputs(where, 0.5, input, target)
  if weight is not None:
    (weight,) = C.mask_inputs(where, 0, weight)
  C.check_in_unit_interval(fn, "input", input)
  C.check_in_unit_interval(fn, "target", target)
  # torch raises for these; here they are nan (value and gradients).
  bad = C.outside_unit_interval(input) | C.outside_unit_interval(target)
  input, target, weight = C.nan_gradient_rows(bad, input, target, weight)
  loss = _bce_terms(input, target)
  if weight is not None:
    loss = loss * weight
  return C.reduce_loss(loss, reduction, where, out_dtype=out_dtype, bad=bad)


def binary_cross_entropy_with_logits(input: ArrayLike, target: ArrayLike,
                                     weight: ArrayLike | None = None, size_average=None,
                                     reduce=None, reduction: str = "mean",
                                     pos_weight: ArrayLike | None = None, *,
                                     where: ArrayLike | None = None) -> Array:
  r"""Binary cross-entropy on logits, ``torch.nn.functional.binary_cross_entropy_with_logits``.

  .. math::
     \ell_i = w_i \big[(1 - y_i)\,x_i - (1 + (p_i - 1)\,y_i) \log\sigma(x_i)\big]

  i.e. :math:`-w_i [p_i y_i \log\sigma(x_i) + (1 - y_i)\log(1 - \sigma(x_i))]`,
  computed with the stable :math:`\log\sigma` so that logits of any magnitude
  (e.g. ``1e4``) give finite values and gradients. ``target`` is not checked
  to lie in ``[0, 1]`` (nor is it in torch).

  Args:
    input: logits, any shape.
    target: targets, ``input``'s shape (torch allows no broadcasting).
    weight: optional rescaling weight, broadcastable to ``input``'s shape.
    size_average: deprecated in torch; must be ``None``.
    reduce: deprecated in torch; must be ``None``.
    reduction: ``'none' | 'mean' | 'sum'``; ``'mean'`` is ``sum(w * l) / numel``.
    pos_weight: optional weight :math:`p` of the positive term, broadcastable to
      ``input``'s shape by the usual (trailing) rules: a ``(C,)`` vector weights
      the classes of an ``(N, C)`` input; use ``(C, 1, 1)`` for ``(N, C, H, W)``.
    where: optional bool mask broadcastable to ``input``'s shape; masked
      elements are left out of the sum and of the mean's denominator.

  Returns:
    The loss, a scalar unless ``reduction='none'``.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> logits, target = jnp.array([2.0, -1.5, 0.3]), jnp.array([1.0, 0.0, 1.0])
    >>> loss = jaxloss.binary_cross_entropy_with_logits(logits, target, pos_weight=jnp.array(2.0))
    >>> print(f"{float(loss):.4f}")
    0.5213

  References:
    - PyTorch, ``torch.nn.functional.binary_cross_entropy_with_logits``:
      https://pytorch.org/docs/stable/generated/torch.nn.functional.binary_cross_entropy_with_logits.html
  """
  fn = "binary_cross_entropy_with_logits"
  C.reject_legacy_args(fn, size_average, reduce)
  C.check_reduction(fn, reduction)
  return _bce_logits_kernel(input, target, weight, pos_weight, where, reduction=reduction)


@functools.partial(jax.jit, static_argnames=("reduction",))
def _bce_logits_kernel(input, target, weight, pos_weight, where, *, reduction):
  fn = "binary_cross_entropy_with_logits"
  input, target, where, dtype, out_dtype = _prepare(fn, input, target, where)
  weight = _broadcast_weight(fn, "weight", weight, input.shape, dtype)
  pos_weight = _broadcast_weight(
      fn, "pos_weight", pos_weight, input.shape, dtype,
      " (it broadcasts along the trailing dimensions: (C,) for (N, C) logits)")
  input, target = C.mask_inputs(where, 0, input, target)
  log_sigmoid = jax.nn.log_sigmoid(input)
  if pos_weight is not None:
    (pos_weight,) = C.mask_inputs(where, 1, pos_weight)
    log_sigmoid = (1 + (pos_weight - 1) * target) * log_sigmoid
  loss = (1 - target) * input - log_sigmoid
  if weight is not None:
    (weight,) = C.mask_inputs(where, 0, weight)
    loss = loss * weight
  return C.reduce_loss(loss, reduction, where, out_dtype=out_dtype)
