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

The logit scale :math:`s` is the argument ``scale`` of every loss here (and of
:func:`jaxloss.amlfs_loss`); ``s=`` is its deprecated name (a warning).
Passing both raises ``ValueError``.

Invalid input gives ``nan``. A class index outside ``[0, C)`` (not
``ignore_index``) or a cosine beyond ``[-1, 1]`` (past a rounding tolerance) is
reported under ``checkify``; without it the sample's loss, any reduction over it
and the gradients are ``nan``. Masked or ignored samples never reach a shared
weight's gradient, whatever their values: :func:`cosine_logits` and
:func:`large_margin_softmax` keep their rows out of it.

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
from jaxloss import _cosine
from jaxloss.classification import cross_entropy

Array = C.Array
ArrayLike = C.ArrayLike

WEIGHT_LAYOUTS = ("cd", "dc")


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
  """``k = floor((m1 theta + m2) / pi)`` clipped to ``[0, K-1]`` (theta = pi: the last piece)."""
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


def _weight_cd(fn: str, weight: Array, weight_layout: str, dim: int,
               name: str = "weight") -> Array:
  """The weight matrix as ``(C, D)``; errors name the argument ``name``."""
  if weight_layout not in WEIGHT_LAYOUTS:
    raise ValueError(
        f"{fn}: `weight_layout` must be one of {WEIGHT_LAYOUTS}, got {weight_layout!r}.")
  if weight.ndim != 2:
    raise ValueError(
        f"{fn}: `{name}` (the weight matrix) must be 2-D "
        f"({'(C, D)' if weight_layout == 'cd' else '(D, C)'}), got shape "
        f"{tuple(weight.shape)}.")
  w = weight if weight_layout == "cd" else weight.T
  if w.shape[1] != dim:
    expected = "(C, D)" if weight_layout == "cd" else "(D, C)"
    raise ValueError(
        f"{fn}: `{name}` (the weight matrix) must have layout {expected} with D = {dim}, "
        f"the last axis of `features` (weight_layout={weight_layout!r}), got shape "
        f"{tuple(weight.shape)}.")
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
                        inert_rows=False, weight_name="weight"):
  """Returns ``(cos, |x|, |W|, dtype)`` in the compute dtype; ``cos`` is ``(N, C)``.

  ``row_mask`` (N,): rows where it is ``False`` are replaced by zeros before they
  meet the weight (the double-where trick: their gradients, and their
  contribution to the weight's, are exactly zero). ``inert_rows``: use
  :func:`_cosine_parts_dead_rows_free` (reverse mode only).
  """
  features = C.as_float_array(fn, "features", features)
  weight = C.as_float_array(fn, weight_name, weight)
  C.check_ndim(fn, "features", features, (1, 2))
  w = _weight_cd(fn, weight, weight_layout, features.shape[-1], weight_name)
  dtype = C.compute_dtype(features, weight)
  x = C.upcast(features, dtype)
  w = C.upcast(w, dtype)
  x2 = x[None] if x.ndim == 1 else x
  if row_mask is not None:
    (x2,) = C.mask_inputs(row_mask[:, None], 0, x2)
  if inert_rows:
    x2, w = _same_varying_axes(x2, w)
  parts = _cosine_parts_dead_rows_free if inert_rows else _cosine_parts
  cos, x_norm, w_norm = parts(x2, w, eps)
  return cos, x_norm, w_norm, dtype


def _same_varying_axes(x: Array, w: Array) -> tuple[Array, Array]:
  """Under ``shard_map``, gives ``x`` and ``w`` the same varying mesh axes.

  A replicated batch of features meeting per-copy weights (or the reverse) would otherwise
  make the custom VJP's cotangents vary where its primal inputs do not, which JAX rejects.
  Marking the replicated input as varying is what autodiff does implicitly; its gradient is
  then summed over those axes, as for any replicated input of ``shard_map``. A no-op outside
  ``shard_map`` and on JAX releases without varying-axes types.
  """
  typeof = getattr(jax, "typeof", None)
  if typeof is None:
    return x, w
  x_axes, w_axes = _varying_axes(typeof(x)), _varying_axes(typeof(w))
  if x_axes == w_axes:
    return x, w
  return _mark_varying(x, w_axes - x_axes), _mark_varying(w, x_axes - w_axes)


def _varying_axes(aval) -> frozenset:
  # jax >= 0.10: aval.manual_axis_type.varying; jax 0.6-0.9: aval.vma.
  manual = getattr(aval, "manual_axis_type", None)
  if manual is not None:
    return frozenset(getattr(manual, "varying", ()) or ())
  return frozenset(getattr(aval, "vma", ()) or ())


def _mark_varying(a: Array, axes: frozenset) -> Array:
  if not axes:
    return a
  names = tuple(sorted(axes))
  pcast = getattr(lax, "pcast", None)
  if pcast is not None:
    return pcast(a, names, to="varying")
  return lax.pvary(a, names)  # jax < 0.8


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
      norms ``(1, C)`` (e.g. ``scale=`` the feature norms for :func:`sphereface`,
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

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> features = jnp.array([[3.0, 4.0], [1.0, 0.0]])
    >>> weight = jnp.array([[1.0, 0.0], [0.0, 2.0], [-1.0, 0.0]])  # (C, D): 3 classes
    >>> cos = jaxloss.cosine_logits(features, weight)
    >>> print(cos.shape, [round(float(c), 2) for c in cos[0]])
    (2, 3) [0.6, 0.8, -0.6]

  References:
    - Wang et al., "NormFace: L2 Hypersphere Embedding for Face Verification", ACM MM
      2017.
  """
  fn = "cosine_logits"
  if weight_layout not in WEIGHT_LAYOUTS:
    raise ValueError(
        f"{fn}: `weight_layout` must be one of {WEIGHT_LAYOUTS}, got {weight_layout!r}.")
  return _cosine_logits_kernel(features, weight, eps=C.static_float(fn, "eps", eps),
                               weight_layout=weight_layout, return_norms=bool(return_norms))


@functools.partial(jax.jit, static_argnames=("eps", "weight_layout", "return_norms"))
def _cosine_logits_kernel(features, weight, *, eps, weight_layout, return_norms):
  fn = "cosine_logits"
  cos, x_norm, w_norm, _ = _normalized_cosines(fn, features, weight, weight_layout, eps,
                                               inert_rows=True)
  out_dtype = C.output_dtype(features, weight)
  if features.ndim == 1:
    cos, x_norm = cos[0], x_norm[0]
  cos = cos.astype(out_dtype)
  if return_norms:
    return cos, x_norm.astype(out_dtype), w_norm.astype(out_dtype)
  return cos


# ----------------------------------------------------------------------------
# The shared driver: modify the target logit, then cross-entropy
# ----------------------------------------------------------------------------


def _transform(kind: tuple, c: Array, params: tuple) -> Array:
  """The new (unscaled) target logit from the target cosines ``c`` (N,).

  ``kind`` is static: ``('cosface',)``, ``('arcface', easy_margin)``,
  ``('psi', m, lambda_is_zero)`` (SphereFace, L-Softmax) or
  ``('combined', m1, m2)``; ``params`` holds the traceable margins: ``(m,)``,
  ``(m,)``, ``(lambda_,)`` and ``(m3,)``.
  """
  (p,) = params
  p = jnp.asarray(p, c.dtype)
  if kind[0] == "cosface":
    return c - p
  if kind[0] == "arcface":
    x = _clip_unit(c)
    phi = x * jnp.cos(p) - _sin_from_cos(x) * jnp.sin(p)
    if kind[1]:  # easy_margin
      return jnp.where(x > 0, phi, c)
    # insightface's th = cos(pi - m) and mm = sin(pi - m) * m.
    return jnp.where(x > jnp.cos(jnp.pi - p), phi, c - jnp.sin(jnp.pi - p) * p)
  if kind[0] == "psi":
    _, m, lambda_is_zero = kind
    psi = _psi(_clip_unit(c), m)
    return psi if lambda_is_zero else (p * c + psi) / (1.0 + p)
  _, m1, m2 = kind  # combined
  return _psi(_clip_unit(c), m1, m2) - p


# The traced margins that have a range: (name, predicate, requirement) by transform.
_PARAM_RANGES = {
    "arcface": ("m", lambda m: (m >= 0) & (m < math.pi), "lie in [0, pi) radians"),
    "psi": ("lambda_", lambda lam: lam >= 0, "be non-negative"),
}


def _margin_loss(fn: str, cosine: ArrayLike, target: ArrayLike, scale: ArrayLike, kind: tuple,
                 params: tuple, weight, ignore_index: int, reduction: str,
                 label_smoothing, where, check_range: bool = True,
                 params_traced: bool = False) -> Array:
  """``cross_entropy(s * cos with s_y * transform(cos_y) at the target, target)``.

  The transform (see :func:`_transform`) receives the target cosines of shape
  ``(N,)`` in the compute dtype (rows that are not counted hold ``0``).
  ``label_smoothing`` may be traced (``cross_entropy`` checks it); with
  ``params_traced`` a margin outside its range (``_PARAM_RANGES``) gives ``nan``.
  """
  cosine = _cosine.check_cosine(fn, cosine)
  if weight is not None:
    weight = C.as_float_array(fn, "weight", weight)
    C.check_shape(fn, "weight", weight, (cosine.shape[-1],), "one weight per class")
  unbatched = cosine.ndim == 1
  cosine, target, where = _cosine.batch_unbatched(fn, cosine, target, where)
  n, num_classes = cosine.shape
  out_dtype = C.output_dtype(cosine)
  dtype = C.compute_dtype(cosine)
  counted, index = C.prepare_class_index(fn, target, (n,), num_classes, ignore_index, where)
  scale = _cosine.broadcast_scale(fn, scale, (n, num_classes), dtype)
  bad = None
  if check_range:
    bad = _cosine.check_cosine_range(fn, "cosine", cosine, _cosine.cosine_tolerance(cosine.dtype),
                                     counted[:, None])
  # Rows that are not counted become 0 so no inf/nan there reaches any gradient.
  cos = jnp.where(counted[:, None], C.upcast(cosine, dtype), jnp.zeros((), dtype))
  scale = jnp.where(counted[:, None], scale, jnp.zeros((), dtype))
  is_target = jnp.arange(num_classes)[None, :] == index[:, None]
  new_target = (_transform(kind, _cosine.take_target(cos, index), params)
                * _cosine.take_target(scale, index))
  logits = jnp.where(is_target, new_target[:, None], scale * cos)
  if bad is not None:
    # Not a cosine: the row's logits are nan, so its loss, any reduction over it
    # and the gradients are nan (cross_entropy poisons the out-of-range targets).
    logits = C.nan_where(bad[:, None], logits)
  loss = cross_entropy(logits, target, weight=weight, ignore_index=ignore_index,
                       reduction=reduction, label_smoothing=label_smoothing, where=where)
  if bad is not None and reduction != "none":
    loss = C.nan_where(jnp.any(bad), loss)
  if params_traced and kind[0] in _PARAM_RANGES:
    name, ok, requirement = _PARAM_RANGES[kind[0]]
    loss = C.nan_where(C.option_out_of_range(fn, name, params[0], ok, requirement), loss)
  if unbatched and reduction == "none":
    loss = loss[0]
  return loss.astype(out_dtype)


_margin_kernel = functools.partial(jax.jit, static_argnames=(
    "fn", "kind", "ignore_index", "reduction", "params_traced"))(_margin_loss)


def _static_options(fn: str, reduction: str, ignore_index: Any, label_smoothing: Any):
  """The validated options shared by the margin losses (``label_smoothing`` may be traced).

  A Python ``label_smoothing`` of 0 stays the Python float ``0.0``, so that
  :func:`jaxloss.cross_entropy` skips its smoothing terms statically.
  """
  C.check_reduction(fn, reduction)
  return (C.static_int(fn, "ignore_index", ignore_index),
          C.check_label_smoothing(fn, label_smoothing))


def _call_margin(fn, cosine, target, scale, kind, params, weight, ignore_index, reduction,
                 label_smoothing, where, axis=None):
  ignore_index, label_smoothing = _static_options(fn, reduction, ignore_index,
                                                  label_smoothing)
  cosine, scale = _cosine.cosine_layout(fn, cosine, target, scale, axis)
  params_traced = not all(C.is_concrete(p) for p in params)
  if isinstance(label_smoothing, float) and label_smoothing == 0.0:
    # Static: the kernel's cross_entropy call then has no smoothing terms.
    return _margin_kernel_no_smoothing(fn, cosine, target, scale, kind, params, weight,
                                       ignore_index, reduction, where,
                                       params_traced=params_traced)
  return _margin_kernel(fn, cosine, target, scale, kind, params, weight, ignore_index,
                        reduction, label_smoothing, where, params_traced=params_traced)


@functools.partial(jax.jit, static_argnames=("fn", "kind", "ignore_index", "reduction",
                                             "params_traced"))
def _margin_kernel_no_smoothing(fn, cosine, target, scale, kind, params, weight, ignore_index,
                                reduction, where, *, params_traced):
  return _margin_loss(fn, cosine, target, scale, kind, params, weight, ignore_index,
                      reduction, 0.0, where, params_traced=params_traced)


# ----------------------------------------------------------------------------
# Public losses
# ----------------------------------------------------------------------------


def cosface(cosine: ArrayLike, target: ArrayLike, scale: ArrayLike | None = None,
            m: ArrayLike = 0.35, weight: ArrayLike | None = None, ignore_index: int = -100,
            reduction: str = "mean", label_smoothing: float = 0.0, *,
            axis: int | None = None, where: ArrayLike | None = None,
            s: ArrayLike | None = None) -> Array:
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
    scale: the logit scale :math:`s`, a float or an array broadcastable to
      ``(N, C)``; ``s=`` is its deprecated name
      (a ``DeprecationWarning``).
    m: the cosine margin (negative values are allowed); may be traced (a
      population of margins under ``jax.vmap``, one compilation).
    weight, ignore_index, reduction, label_smoothing, where: as in
      :func:`jaxloss.cross_entropy` (applied to the modified logits);
      ``label_smoothing`` may be traced. ``where`` is per sample here.
    axis: the class axis of ``cosine`` (keyword-only): ``None`` or ``-1`` is the
      ``(N, C)`` layout (torch's and JAX's agree for 2-D); ``0`` takes ``(C, N)``
      (then a 2-D ``scale`` is ``(C, N)`` too).

  Returns:
    The loss in ``cosine``'s dtype (float32 compute for half precision).

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> cos = jnp.array([[0.8, 0.1, -0.3], [0.2, 0.6, 0.0]])
    >>> loss = jaxloss.cosface(cos, jnp.array([0, 1]), scale=30.0, m=0.35)
    >>> print(f"{float(loss):.4f}")
    0.1009

  References:
    - Wang et al., "CosFace: Large Margin Cosine Loss for Deep Face Recognition", CVPR
      2018.
    - Wang, Cheng, Liu and Liu, "Additive Margin Softmax for Face Verification", IEEE
      Signal Processing Letters, 2018.
  """
  fn = "cosface"
  scale = _cosine.resolve_scale(fn, scale, s, 64.0)
  return _call_margin(fn, cosine, target, scale, ("cosface",), (m,), weight, ignore_index,
                      reduction, label_smoothing, where, axis)


def arcface(cosine: ArrayLike, target: ArrayLike, scale: ArrayLike | None = None,
            m: ArrayLike = 0.5, weight: ArrayLike | None = None, ignore_index: int = -100,
            reduction: str = "mean", label_smoothing: float = 0.0, *,
            easy_margin: bool = False, axis: int | None = None,
            where: ArrayLike | None = None, s: ArrayLike | None = None) -> Array:
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
    m: the angular margin in radians, ``0 <= m < pi``; may be traced (a traced
      margin outside the range gives ``nan``, reported under ``checkify``).
    easy_margin: apply the margin only to positive cosines.
    (others as for :func:`cosface`)

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> cos = jnp.array([[0.8, 0.1, -0.3], [0.2, 0.6, 0.0]])
    >>> loss = jaxloss.arcface(cos, jnp.array([0, 1]), scale=30.0, m=0.5)
    >>> print(f"{float(loss):.4f}")
    0.9391

  References:
    - Deng et al., "ArcFace: Additive Angular Margin Loss for Deep Face Recognition",
      CVPR 2019.
  """
  fn = "arcface"
  scale = _cosine.resolve_scale(fn, scale, s, 64.0)
  mv = _cosine.maybe_concrete(m)
  if mv is not None and not 0.0 <= mv < math.pi:
    raise ValueError(f"{fn}: `m` must lie in [0, pi) radians, got {mv}.")
  return _call_margin(fn, cosine, target, scale, ("arcface", bool(easy_margin)), (m,), weight,
                      ignore_index, reduction, label_smoothing, where, axis)


def sphereface(cosine: ArrayLike, target: ArrayLike, scale: ArrayLike | None = None,
               m: int = 4, weight: ArrayLike | None = None, ignore_index: int = -100,
               reduction: str = "mean", label_smoothing: float = 0.0, *,
               lambda_: ArrayLike = 0.0, axis: int | None = None,
               where: ArrayLike | None = None, s: ArrayLike | None = None) -> Array:
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
  pass ``scale=`` the feature norms ``(N, 1)`` (``cosine_logits(...,
  return_norms=True)``), as pytorch-metric-learning's ``SphereFaceLoss`` does
  (its ``scale=1`` multiplies them). A fixed ``s`` (e.g. 30-64) suits
  normalised features. ``scale`` is required on purpose. The gradient is the true
  gradient of this loss; the authors' Caffe backward pass rescales it (their
  README: "we normalize the scale of gradient"), which is not mirrored.

  Args:
    scale: the logit scale :math:`s`, a float or an array broadcastable to
      ``(N, C)``; ``s=`` is its deprecated name
      (a ``DeprecationWarning``).
    m: the integer margin (authors' default 4).
    lambda_: the annealing weight :math:`\lambda \ge 0` (``0``: pure A-Softmax);
      may be traced (a traced negative value gives ``nan``). The authors anneal
      it with :func:`margin_lambda`.
    (others as for :func:`cosface`)

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> cos = jnp.array([[0.8, 0.1, -0.3], [0.2, 0.6, 0.0]])
    >>> loss = jaxloss.sphereface(cos, jnp.array([0, 1]), scale=10.0, m=4, lambda_=5.0)
    >>> print(f"{float(loss):.4f}")
    0.1713

  References:
    - Liu et al., "SphereFace: Deep Hypersphere Embedding for Face Recognition", CVPR
      2017.
  """
  fn = "sphereface"
  scale = _cosine.resolve_scale(fn, scale, s, None)
  m = _check_multiplier(fn, m)
  return _call_margin(fn, cosine, target, scale, ("psi", m, _lambda_is_zero(fn, lambda_)),
                      (lambda_,), weight, ignore_index, reduction, label_smoothing, where, axis)


def _check_multiplier(fn: str, m: Any) -> int:
  m = C.static_int(fn, "m", m)
  if m < 1:
    raise ValueError(f"{fn}: `m` must be a positive integer, got {m}.")
  return m


def _lambda_is_zero(fn: str, lambda_: Any) -> bool:
  """Validates a concrete ``lambda_ >= 0``; whether it is (statically) ``0``."""
  lv = _cosine.maybe_concrete(lambda_)
  if lv is not None and not lv >= 0:
    raise ValueError(f"{fn}: `lambda_` must be non-negative, got {lv}.")
  return lv == 0.0


def combined_margin(cosine: ArrayLike, target: ArrayLike, scale: ArrayLike | None = None,
                    m1: float = 1.0, m2: float = 0.3, m3: float = 0.2,
                    weight: ArrayLike | None = None, ignore_index: int = -100,
                    reduction: str = "mean", label_smoothing: float = 0.0, *,
                    axis: int | None = None, where: ArrayLike | None = None,
                    s: ArrayLike | None = None) -> Array:
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
  Defaults are insightface's combined-margin example ``(1.0, 0.3, 0.2)``, ``scale=64``.

  Args:
    m1: the multiplicative angular margin, a static float ``> 0`` (it decides the
      piecewise structure of :math:`\psi`, so it cannot be traced).
    m2: the additive angular margin (radians), a static float ``>= 0`` (likewise).
    m3: the additive cosine margin (may be traced).
    (others as for :func:`cosface`)

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> cos = jnp.array([[0.8, 0.1, -0.3], [0.2, 0.6, 0.0]])
    >>> loss = jaxloss.combined_margin(cos, jnp.array([0, 1]), scale=30.0, m1=1.0, m2=0.3, m3=0.2)
    >>> print(f"{float(loss):.4f}")
    1.0193

  References:
    - Deng et al., "ArcFace: Additive Angular Margin Loss for Deep Face Recognition",
      CVPR 2019 (the combined margin, insightface).
  """
  fn = "combined_margin"
  scale = _cosine.resolve_scale(fn, scale, s, 64.0)
  m1 = C.static_float(fn, "m1", m1)
  m2 = C.static_float(fn, "m2", m2)
  if not m1 > 0:
    raise ValueError(f"{fn}: `m1` must be positive, got {m1}.")
  if not m2 >= 0:
    raise ValueError(f"{fn}: `m2` must be non-negative, got {m2}.")
  return _call_margin(fn, cosine, target, scale, ("combined", m1, m2), (m3,), weight,
                      ignore_index, reduction, label_smoothing, where, axis)


def large_margin_softmax(features: ArrayLike, weight_matrix: ArrayLike, target: ArrayLike,
                         m: int = 2, scale: ArrayLike | None = None,
                         weight: ArrayLike | None = None, ignore_index: int = -100,
                         reduction: str = "mean", label_smoothing: float = 0.0, *,
                         weight_layout: str = "cd", lambda_: ArrayLike = 0.0,
                         eps: float = 1e-12, where: ArrayLike | None = None,
                         s: ArrayLike | None = None) -> Array:
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
    weight_layout: ``'cd'`` or ``'dc'``: where the classes are in
      ``weight_matrix`` (this loss has no ``axis``: its logits are built here,
      always ``(N, C)``).
    lambda_: the annealing weight :math:`\lambda \ge 0`; may be traced (a traced
      negative value gives ``nan``).
    eps: the norm clamp used for the cosine.
    (others as for :func:`jaxloss.cross_entropy`)

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> features = jnp.array([[1.0, 2.0], [-1.0, 0.5]])
    >>> weight_matrix = jnp.array([[1.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])  # (C, D)
    >>> loss = jaxloss.large_margin_softmax(features, weight_matrix, jnp.array([0, 1]), m=2)
    >>> print(f"{float(loss):.4f}")
    0.2609

  References:
    - Liu et al., "Large-Margin Softmax Loss for Convolutional Neural Networks", ICML
      2016.
  """
  fn = "large_margin_softmax"
  scale = _cosine.resolve_scale(fn, scale, s, 1.0)
  m = _check_multiplier(fn, m)
  lambda_is_zero = _lambda_is_zero(fn, lambda_)
  ignore_index, label_smoothing = _static_options(fn, reduction, ignore_index, label_smoothing)
  if weight_layout not in WEIGHT_LAYOUTS:
    raise ValueError(
        f"{fn}: `weight_layout` must be one of {WEIGHT_LAYOUTS}, got {weight_layout!r}.")
  # label_smoothing is traced unless it is a Python 0 (then statically absent).
  smoothing = not (isinstance(label_smoothing, float) and label_smoothing == 0.0)
  return _large_margin_kernel(
      features, weight_matrix, target, scale, lambda_, weight, where,
      label_smoothing if smoothing else None, m=m, lambda_is_zero=lambda_is_zero,
      ignore_index=ignore_index, reduction=reduction, smoothing=smoothing,
      weight_layout=weight_layout, eps=C.static_float(fn, "eps", eps),
      params_traced=not C.is_concrete(lambda_))


@functools.partial(jax.jit, static_argnames=("m", "lambda_is_zero", "ignore_index",
                                             "reduction", "smoothing", "weight_layout",
                                             "eps", "params_traced"))
def _large_margin_kernel(features, weight_matrix, target, scale, lambda_, weight, where,
                         label_smoothing, *, m, lambda_is_zero, ignore_index, reduction,
                         smoothing, weight_layout, eps, params_traced):
  fn = "large_margin_softmax"
  features = C.as_float_array(fn, "features", features)
  weight_matrix = C.as_float_array(fn, "weight_matrix", weight_matrix)
  C.check_ndim(fn, "features", features, (1, 2))
  # The samples that count, known before the features meet the shared weight
  # matrix: the others are zeroed there, so that inf/nan features of a masked or
  # ignored sample cannot reach the weight matrix's gradient (0 * nan).
  n = 1 if features.ndim == 1 else features.shape[0]
  _, target_b, where_b = _cosine.batch_unbatched(fn, features, target, where)
  num_classes = _weight_cd(fn, weight_matrix, weight_layout, features.shape[-1],
                           "weight_matrix").shape[0]
  counted, _ = C.prepare_class_index(fn, target_b, (n,), num_classes, ignore_index, where_b)
  cos, x_norm, w_norm, dtype = _normalized_cosines(fn, features, weight_matrix,
                                                   weight_layout, eps, row_mask=counted,
                                                   weight_name="weight_matrix")
  if features.ndim == 1:
    cos, x_norm = cos[0], x_norm[0]
  # s * |W_j| |x| cos is the logit; the margin loss multiplies the cosines by it.
  norms = x_norm * (w_norm if features.ndim == 2 else w_norm[0])
  scale = _cosine.broadcast_scale(fn, scale, cos.shape, dtype) * norms
  out_dtype = C.output_dtype(features, weight_matrix)
  loss = _margin_loss(fn, cos, target, scale, ("psi", m, lambda_is_zero), (lambda_,), weight,
                      ignore_index, reduction, label_smoothing if smoothing else 0.0, where,
                      check_range=False, params_traced=params_traced)
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

  Examples:
    >>> import jaxloss
    >>> print(f"{float(jaxloss.margin_lambda(0)):.1f} {float(jaxloss.margin_lambda(10000)):.1f}")
    1000.0 5.0

  References:
    - Liu et al., "Large-Margin Softmax Loss for Convolutional Neural Networks", ICML
      2016.
    - Liu et al., "SphereFace: Deep Hypersphere Embedding for Face Recognition", CVPR
      2017.
  """
  return _margin_lambda_kernel(step, base, gamma, power, lambda_min)


@jax.jit
def _margin_lambda_kernel(step, base, gamma, power, lambda_min):
  step = jnp.asarray(step)
  dtype = step.dtype if jnp.issubdtype(step.dtype, jnp.floating) else jnp.float32
  step = step.astype(dtype)
  lam = base * jnp.power(1.0 + gamma * step, -power)
  return jnp.maximum(lam, jnp.asarray(lambda_min, dtype)).astype(dtype)
