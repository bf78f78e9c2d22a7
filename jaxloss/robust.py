r"""Noise-robust classification losses, for training on noisy labels.

* :func:`generalized_cross_entropy` (GCE, Zhang & Sabuncu 2018):
  :math:`(1 - p_y^q) / q`, cross-entropy as :math:`q \to 0`, MAE-like at ``q = 1``.
* :func:`symmetric_cross_entropy` (SCE, Wang et al. 2019): :math:`\alpha\,\mathrm{CE} +
  \beta\,\mathrm{RCE}`.
* :func:`reverse_cross_entropy` (RCE): :math:`-\sum_k p_k \log q_k` with
  :math:`\log 0` clamped to ``A``, i.e. :math:`-A\,(1 - p_y)`.
* :func:`softmax_mae_loss`: the mean absolute error between the softmax and the
  one-hot target, in the reduced form of Ma et al.'s code, :math:`1 - p_y`
  (half the L1 distance; not :func:`jaxloss.l1_loss`, which compares raw values).
* The normalized losses of Ma et al. (ICML 2020): :func:`normalized_cross_entropy`,
  :func:`normalized_focal_loss`, :func:`normalized_generalized_cross_entropy`, and
  their active-passive combinations :func:`active_passive_loss` (NCE+RCE, NCE+MAE,
  NFL+RCE, NFL+MAE, NGCE+RCE, ...).
* :func:`bi_tempered_logistic_loss` (Amid et al., NeurIPS 2019), equal to Google's
  reference JAX code (``google/bi-tempered-loss``, ``jax/loss.py``), its custom
  gradient included.

Conventions (as :func:`jaxloss.cross_entropy`): logits with the class axis at
``axis`` (torch's ``1`` by default, ``-1`` for JAX's class-last layout), integer
class-index targets of the shape without the class axis (and probability targets
for the bi-tempered loss), class ``weight`` (the per-sample loss is scaled by
:math:`w_{y_n}` and ``'mean'`` divides by :math:`\sum_n w_{y_n}`), ``ignore_index``,
``where`` and ``reduction``. Half-precision logits are computed in float32.

Hyper-parameters (``q``, ``gamma``, ``alpha``, ``beta``, ``A``, ``t1``, ``t2``,
``label_smoothing``) are traced values: one compilation serves every value, and
a population under ``jax.vmap`` may vary them. Python numbers are validated at
trace time (``ValueError`` naming the argument); an invalid traced value is
reported under ``checkify`` and makes the loss ``nan`` (the nan contract of
:mod:`jaxloss._common`).

Numerics. Every :math:`1 - p` is formed without cancellation (a log-sum-exp over
the other classes), :math:`p^q` as :math:`\exp(q \log p)` with
:math:`1 - p^q = -\operatorname{expm1}(q \log p)`, so values and gradients stay
accurate for confident predictions. The reference implementations clamp
:math:`p` to ``[1e-7, 1]`` inside GCE, NGCE and RCE; these losses do not (the
values and gradients differ only where some :math:`p_k < 10^{-7}`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxloss import _common as C

Array = C.Array
ArrayLike = C.ArrayLike

ACTIVE_LOSSES = ("ce", "focal", "gce", "nce", "nfl", "ngce")
PASSIVE_LOSSES = ("mae", "rce")
_NORMALIZED = ("nce", "nfl", "ngce")


# ----------------------------------------------------------------------------
# Hyper-parameters: static numbers checked at trace time, traced ones under checkify
# ----------------------------------------------------------------------------

def _in_unit(v):
  return (v >= 0) & (v <= 1)


def _finite_nonnegative(v):
  return (v >= 0) & (v < math.inf)


_HYPER: dict[str, tuple[str, Callable]] = {
    "q": ("lie in [0, 1]", _in_unit),
    "gamma": ("be finite and non-negative", _finite_nonnegative),
    "alpha": ("be finite and non-negative", _finite_nonnegative),
    "beta": ("be finite and non-negative", _finite_nonnegative),
    "A": ("be finite and negative (the log that replaces log 0)",
          lambda v: (v < 0) & (v > -math.inf)),
    "t1": ("lie in [0, 1]", _in_unit),
    "t2": ("be finite and positive", lambda v: (v > 0) & (v < math.inf)),
    "label_smoothing": ("lie in [0, 1]", _in_unit),
}


def _hyper(fn: str, name: str, value) -> ArrayLike:
  """A scalar hyper-parameter: checked now if concrete, else passed on traced."""
  if isinstance(value, (str, bytes, bool)) or value is None:
    raise ValueError(f"{fn}: `{name}` must be a real number, got {value!r}.")
  if jnp.ndim(value) != 0:
    raise ValueError(f"{fn}: `{name}` must be a scalar, got shape {jnp.shape(value)}.")
  if not jnp.issubdtype(jnp.result_type(value), jnp.floating) and not jnp.issubdtype(
      jnp.result_type(value), jnp.integer):
    raise ValueError(f"{fn}: `{name}` must be a real number, got {value!r}.")
  try:
    concrete = float(value)
  except TypeError:  # traced: checked inside the kernel
    return value
  requirement, ok = _HYPER[name]
  if not ok(concrete):
    raise ValueError(f"{fn}: `{name}` must {requirement}, got {concrete}.")
  return concrete


def _invalid_hyper(fn: str, params: dict[str, Array], dtype) -> Array:
  """Checks the (traced) hyper-parameters; ``True`` if any is invalid."""
  bad = jnp.zeros((), bool)
  for name, value in params.items():
    requirement, ok = _HYPER[name]
    value = jnp.asarray(value, dtype)
    good = ok(value)
    C.value_check(good, f"{fn}: `{name}` must {requirement}; got {{bad}}.", bad=value)
    bad = bad | ~good
  return bad


# ----------------------------------------------------------------------------
# Shared preparation of logits and class-index targets
# ----------------------------------------------------------------------------

def _check_weight(fn: str, weight, num_classes: int, dtype) -> Array | None:
  if weight is None:
    return None
  weight = C.as_float_array(fn, "weight", weight)
  C.check_shape(fn, "weight", weight, (num_classes,), "one weight per class")
  return C.upcast(weight, dtype)


def _class_last(fn: str, input, axis: int) -> Array:
  input = C.as_float_array(fn, "input", input)
  if input.ndim < 1:
    raise ValueError(
        f"{fn}: `input` must have shape (C,), (N, C) or (N, C, d1, ..., dK), got "
        f"{tuple(input.shape)}.")
  return jnp.moveaxis(input, C.class_axis(fn, axis, input), -1)


def _require_two_classes(fn: str, num_classes: int, why: str) -> None:
  if num_classes < 2:
    raise ValueError(f"{fn}: `input` must have at least 2 classes ({why}), got {num_classes}.")


def _index_targets(fn: str, x: Array, input_shape, target, ignore_index: int, where, dtype):
  """``(x, counted, index, bad)`` for class-last logits ``x`` and index targets.

  ``x`` is upcast, its uncounted samples replaced by zeros (exactly-zero
  gradients even for non-finite logits) and its invalid samples (``bad``, a
  counted target outside ``[0, C)``) given ``nan`` gradients; ``index`` is in
  bounds everywhere.
  """
  target = jnp.asarray(target)
  num_classes = x.shape[-1]
  counted, index = C.prepare_class_index(
      fn, target, x.shape[:-1], num_classes, ignore_index, where,
      f"class indices for `input` of shape {tuple(input_shape)}")
  bad = C.invalid_class_index(index, num_classes)
  index = jnp.where(bad, jnp.zeros((), index.dtype), index)
  (x,) = C.mask_inputs(counted[..., None], 0, C.upcast(x, dtype))
  (x,) = C.nan_gradient_rows(bad, x)
  return x, counted, index, bad


def _reduce(loss, counted, index, weight, bad, reduction, out_dtype):
  denominator = None
  if weight is not None:
    target_weight = jnp.take(weight, index, mode="clip")
    loss = loss * target_weight
    denominator = jnp.sum(jnp.where(counted, target_weight, jnp.zeros((), loss.dtype)))
  return C.reduce_loss(loss, reduction, counted, denominator=denominator,
                       out_dtype=out_dtype, bad=bad)


# ----------------------------------------------------------------------------
# The softmax-based losses: one kernel, a static tuple of weighted terms
# ----------------------------------------------------------------------------

def _log1m_softmax(logp: Array) -> Array:
  """``log(1 - p_k)`` for every class, without cancellation.

  Only the most probable class can have ``p > 1/2``: its ``1 - p`` is the sum of
  the others' probabilities (a log-sum-exp); for the rest ``log1p(-p)`` is accurate.
  """
  top = jnp.argmax(logp, axis=-1)[..., None]
  is_top = jax.lax.broadcasted_iota(top.dtype, logp.shape, logp.ndim - 1) == top
  rest_of_top = jax.nn.logsumexp(logp, axis=-1, where=~is_top, keepdims=True)
  safe = jnp.where(is_top, jnp.full((), -1.0, logp.dtype), logp)
  return jnp.where(is_top, rest_of_top, jnp.log1p(-jnp.exp(safe)))


def _nonzero(v: Array) -> Array:
  """``v`` with ``0`` replaced by ``1`` (a safe divisor whose branch is discarded)."""
  return jnp.where(v == 0, jnp.ones((), v.dtype), v)


def _term(name: str, logp: Array, target_logp: Array, log_rest: Array, params) -> Array:
  """The per-sample loss ``name`` from log-probabilities (class axis last)."""
  if name == "ce":
    return -target_logp
  if name == "focal":
    return -jnp.exp(params["gamma"] * log_rest) * target_logp
  if name == "gce":  # (1 - p^q) / q, -log p at q = 0
    q = params["q"]
    return jnp.where(q == 0, -target_logp, -jnp.expm1(_nonzero(q) * target_logp) / _nonzero(q))
  if name == "nce":  # log p_y / sum_k log p_k
    return target_logp / jnp.sum(logp, axis=-1)
  if name == "nfl":
    gamma = params["gamma"]
    numerator = jnp.exp(gamma * log_rest) * target_logp
    return numerator / jnp.sum(jnp.exp(gamma * _log1m_softmax(logp)) * logp, axis=-1)
  if name == "ngce":  # (1 - p_y^q) / (C - sum_k p_k^q), NCE at q = 0
    q = params["q"]
    qs = _nonzero(q)
    ratio = jnp.expm1(qs * target_logp) / jnp.sum(jnp.expm1(qs * logp), axis=-1)
    return jnp.where(q == 0, target_logp / jnp.sum(logp, axis=-1), ratio)
  if name == "mae":  # 1 - p_y
    return jnp.exp(log_rest)
  if name == "rce":  # -A (1 - p_y)
    return -params["A"] * jnp.exp(log_rest)
  raise AssertionError(name)


_kernel = functools.partial(jax.jit, static_argnames=("fn", "terms", "ignore_index",
                                                      "reduction", "axis"))


@_kernel
def _softmax_kernel(input, target, weight, where, coefs, params, *, fn, terms, ignore_index,
                    reduction, axis):
  x = _class_last(fn, input, axis)
  num_classes = x.shape[-1]
  if any(name in _NORMALIZED for name in terms):
    _require_two_classes(fn, num_classes, "a normalized loss of one class is 0 / 0")
  dtype, out_dtype = C.compute_dtype(input), C.output_dtype(input)
  weight = _check_weight(fn, weight, num_classes, dtype)
  x, counted, index, bad = _index_targets(fn, x, jnp.shape(input), target, ignore_index,
                                          where, dtype)
  bad = bad | _invalid_hyper(fn, {**coefs, **params}, dtype)
  params = {k: jnp.asarray(v, dtype) for k, v in params.items()}

  logp = jax.nn.log_softmax(x, axis=-1)
  target_logp = jnp.take_along_axis(logp, index[..., None], axis=-1)[..., 0]
  if num_classes == 1:  # 1 - p_y = 0
    log_rest = jnp.full(target_logp.shape, -jnp.inf, dtype)
  else:
    is_target = jax.lax.broadcasted_iota(index.dtype, logp.shape, logp.ndim - 1) == index[..., None]
    log_rest = jax.nn.logsumexp(logp, axis=-1, where=~is_target)  # log(1 - p_y)
    # log p_y = log1p(-(1 - p_y)) when p_y > 1/2: log_softmax rounds it to 0 near p_y = 1.
    confident = log_rest < -math.log(2.0)
    safe_rest = jnp.where(confident, log_rest, jnp.full((), -1.0, dtype))
    target_logp = jnp.where(confident, jnp.log1p(-jnp.exp(safe_rest)), target_logp)
  loss = None
  # The terms' coefficients, in order: alpha (active), beta (passive); none for one term.
  coef_values = [coefs[k] for k in ("alpha", "beta")[:len(coefs)]] or [None]
  for name, coef in zip(terms, coef_values, strict=True):
    term = _term(name, logp, target_logp, log_rest, params)
    if name == "focal" and num_classes == 1:  # (1 - p)^gamma = 0^gamma
      term = jnp.where(params["gamma"] == 0, -target_logp, jnp.zeros((), dtype))
    term = term if coef is None else jnp.asarray(coef, dtype) * term
    loss = term if loss is None else loss + term
  return _reduce(loss, counted, index, weight, bad, reduction, out_dtype)


def _softmax_loss(fn, input, target, terms, coefs, params, weight, ignore_index, reduction,
                  axis, where):
  C.check_reduction(fn, reduction)
  ignore_index = C.static_int(fn, "ignore_index", ignore_index)
  axis = None if axis is None else C.static_int(fn, "axis", axis)
  coefs = {k: _hyper(fn, k, v) for k, v in coefs.items()}
  params = {k: _hyper(fn, k, v) for k, v in params.items()}
  return _softmax_kernel(input, target, weight, where, coefs, params, fn=fn, terms=terms,
                         ignore_index=ignore_index, reduction=reduction, axis=axis)


_COMMON_ARGS = """    weight: optional class weights ``(C,)`` (differentiable): the sample's loss is
      scaled by :math:`w_{y_n}` and ``'mean'`` divides by :math:`\\sum_n w_{y_n}`
      over the counted samples, as :func:`jaxloss.cross_entropy`.
    ignore_index: a class index whose targets are ignored (loss ``0``, out of the mean).
    reduction: ``'none' | 'mean' | 'sum'``.
    axis: the class axis of ``input`` (keyword-only): None (the default) is torch's layout,
      axis 1 (0 for an unbatched ``(C,)`` input); ``-1`` is JAX's class-last layout.
    where: optional bool mask broadcastable to ``target``'s shape; masked samples
      leave the sum and the mean's denominator and get exactly-zero gradients.
"""
_RETURNS = """  Returns:
    The loss in ``input``'s dtype (float32 compute for half precision): a scalar,
    or ``target``'s shape for ``reduction='none'``. Class indices outside
    ``[0, C)`` (not ``ignore_index``) and invalid traced hyper-parameters are
    reported under ``checkify`` and give ``nan`` without it (the affected
    losses, any reduction over them, and the gradients).
"""


def _doc(f):
  f.__doc__ = f.__doc__.replace("    {common}\n", _COMMON_ARGS).replace("  {returns}\n", _RETURNS)
  return f


@_doc
def generalized_cross_entropy(input: ArrayLike, target: ArrayLike, q: float = 0.7,
                              weight: ArrayLike | None = None, ignore_index: int = -100,
                              reduction: str = "mean", *, axis: int | None = None,
                              where: ArrayLike | None = None) -> Array:
  r"""Generalized cross-entropy (the :math:`\mathcal{L}_q` loss) on logits.

  .. math:: \ell_n = \frac{1 - p_{n,y_n}^q}{q}, \qquad p_n = \operatorname{softmax}(x_n)

  :math:`q \to 0` is cross-entropy (``q = 0`` computes it exactly); ``q = 1`` is
  :math:`1 - p_y`, :func:`softmax_mae_loss`. Intermediate ``q`` trade CE's fast
  fitting for MAE's robustness to label noise.

  Args:
    input: logits, ``(C,)``, ``(N, C)`` or ``(N, C, d1, ..., dK)`` (class axis ``axis``).
    target: integer class indices, ``input``'s shape without the class axis.
    q: :math:`q \in [0, 1]` (the paper's default 0.7); may be traced.
    {common}

  {returns}

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> logits = jnp.array([[2.0, 0.5, -1.0], [0.0, 1.0, 0.0]])
    >>> print(f"{float(jaxloss.generalized_cross_entropy(logits, jnp.array([0, 2]))):.4f}")
    0.5842

  References:
    - Zhang & Sabuncu, "Generalized Cross Entropy Loss for Training Deep Neural
      Networks with Noisy Labels", NeurIPS 2018.
  """
  return _softmax_loss("generalized_cross_entropy", input, target, ("gce",), {}, {"q": q},
                       weight, ignore_index, reduction, axis, where)


@_doc
def normalized_generalized_cross_entropy(input: ArrayLike, target: ArrayLike, q: float = 0.7,
                                         weight: ArrayLike | None = None,
                                         ignore_index: int = -100, reduction: str = "mean", *,
                                         axis: int | None = None,
                                         where: ArrayLike | None = None) -> Array:
  r"""Normalized generalized cross-entropy (NGCE) on logits.

  .. math:: \ell_n = \frac{1 - p_{n,y_n}^q}{C - \sum_k p_{n,k}^q}

  GCE normalized over every possible label (Ma et al.); ``q = 0`` is
  :func:`normalized_cross_entropy`. An active loss for :func:`active_passive_loss`.

  Args:
    input: logits with at least 2 classes (class axis ``axis``).
    target: integer class indices, ``input``'s shape without the class axis.
    q: :math:`q \in [0, 1]`; may be traced.
    {common}

  {returns}

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> logits = jnp.array([[2.0, 0.5, -1.0], [0.0, 1.0, 0.0]])
    >>> loss = jaxloss.normalized_generalized_cross_entropy(logits, jnp.array([0, 2]))
    >>> print(f"{float(loss):.4f}")
    0.2456

  References:
    - Ma et al., "Normalized Loss Functions for Deep Learning with Noisy Labels",
      ICML 2020; the authors' code: github.com/HanxunH/Active-Passive-Losses.
  """
  return _softmax_loss("normalized_generalized_cross_entropy", input, target, ("ngce",), {},
                       {"q": q}, weight, ignore_index, reduction, axis, where)


@_doc
def normalized_cross_entropy(input: ArrayLike, target: ArrayLike,
                             weight: ArrayLike | None = None, ignore_index: int = -100,
                             reduction: str = "mean", *, axis: int | None = None,
                             where: ArrayLike | None = None) -> Array:
  r"""Normalized cross-entropy (NCE) on logits.

  .. math:: \ell_n = \frac{-\log p_{n,y_n}}{-\sum_k \log p_{n,k}} \in [0, 1]

  Cross-entropy divided by its sum over every possible label: robust to
  symmetric label noise but slow to fit alone (Ma et al.): combine it with a
  passive loss, :func:`active_passive_loss`.

  Args:
    input: logits with at least 2 classes (class axis ``axis``).
    target: integer class indices, ``input``'s shape without the class axis.
    {common}

  {returns}

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> logits = jnp.array([[2.0, 0.5, -1.0], [0.0, 1.0, 0.0]])
    >>> print(f"{float(jaxloss.normalized_cross_entropy(logits, jnp.array([0, 2]))):.4f}")
    0.2354

  References:
    - Ma et al., "Normalized Loss Functions for Deep Learning with Noisy Labels",
      ICML 2020; the authors' code: github.com/HanxunH/Active-Passive-Losses.
  """
  return _softmax_loss("normalized_cross_entropy", input, target, ("nce",), {}, {}, weight,
                       ignore_index, reduction, axis, where)


@_doc
def normalized_focal_loss(input: ArrayLike, target: ArrayLike, gamma: float = 0.5,
                          weight: ArrayLike | None = None, ignore_index: int = -100,
                          reduction: str = "mean", *, axis: int | None = None,
                          where: ArrayLike | None = None) -> Array:
  r"""Normalized focal loss (NFL) on logits.

  .. math:: \ell_n = \frac{-(1 - p_{n,y_n})^\gamma \log p_{n,y_n}}
                          {-\sum_k (1 - p_{n,k})^\gamma \log p_{n,k}}

  ``gamma = 0`` is :func:`normalized_cross_entropy`. The gradient is the exact
  derivative of this formula; the authors' code (after clcarwin's focal loss)
  detaches the factors :math:`(1 - p)^\gamma`, so its values are these and its
  gradients differ for ``gamma > 0``.

  Args:
    input: logits with at least 2 classes (class axis ``axis``).
    target: integer class indices, ``input``'s shape without the class axis.
    gamma: the focusing parameter :math:`\gamma \ge 0` (Ma et al. use 0.5); may be traced.
    {common}

  {returns}

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> logits = jnp.array([[2.0, 0.5, -1.0], [0.0, 1.0, 0.0]])
    >>> print(f"{float(jaxloss.normalized_focal_loss(logits, jnp.array([0, 2]))):.4f}")
    0.2326

  References:
    - Ma et al., "Normalized Loss Functions for Deep Learning with Noisy Labels",
      ICML 2020; the authors' code: github.com/HanxunH/Active-Passive-Losses.
    - Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017.
  """
  return _softmax_loss("normalized_focal_loss", input, target, ("nfl",), {},
                       {"gamma": gamma}, weight, ignore_index, reduction, axis, where)


@_doc
def reverse_cross_entropy(input: ArrayLike, target: ArrayLike, A: float = -4.0,
                          weight: ArrayLike | None = None, ignore_index: int = -100,
                          reduction: str = "mean", *, axis: int | None = None,
                          where: ArrayLike | None = None) -> Array:
  r"""Reverse cross-entropy (RCE) on logits.

  .. math:: \ell_n = -\sum_k p_{n,k} \log q_{n,k} = -A\,(1 - p_{n,y_n}),
            \qquad \log 0 := A

  with :math:`q_n` the one-hot target. A bounded, noise-tolerant passive loss:
  the second half of :func:`symmetric_cross_entropy`, and a partner of the
  normalized losses in :func:`active_passive_loss`.

  Args:
    input: logits (class axis ``axis``).
    target: integer class indices, ``input``'s shape without the class axis.
    A: the value that replaces :math:`\log 0`, negative (the SCE paper's -4; the
      authors' code clamps the one-hot target at ``1e-4``, i.e.
      ``A = math.log(1e-4)`` ~ -9.21); may be traced.
    {common}

  {returns}

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> logits = jnp.array([[2.0, 0.5, -1.0], [0.0, 1.0, 0.0]])
    >>> print(f"{float(jaxloss.reverse_cross_entropy(logits, jnp.array([0, 2]))):.4f}")
    2.0049

  References:
    - Wang et al., "Symmetric Cross Entropy for Robust Learning with Noisy
      Labels", ICCV 2019.
  """
  return _softmax_loss("reverse_cross_entropy", input, target, ("rce",), {}, {"A": A}, weight,
                       ignore_index, reduction, axis, where)


@_doc
def softmax_mae_loss(input: ArrayLike, target: ArrayLike, weight: ArrayLike | None = None,
                     ignore_index: int = -100, reduction: str = "mean", *, axis: int | None = None,
                     where: ArrayLike | None = None) -> Array:
  r"""Mean absolute error between the softmax of logits and the one-hot target.

  .. math:: \ell_n = 1 - p_{n,y_n} = \tfrac12 \lVert e_{y_n} - p_n \rVert_1

  The reduced form of Ma et al.'s code (half the L1 distance of Ghosh et al.'s
  MAE, the same minimiser, a noise-tolerant passive loss). Not
  :func:`jaxloss.l1_loss`, which compares raw values element-wise.

  Args:
    input: logits (class axis ``axis``).
    target: integer class indices, ``input``'s shape without the class axis.
    {common}

  {returns}

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> logits = jnp.array([[2.0, 0.5, -1.0], [0.0, 1.0, 0.0]])
    >>> print(f"{float(jaxloss.softmax_mae_loss(logits, jnp.array([0, 2]))):.4f}")
    0.5012

  References:
    - Ghosh et al., "Robust Loss Functions under Label Noise for Deep Neural
      Networks", AAAI 2017.
    - Ma et al., "Normalized Loss Functions for Deep Learning with Noisy Labels",
      ICML 2020.
  """
  return _softmax_loss("softmax_mae_loss", input, target, ("mae",), {}, {}, weight,
                       ignore_index, reduction, axis, where)


@_doc
def symmetric_cross_entropy(input: ArrayLike, target: ArrayLike, alpha: float = 0.1,
                            beta: float = 1.0, A: float = -4.0,
                            weight: ArrayLike | None = None, ignore_index: int = -100,
                            reduction: str = "mean", *, axis: int | None = None,
                            where: ArrayLike | None = None) -> Array:
  r"""Symmetric cross-entropy (SCE): cross-entropy plus reverse cross-entropy.

  .. math:: \ell_n = \alpha\,(-\log p_{n,y_n}) + \beta\,(-A)\,(1 - p_{n,y_n})

  ``beta = 0`` is ``alpha`` times :func:`jaxloss.cross_entropy`; the second term
  is :func:`reverse_cross_entropy`.

  Args:
    input: logits (class axis ``axis``).
    target: integer class indices, ``input``'s shape without the class axis.
    alpha: the weight of cross-entropy, ``>= 0`` (0.1 for CIFAR-10 in the paper).
    beta: the weight of RCE, ``>= 0`` (1.0 for CIFAR-10 in the paper).
    A: the value that replaces :math:`\log 0`, negative (the paper's -4; the
      authors' code clamps at ``1e-4``, i.e. ``A = math.log(1e-4)``).
    {common}

  {returns}

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> logits = jnp.array([[2.0, 0.5, -1.0], [0.0, 1.0, 0.0]])
    >>> print(f"{float(jaxloss.symmetric_cross_entropy(logits, jnp.array([0, 2]))):.4f}")
    2.0946

  References:
    - Wang et al., "Symmetric Cross Entropy for Robust Learning with Noisy
      Labels", ICCV 2019.
  """
  return _softmax_loss("symmetric_cross_entropy", input, target, ("ce", "rce"),
                       {"alpha": alpha, "beta": beta}, {"A": A}, weight, ignore_index,
                       reduction, axis, where)


@_doc
def active_passive_loss(input: ArrayLike, target: ArrayLike, active: str = "nce",
                        passive: str = "rce", alpha: float = 1.0, beta: float = 1.0,
                        weight: ArrayLike | None = None, ignore_index: int = -100,
                        reduction: str = "mean", *, gamma: float = 0.5, q: float = 0.7,
                        A: float = -4.0, axis: int | None = None,
                        where: ArrayLike | None = None) -> Array:
  r"""An active-passive loss (APL): :math:`\alpha\,\mathcal{L}_\text{active} +
  \beta\,\mathcal{L}_\text{passive}`.

  Ma et al. pair a normalized *active* loss (which raises the target's
  probability) with a robust *passive* loss (which lowers the others'), e.g.
  NCE+RCE, NCE+MAE, NFL+RCE, NFL+MAE, NGCE+RCE. The terms are those of
  :func:`normalized_cross_entropy` (``'nce'``), :func:`normalized_focal_loss`
  (``'nfl'``), :func:`normalized_generalized_cross_entropy` (``'ngce'``),
  :func:`generalized_cross_entropy` (``'gce'``), cross-entropy (``'ce'``), the
  focal loss (``'focal'``) and :func:`softmax_mae_loss` (``'mae'``),
  :func:`reverse_cross_entropy` (``'rce'``), computed in one pass.

  Args:
    input: logits (class axis ``axis``; at least 2 classes for a normalized term).
    target: integer class indices, ``input``'s shape without the class axis.
    active: one of ``'nce', 'nfl', 'ngce', 'ce', 'focal', 'gce'``.
    passive: ``'rce'`` or ``'mae'``.
    alpha: the weight of the active term, ``>= 0`` (the paper: 1.0 on CIFAR-10,
      10.0 on CIFAR-100 for NCE+RCE).
    beta: the weight of the passive term, ``>= 0`` (1.0 on CIFAR-10, 0.1 on CIFAR-100).
    {common}
    gamma: the focusing parameter of ``'nfl'``/``'focal'`` (keyword-only; 0.5 as the paper).
    q: the exponent of ``'gce'``/``'ngce'`` (keyword-only).
    A: the :math:`\log 0` of ``'rce'`` (keyword-only; -4 as SCE; the authors' code
      uses ``math.log(1e-4)``).

  {returns}

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> logits = jnp.array([[2.0, 0.5, -1.0], [0.0, 1.0, 0.0]])
    >>> loss = jaxloss.active_passive_loss(logits, jnp.array([0, 2]), "nce", "rce")
    >>> print(f"{float(loss):.4f}")
    2.2403

  References:
    - Ma et al., "Normalized Loss Functions for Deep Learning with Noisy Labels",
      ICML 2020; the authors' code: github.com/HanxunH/Active-Passive-Losses.
  """
  fn = "active_passive_loss"
  if active not in ACTIVE_LOSSES:
    raise ValueError(f"{fn}: `active` must be one of {ACTIVE_LOSSES}, got {active!r}.")
  if passive not in PASSIVE_LOSSES:
    raise ValueError(f"{fn}: `passive` must be one of {PASSIVE_LOSSES}, got {passive!r}.")
  params = {}
  if active in ("focal", "nfl"):
    params["gamma"] = gamma
  if active in ("gce", "ngce"):
    params["q"] = q
  if passive == "rce":
    params["A"] = A
  return _softmax_loss(fn, input, target, (active, passive), {"alpha": alpha, "beta": beta},
                       params, weight, ignore_index, reduction, axis, where)


# ----------------------------------------------------------------------------
# Bi-tempered logistic loss (Google's reference JAX code, ``jax/loss.py``)
# ----------------------------------------------------------------------------

def _is_one(t: Array) -> Array:
  return jnp.abs(t - 1.0) < 1e-15


def _log_t(u: Array, t: Array) -> Array:
  """``log_t(u) = (u^(1-t) - 1) / (1 - t)``, ``log`` at ``t = 1``."""
  one_minus_t = _nonzero(1.0 - t)
  return jnp.where(_is_one(t), jnp.log(u), (u ** one_minus_t - 1.0) / one_minus_t)


def _exp_t(u: Array, t: Array) -> Array:
  """``exp_t(u) = max(1 + (1 - t) u, 0)^(1/(1-t))``, ``exp`` at ``t = 1``."""
  one_minus_t = _nonzero(1.0 - t)
  tempered = jnp.maximum(1.0 + one_minus_t * u, 0.0) ** (1.0 / one_minus_t)
  return jnp.where(_is_one(t), jnp.exp(u), tempered)


def _normalization_fixed_point(x: Array, t: Array, num_iters: int) -> Array:
  """The log_t-partition for ``t > 1`` (the reference's fixed-point iteration)."""
  mu = jnp.max(x, -1, keepdims=True)
  a0 = x - mu

  def step(_, a):
    partition = jnp.sum(_exp_t(a, t), -1, keepdims=True)
    return a0 * partition ** (1.0 - t)

  a = jax.lax.fori_loop(0, num_iters, step, a0)
  partition = jnp.sum(_exp_t(a, t), -1, keepdims=True)
  return -_log_t(1.0 / partition, t) + mu


def _normalization_binary_search(x: Array, t: Array, num_iters: int) -> Array:
  """The log_t-partition for ``t < 1`` (finite support; the reference's bisection).

  The reference computes the initial upper bound in float32; here it is in the
  compute dtype.
  """
  mu = jnp.max(x, -1, keepdims=True)
  a = x - mu
  effective_dim = jnp.sum(a > -1.0 / (1.0 - t), -1, keepdims=True).astype(x.dtype)
  lower = jnp.zeros_like(effective_dim)
  upper = -_log_t(1.0 / effective_dim, t)

  def step(_, bounds):
    lower, upper = bounds
    mid = (upper + lower) / 2.0
    below = jnp.sum(_exp_t(a - mid, t), -1, keepdims=True) < 1.0
    return jnp.where(below, lower, mid), jnp.where(below, mid, upper)

  lower, upper = jax.lax.fori_loop(0, num_iters, step, (lower, upper))
  return (upper + lower) / 2.0 + mu


def _tempered_normalization(x: Array, t: Array, num_iters: int) -> Array:
  branch = jnp.where(_is_one(t), 0, jnp.where(t < 1.0, 1, 2))
  return jax.lax.switch(branch, [
      lambda x, t: jax.nn.logsumexp(x, -1, keepdims=True),
      functools.partial(_normalization_binary_search, num_iters=num_iters),
      functools.partial(_normalization_fixed_point, num_iters=num_iters),
  ], x, t)


def _bi_tempered_terms(x, y, t1, t2, num_iters):
  """``(p, per-class terms)``: the reference's forward pass, before the class sum."""
  normalization = _tempered_normalization(x, t2, num_iters)
  p = _exp_t(x - normalization, t2)
  # t1 = t2 = 1: the reference's KL(y || softmax), plus p - y, which sums to 0 over
  # the classes and makes each class's term match the custom gradient (class weights).
  kl = y * (jnp.log(y + 1e-15) - (x - normalization)) + (p - y)
  # y log_t p is 0 where y = 0 (the reference gives 0 * inf = nan at t1 = 1, p = 0).
  y_log_t_p = jnp.where(y == 0, jnp.zeros((), y.dtype), y * _log_t(p, t1))
  tempered = (y * _log_t(y + 1e-10, t1) - y_log_t_p
              - (y ** (2.0 - t1) - p ** (2.0 - t1)) / (2.0 - t1))
  return p, jnp.where(_is_one(t1) & _is_one(t2), kl, tempered)


@functools.partial(jax.custom_vjp, nondiff_argnums=(5,))
def _bi_tempered(x, y, class_weight, t1, t2, num_iters):
  return _bi_tempered_fwd(x, y, class_weight, t1, t2, num_iters)[0]


def _bi_tempered_fwd(x, y, class_weight, t1, t2, num_iters):
  p, terms = _bi_tempered_terms(x, y, t1, t2, num_iters)
  return jnp.sum(class_weight * terms, -1), (y, class_weight, t1, t2, p, terms)


def _bi_tempered_bwd(num_iters, res, ct):
  """The reference's gradient, ``w (p - y) p^(t2-t1)`` minus its escort-weighted sum.

  With class weights ``w`` (ones without ``weight``). Where ``p = 0`` (finite
  support, ``t2 < 1``) the term is 0: ``p`` is locally constant there (the
  reference gives ``0 * inf = nan`` when ``t2 < t1``). The target, ``t1`` and
  ``t2`` get zero cotangents, as in the reference; the class weights their exact one.
  """
  del num_iters
  y, class_weight, t1, t2, p, terms = res
  positive = p > 0
  safe_p = jnp.where(positive, p, jnp.ones((), p.dtype))
  delta = jnp.where(positive, class_weight * (p - y) * safe_p ** (t2 - t1),
                    jnp.zeros((), p.dtype))
  escorts = p ** t2
  escorts = escorts / jnp.sum(escorts, -1, keepdims=True)
  dx = delta - escorts * jnp.sum(delta, -1, keepdims=True)
  ct = ct[..., None]
  return (ct * dx, jnp.zeros_like(y), jnp.sum(ct * terms, axis=tuple(range(terms.ndim - 1))),
          jnp.zeros_like(t1), jnp.zeros_like(t2))


_bi_tempered.defvjp(_bi_tempered_fwd, _bi_tempered_bwd)


@functools.partial(jax.jit, static_argnames=("fn", "ignore_index", "reduction", "axis",
                                             "num_iters", "probabilities"))
def _bi_tempered_kernel(input, target, weight, where, t1, t2, label_smoothing, *, fn,
                        ignore_index, reduction, axis, num_iters, probabilities):
  x = _class_last(fn, input, axis)
  num_classes = x.shape[-1]
  _require_two_classes(fn, num_classes, "the label smoothing divides by C - 1")
  if probabilities:
    dtype = C.compute_dtype(input, target)
    out_dtype = C.output_dtype(input, target)
  else:
    dtype, out_dtype = C.compute_dtype(input), C.output_dtype(input)
  weight = _check_weight(fn, weight, num_classes, dtype)
  hyper = {"t1": t1, "t2": t2, "label_smoothing": label_smoothing}
  param_bad = _invalid_hyper(fn, hyper, dtype)
  t1, t2, smoothing = (jnp.asarray(v, dtype) for v in hyper.values())

  if probabilities:
    if ignore_index >= 0:
      raise ValueError(
          f"{fn}: `ignore_index` is not supported for class-probability targets; it must "
          f"be negative (the default -100), got {ignore_index}.")
    y = jnp.moveaxis(C.upcast(target, dtype), C.class_axis(fn, axis, target, "target"), -1)
    counted = C.prepare_where(fn, where, x.shape[:-1],
                              "the per-sample loss (`input`'s shape without the class axis)")
    x = C.upcast(x, dtype)
    if counted is not None:
      x, y = C.mask_inputs(counted[..., None], 0, x, y)
    else:
      counted = jnp.ones(x.shape[:-1], bool)
    bad, index = jnp.zeros(x.shape[:-1], bool), None
    class_weight = jnp.ones((num_classes,), dtype) if weight is None else weight
  else:
    x, counted, index, bad = _index_targets(fn, x, jnp.shape(input), target, ignore_index,
                                            where, dtype)
    classes = jax.lax.broadcasted_iota(index.dtype, x.shape, x.ndim - 1)
    y = (classes == index[..., None]).astype(dtype)
    class_weight = jnp.ones((num_classes,), dtype)
  # The reference's smoothing: 1 - eps on the target, eps / (C - 1) on each other class.
  y = (1.0 - num_classes / (num_classes - 1) * smoothing) * y + smoothing / (num_classes - 1)
  loss = _bi_tempered(x, y, class_weight, t1, t2, num_iters)
  bad = bad | param_bad
  if probabilities:
    return C.reduce_loss(loss, reduction, counted, out_dtype=out_dtype, bad=bad)
  return _reduce(loss, counted, index, weight, bad, reduction, out_dtype)


def bi_tempered_logistic_loss(input: ArrayLike, target: ArrayLike, t1: float, t2: float,
                              label_smoothing: float = 0.0, num_iters: int = 5,
                              weight: ArrayLike | None = None, ignore_index: int = -100,
                              reduction: str = "mean", *, axis: int | None = None,
                              where: ArrayLike | None = None) -> Array:
  r"""The bi-tempered logistic loss, equal to Google's reference JAX code.

  With the tempered logarithm and exponential
  :math:`\log_t u = \frac{u^{1-t} - 1}{1 - t}`,
  :math:`\exp_t u = [1 + (1 - t) u]_+^{1/(1-t)}`, the tempered softmax
  :math:`p = \exp_{t_2}(x - \lambda_{t_2}(x))` (``lambda`` normalizes ``p``) and
  the (smoothed) target distribution :math:`y`:

  .. math::
     \ell_n = \sum_c \Big[ y_c \big(\log_{t_1} (y_c + 10^{-10}) - \log_{t_1} p_c\big)
              - \frac{y_c^{2 - t_1} - p_c^{2 - t_1}}{2 - t_1} \Big]

  :math:`t_1 < 1` bounds the loss (robust to mislabelled examples far from the
  boundary), :math:`t_2 > 1` gives the softmax heavy tails (robust near the
  boundary); :math:`t_1 = t_2 = 1` is the KL divergence from the target to the
  softmax (cross-entropy for one-hot targets). :math:`\lambda` is computed as the
  reference does: ``logsumexp`` at :math:`t_2 = 1`, ``num_iters`` fixed-point
  iterations for :math:`t_2 > 1`, ``num_iters`` bisection steps for
  :math:`t_2 < 1` (finite support; use ~20 there). The gradient with respect to
  the logits is the reference's custom one (the exact gradient for the exact
  normalization, not the derivative of the iterations); ``target``, ``t1`` and
  ``t2`` are not differentiated (zero gradients), as in the reference.

  Args:
    input: logits with at least 2 classes, ``(C,)``, ``(N, C)`` or
      ``(N, C, d1, ..., dK)`` (class axis ``axis``).
    target: integer class indices (``input``'s shape without the class axis) or
      floating class probabilities of ``input``'s shape.
    t1: temperature 1 in ``[0, 1]`` (``< 1`` for boundedness); may be traced.
    t2: temperature 2, positive (``> 1`` for heavy tails, ``< 1`` for finite
      support); may be traced.
    label_smoothing: :math:`\varepsilon \in [0, 1]`, the reference's smoothing:
      the target becomes :math:`(1 - \tfrac{C}{C-1}\varepsilon)\,y + \tfrac{\varepsilon}{C-1}`
      (:math:`1 - \varepsilon` on a one-hot target's class); may be traced.
    num_iters: the iterations of the normalization, a static positive int (5 as
      the reference).
    weight: optional class weights ``(C,)`` (differentiable). Index targets: the
      sample's loss is scaled by :math:`w_{y_n}` and ``'mean'`` divides by
      :math:`\sum_n w_{y_n}`; probability targets: class :math:`c`'s term is
      scaled by :math:`w_c` and ``'mean'`` divides by the number of samples
      (:func:`jaxloss.cross_entropy`'s conventions).
    ignore_index: a class index whose targets are ignored (index targets only;
      must be negative for probability targets).
    reduction: ``'none' | 'mean' | 'sum'``.
    axis: the class axis (keyword-only): torch's ``1`` by default, ``-1`` for
      JAX's class-last layout (the reference's).
    where: optional bool mask broadcastable to the per-sample loss shape; masked
      samples leave the sum and the mean's denominator and get exactly-zero gradients.

  Returns:
    The loss in ``input``'s dtype (float32 compute for half precision): a scalar,
    or the per-sample loss for ``reduction='none'``. Class indices outside
    ``[0, C)`` and invalid traced temperatures or smoothing are reported under
    ``checkify`` and give ``nan`` without it.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> logits = jnp.array([[2.0, 0.5, -1.0], [0.0, 1.0, 0.0]])
    >>> loss = jaxloss.bi_tempered_logistic_loss(logits, jnp.array([0, 2]), t1=0.8, t2=1.2)
    >>> print(f"{float(loss):.4f}")
    0.6592

  References:
    - Amid, Warmuth, Anil & Koren, "Robust Bi-Tempered Logistic Loss Based on
      Bregman Divergences", NeurIPS 2019.
    - Google's reference code: github.com/google/bi-tempered-loss (``jax/loss.py``).
  """
  fn = "bi_tempered_logistic_loss"
  C.check_reduction(fn, reduction)
  ignore_index = C.static_int(fn, "ignore_index", ignore_index)
  axis = None if axis is None else C.static_int(fn, "axis", axis)
  num_iters = C.static_int(fn, "num_iters", num_iters)
  if num_iters < 1:
    raise ValueError(f"{fn}: `num_iters` must be positive, got {num_iters}.")
  t1, t2 = _hyper(fn, "t1", t1), _hyper(fn, "t2", t2)
  label_smoothing = _hyper(fn, "label_smoothing", label_smoothing)
  target = jnp.asarray(target)
  probabilities = bool(jnp.issubdtype(target.dtype, jnp.floating))
  if probabilities and target.shape != jnp.shape(input):
    raise ValueError(
        f"{fn}: a floating-point `target` holds class probabilities and must have the "
        f"shape of `input` {tuple(jnp.shape(input))}, got {tuple(target.shape)} (class "
        "indices must be integers).")
  return _bi_tempered_kernel(input, target, weight, where, t1, t2, label_smoothing, fn=fn,
                             ignore_index=ignore_index, reduction=reduction, axis=axis,
                             num_iters=num_iters, probabilities=probabilities)
