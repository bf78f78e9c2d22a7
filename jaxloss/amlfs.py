r"""The AM-LFS search-space loss (Li et al., "AM-LFS: AutoML for Loss Function Search", ICCV 2019).

.. math::
   \ell_i = -\log \tau\!\left(p^t_{y_i}\right), \qquad
   p^t_{y} = \frac{e^{s_y\, t(\cos\theta_y)}}
                  {e^{s_y\, t(\cos\theta_y)} + \sum_{j \ne y} e^{s_j \cos\theta_j}}

(paper eqs. 4 and 16), with two piecewise-linear transforms:

* :math:`t` on the cosine domain :math:`[-1, 1]`, applied to the target cosine
  only (the margin family: identity, CosFace :math:`t(x) = x - m`, ArcFace-like
  and L-Softmax-like fits);
* :math:`\tau` on the probability domain :math:`[0, 1]`, applied to the target
  probability (the focal family: :math:`\tau(p) = p^{(1-p)^\gamma}` is focal
  loss).

**theta layout.** ``theta`` is a flat vector of ``4 * M`` numbers,
``[a_t (M), b_t (M), a_tau (M), b_tau (M)]`` (the paper's
:math:`\theta = [a^t, b^t, a^\tau, b^\tau]`); ``M = len(theta) // 4`` is static.
Each domain is cut into ``M`` equal intervals and interval ``i`` has its own
slope and bias: :math:`t(x) = a^t_i x + b^t_i` for
:math:`x \in [-1 + 2i/M, -1 + 2(i+1)/M)`, :math:`\tau(p) = a^\tau_j p + b^\tau_j`
for :math:`p \in [j/M, (j+1)/M)`. The last interval is closed; points outside
a domain use the nearest end interval (linear extrapolation), so a cosine a
rounding error above ``1`` is still mapped. Both maps may be discontinuous at
the interval ends (the biases are independent).

A vector of ``4 * M + 1`` numbers adds a **label-smoothing coordinate** :math:`\varepsilon`
(the last number; an extension of the paper's search space, which cannot express label
smoothing with ``t`` and ``tau``):

.. math:: \ell_i = (1 - \varepsilon)\left(-\log \tau(p^t_{y_i})\right)
          + \frac{\varepsilon}{C} \sum_j -\log p^t_j

with the same logits (the target's transformed by ``t``), weighted as torch weights label
smoothing (``weight[y_i]`` on the first term, ``weight[j]`` inside the sum, ``'mean'``
dividing by the summed ``weight[y_i]``). At the identity ``t`` and ``tau`` it is exactly
:func:`jaxloss.cross_entropy` with ``label_smoothing=eps``. The coordinate is a search
variable, sampled with Gaussian noise, so it is clipped to torch's domain ``[0, 1]`` rather
than rejected: a sample below 0 trains without smoothing (its gradient with respect to
:math:`\varepsilon` is then 0).

**Scale** (required keyword, no default on purpose: the softmax of raw cosines
in ``[-1, 1]`` over 10 classes is nearly uniform, which stalled the public CIFAR
reproduction). ``scale`` is a float ``s`` (logits ``s cos``) or an array
broadcastable to ``(N, C)``: e.g. the norm products ``|W_j| |x_i|``
(``cosine_logits(..., return_norms=True)``), making the logits the plain linear
logits of paper eq. 4.

**The guard** (``tau_min_ratio``, :math:`\delta`, default ``0.01``). A sampled
:math:`\tau` can be zero or negative (e.g. :math:`b^\tau_0 < 0`), where
:math:`-\log\tau` is undefined. The loss uses
:math:`\max(\tau(p), \delta\,p)` instead of :math:`\tau(p)`:

.. math:: \ell = -\log\max\left(\tau(p),\ \delta\,p\right)

It is continuous in :math:`p` and bounded by :math:`\mathrm{CE} - \log\delta`.
Where :math:`\tau(p) \le \delta p` (including every :math:`\tau \le 0`) the
loss is cross-entropy plus the constant :math:`-\log\delta`, so its gradient is
exactly the cross-entropy gradient: such samples keep training the model towards
the correct class instead of getting a zero (clamped) gradient, which would
silently stop a copy whose sampled :math:`\tau` is negative at the initial
:math:`p \approx 1/C` and make its reward measure the guard, not the loss.
Elsewhere the gradient is the sampled loss's, and the guard bounds it: the
gradient with respect to the logits is at most :math:`|a^\tau_j|/\delta` times
the cross-entropy gradient. The identity :math:`\tau(p) = p` never triggers it
(:math:`p > \delta p`). Gradients with respect to ``theta`` are exact where the
guard is inactive and zero where it is active.

**Precision.** :math:`\log\tau(p)` is formed from :math:`\log p` (log-softmax)
as :math:`\log p + \log(a + b/p)` when :math:`|b| \le |a| p` and as
:math:`\log(a p + b)` otherwise, so the identity theta gives exactly
:func:`jaxloss.cross_entropy` of ``scale * cosine`` (to float32 rounding), also
for probabilities that underflow; the CosFace theta gives exactly
:func:`jaxloss.cosface`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxloss import _common as C
from jaxloss import _cosine

Array = C.Array
ArrayLike = C.ArrayLike

DEFAULT_INTERVALS = 6


# ----------------------------------------------------------------------------
# theta
# ----------------------------------------------------------------------------


def _check_theta(fn: str, theta: ArrayLike) -> tuple[Array, int]:
  theta = C.as_float_array(fn, "theta", theta)
  if theta.ndim != 1 or theta.shape[0] < 4 or theta.shape[0] % 4 > 1:
    raise ValueError(
        f"{fn}: `theta` must be a 1-D vector of 4 * M numbers [a_t, b_t, a_tau, b_tau] "
        f"(M >= 1 intervals), or 4 * M + 1 with a last label-smoothing coordinate, got shape "
        f"{tuple(theta.shape)}.")
  return theta, theta.shape[0] // 4


def _split(theta: Array, num_intervals: int) -> tuple[Array, Array, Array, Array]:
  """The four parts of theta (a label-smoothing coordinate, if any, is left out)."""
  return tuple(theta[:4 * num_intervals].reshape(4, num_intervals))


def _smoothing(theta: Array, num_intervals: int) -> Array | None:
  """The label-smoothing coordinate clipped to ``[0, 1]``, or None when theta has none."""
  if theta.shape[0] == 4 * num_intervals:
    return None
  return jnp.clip(theta[-1], 0.0, 1.0)


def _with_smoothing(theta: Array, label_smoothing: float | None) -> Array:
  if label_smoothing is None:
    return theta
  eps = float(label_smoothing)
  if not 0.0 <= eps <= 1.0:
    raise ValueError(f"`label_smoothing` must lie in [0, 1] or be None, got {label_smoothing!r}.")
  return jnp.concatenate([theta, jnp.full((1,), eps, theta.dtype)])


def _check_intervals(fn: str, num_intervals) -> int:
  if isinstance(num_intervals, bool) or int(num_intervals) != num_intervals or num_intervals < 1:
    raise ValueError(f"{fn}: `num_intervals` must be a positive int, got {num_intervals!r}.")
  return int(num_intervals)


def identity_theta(num_intervals: int = DEFAULT_INTERVALS, dtype=jnp.float32, *,
                   label_smoothing: float | None = None) -> Array:
  """The theta of plain softmax cross-entropy: ``t(x) = x``, ``tau(p) = p``.

  All slopes 1, all biases 0.

  The natural initial mean :math:`\\mu_0` of the search. Layout
  ``[a_t, b_t, a_tau, b_tau]``, ``4 * num_intervals`` numbers; with ``label_smoothing``
  (a float in ``[0, 1]``) one more, the label-smoothing coordinate: the theta of
  ``cross_entropy(..., label_smoothing=label_smoothing)``.
  """
  m = _check_intervals("identity_theta", num_intervals)
  ones, zeros = jnp.ones((m,), dtype), jnp.zeros((m,), dtype)
  return _with_smoothing(jnp.concatenate([ones, zeros, ones, zeros]), label_smoothing)


def cosface_theta(margin: float, num_intervals: int = DEFAULT_INTERVALS,
                  dtype=jnp.float32) -> Array:
  """The theta of CosFace: ``t(x) = x - margin``, ``tau(p) = p``.

  ``amlfs_loss(cos, y, cosface_theta(m), scale=s)`` equals
  ``cosface(cos, y, scale=s, m=m)``.
  """
  m = _check_intervals("cosface_theta", num_intervals)
  ones, zeros = jnp.ones((m,), dtype), jnp.zeros((m,), dtype)
  return jnp.concatenate([ones, jnp.full((m,), -margin, dtype), ones, zeros])


def fit_theta(t_fn: Callable | None = None, tau_fn: Callable | None = None,
              num_intervals: int = DEFAULT_INTERVALS, dtype=jnp.float32, *,
              label_smoothing: float | None = None) -> Array:
  """The piecewise-linear interpolant (chords through the interval ends) of given transforms.

  Args:
    t_fn: a function on the cosine domain ``[-1, 1]`` (NumPy float64 array in,
      array out); ``None`` for the identity.
    tau_fn: a function on the probability domain ``[0, 1]``; ``None`` for the
      identity.
    num_intervals: ``M``.
    dtype: the dtype of the returned theta.
    label_smoothing: ``None`` (no label-smoothing coordinate) or its value in ``[0, 1]``.

  Returns:
    ``theta`` (``4 * M``, or ``4 * M + 1`` with ``label_smoothing``) whose ``t`` and
    ``tau`` agree with ``t_fn`` and ``tau_fn`` at the ``M + 1`` interval ends of each domain.
  """
  m = _check_intervals("fit_theta", num_intervals)

  def chords(f, lo, hi):
    knots = np.linspace(lo, hi, m + 1)
    values = np.asarray(f(knots), np.float64)
    slopes = (values[1:] - values[:-1]) / (knots[1:] - knots[:-1])
    return slopes, values[:-1] - slopes * knots[:-1]

  a_t, b_t = chords(t_fn or (lambda x: x), -1.0, 1.0)
  a_tau, b_tau = chords(tau_fn or (lambda p: p), 0.0, 1.0)
  return _with_smoothing(jnp.asarray(np.concatenate([a_t, b_t, a_tau, b_tau]), dtype),
                         label_smoothing)


def arcface_theta(margin: float = 0.5, num_intervals: int = DEFAULT_INTERVALS,
                  dtype=jnp.float32) -> Array:
  """An ArcFace-like theta: ``t`` interpolates ``cos(arccos x + margin)`` on the ``M`` intervals.

  ``tau`` is the identity. As in the paper's figure 1, the search space holds
  such piecewise-linear approximations of the angular margins.
  """
  return fit_theta(lambda x: np.cos(np.arccos(np.clip(x, -1, 1)) + margin), None,
                   num_intervals, dtype)


# ----------------------------------------------------------------------------
# The transforms
# ----------------------------------------------------------------------------


def _interval(u: Array, num_intervals: int) -> Array:
  """The interval index of ``u`` in ``[0, 1]`` (clipped: the ends extend outward)."""
  i = jnp.floor(jax.lax.stop_gradient(u) * num_intervals)
  return jnp.clip(i, 0, num_intervals - 1).astype(jnp.int32)


def _piece(params: Array, index: Array) -> Array:
  return jnp.take(params, index, mode="clip")


def _apply_t(x: Array, a_t: Array, b_t: Array) -> Array:
  i = _interval((x + 1.0) * 0.5, a_t.shape[0])
  return _piece(a_t, i) * x + _piece(b_t, i)


def _apply_tau(p: Array, a_tau: Array, b_tau: Array) -> Array:
  j = _interval(p, a_tau.shape[0])
  return _piece(a_tau, j) * p + _piece(b_tau, j)


def amlfs_transforms(theta: ArrayLike) -> tuple[Callable[[Array], Array], Callable[[Array], Array]]:
  """The two maps of ``theta`` as functions: ``t, tau = amlfs_transforms(theta)``.

  ``t(x)`` maps cosines (any shape) and ``tau(p)`` probabilities, piecewise
  linearly with ``M = len(theta) // 4`` equal intervals (see the module
  docstring for the layout; a label-smoothing coordinate is not a transform and is
  ignored here). Both are jit/vmap/grad-able.
  """
  theta, m = _check_theta("amlfs_transforms", theta)
  a_t, b_t, a_tau, b_tau = _split(theta, m)

  def t(x):
    x = jnp.asarray(x)
    return _apply_t(x.astype(jnp.result_type(x, theta)), a_t, b_t)

  def tau(p):
    p = jnp.asarray(p)
    return _apply_tau(p.astype(jnp.result_type(p, theta)), a_tau, b_tau)
  return t, tau


def amlfs_curves(theta: ArrayLike, num_points: int = 601) -> dict[str, Array]:
  """``t`` and ``tau`` sampled on their domains, for plotting.

  Returns:
    A dict with ``'x'`` (``num_points`` cosines in ``[-1, 1]``), ``'t'``
    (``t(x)``), ``'p'`` (``num_points`` probabilities in ``[0, 1]``) and
    ``'tau'`` (``tau(p)``). With ``num_points = k * M + 1`` the interval ends
    are among the points (the maps jump there).
  """
  t, tau = amlfs_transforms(theta)
  dtype = jnp.result_type(jnp.asarray(theta), jnp.float32)
  x = jnp.linspace(-1.0, 1.0, num_points, dtype=dtype)
  p = jnp.linspace(0.0, 1.0, num_points, dtype=dtype)
  return {"x": x, "t": t(x), "p": p, "tau": tau(p)}


# ----------------------------------------------------------------------------
# The loss
# ----------------------------------------------------------------------------


def _log_guarded_tau(log_p: Array, a: Array, b: Array, delta: float) -> Array:
  r""":math:`\log\max(a p + b, \delta p)` from :math:`\log p`, stably (see the module docstring)."""
  dtype = log_p.dtype
  p = jnp.exp(log_p)
  # exp(-log p) = 1 / p, capped where it would overflow (p is then negligible
  # next to any representable |b| > |a| p, and the direct form is used).
  cap = -0.9 * math.log(float(jnp.finfo(dtype).tiny))
  inv_p = jnp.exp(jnp.minimum(-log_p, cap))
  rel_form = jnp.abs(b) <= jnp.abs(a) * p             # tau ~ a p: log p + log(a + b / p)
  ratio = a + b * inv_p                                 # tau / p
  direct = a * p + b                                    # tau
  use_tau = jnp.where(rel_form, ratio > delta, direct > delta * p)
  one = jnp.ones((), dtype)
  log_rel = log_p + jnp.log(jnp.where(use_tau & rel_form, ratio, one))
  log_direct = jnp.log(jnp.where(use_tau & ~rel_form, direct, one))
  log_tau = jnp.where(rel_form, log_rel, log_direct)
  return jnp.where(use_tau, log_tau, log_p + math.log(delta))


def amlfs_loss(cosine: ArrayLike, target: ArrayLike, theta: ArrayLike, *,
               scale: ArrayLike | None = None, weight: ArrayLike | None = None,
               ignore_index: int = -100, reduction: str = "mean",
               where: ArrayLike | None = None, tau_min_ratio: float = 0.01,
               s: ArrayLike | None = None, axis: int | None = None) -> Array:
  r"""The AM-LFS loss :math:`-\log\tau(p^t_y)` with both transforms given by ``theta``.

  See the module docstring for the formula, the ``theta`` layout, the scale and
  the guard.

  Args:
    cosine: ``(N, C)`` cosine logits in ``[-1, 1]`` (:func:`jaxloss.cosine_logits`),
      or ``(C,)`` with a scalar ``target``.
    target: ``(N,)`` integer class indices.
    theta: ``(4 * M,)``: ``[a_t, b_t, a_tau, b_tau]``, or ``(4 * M + 1,)`` with a last
      label-smoothing coordinate (clipped to ``[0, 1]``; see the module docstring)
      (differentiable). vmap over a leading population axis for a population of losses.
    scale: **required**: a float ``s`` or an array broadcastable to ``(N, C)``
      (e.g. ``|W_j| |x_i|``); may be traced. ``s=`` is its deprecated name
      (a ``DeprecationWarning``; the margin losses' traditional name).
    weight: optional class weights ``(C,)``: ``l_i`` is multiplied by
      ``weight[y_i]`` and ``'mean'`` divides by the summed weights of the
      counted samples (as :func:`jaxloss.cross_entropy`).
    ignore_index: a class index whose samples are ignored (``0`` loss, out of the
      mean's denominator; all ignored gives ``nan`` for ``'mean'``, as torch).
    reduction: ``'none' | 'mean' | 'sum'``.
    where: optional bool mask broadcastable to ``(N,)``; masked samples leave the
      sum and the denominator and get exactly-zero gradients.
    tau_min_ratio: :math:`\delta \in (0, 1)` of the guard
      :math:`\max(\tau(p), \delta p)`, a static float.
    axis: the class axis of ``cosine``: ``None`` or ``-1`` is the ``(N, C)``
      layout (torch's and JAX's agree for 2-D); ``0`` takes ``(C, N)`` (then a
      2-D ``scale`` is ``(C, N)`` too).

  Returns:
    The loss in ``cosine``'s dtype (float32 compute for half precision). Class
    indices outside ``[0, C)`` and cosines beyond ``[-1, 1]`` (past a rounding
    tolerance) are reported under ``checkify`` and give ``nan`` without it (the
    sample's loss, any reduction over it, and the gradients).

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> cos = jnp.array([[0.8, 0.1, -0.3], [0.2, 0.6, 0.0]])
    >>> target = jnp.array([0, 1])
    >>> theta = jaxloss.identity_theta(6)  # t(x) = x, tau(p) = p: cross-entropy
    >>> loss = jaxloss.amlfs_loss(cos, target, theta, scale=10.0)
    >>> ce = jaxloss.cross_entropy(10.0 * cos, target)
    >>> print(f"{float(loss):.4f} {float(ce):.4f}")
    0.0108 0.0108

  References:
    - Li et al., "AM-LFS: AutoML for Loss Function Search", ICCV 2019.
  """
  fn = "amlfs_loss"
  C.check_reduction(fn, reduction)
  scale = _cosine.resolve_scale(fn, scale, s, None)
  ignore_index = C.static_int(fn, "ignore_index", ignore_index)
  delta = C.static_float(fn, "tau_min_ratio", tau_min_ratio)
  if not 0.0 < delta < 1.0:
    raise ValueError(f"{fn}: `tau_min_ratio` must lie in (0, 1), got {delta}.")
  cosine, scale = _cosine.cosine_layout(fn, cosine, target, scale, axis)
  return _amlfs_kernel(cosine, target, theta, scale, weight, where, ignore_index=ignore_index,
                       reduction=reduction, delta=delta)


@functools.partial(jax.jit, static_argnames=("ignore_index", "reduction", "delta"))
def _amlfs_kernel(cosine, target, theta, scale, weight, where, *, ignore_index, reduction,
                  delta):
  fn = "amlfs_loss"
  cosine = _cosine.check_cosine(fn, cosine)
  theta, m = _check_theta(fn, theta)
  unbatched = cosine.ndim == 1
  cosine, target, where = _cosine.batch_unbatched(fn, cosine, target, where)
  n, num_classes = cosine.shape
  out_dtype = C.output_dtype(cosine)
  dtype = C.compute_dtype(cosine, theta)
  counted, index = C.prepare_class_index(fn, target, (n,), num_classes, ignore_index, where)
  bad = _cosine.check_cosine_range(fn, "cosine", cosine, _cosine.cosine_tolerance(cosine.dtype),
                                   counted[:, None])
  bad = bad | C.invalid_class_index(index, num_classes)  # nan for these rows
  s = _cosine.broadcast_scale(fn, scale, (n, num_classes), dtype)

  zero = jnp.zeros((), dtype)
  cos = jnp.where(counted[:, None], C.upcast(cosine, dtype), zero)
  s = jnp.where(counted[:, None], s, zero)
  cos, s = C.nan_gradient_rows(bad, cos, s)
  a_t, b_t, a_tau, b_tau = _split(C.upcast(theta, dtype), m)

  # Logits: s cos, with the target's replaced by s_y t(cos_y).
  target_logit = (_cosine.take_target(s, index)
                  * _apply_t(_cosine.take_target(cos, index), a_t, b_t))
  is_target = jnp.arange(num_classes)[None, :] == index[:, None]
  logits = jnp.where(is_target, target_logit[:, None], s * cos)
  # log p_y through the log-softmax (as cross_entropy computes it).
  shift = jax.lax.stop_gradient(jnp.max(logits, axis=1))
  shift = jnp.where(jnp.isfinite(shift), shift, zero)
  log_z = jnp.log(jnp.sum(jnp.exp(logits - shift[:, None]), axis=1))
  log_p = (target_logit - shift) - log_z

  j = _interval(jnp.exp(log_p), m)
  loss = -_log_guarded_tau(log_p, _piece(a_tau, j), _piece(b_tau, j), delta)

  class_weight = None
  denominator = None
  if weight is not None:
    weight = C.as_float_array(fn, "weight", weight)
    C.check_shape(fn, "weight", weight, (num_classes,), "one weight per class")
    class_weight = C.upcast(weight, dtype)
    w = jnp.take(class_weight, index, mode="fill")
    loss = loss * w
    if reduction == "mean":
      denominator = jnp.sum(jnp.where(counted, w, zero))
  eps = _smoothing(C.upcast(theta, dtype), m)
  if eps is not None:
    # torch's label smoothing: (1 - eps) nll + eps / C * sum_j weight_j (-log p_j).
    log_probs = logits - shift[:, None] - log_z[:, None]
    if class_weight is not None:
      log_probs = log_probs * class_weight[None, :]
    loss = (1.0 - eps) * loss - eps / num_classes * jnp.sum(log_probs, axis=1)
  loss = jnp.where(counted, loss, zero)
  out = C.reduce_loss(loss, reduction, counted, denominator=denominator, out_dtype=out_dtype,
                      bad=bad)
  if unbatched and reduction == "none":
    out = out[0]
  return out
