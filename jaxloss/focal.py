r"""Focal losses (Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017).

* :func:`softmax_focal_loss`: multi-class, on logits with class-index targets,
  :math:`-\alpha_y (1 - p_y)^\gamma \log p_y`.
* :func:`sigmoid_focal_loss`: ``torchvision.ops.sigmoid_focal_loss``: the same
  argument names, defaults (``reduction='none'``) and values.

Numerics. The modulating factor :math:`(1 - p)^\gamma` is computed as
:math:`\exp(\gamma \log(1 - p))` with :math:`\log(1 - p)` formed without the
cancellation of ``1 - p``: a log-sum-exp over the non-target classes for the
softmax, ``log_sigmoid(-x)`` for the sigmoid. Values and gradients therefore
stay finite and accurate for logits of any finite magnitude (``|x| = 1e4``) and
for ``gamma < 1``, where :math:`d(1 - p)^\gamma / dp` is infinite at
:math:`p = 1`: there the factor underflows to ``0`` together with its gradient
instead of producing ``0 * inf = nan``.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

from jaxloss import _common as C

Array = C.Array
ArrayLike = C.ArrayLike


def _non_negative(x):
  return x >= 0


def _check_gamma(fn: str, gamma):
  """``gamma >= 0``: a Python float (checked now) or a traced scalar (see ``_gamma_flags``)."""
  return C.numeric_option(fn, "gamma", gamma, _non_negative, "be non-negative")


def _gamma_is_zero(gamma) -> bool | None:
  """The static branch: ``True``/``False`` for a Python ``gamma``, ``None`` when traced."""
  return gamma == 0.0 if isinstance(gamma, float) else None


def _modulation(log_one_minus_p: Array, gamma, gamma_is_zero: bool | None) -> Array:
  """``(1 - p) ** gamma`` from ``log(1 - p)``.

  ``gamma_is_zero=False``: a Python ``gamma > 0``. ``None``: a traced ``gamma``,
  which may be ``0``; then ``0 ** 0 = 1`` (the static ``gamma=0`` call's value),
  never ``exp(0 * -inf) = nan``.
  """
  if gamma_is_zero is None:
    zero = gamma == 0
    exponent = gamma * jnp.where(zero, jnp.zeros((), log_one_minus_p.dtype), log_one_minus_p)
    return jnp.exp(jnp.where(zero, jnp.zeros((), exponent.dtype), exponent))
  return jnp.exp(gamma * log_one_minus_p)


def _poison_gamma(fn: str, out: Array, gamma) -> Array:
  """``nan`` (value and gradients) for a traced ``gamma`` that is negative or nan."""
  bad = C.option_out_of_range(fn, "gamma", gamma, _non_negative, "be non-negative")
  return C.nan_where(bad, out)


def softmax_focal_loss(input: ArrayLike, target: ArrayLike, gamma: float = 2.0,
                       alpha: ArrayLike | None = None, reduction: str = "mean",
                       ignore_index: int = -100, *, axis: int | None = None,
                       where: ArrayLike | None = None) -> Array:
  r"""Multi-class softmax focal loss on logits.

  .. math:: \ell_n = -\alpha_{y_n}\,(1 - p_{n,y_n})^\gamma \log p_{n,y_n},
            \qquad p_n = \operatorname{softmax}(x_n)

  ``0`` where :math:`y_n` is ``ignore_index`` or ``where`` is ``False``.
  ``'mean'`` divides by the number of counted samples (never by the sum of
  ``alpha``: the focal-loss convention, unlike ``cross_entropy``'s ``weight``).
  With ``gamma=0`` this is :func:`jaxloss.cross_entropy` (``alpha`` as its
  ``weight`` for ``'none'``/``'sum'``).

  Args:
    input: logits ``(C,)``, ``(N, C)`` or ``(N, C, d1, ..., dK)`` (torch's layout,
      class axis 1), or with the classes on the axis ``axis``.
    target: integer class indices of ``input``'s shape without the class axis:
      ``()``, ``(N,)`` or ``(N, d1, ..., dK)``.
    gamma: the focusing parameter :math:`\gamma \ge 0`: a Python float, or a
      traced scalar (``jax.vmap`` over a population of values, one compilation);
      a traced negative or nan ``gamma`` makes the result ``nan`` (reported under
      ``checkify``).
    alpha: ``None`` (no weighting), a scalar, or per-class weights ``(C,)``
      (differentiable).
    reduction: ``'none' | 'mean' | 'sum'``.
    ignore_index: a class index whose targets are ignored.
    axis: the class axis of ``input`` (keyword-only); ``None`` is torch's (1, or 0
      for 1-D ``input``), ``-1`` class-last.
    where: optional bool mask broadcastable to ``target``'s shape; masked
      samples leave the sum and the mean's denominator and get zero gradients.

  Returns:
    The loss in ``input``'s dtype (float32 compute for half precision). Class
    indices outside ``[0, C)`` (not ``ignore_index``) are reported under
    ``checkify`` and give ``nan`` without it (the sample's loss, any reduction
    over it, and the gradients).

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> logits = jnp.array([[2.0, 0.5, -1.0], [0.0, 1.0, 0.0]])
    >>> loss = jaxloss.softmax_focal_loss(logits, jnp.array([0, 2]), gamma=2.0)
    >>> print(f"{float(loss):.4f}")
    0.4873

  References:
    - Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017.
  """
  fn = "softmax_focal_loss"
  C.check_reduction(fn, reduction)
  gamma = _check_gamma(fn, gamma)
  ignore_index = C.static_int(fn, "ignore_index", ignore_index)
  # `input` itself is checked in the kernel (an array conversion here costs ~10 us a call).
  cax = C.class_axis(fn, axis, input) if axis is not None else None
  # gamma is traced into the kernel (one compilation for every gamma); only whether a
  # Python gamma is 0 is static.
  return _softmax_focal_kernel(input, target, gamma, alpha, where,
                               gamma_is_zero=_gamma_is_zero(gamma), reduction=reduction,
                               ignore_index=ignore_index, cax=cax,
                               axis=None if axis is None else cax)


@functools.partial(jax.jit, static_argnames=("gamma_is_zero", "reduction", "ignore_index",
                                             "cax", "axis"))
def _softmax_focal_kernel(input, target, gamma, alpha, where, *, gamma_is_zero, reduction,
                          ignore_index, cax, axis):
  fn = "softmax_focal_loss"
  input = C.as_float_array(fn, "input", input)
  if input.ndim < 1:
    raise ValueError(
        f"{fn}: `input` must have shape (C,), (N, C) or (N, C, d1, ..., dK), got "
        f"{tuple(input.shape)}.")
  if cax is None:
    cax = C.torch_class_axis(input)
  out_dtype = C.output_dtype(input)
  dtype = C.compute_dtype(input)
  # Move the class axis last and flatten the samples: (S, C).
  unbatched = input.ndim == 1
  target = jnp.asarray(target)
  if not unbatched:
    C.check_class_target_shape(fn, C.as_int_array(fn, "target", target), input.shape, cax,
                               axis, f"class indices for `input` of shape {tuple(input.shape)}")
  x = input[None] if unbatched else jnp.moveaxis(input, cax, -1)
  sample_shape = x.shape[:-1]
  num_classes = x.shape[-1]
  if unbatched:
    if target.ndim != 0:
      raise ValueError(
          f"{fn}: `target` must be a scalar class index for `input` of shape "
          f"{tuple(input.shape)}, got shape {tuple(target.shape)}.")
    target = target[None]
    where = None if where is None else jnp.reshape(jnp.asarray(where), (1,))
  counted, index = C.prepare_class_index(fn, target, sample_shape, num_classes, ignore_index,
                                         where)
  x = x.reshape(-1, num_classes)
  counted_f, index_f = counted.reshape(-1), index.reshape(-1)
  x = jnp.where(counted_f[:, None], C.upcast(x, dtype), jnp.zeros((), dtype))
  bad = C.invalid_class_index(index, num_classes)  # torch would raise: nan here
  (x,) = C.nan_gradient_rows(bad.reshape(-1), x)

  logp = jax.nn.log_softmax(x, axis=-1)
  is_target = jnp.arange(num_classes)[None, :] == index_f[:, None]
  target_logp = jnp.take_along_axis(logp, index_f[:, None], axis=-1, mode="fill")[:, 0]
  if gamma_is_zero:
    modulation = jnp.ones_like(target_logp)
  elif num_classes == 1:
    # One class: 1 - p = 0 exactly (and log p = 0); skip the empty log-sum-exp.
    one_or_zero = 0.0 if gamma_is_zero is False else jnp.where(gamma == 0, 1.0, 0.0)
    modulation = jnp.full_like(target_logp, one_or_zero)
  else:
    # log(1 - p_y) = logsumexp_{j != y} log p_j, without the cancellation of 1 - p.
    log_rest = jax.nn.logsumexp(logp, axis=-1, where=~is_target)
    modulation = _modulation(log_rest, gamma, gamma_is_zero)
  loss = -modulation * target_logp

  if alpha is not None:
    alpha = C.as_float_array(fn, "alpha", alpha)
    if alpha.ndim == 0:
      loss = loss * C.upcast(alpha, dtype)
    else:
      C.check_shape(fn, "alpha", alpha, (num_classes,), "a scalar or one weight per class")
      loss = loss * jnp.take(C.upcast(alpha, dtype), index_f, mode="fill")
  zero = jnp.zeros((), dtype)
  loss = jnp.where(counted_f, loss, zero).reshape(sample_shape)
  out = C.reduce_loss(loss, reduction, counted, out_dtype=out_dtype, bad=bad)
  if unbatched and reduction == "none":
    out = out[0]
  return out if gamma_is_zero is not None else _poison_gamma(fn, out, gamma)


def sigmoid_focal_loss(inputs: ArrayLike, targets: ArrayLike, alpha: float = 0.25,
                       gamma: float = 2.0, reduction: str = "none", *,
                       where: ArrayLike | None = None) -> Array:
  r"""Binary focal loss, ``torchvision.ops.sigmoid_focal_loss``.

  .. math::
     \ell = \alpha_t\,(1 - p_t)^\gamma\,\mathrm{BCE}(x, t), \quad
     p = \sigma(x),\; p_t = p\,t + (1 - p)(1 - t),\;
     \alpha_t = \alpha\,t + (1 - \alpha)(1 - t)

  with :math:`\mathrm{BCE}(x, t) = -t\log\sigma(x) - (1 - t)\log\sigma(-x)`
  (torch's ``binary_cross_entropy_with_logits``, which computes the equal
  :math:`(1 - t)\,x - \log\sigma(x)`: that form loses the relative precision of
  losses far below 1, e.g. ``x = -30, t = 0``) and no :math:`\alpha_t` factor
  when ``alpha < 0`` (torchvision's convention). ``gamma=0`` with ``alpha<0`` is
  :func:`jaxloss.binary_cross_entropy_with_logits` (to rounding).
  :math:`1 - p_t = t\,\sigma(-x) + (1 - t)\,\sigma(x)` is formed in log space
  from ``log_sigmoid(+-x)``, so hard (and soft) targets give finite, accurate
  gradients for ``|x| = 1e4`` and ``gamma < 1``.

  Args:
    inputs: logits, any shape (element-wise: there is no class ``axis``).
    targets: binary (or soft, in ``[0, 1]``) targets of the same shape
      (differentiable).
    alpha: the weight of the positives in ``[0, 1]``; negative: no weighting;
      nan raises ``ValueError``. May be traced (a traced nan gives ``nan``).
    gamma: the focusing parameter ``>= 0``; may be traced (a population under
      ``jax.vmap``, one compilation); a traced negative or nan ``gamma`` gives ``nan``.
    reduction: ``'none'`` (the default, as torchvision) ``| 'mean' | 'sum'``.
    where: optional bool mask broadcastable to ``inputs``; masked elements leave
      the sum and the mean's denominator and get zero gradients.

  Returns:
    The loss in the inputs' dtype (float32 compute for half precision). Targets
    outside ``[0, 1]`` (or nan) are reported under ``checkify`` and give ``nan``
    without it (the element's loss, any reduction over it, and the gradients);
    torchvision does not check them.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> logits, targets = jnp.array([2.0, -1.5, 0.3]), jnp.array([1.0, 0.0, 1.0])
    >>> loss = jaxloss.sigmoid_focal_loss(logits, targets, alpha=0.25, gamma=2.0, reduction="mean")
    >>> print(f"{float(loss):.4f}")
    0.0102

  References:
    - Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017.
    - torchvision, ``torchvision.ops.sigmoid_focal_loss``:
      https://pytorch.org/vision/stable/generated/torchvision.ops.sigmoid_focal_loss.html
  """
  fn = "sigmoid_focal_loss"
  C.check_reduction(fn, reduction)
  gamma = _check_gamma(fn, gamma)
  alpha = C.numeric_option(fn, "alpha", alpha, _not_nan,
                           "be a number (negative: no weighting), not nan")
  # alpha and gamma are traced into the kernel; only their branches are static (None:
  # decided inside the kernel, for a traced value).
  weighted = alpha >= 0 if isinstance(alpha, float) else None
  return _sigmoid_focal_kernel(inputs, targets, alpha, gamma, where, weighted=weighted,
                               gamma_is_zero=_gamma_is_zero(gamma), reduction=reduction)


def _not_nan(x):
  return x == x


@functools.partial(jax.jit, static_argnames=("weighted", "gamma_is_zero", "reduction"))
def _sigmoid_focal_kernel(inputs, targets, alpha, gamma, where, *, weighted, gamma_is_zero,
                          reduction):
  fn = "sigmoid_focal_loss"
  inputs = C.as_float_array(fn, "inputs", inputs)
  targets = C.as_float_array(fn, "targets", targets)
  if targets.shape != inputs.shape:
    raise ValueError(
        f"{fn}: `targets` must have the same shape as `inputs` {tuple(inputs.shape)}, "
        f"got {tuple(targets.shape)}.")
  out_dtype = C.output_dtype(inputs, targets)
  dtype = C.compute_dtype(inputs, targets)
  where = C.prepare_where(fn, where, inputs.shape)
  x, t = C.mask_inputs(where, 0, C.upcast(inputs, dtype), C.upcast(targets, dtype))
  C.check_in_unit_interval(fn, "targets", t)
  bad = C.outside_unit_interval(t)  # reported under checkify; nan without it
  x, t = C.nan_gradient_rows(bad, x, t)

  log_p = jax.nn.log_sigmoid(x)       # log p
  log_q = jax.nn.log_sigmoid(-x)      # log (1 - p)
  # t softplus(-x) + (1 - t) softplus(x): torch's (1 - t) x - log_sigmoid(x) rearranged so
  # that a small loss (a confident right answer) keeps its relative precision.
  ce = -(t * log_p + (1 - t) * log_q)
  if gamma_is_zero:
    loss = ce
  else:
    loss = ce * _modulation(_log_mix(log_q, log_p, t), gamma, gamma_is_zero)
  if weighted:
    loss = (alpha * t + (1 - alpha) * (1 - t)) * loss
  elif weighted is None:  # a traced alpha: torchvision's `alpha >= 0` test, per value
    loss = jnp.where(alpha >= 0, (alpha * t + (1 - alpha) * (1 - t)) * loss, loss)
  out = C.reduce_loss(loss, reduction, where, out_dtype=out_dtype, bad=bad)
  if weighted is None:
    out = C.nan_where(C.option_out_of_range(fn, "alpha", alpha, _not_nan, "not be nan"), out)
  return out if gamma_is_zero is not None else _poison_gamma(fn, out, gamma)


def _log_mix(log_a: Array, log_b: Array, t: Array) -> Array:
  r"""``log(t e^{log_a} + (1 - t) e^{log_b})`` for ``t`` in ``[0, 1]``, stably.

  The shift is the larger of the terms that have a non-zero weight, so a hard
  ``t`` gives exactly ``log_a`` (``t = 1``) or ``log_b`` (``t = 0``) however
  small. The exponent of a zero-weight term is capped at half the log of the
  largest float, so its exponential cannot overflow into ``0 * inf``: the
  value is unaffected and the derivative with respect to ``t`` is exact unless
  it exceeds ``sqrt(finfo.max)`` (``|x|`` beyond ~44 in float32, ~354 in float64).
  """
  dtype = log_a.dtype
  neg_inf = jnp.asarray(-jnp.inf, dtype)
  shift = jnp.maximum(jnp.where(t != 0, log_a, neg_inf), jnp.where(t != 1, log_b, neg_inf))
  shift = jax.lax.stop_gradient(jnp.where(jnp.isfinite(shift), shift, 0.0))
  cap = jnp.asarray(0.5 * math.log(float(jnp.finfo(dtype).max)), dtype)

  def capped_exp(e):
    return jnp.exp(jnp.where(e > cap, cap, e))
  total = t * capped_exp(log_a - shift) + (1 - t) * capped_exp(log_b - shift)
  return jnp.log(total) + shift
