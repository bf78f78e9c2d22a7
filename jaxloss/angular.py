r"""Margin-softmax losses: CosFace, ArcFace, SphereFace, combined margin, L-Softmax.

All of them are a softmax cross-entropy in which only the **target** logit is
changed. With :math:`\cos\theta_j` the cosine between a feature and the weight
vector of class :math:`j` and :math:`s` the logit scale:

* CosFace (additive cosine margin): :math:`s\,(\cos\theta_y - m)`.
* ArcFace (additive angular margin): :math:`s\cos(\theta_y + m)`.
* SphereFace / A-Softmax (multiplicative angular margin):
  :math:`s\,\psi(\theta_y)`, :math:`\psi(\theta) = (-1)^k\cos(m\theta) - 2k` for
  :math:`\theta\in[k\pi/m, (k+1)\pi/m]` (the monotonic extension of
  :math:`\cos(m\theta)`).
* combined margin (insightface): :math:`s\,(\cos(m_1\theta_y + m_2) - m_3)`.
* L-Softmax: like SphereFace on **unnormalised** features and weights,
  :math:`\|W_y\|\|x\|\,\psi(\theta_y)`.

The other logits are :math:`s\cos\theta_j` (:math:`\|W_j\|\|x\|\cos\theta_j =
W_j^\top x` for L-Softmax). The modified logits then go through
:func:`jaxloss.cross_entropy`, so ``weight``, ``ignore_index``, ``reduction``,
``label_smoothing`` and ``where`` mean exactly what they mean there (torch's
``cross_entropy`` semantics).

Layouts. The cosine losses take the ``(N, C)`` cosine matrix (or ``(C,)`` with a
scalar target); :func:`cosine_logits` computes it from features ``(N, D)`` and a
weight matrix. Its default ``weight_layout='cd'`` is ``(C, D)``: torch's
``nn.Linear(D, C).weight`` and insightface's ``weight``. Pass
``weight_layout='dc'`` for ``(D, C)``: pytorch-metric-learning's ``loss.W`` and a
Flax ``nn.Dense(C).kernel``.

Edges. The cosines are clipped to :math:`[-1, 1]` where an angle is needed
(values beyond a rounding tolerance are reported under ``checkify``). Where a
derivative with respect to the cosine is infinite (:math:`d\theta/d\cos\theta`
at :math:`\cos\theta = \pm 1`), :math:`\sin\theta` in the denominator is floored
at :math:`\sqrt{\epsilon}` of the compute dtype (the smallest value it takes for
a representable cosine inside :math:`(-1, 1)`), so the gradient at exactly
:math:`\pm 1` is the (finite) one at the nearest representable cosine. Through
:func:`cosine_logits` the gradient with respect to the features there is exactly
``0`` anyway (a feature parallel to its class weight).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from jaxloss import _common as C
from jaxloss import classification as _classification

Array = C.Array
ArrayLike = C.ArrayLike

WEIGHT_LAYOUTS = ("cd", "dc")


# ----------------------------------------------------------------------------
# Validation and target handling (shared with focal.py and amlfs.py)
# ----------------------------------------------------------------------------


def _maybe_concrete(value: Any) -> float | None:
  """``float(value)`` if it is known at trace time, else ``None``."""
  try:
    return float(value)
  except (TypeError, jax.errors.ConcretizationTypeError):
    return None


def _check_cosine(fn: str, cosine: ArrayLike, name: str = "cosine") -> Array:
  cosine = C.as_float_array(fn, name, cosine)
  if cosine.ndim not in (1, 2):
    raise ValueError(
        f"{fn}: `{name}` must have shape (C,) or (N, C), got {tuple(cosine.shape)}.")
  if cosine.shape[-1] < 1:
    raise ValueError(f"{fn}: `{name}` must have at least one class, got {tuple(cosine.shape)}.")
  return cosine


def _cosine_tolerance(dtype) -> float:
  """How far beyond ``[-1, 1]`` a cosine may lie from rounding alone."""
  return max(1e-4, 4.0 * float(jnp.finfo(dtype).eps))


def _check_cosine_range(fn: str, name: str, cosine: Array, tol: float,
                        valid: Array | None = None) -> Array:
  """Checks the cosines (N, C) of the ``valid`` rows; returns the rows (N,) that fail."""
  ok = jnp.abs(cosine) <= 1.0 + tol
  if valid is not None:
    ok = ok | ~valid
  C.value_check(
      jnp.all(ok),
      f"{fn}: every element of `{name}` must be a cosine in [-1, 1] (up to rounding, "
      f"{tol:g}); found {{bad}}.",
      bad=jnp.where(jnp.any(~ok), cosine.ravel()[jnp.argmax(~ok.ravel())], 0),
  )
  return ~jnp.all(ok, axis=-1)


def _check_ignore_index(fn: str, ignore_index: Any) -> int:
  return C.static_int(fn, "ignore_index", ignore_index)


def _prepare_target(fn: str, target: ArrayLike, sample_shape: tuple[int, ...],
                    num_classes: int, ignore_index: int,
                    where: ArrayLike | None) -> tuple[Array, Array, Array]:
  """``(target, counted, index)``: see :func:`jaxloss._common.prepare_class_index`."""
  counted, index = C.prepare_class_index(fn, target, sample_shape, num_classes, ignore_index,
                                         where)
  return jnp.asarray(target), counted, index


def _batch_unbatched(fn: str, cosine: Array, target: ArrayLike, where: ArrayLike | None):
  """Adds a batch axis of 1 to an unbatched ``(C,)`` cosine, its scalar target and mask."""
  target = jnp.asarray(target)
  if cosine.ndim != 1:
    return cosine, target, where
  if target.ndim != 0:
    raise ValueError(
        f"{fn}: `target` must be a scalar class index for an unbatched `cosine` of shape "
        f"{tuple(cosine.shape)}, got shape {tuple(target.shape)}.")
  where = None if where is None else jnp.reshape(jnp.asarray(where), (1,))
  return cosine[None], target[None], where


def _broadcast_scale(fn: str, s: ArrayLike, shape: tuple[int, ...], dtype,
                     name: str = "s") -> Array:
  """``s`` (a float or an array) broadcast to the logits' ``shape``."""
  s = jnp.asarray(s)
  if not (jnp.issubdtype(s.dtype, jnp.floating) or jnp.issubdtype(s.dtype, jnp.integer)):
    raise ValueError(f"{fn}: `{name}` must be a real number or array, got dtype {s.dtype}.")
  try:
    return jnp.broadcast_to(C.upcast(s, dtype).astype(dtype), shape)
  except ValueError:
    raise ValueError(
        f"{fn}: `{name}` of shape {tuple(s.shape)} must be broadcastable to the "
        f"logits' shape {tuple(shape)} (a float, per-sample (N, 1), or (N, C))."
    ) from None


def _take(x: Array, index: Array) -> Array:
  """``x[n, index[n]]`` for ``x`` of shape ``(N, C)``; ``nan`` out of bounds."""
  return jnp.take_along_axis(x, index[:, None], axis=1, mode="fill")[:, 0]


# ----------------------------------------------------------------------------
# Numerics of the angular transforms
# ----------------------------------------------------------------------------


def _clip_unit(x: Array) -> Array:
  """Clips to ``[-1, 1]`` with derivative 1 at (and inside) the bounds, as torch's clamp."""
  one = jnp.ones((), x.dtype)
  return jnp.where(x > one, one, jnp.where(x < -one, -one, x))


def _sin_floor(dtype) -> float:
  return math.sqrt(float(jnp.finfo(dtype).eps))


@jax.custom_jvp
def _sin_from_cos(x: Array) -> Array:
  r"""``sqrt(1 - x**2)`` for ``x`` in ``[-1, 1]``, with a finite derivative at ``|x| = 1``.

  The derivative ``-x / sin`` uses ``max(sin, sqrt(eps))``: the value at the
  nearest representable cosine inside ``(-1, 1)``.
  """
  return jnp.sqrt(jnp.maximum(1.0 - x * x, 0.0))


@_sin_from_cos.defjvp
def _sin_from_cos_jvp(primals, tangents):
  (x,), (dx,) = primals, tangents
  sin = _sin_from_cos(x)
  return sin, -x / jnp.maximum(sin, _sin_floor(x.dtype)) * dx


def _chebyshev(x: Array, m: int) -> Array:
  """``T_m(x) = cos(m arccos x)`` by the three-term recurrence (exact derivative)."""
  if m == 0:
    return jnp.ones_like(x)
  prev, cur = jnp.ones_like(x), x
  for _ in range(m - 1):
    prev, cur = cur, 2.0 * x * cur - prev
  return cur


def _num_branches(m1: float, m2: float) -> int:
  """Number of monotone pieces ``k = 0 .. K-1`` of ``phi = m1 theta + m2``, theta in [0, pi]."""
  return max(1, math.ceil((m1 * math.pi + m2) / math.pi - 1e-12))


def _branch(theta: Array, m1: float, m2: float) -> Array:
  """``k = floor((m1 theta + m2) / pi)`` clipped to ``[0, K-1]`` (so theta = pi is in the last piece)."""
  kmax = _num_branches(m1, m2) - 1
  k = jnp.floor((m1 * lax.stop_gradient(theta) + m2) / jnp.pi)
  return jnp.clip(k, 0, kmax)


def _angle(x: Array) -> Array:
  """``arccos(x)`` for ``x`` in ``[-1, 1]`` (no gradient needed: used for branches only)."""
  return jnp.arccos(lax.stop_gradient(x))


def _psi_integer(x: Array, m: int) -> Array:
  r"""SphereFace's :math:`(-1)^k T_m(x) - 2k` for an integer ``m``; ``x`` in ``[-1, 1]``."""
  k = _branch(_angle(x), float(m), 0.0)
  sign = 1.0 - 2.0 * jnp.mod(k, 2.0)
  return sign * _chebyshev(x, m) - 2.0 * k


def _psi_general_impl(x: Array, m1: float, m2: float) -> Array:
  r""":math:`(-1)^k\cos(m_1\arccos x + m_2) - 2k` for real ``m1 > 0``, ``m2 >= 0``.

  Continuous and decreasing in the angle. Its derivative
  :math:`(-1)^k m_1 \sin\phi / \sin\theta` (custom JVP below) is evaluated with
  :math:`\sin(m_1\theta)/\sin\theta = m_1\,\mathrm{sinc}(m_1\theta)/\mathrm{sinc}(\theta)`
  for :math:`\theta \le \pi/2` (finite, :math:`m_1^2` at :math:`x = 1` when
  ``m2 = 0``) and :math:`\sin\theta` floored at :math:`\sqrt{\epsilon}` elsewhere.
  """
  theta = _angle(x)
  k = _branch(theta, m1, m2)
  sign = 1.0 - 2.0 * jnp.mod(k, 2.0)
  return sign * jnp.cos(m1 * theta + m2) - 2.0 * k


def _psi_general_derivative(x: Array, m1: float, m2: float) -> Array:
  theta = _angle(x)
  k = _branch(theta, m1, m2)
  sign = 1.0 - 2.0 * jnp.mod(k, 2.0)
  sin_t = jnp.maximum(_sin_from_cos(lax.stop_gradient(x)), _sin_floor(x.dtype))
  small = theta <= 0.5 * jnp.pi
  safe_theta = jnp.where(small, theta, 0.0)
  # sin(m1 t) / sin(t) as a ratio of sincs near 0 (jnp.sinc(u) is sin(pi u) / (pi u)).
  ratio_small = m1 * jnp.sinc(m1 * safe_theta / jnp.pi) / jnp.sinc(safe_theta / jnp.pi)
  ratio = jnp.where(small, ratio_small, jnp.sin(m1 * theta) / sin_t)
  # d/dx cos(m1 t + m2) = m1 sin(m1 t + m2) / sin(t), expanded with the ratios above.
  d = m1 * (math.cos(m2) * ratio + math.sin(m2) * jnp.cos(m1 * theta) / sin_t)
  return sign * d


_psi_general = jax.custom_jvp(_psi_general_impl, nondiff_argnums=(1, 2))


@_psi_general.defjvp
def _psi_general_jvp(m1, m2, primals, tangents):
  (x,), (dx,) = primals, tangents
  return _psi_general_impl(x, m1, m2), _psi_general_derivative(x, m1, m2) * dx


def _is_integer(value: float) -> bool:
  return float(value).is_integer()


def _psi(x: Array, m1: float, m2: float = 0.0) -> Array:
  """The monotone extension of ``cos(m1 arccos x + m2)``; ``x`` already in ``[-1, 1]``."""
  if m2 == 0.0 and _is_integer(m1):
    return _psi_integer(x, int(m1))
  return _psi_general(x, float(m1), float(m2))


# ----------------------------------------------------------------------------
# Cosine logits
# ----------------------------------------------------------------------------


def _safe_norm(x: Array, axis: int) -> Array:
  """``|x|`` along ``axis`` (keepdims) with a zero (not ``nan``) gradient at ``x = 0``."""
  sq = jnp.sum(x * x, axis=axis, keepdims=True)
  pos = sq > 0
  return jnp.where(pos, jnp.sqrt(jnp.where(pos, sq, 1.0)), 0.0)


def _weight_cd(fn: str, weight: Array, weight_layout: str, dim: int) -> Array:
  if weight_layout not in WEIGHT_LAYOUTS:
    raise ValueError(
        f"{fn}: `weight_layout` must be one of {WEIGHT_LAYOUTS}, got {weight_layout!r}.")
  if weight.ndim != 2:
    raise ValueError(
        f"{fn}: the weight matrix must be 2-D ({'(C, D)' if weight_layout == 'cd' else '(D, C)'}"
        f"), got shape {tuple(weight.shape)}.")
  w = weight if weight_layout == "cd" else weight.T
  if w.shape[1] != dim:
    expected = "(C, D)" if weight_layout == "cd" else "(D, C)"
    raise ValueError(
        f"{fn}: the weight matrix must have layout {expected} with D = {dim} "
        f"(weight_layout={weight_layout!r}), got shape {tuple(weight.shape)}.")
  return w


def _cosine_parts(x: Array, w: Array, eps: float) -> tuple[Array, Array, Array]:
  """``(cos (N, C), |x| (N, 1), |W| (1, C))`` for ``x`` (N, D) and ``w`` (C, D)."""
  x_norm = _safe_norm(x, 1)                       # (N, 1)
  w_norm = _safe_norm(w, 1)                       # (C, 1)
  # torch.nn.functional.normalize: x / max(|x|, eps).
  x_hat = x / jnp.maximum(x_norm, eps)
  w_hat = w / jnp.maximum(w_norm, eps)
  cos = jnp.matmul(x_hat, w_hat.T, precision=lax.Precision.HIGHEST)
  return cos, x_norm, w_norm.T


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _cosine_parts_dead_rows_free(x: Array, w: Array, eps: float):
  """:func:`_cosine_parts` whose rows with an all-zero cotangent are inert in the backward pass.

  A row of features whose cosines and norm get an exactly-zero cotangent (a
  sample that a loss masks with ``where`` or ignores with ``ignore_index``)
  gets an exactly-zero gradient and adds exactly nothing to the weight's
  gradient, even if it holds ``inf`` or ``nan`` (plain autodiff gives
  ``0 * nan = nan`` in the matmul's transpose, which poisons the whole weight
  gradient). With finite features this is exactly autodiff's result: each row's
  cosines depend on that row alone, so the backward pass is autodiff's at the
  inputs with the inert rows replaced by zeros.
  """
  return _cosine_parts(x, w, eps)


def _cosine_parts_fwd(x, w, eps):
  return _cosine_parts(x, w, eps), (x, w)


def _cosine_parts_bwd(eps, residuals, cotangents):
  x, w = residuals
  ct_cos, ct_x_norm, _ = cotangents
  live = jnp.any(ct_cos != 0, axis=1, keepdims=True) | (ct_x_norm != 0)  # (N, 1)
  x = jnp.where(live, x, jnp.zeros((), x.dtype))
  _, vjp = jax.vjp(lambda a, b: _cosine_parts(a, b, eps), x, w)
  return vjp(cotangents)


_cosine_parts_dead_rows_free.defvjp(_cosine_parts_fwd, _cosine_parts_bwd)


def _normalized_cosines(fn, features, weight, weight_layout, eps, row_mask=None,
                        inert_rows=False):
  """Returns ``(cos, |x|, |W|, dtype)`` in the compute dtype; ``cos`` is ``(N, C)``.

  ``row_mask`` (N,): rows where it is ``False`` are replaced by zeros before they
  meet the weight (the double-where trick: their gradients, and their
  contribution to the weight's, are exactly zero). ``inert_rows``: use
  :func:`_cosine_parts_dead_rows_free` (reverse mode only).
  """
  features = C.as_float_array(fn, "features", features)
  weight = C.as_float_array(fn, "weight", weight)
  C.check_ndim(fn, "features", features, (1, 2))
  w = _weight_cd(fn, weight, weight_layout, features.shape[-1])
  dtype = C.compute_dtype(features, weight)
  x = C.upcast(features, dtype)
  w = C.upcast(w, dtype)
  x2 = x[None] if x.ndim == 1 else x
  if row_mask is not None:
    (x2,) = C.mask_inputs(row_mask[:, None], 0, x2)
  parts = _cosine_parts_dead_rows_free if inert_rows else _cosine_parts
  cos, x_norm, w_norm = parts(x2, w, eps)
  return cos, x_norm, w_norm, dtype


def cosine_logits(features: ArrayLike, weight: ArrayLike, *, weight_layout: str = "cd",
                  eps: float = 1e-12, return_norms: bool = False):
  r"""Cosines between L2-normalised features and L2-normalised class weights.

  .. math:: \cos\theta_{nj} = \frac{x_n}{\max(\|x_n\|, \epsilon)} \cdot
            \frac{W_j}{\max(\|W_j\|, \epsilon)}

  (``torch.nn.functional.normalize`` on both, as insightface and
  pytorch-metric-learning's ``CosineSimilarity`` do).

  Args:
    features: ``(N, D)`` (or ``(D,)``) features.
    weight: the class weight matrix, ``(C, D)`` with ``weight_layout='cd'``
      (torch ``nn.Linear(D, C).weight``, insightface) or ``(D, C)`` with
      ``weight_layout='dc'`` (pytorch-metric-learning's ``W``, Flax
      ``nn.Dense(C).kernel``).
    weight_layout: ``'cd'`` or ``'dc'``, see ``weight``.
    eps: the norm clamp of ``torch.nn.functional.normalize``.
    return_norms: also return the feature norms ``(N, 1)`` and the class weight
      norms ``(1, C)`` (e.g. ``s=`` the feature norms for :func:`sphereface`,
      or ``scale=`` their product for :func:`jaxloss.amlfs_loss`).

  Returns:
    ``(N, C)`` cosines (``(C,)`` for ``(D,)`` features) in the input dtype;
    with ``return_norms``, ``(cosine, feature_norms, weight_norms)``.

  Masked rows. A row whose cosines and feature norm receive an exactly-zero
  cotangent, as every loss here gives the samples it masks (``where``) or
  ignores (``ignore_index``), gets an exactly-zero feature gradient and adds
  nothing to the weight's gradient, even when its features are ``inf`` or
  ``nan`` (plain autodiff would make the whole weight gradient ``nan``). This
  uses a ``jax.custom_vjp``: reverse-mode only (``jax.grad``, ``jax.vjp``); for
  forward mode compute the cosines yourself. A product you form from the
  returned norms (e.g. ``feature_norms * weight_norms`` as ``scale=``) is
  differentiated as usual: a ``nan`` feature norm there reaches the weight
  norms' gradient (``0 * nan``); zero such rows' features first.
  """
  fn = "cosine_logits"
  cos, x_norm, w_norm, _ = _normalized_cosines(fn, features, weight, weight_layout, eps,
                                               inert_rows=True)
  out_dtype = C.output_dtype(jnp.asarray(features), jnp.asarray(weight))
  unbatched = jnp.ndim(features) == 1
  if unbatched:
    cos, x_norm = cos[0], x_norm[0]
  cos = cos.astype(out_dtype)
  if return_norms:
    return cos, x_norm.astype(out_dtype), w_norm.astype(out_dtype)
  return cos


# ----------------------------------------------------------------------------
# The shared driver: modify the target logit, then cross-entropy
# ----------------------------------------------------------------------------


def _margin_loss(fn: str, cosine: ArrayLike, target: ArrayLike, s: ArrayLike, transform,
                 weight, ignore_index, reduction, label_smoothing, where,
                 check_range: bool = True, extra_dtypes: tuple = ()) -> Array:
  """``cross_entropy(s * cos with s_y * transform(cos_y) at the target, target)``.

  ``transform(cos_y)`` receives the target cosines of shape ``(N,)`` in the
  compute dtype (masked rows hold ``0``) and returns the new unscaled target
  logits.
  """
  C.check_reduction(fn, reduction)
  ignore_index = _check_ignore_index(fn, ignore_index)
  eps = _classification._check_label_smoothing(fn, label_smoothing)
  cosine = _check_cosine(fn, cosine)
  if weight is not None:
    weight = C.as_float_array(fn, "weight", weight)
    C.check_shape(fn, "weight", weight, (cosine.shape[-1],), "one weight per class")
  unbatched = cosine.ndim == 1
  cosine, target, where = _batch_unbatched(fn, cosine, target, where)
  n, num_classes = cosine.shape
  out_dtype = C.output_dtype(cosine)
  dtype = C.compute_dtype(cosine, *extra_dtypes)
  target, counted, index = _prepare_target(fn, target, (n,), num_classes, ignore_index, where)
  scale = _broadcast_scale(fn, s, (n, num_classes), dtype)
  bad = None
  if check_range:
    bad = _check_cosine_range(fn, "cosine", cosine, _cosine_tolerance(cosine.dtype),
                              counted[:, None])
  # Rows that are not counted become 0 so no inf/nan there reaches any gradient.
  cos = jnp.where(counted[:, None], C.upcast(cosine, dtype), jnp.zeros((), dtype))
  scale = jnp.where(counted[:, None], scale, jnp.zeros((), dtype))
  is_target = jnp.arange(num_classes)[None, :] == index[:, None]
  new_target = transform(_take(cos, index)) * _take(scale, index)
  logits = jnp.where(is_target, new_target[:, None], scale * cos)
  if bad is not None:
    # Not a cosine: the row's logits are nan, so its loss, any reduction over it
    # and the gradients are nan (cross_entropy poisons the out-of-range targets).
    logits = C.nan_where(bad[:, None], logits)
  loss = _classification.cross_entropy(
      logits, target, weight=weight, ignore_index=ignore_index, reduction=reduction,
      label_smoothing=label_smoothing, where=where)
  if bad is not None and reduction != "none":
    loss = C.nan_where(jnp.any(bad), loss)
  if unbatched and reduction == "none":
    loss = loss[0]
  return loss.astype(out_dtype)


# ----------------------------------------------------------------------------
# Public losses
# ----------------------------------------------------------------------------


def cosface(cosine: ArrayLike, target: ArrayLike, s: ArrayLike = 64.0, m: ArrayLike = 0.35,
            weight: ArrayLike | None = None, ignore_index: int = -100,
            reduction: str = "mean", label_smoothing: float = 0.0, *,
            where: ArrayLike | None = None) -> Array:
  r"""CosFace / AM-Softmax: additive cosine margin.

  .. math:: z_y = s\,(\cos\theta_y - m), \qquad z_j = s\cos\theta_j \; (j \ne y),
            \qquad \ell = \mathrm{cross\_entropy}(z, y)

  Defaults are the CosFace paper's (Wang et al., CVPR 2018: :math:`s = 64`,
  :math:`m = 0.35`), also pytorch-metric-learning's ``CosFaceLoss``
  (insightface's ``arcface_torch`` CosFace config uses ``m = 0.4``).

  Args:
    cosine: ``(N, C)`` cosine logits in :math:`[-1, 1]` (:func:`cosine_logits`),
      or ``(C,)`` with a scalar ``target``.
    target: ``(N,)`` integer class indices.
    s: the logit scale, a float or an array broadcastable to ``(N, C)``.
    m: the cosine margin (negative values are allowed).
    weight, ignore_index, reduction, label_smoothing, where: as in
      :func:`jaxloss.cross_entropy` (applied to the modified logits).

  Returns:
    The loss in ``cosine``'s dtype (float32 compute for half precision).
  """
  def transform(c):
    return c - jnp.asarray(m, c.dtype)
  return _margin_loss("cosface", cosine, target, s, transform, weight, ignore_index,
                      reduction, label_smoothing, where)


def arcface(cosine: ArrayLike, target: ArrayLike, s: ArrayLike = 64.0, m: ArrayLike = 0.5,
            weight: ArrayLike | None = None, ignore_index: int = -100,
            reduction: str = "mean", label_smoothing: float = 0.0, *,
            easy_margin: bool = False, where: ArrayLike | None = None) -> Array:
  r"""ArcFace: additive angular margin, with insightface's guard.

  .. math::
     z_y = s\,\begin{cases}\cos(\theta_y + m) & \theta_y + m < \pi
           \;(\cos\theta_y > \cos(\pi - m)) \\
           \cos\theta_y - m\sin m & \text{otherwise}\end{cases}

  and :math:`z_j = s\cos\theta_j`. The fallback (insightface's ``th``/``mm``:
  ``th = cos(pi - m)``, ``mm = sin(pi - m) * m``) keeps the target logit
  decreasing in the angle where :math:`\cos(\theta + m)` would turn back up.
  With ``easy_margin=True`` the margin is applied only where
  :math:`\cos\theta_y > 0` (``z_y = s cos`` elsewhere). :math:`\cos(\theta+m)` is
  computed as :math:`\cos\theta\cos m - \sin\theta\sin m`, the authors' form.
  Defaults are insightface's (Deng et al., CVPR 2019: :math:`s = 64`,
  :math:`m = 0.5` radians).

  pytorch-metric-learning's ``ArcFaceLoss(margin=28.6, scale=64)`` takes the
  margin in **degrees** (``28.6`` degrees :math:`\approx 0.4992` rad; pass
  ``m=numpy.radians(28.6)`` to match it) and switches to the fallback at
  :math:`\theta > \pi - m` instead of :math:`\theta \ge \pi - m` (a
  measure-zero difference).

  Args:
    m: the angular margin in radians, ``0 <= m < pi``.
    easy_margin: apply the margin only to positive cosines.
    (others as for :func:`cosface`)
  """
  fn = "arcface"
  mv = _maybe_concrete(m)
  if mv is not None and not 0.0 <= mv < math.pi:
    raise ValueError(f"{fn}: `m` must lie in [0, pi) radians, got {mv}.")

  def transform(c):
    mm_ = jnp.asarray(m, c.dtype)
    x = _clip_unit(c)
    cos_m, sin_m = jnp.cos(mm_), jnp.sin(mm_)
    phi = x * cos_m - _sin_from_cos(x) * sin_m
    if easy_margin:
      return jnp.where(x > 0, phi, c)
    th = jnp.cos(jnp.pi - mm_)
    mm = jnp.sin(jnp.pi - mm_) * mm_
    return jnp.where(x > th, phi, c - mm)
  return _margin_loss(fn, cosine, target, s, transform, weight, ignore_index, reduction,
                      label_smoothing, where)


def sphereface(cosine: ArrayLike, target: ArrayLike, s: ArrayLike, m: int = 4,
               weight: ArrayLike | None = None, ignore_index: int = -100,
               reduction: str = "mean", label_smoothing: float = 0.0, *,
               lambda_: ArrayLike = 0.0, where: ArrayLike | None = None) -> Array:
  r"""SphereFace / A-Softmax: multiplicative angular margin on normalised weights.

  .. math::
     z_y = s\,\frac{\lambda\cos\theta_y + \psi(\theta_y)}{1 + \lambda}, \qquad
     \psi(\theta) = (-1)^k\cos(m\theta) - 2k,\;
     \theta\in\left[\tfrac{k\pi}{m}, \tfrac{(k+1)\pi}{m}\right]

  and :math:`z_j = s\cos\theta_j`. :math:`\cos(m\theta)` is the Chebyshev
  polynomial :math:`T_m(\cos\theta)` (as the authors' Caffe layer and
  pytorch-metric-learning compute it), so the gradient is exact and finite at
  :math:`\cos\theta = \pm 1`; :math:`\theta = \pi` belongs to the last piece
  :math:`k = m - 1` (pytorch-metric-learning uses :math:`k = m` there: same
  value, opposite-signed gradient at exactly :math:`\cos\theta = -1`).

  The authors (Liu et al., CVPR 2017; ``wy1iu/sphereface``) normalise the class
  weights but not the features: their logits are :math:`\|x\|\cos\theta`, so
  pass ``s=`` the feature norms ``(N, 1)`` (``cosine_logits(...,
  return_norms=True)``), as pytorch-metric-learning's ``SphereFaceLoss`` does
  (its ``scale=1`` multiplies them). A fixed ``s`` (e.g. 30-64) suits
  normalised features. ``s`` is required on purpose. The gradient is the true
  gradient of this loss; the authors' Caffe backward pass rescales it (their
  README: "we normalize the scale of gradient"), which is not mirrored.

  Args:
    s: the logit scale, a float or an array broadcastable to ``(N, C)``.
    m: the integer margin (authors' default 4).
    lambda_: the annealing weight :math:`\lambda \ge 0` (``0``: pure A-Softmax);
      may be traced. The authors anneal it with :func:`margin_lambda`.
    (others as for :func:`cosface`)
  """
  fn = "sphereface"
  m = C.static_int(fn, "m", m)
  if m < 1:
    raise ValueError(f"{fn}: `m` must be a positive integer, got {m}.")
  return _multiplicative(fn, cosine, target, s, m, lambda_, weight, ignore_index,
                         reduction, label_smoothing, where)


def _multiplicative(fn, cosine, target, s, m, lambda_, weight, ignore_index, reduction,
                    label_smoothing, where, check_range=True):
  lv = _maybe_concrete(lambda_)
  if lv is not None and not lv >= 0:
    raise ValueError(f"{fn}: `lambda_` must be non-negative, got {lv}.")

  def transform(c):
    psi = _psi(_clip_unit(c), m)
    if lv == 0.0:
      return psi
    lam = jnp.asarray(lambda_, c.dtype)
    return (lam * c + psi) / (1.0 + lam)
  return _margin_loss(fn, cosine, target, s, transform, weight, ignore_index, reduction,
                      label_smoothing, where, check_range=check_range)


def combined_margin(cosine: ArrayLike, target: ArrayLike, s: ArrayLike = 64.0,
                    m1: float = 1.0, m2: float = 0.3, m3: float = 0.2,
                    weight: ArrayLike | None = None, ignore_index: int = -100,
                    reduction: str = "mean", label_smoothing: float = 0.0, *,
                    where: ArrayLike | None = None) -> Array:
  r"""insightface's combined margin: :math:`z_y = s\,(\psi(\theta_y) - m_3)`.

  .. math:: \psi(\theta) = (-1)^k\cos(m_1\theta + m_2) - 2k, \qquad
            k = \left\lfloor (m_1\theta + m_2)/\pi \right\rfloor

  (:math:`k` clipped so that :math:`\theta = \pi` is in the last piece), and
  :math:`z_j = s\cos\theta_j`. For :math:`m_1\theta + m_2 \le \pi` this is
  insightface's :math:`\cos(m_1\theta + m_2) - m_3`; beyond it the monotonic
  extension of SphereFace keeps :math:`z_y` continuous and decreasing in the angle
  (insightface's MXNet code has no guard there). Special cases:
  ``(m1, 0, 0)`` with integer ``m1`` is :func:`sphereface`, ``(1, 0, m)`` is
  :func:`cosface`, ``(1, m, 0)`` is :func:`arcface` where
  :math:`\theta + m \le \pi` (arcface's own guard, :math:`\cos\theta - m\sin m`,
  is insightface's and jumps at :math:`\theta = \pi - m`).
  Defaults are insightface's combined-margin example ``(1.0, 0.3, 0.2)``, ``s=64``.

  Args:
    m1: the multiplicative angular margin, a static float ``> 0``.
    m2: the additive angular margin (radians), a static float ``>= 0``.
    m3: the additive cosine margin (may be traced).
    (others as for :func:`cosface`)
  """
  fn = "combined_margin"
  m1 = C.static_float(fn, "m1", m1)
  m2 = C.static_float(fn, "m2", m2)
  if not m1 > 0:
    raise ValueError(f"{fn}: `m1` must be positive, got {m1}.")
  if not m2 >= 0:
    raise ValueError(f"{fn}: `m2` must be non-negative, got {m2}.")

  def transform(c):
    return _psi(_clip_unit(c), m1, m2) - jnp.asarray(m3, c.dtype)
  return _margin_loss(fn, cosine, target, s, transform, weight, ignore_index, reduction,
                      label_smoothing, where)


def large_margin_softmax(features: ArrayLike, weight_matrix: ArrayLike, target: ArrayLike,
                         m: int = 2, s: ArrayLike = 1.0, weight: ArrayLike | None = None,
                         ignore_index: int = -100, reduction: str = "mean",
                         label_smoothing: float = 0.0, *, weight_layout: str = "cd",
                         lambda_: ArrayLike = 0.0, eps: float = 1e-12,
                         where: ArrayLike | None = None) -> Array:
  r"""L-Softmax (Liu et al., ICML 2016) on unnormalised features and weights.

  .. math::
     z_y = s\,\|W_y\|\|x\|\,\frac{\lambda\cos\theta_y + \psi(\theta_y)}{1 + \lambda},
     \qquad z_j = s\,W_j^\top x\;(j \ne y)

  with SphereFace's :math:`\psi` (see :func:`sphereface`); :math:`m = 1` and
  ``lambda_=0`` is plain softmax cross-entropy of the bias-free linear layer.
  The default ``m=2`` and the annealing ``margin_lambda(step, base=1000,
  gamma=2e-5, power=45, lambda_min=0)`` are the authors' released CIFAR-10
  configuration (``wy1iu/LargeMargin_Softmax_Loss``; their MNIST example uses
  ``m=4``, as pytorch-metric-learning's ``LargeMarginSoftmaxLoss`` default).

  Args:
    features: ``(N, D)`` features (or ``(D,)`` with a scalar target).
    weight_matrix: the class weights, ``(C, D)`` for ``weight_layout='cd'``,
      ``(D, C)`` for ``'dc'`` (see :func:`cosine_logits`).
    target: ``(N,)`` integer class indices.
    m: the integer margin.
    s: an extra logit scale (pytorch-metric-learning's ``scale``, default 1).
    weight: optional class weights ``(C,)`` of the cross-entropy (not the
      weight matrix).
    weight_layout: ``'cd'`` or ``'dc'``.
    lambda_: the annealing weight :math:`\lambda \ge 0`; may be traced.
    eps: the norm clamp used for the cosine.
    (others as for :func:`jaxloss.cross_entropy`)
  """
  fn = "large_margin_softmax"
  m = C.static_int(fn, "m", m)
  if m < 1:
    raise ValueError(f"{fn}: `m` must be a positive integer, got {m}.")
  features = C.as_float_array(fn, "features", features)
  weight_matrix = C.as_float_array(fn, "weight_matrix", weight_matrix)
  C.check_ndim(fn, "features", features, (1, 2))
  # The samples that count, known before the features meet the shared weight
  # matrix: the others are zeroed there, so that inf/nan features of a masked or
  # ignored sample cannot reach the weight matrix's gradient (0 * nan).
  ignore_index = _check_ignore_index(fn, ignore_index)
  n = 1 if features.ndim == 1 else features.shape[0]
  _, target_b, where_b = _batch_unbatched(fn, features, target, where)
  num_classes = _weight_cd(fn, weight_matrix, weight_layout, features.shape[-1]).shape[0]
  counted, _ = C.prepare_class_index(fn, target_b, (n,), num_classes, ignore_index, where_b)
  cos, x_norm, w_norm, dtype = _normalized_cosines(fn, features, weight_matrix,
                                                   weight_layout, eps, row_mask=counted)
  if features.ndim == 1:
    cos, x_norm = cos[0], x_norm[0]
  # s * |W_j| |x| cos is the logit; the margin loss multiplies the cosines by it.
  norms = x_norm * (w_norm if features.ndim == 2 else w_norm[0])
  scale = _broadcast_scale(fn, s, cos.shape, dtype) * norms
  out_dtype = C.output_dtype(features, weight_matrix)
  loss = _multiplicative(fn, cos, target, scale, m, lambda_, weight, ignore_index,
                         reduction, label_smoothing, where, check_range=False)
  return loss.astype(out_dtype)


def margin_lambda(step: ArrayLike, base: float = 1000.0, gamma: float = 0.12,
                  power: float = 1.0, lambda_min: float = 5.0) -> Array:
  r"""The annealing weight of SphereFace / L-Softmax at training step ``step``.

  .. math:: \lambda = \max\left(\text{base}\,(1 + \gamma\,\text{step})^{-\text{power}},
            \lambda_{\min}\right)

  The defaults are SphereFace's (``wy1iu/sphereface``: base 1000, gamma 0.12,
  power 1, lambda_min 5); the L-Softmax CIFAR-10 configuration is
  ``base=1000, gamma=2e-5, power=45, lambda_min=0``. The authors' Caffe layers
  increment their counter *before* computing :math:`\lambda`, so their ``k``-th
  forward pass (``k = 1, 2, ...``, from ``iteration: 0``) uses ``step=k``.
  ``step`` may be traced (pass the optimiser's step counter inside ``jit``).

  Returns:
    :math:`\lambda` as a float32 (or float64 under x64, for a float64 ``step``)
    scalar, to pass as ``lambda_=`` to :func:`sphereface` or
    :func:`large_margin_softmax`.
  """
  step = jnp.asarray(step)
  dtype = step.dtype if jnp.issubdtype(step.dtype, jnp.floating) else jnp.float32
  step = step.astype(dtype)
  lam = base * jnp.power(1.0 + gamma * step, -power)
  return jnp.maximum(lam, jnp.asarray(lambda_min, dtype)).astype(dtype)
