"""Regression losses: L1, MSE, Huber and smooth L1, as in ``torch.nn.functional``.

All four broadcast ``input`` against ``target`` (with a warning when the shapes
differ, as torch does) and accept an element-wise ``weight`` of ``input``'s
shape. Mind torch's reductions under ``weight``, mirrored exactly:

* ``l1_loss`` and ``mse_loss``: ``'mean'`` is ``sum(w * l) / sum(w)``.
* ``huber_loss``: ``'mean'`` is ``sum(w * l) / numel`` (the plain mean).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxloss import _common as C

Array = C.Array
ArrayLike = C.ArrayLike


def _prepare(fn, input, target, weight, where):
  """Validates, broadcasts and upcasts ``input``/``target``/``weight``/``where``."""
  input = C.as_float_array(fn, "input", input)
  target = C.as_float_array(fn, "target", target)
  out_dtype = C.output_dtype(input, target)
  dtype = C.compute_dtype(input, target)
  input_shape = input.shape
  input, target = C.broadcast_pair(fn, "input", input, "target", target, warn=False)
  if weight is not None:
    weight = C.as_float_array(fn, "weight", weight)
    C.check_shape(fn, "weight", weight, input_shape, "the shape of `input`")
    weight = C.upcast(jnp.broadcast_to(weight, input.shape), dtype)
  where = C.prepare_where(fn, where, input.shape)
  input, target = C.mask_inputs(where, 0, C.upcast(input, dtype), C.upcast(target, dtype))
  return input, target, weight, where, out_dtype


def _reduce_weighted(loss, weight, reduction, where, out_dtype, weight_sum_mean):
  """Weights ``loss``; the mean divides by ``sum(weight)`` if ``weight_sum_mean``."""
  denominator = None
  if weight is not None:
    loss = loss * weight
    if weight_sum_mean and reduction == "mean":
      denominator = jnp.sum(weight if where is None else jnp.where(where, weight, 0))
  return C.reduce_loss(loss, reduction, where, denominator=denominator,
                       out_dtype=out_dtype)


@functools.partial(jax.jit, static_argnames=("fn", "reduction", "param"))
def _kernel(input, target, weight, where, *, fn, reduction, param):
  """The four losses, one jitted kernel; ``param`` is Huber's delta or smooth L1's beta."""
  input, target, weight, where, out_dtype = _prepare(fn, input, target, weight, where)
  diff = input - target
  if fn == "l1_loss":
    return _reduce_weighted(C.torch_abs(diff), weight, reduction, where, out_dtype, True)
  if fn == "mse_loss":
    return _reduce_weighted(jnp.square(diff), weight, reduction, where, out_dtype, True)
  diff = C.torch_abs(diff)
  if fn == "huber_loss":
    loss = jnp.where(diff < param, 0.5 * diff * diff, param * (diff - 0.5 * param))
    return _reduce_weighted(loss, weight, reduction, where, out_dtype, False)
  if param == 0.0:  # smooth_l1_loss
    loss = diff
  else:
    loss = jnp.where(diff < param, 0.5 * diff * diff / param, diff - 0.5 * param)
  return C.reduce_loss(loss, reduction, where, out_dtype=out_dtype)


def l1_loss(input: ArrayLike, target: ArrayLike, size_average=None, reduce=None,
            reduction: str = "mean", weight: ArrayLike | None = None, *,
            where: ArrayLike | None = None) -> Array:
  r"""Mean absolute error, ``torch.nn.functional.l1_loss``.

  .. math:: \ell_i = w_i\,|x_i - y_i|

  With ``weight``, ``'mean'`` is :math:`\sum_i \ell_i / \sum_i w_i`.

  Args:
    input: predictions, any shape.
    target: targets, broadcastable to ``input``.
    size_average: deprecated in torch; must be ``None``.
    reduce: deprecated in torch; must be ``None``.
    reduction: ``'none' | 'mean' | 'sum'``.
    weight: optional element-wise weights of ``input``'s shape.
    where: optional bool mask broadcastable to the broadcast shape; masked
      elements are left out of the sum and the mean's denominator.

  Returns:
    The loss, a scalar unless ``reduction='none'``.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> loss = jaxloss.l1_loss(jnp.array([0.5, 2.0, -1.0]), jnp.array([1.0, 2.0, 1.0]))
    >>> print(f"{float(loss):.4f}")
    0.8333

  References:
    - PyTorch, ``torch.nn.functional.l1_loss``:
      https://pytorch.org/docs/stable/generated/torch.nn.functional.l1_loss.html
  """
  fn = "l1_loss"
  C.reject_legacy_args(fn, size_average, reduce)
  C.check_reduction(fn, reduction)
  C.warn_if_broadcast(fn, "input", input, "target", target)
  return _kernel(input, target, weight, where, fn=fn, reduction=reduction, param=None)


def mse_loss(input: ArrayLike, target: ArrayLike, size_average=None, reduce=None,
             reduction: str = "mean", weight: ArrayLike | None = None, *,
             where: ArrayLike | None = None) -> Array:
  r"""Mean squared error, ``torch.nn.functional.mse_loss``.

  .. math:: \ell_i = w_i\,(x_i - y_i)^2

  With ``weight``, ``'mean'`` is :math:`\sum_i \ell_i / \sum_i w_i`.
  Arguments are as for :func:`l1_loss`.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> loss = jaxloss.mse_loss(jnp.array([0.5, 2.0, -1.0]), jnp.array([1.0, 2.0, 1.0]))
    >>> print(f"{float(loss):.4f}")
    1.4167

  References:
    - PyTorch, ``torch.nn.functional.mse_loss``:
      https://pytorch.org/docs/stable/generated/torch.nn.functional.mse_loss.html
  """
  fn = "mse_loss"
  C.reject_legacy_args(fn, size_average, reduce)
  C.check_reduction(fn, reduction)
  C.warn_if_broadcast(fn, "input", input, "target", target)
  return _kernel(input, target, weight, where, fn=fn, reduction=reduction, param=None)


def huber_loss(input: ArrayLike, target: ArrayLike, reduction: str = "mean",
               delta: float = 1.0, weight: ArrayLike | None = None, *,
               where: ArrayLike | None = None) -> Array:
  r"""Huber loss, ``torch.nn.functional.huber_loss``.

  .. math::
     \ell_i = w_i \begin{cases} \tfrac12 d_i^2 & |d_i| < \delta \\
              \delta\,(|d_i| - \tfrac12\delta) & \text{otherwise} \end{cases},
     \qquad d_i = x_i - y_i

  With ``weight``, ``'mean'`` is the plain mean of the weighted terms (torch's
  choice, unlike :func:`l1_loss`).

  Args:
    delta: the threshold between the quadratic and the linear part; ``> 0``.
    (others as for :func:`l1_loss`)

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> input, target = jnp.array([0.5, 2.0, -1.0]), jnp.array([1.0, 2.0, 1.0])
    >>> loss = jaxloss.huber_loss(input, target, delta=1.0)
    >>> print(f"{float(loss):.4f}")
    0.5417

  References:
    - PyTorch, ``torch.nn.functional.huber_loss``:
      https://pytorch.org/docs/stable/generated/torch.nn.functional.huber_loss.html
    - Huber, "Robust Estimation of a Location Parameter", Annals of Mathematical Statistics, 1964.
  """
  fn = "huber_loss"
  C.check_reduction(fn, reduction)
  delta = C.static_float(fn, "delta", delta)  # torch raises for delta <= 0: a static option
  if not delta > 0:
    raise ValueError(f"{fn}: `delta` must be positive, got {delta}.")
  C.warn_if_broadcast(fn, "input", input, "target", target)
  return _kernel(input, target, weight, where, fn=fn, reduction=reduction, param=delta)


def smooth_l1_loss(input: ArrayLike, target: ArrayLike, size_average=None,
                   reduce=None, reduction: str = "mean", beta: float = 1.0, *,
                   where: ArrayLike | None = None) -> Array:
  r"""Smooth L1 loss, ``torch.nn.functional.smooth_l1_loss``.

  .. math::
     \ell_i = \begin{cases} \tfrac12 d_i^2 / \beta & |d_i| < \beta \\
              |d_i| - \tfrac12\beta & \text{otherwise} \end{cases}

  ``beta=0`` is exactly :func:`l1_loss`.

  Args:
    beta: the threshold between the quadratic and the linear part; ``>= 0``.
    (others as for :func:`l1_loss`)

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> loss = jaxloss.smooth_l1_loss(jnp.array([0.5, 2.0, -1.0]), jnp.array([1.0, 2.0, 1.0]))
    >>> print(f"{float(loss):.4f}")
    0.5417

  References:
    - PyTorch, ``torch.nn.functional.smooth_l1_loss``:
      https://pytorch.org/docs/stable/generated/torch.nn.functional.smooth_l1_loss.html
    - Girshick, "Fast R-CNN", ICCV 2015.
  """
  fn = "smooth_l1_loss"
  C.reject_legacy_args(fn, size_average, reduce)
  C.check_reduction(fn, reduction)
  beta = C.static_float(fn, "beta", beta)  # torch raises for beta < 0: a static option
  if not beta >= 0:
    raise ValueError(f"{fn}: `beta` must be non-negative, got {beta}.")
  C.warn_if_broadcast(fn, "input", input, "target", target)
  return _kernel(input, target, None, where, fn=fn, reduction=reduction, param=beta)


# ----------------------------------------------------------------------------
# optax's regression losses without a torch counterpart
# ----------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("reduction",))
def _log_cosh_kernel(predictions, targets, weight, where, *, reduction):
  fn = "log_cosh"
  predictions = C.as_float_array(fn, "predictions", predictions)
  arrays = (predictions,)
  if targets is not None:
    targets = C.as_float_array(fn, "targets", targets)
    arrays += (targets,)
  out_dtype, dtype = C.output_dtype(*arrays), C.compute_dtype(*arrays)
  shape = C.broadcast_shape(fn, predictions=predictions,
                            targets=predictions if targets is None else targets)
  diff = C.upcast(jnp.broadcast_to(predictions, shape), dtype)
  if targets is not None:
    diff = diff - C.upcast(jnp.broadcast_to(targets, shape), dtype)
  if weight is not None:
    weight = C.as_float_array(fn, "weight", weight)
    C.check_shape(fn, "weight", weight, predictions.shape, "the shape of `predictions`")
    weight = C.upcast(jnp.broadcast_to(weight, shape), dtype)
  where = C.prepare_where(fn, where, shape)
  (diff,) = C.mask_inputs(where, 0, diff)
  # log cosh d = log(e^d + e^-d) - log 2: stable for large |d| (|d| - log 2), and its
  # derivative tanh(d) is exact everywhere (optax's form).
  loss = jnp.logaddexp(diff, -diff) - jnp.log(jnp.asarray(2.0, dtype))
  return _reduce_weighted(loss, weight, reduction, where, out_dtype, True)


def log_cosh(predictions: ArrayLike, targets: ArrayLike | None = None, *,
             reduction: str = "none", weight: ArrayLike | None = None,
             where: ArrayLike | None = None) -> Array:
  r"""Log-cosh loss, ``optax.losses.log_cosh``.

  .. math:: \ell_i = w_i \log\cosh(x_i - y_i)

  About :math:`d^2/2` for small errors and :math:`|d| - \log 2` for large
  ones: a twice-differentiable alternative to :func:`huber_loss` (its
  derivative is :math:`\tanh d`).

  Args:
    predictions: predictions, any shape.
    targets: targets broadcastable to ``predictions``; ``None`` means zeros (as
      optax). Broadcasting does not warn (optax's behaviour).
    reduction: ``'none'`` (default, optax's element-wise values), ``'mean'`` or
      ``'sum'``.
    weight: optional element-wise weights of ``predictions``' shape; ``'mean'``
      is then :math:`\sum_i \ell_i / \sum_i w_i` (as :func:`l1_loss`).
    where: optional bool mask broadcastable to the broadcast shape; masked
      elements are ``0``, leave the sum and the mean's denominator, and get
      exactly-zero gradients.

  Returns:
    The loss in the inputs' dtype: element-wise, or a scalar.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> out = jaxloss.log_cosh(jnp.array([0.5, 2.0, -10.0]), jnp.array([1.0, 2.0, 1.0]))
    >>> print([round(v, 4) for v in out.tolist()])
    [0.1201, 0.0, 10.3069]

  References:
    - Chen et al., "Log Hyperbolic Cosine Loss Improves Variational
      Auto-Encoder", 2019. https://openreview.net/pdf?id=rkglvsC9Ym
    - optax, ``optax.losses.log_cosh``.
  """
  fn = "log_cosh"
  C.check_reduction(fn, reduction)
  return _log_cosh_kernel(predictions, targets, weight, where, reduction=reduction)
