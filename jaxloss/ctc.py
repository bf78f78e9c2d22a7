r"""Connectionist temporal classification (CTC) loss, ``torch.nn.functional.ctc_loss``.

The loss of one sample is the negative log-likelihood of its target ``l`` (of
length ``U``) under all alignments of the first ``input_length`` frames:

.. math::
   \ell = -\log \sum_{\pi \in \mathcal{B}^{-1}(l)} \prod_t y^t_{\pi_t},
   \qquad \log y^t_k = \texttt{log\_probs}[t, k],

computed with Graves' forward (alpha) recursion in log space over the extended
label sequence ``l' = (blank, l_1, blank, l_2, ..., l_U, blank)`` of length
``2U + 1``, as torch's native kernel (``aten/src/ATen/native/LossCTC.cpp``) does.

**The gradient is torch's, not the mathematical one.** torch's backward returns,
for every frame ``t < input_length`` and class ``c``,

.. math::
   g\,\Bigl(e^{\log y^t_c} - \frac{1}{p(l|x)}
   \sum_{s:\,l'_s = c} \frac{\alpha_t(s)\,\beta_t(s)}{y^t_c}\Bigr)

(``0`` for ``t >= input_length``), where ``g`` is the incoming gradient of the
sample's loss. The second term, ``-g`` times the posterior probability of class
``c`` at frame ``t``, is the exact derivative of the loss w.r.t. ``log_probs``.
The first, ``g * exp(log_probs)``, is **not** part of that derivative: it is what
``log_softmax``'s normalisation adds, so that the result is the gradient w.r.t.
the *logits* when ``log_probs = log_softmax(logits)``. Since ``log_softmax``'s VJP
maps ``v`` to ``v - softmax * sum_c v``, which removes any ``g * softmax`` term,
chaining ``log_softmax`` gives the exact logit gradient either way (torch's
result and plain autodiff agree); but the gradient w.r.t. ``log_probs``
themselves (unnormalised inputs, or ``log_probs`` from something other than
``log_softmax``) is the true derivative plus ``g * exp(log_probs)``. This module
reproduces torch's result exactly, including its NaN gradients (see
:func:`ctc_loss`), with a ``jax.custom_vjp`` whose backward pass is the beta
recursion, as torch's kernel; it keeps only the alpha history, (T, N, 2S+1), as
residual.
"""

from __future__ import annotations

import functools
import operator

import jax
import jax.numpy as jnp
from jax import lax

from jaxloss import _common as C

Array = C.Array
ArrayLike = C.ArrayLike

_FN = "ctc_loss"


# ----------------------------------------------------------------------------
# Log-space helpers
# ----------------------------------------------------------------------------


def _logsumexp(a: Array, b: Array, c: Array | None = None) -> Array:
  """``log(exp(a) + exp(b) [+ exp(c)])`` element-wise, stable and autodiff-safe.

  As ``m + log1p(sum of exp(other - m))`` with ``m`` the maximum, which saves one
  ``exp`` over torch's ``log(sum exp(x - m)) + m`` (equal up to rounding). Where
  every term is ``-inf`` the result is ``-inf`` (torch replaces ``m`` by 0 to avoid
  ``-inf - -inf``; so do we) and the gradient is exactly zero, not NaN. NaN inputs
  propagate.
  """
  m, others = jnp.maximum(a, b), [jnp.minimum(a, b)]
  if c is not None:
    others.append(jnp.minimum(m, c))
    m = jnp.maximum(m, c)
  empty = m == -jnp.inf
  safe_m = jnp.where(empty, jnp.zeros((), m.dtype), m)
  out = jnp.log1p(sum(jnp.exp(x - safe_m) for x in others)) + m
  return jnp.where(empty, jnp.full((), -jnp.inf, m.dtype), out)


def _shift(x: Array, k: int, fill) -> Array:
  """``x[..., s - k]``: shifted by ``k`` along the last axis, padded with ``fill``."""
  length = x.shape[-1]
  pad = [(0, 0)] * (x.ndim - 1) + [(k, 0) if k > 0 else (0, -k)]
  padded = jnp.pad(x, pad, constant_values=fill)
  return padded[..., :length] if k > 0 else padded[..., -k:]


# ----------------------------------------------------------------------------
# The extended label sequence
# ----------------------------------------------------------------------------


def _extend(labels: Array, blank: int) -> tuple[Array, Array]:
  """Blank-interleaved labels ``l'`` (N, 2S+1) and the allowed skips ``s-2 -> s``.

  A skip into state ``s`` is allowed when ``l'_s`` is a label that differs from
  ``l'_{s-2}`` (torch compares the two, so it never skips between repeats).
  """
  n, s = labels.shape
  ext = jnp.full((n, 2 * s + 1), blank, labels.dtype).at[:, 1::2].set(labels)
  odd = (jnp.arange(2 * s + 1) % 2 == 1) & (jnp.arange(2 * s + 1) >= 3)
  skip = odd[None, :] & (ext != _shift(ext, 2, blank))
  return ext, skip


# ----------------------------------------------------------------------------
# Forward (alpha) and backward (beta) recursions
# ----------------------------------------------------------------------------
#
# Both scans run over time on (N, 2S+1) states and gather each frame's emissions
# ``log_probs[t, n, l'_s]`` inside the step, so that no (T, N, 2S+1) copy of the
# emissions is ever stored: the only (T, N, 2S+1) array is the alpha history kept
# for the backward pass.


def _emissions(lp_t: Array, ext: Array) -> Array:
  """``lp_t[n, l'_s]``: frame ``t``'s log-probabilities of the states, (N, 2S+1)."""
  return lp_t[jnp.arange(ext.shape[0])[:, None], ext]


def _alpha(log_probs: Array, ext: Array, skip: Array, input_lengths: Array, history: bool):
  """Log-space alpha recursion (Graves et al., eqs. 6-7) over time.

  ``alpha_t(s) = logsumexp(alpha_{t-1}(s), alpha_{t-1}(s-1), alpha_{t-1}(s-2) if
  skip(s)) + log y^t_{l'_s}``, starting from a virtual ``alpha_{-1} = (0, -inf,
  ...)`` so that the first frame is the same update; frames ``t >= input_length``
  leave alpha unchanged. Returns the last alpha (N, 2S+1) and, if ``history``,
  every frame's alpha (T, N, 2S+1), else ``None``.
  """
  t_max, n, _ = log_probs.shape
  dtype = log_probs.dtype
  neg_inf = jnp.full((), -jnp.inf, dtype)
  init = jnp.full((n, ext.shape[1]), -jnp.inf, dtype).at[:, 0].set(0)

  def step(alpha, xs):
    t, lp_t = xs
    from_skip = jnp.where(skip, _shift(alpha, 2, neg_inf), neg_inf)
    new = _logsumexp(alpha, _shift(alpha, 1, neg_inf), from_skip) + _emissions(lp_t, ext)
    alpha = jnp.where((t < input_lengths)[:, None], new, alpha)
    return alpha, (alpha if history else None)

  return lax.scan(step, init, (jnp.arange(t_max), log_probs))


def _nll(log_probs, ext, skip, input_lengths, target_lengths, history=False):
  """``-log p(l|x)`` per sample (eq. 8): the last two states, or the last one for ``U = 0``."""
  alpha, alphas = _alpha(log_probs, ext, skip, input_lengths, history)
  last = 2 * target_lengths[:, None]
  end = jnp.take_along_axis(alpha, last, axis=1)[:, 0]
  before = jnp.take_along_axis(alpha, jnp.maximum(last - 1, 0), axis=1)[:, 0]
  before = jnp.where(target_lengths > 0, before, jnp.full((), -jnp.inf, alpha.dtype))
  return -_logsumexp(end, before), alphas


def _torch_grad(log_probs, ext, skip, input_lengths, target_lengths, alphas, nll, g,
                zero_infinity):
  """torch's gradient w.r.t. ``log_probs`` (T, N, C), frame by frame, backwards in time.

  The carry is torch's log beta (which includes frame ``t``'s emission); from it
  the step takes ``beta'_t``, the same without the emission (``beta_t / y^t``),
  the state posteriors ``exp(alpha_t + beta'_t + nll)``, sums them into classes
  with a flat scatter-add (the transpose of the emission gather) and forms
  ``g * (exp(lp_t) - posterior)``. Where torch's ``exp(lcab + nll - lp)`` is NaN
  (``lp == -inf``: ``-inf - -inf``; an infinite loss: ``-inf + inf``) so is ours;
  frames ``t >= input_length`` get 0, and so do infinite losses under
  ``zero_infinity``.
  """
  t_max, n, num_classes = log_probs.shape
  length = ext.shape[1]
  dtype = log_probs.dtype
  neg_inf = jnp.full((), -jnp.inf, dtype)
  states = jnp.arange(length)[None, :]
  last = 2 * target_lengths[:, None]
  # beta' at the last frame: 1 in the accepting states (the last blank and label).
  accept = (states == last) | ((states == last - 1) & (target_lengths[:, None] > 0))
  beta_last = jnp.where(accept, jnp.zeros((), dtype), neg_inf)
  skip_from = _shift(skip, -2, False)  # s + 2 -> s allowed
  flat_index = (jnp.arange(n)[:, None] * num_classes + ext).ravel()
  infinite = (nll == jnp.inf)[:, None]
  scale = g[:, None]

  def step(beta_next, xs):
    t, lp_t, alpha_t = xs
    from_skip = jnp.where(skip_from, _shift(beta_next, -2, neg_inf), neg_inf)
    beta = _logsumexp(beta_next, _shift(beta_next, -1, neg_inf), from_skip)
    beta = jnp.where((t >= input_lengths - 1)[:, None], beta_last, beta)
    posterior = jnp.exp(alpha_t + beta + nll[:, None])
    collected = jnp.zeros(n * num_classes, dtype).at[flat_index].add(
        posterior.ravel(), mode="promise_in_bounds").reshape(n, num_classes)
    grad = jnp.exp(lp_t) - collected
    grad = jnp.where((lp_t == -jnp.inf) | infinite, jnp.full((), jnp.nan, dtype), grad)
    live = (t < input_lengths)[:, None]
    if zero_infinity:
      live = live & ~infinite
    grad = jnp.where(live, grad * scale, jnp.zeros((), dtype))
    return beta + _emissions(lp_t, ext), grad

  init = jnp.full((n, length), -jnp.inf, dtype)
  _, grad = lax.scan(step, init, (jnp.arange(t_max), log_probs, alphas), reverse=True)
  return grad


# ----------------------------------------------------------------------------
# The per-sample loss with torch's gradient
# ----------------------------------------------------------------------------


def _zero_infinite(nll: Array, zero_infinity: bool) -> Array:
  if not zero_infinity:
    return nll
  return jnp.where(nll == jnp.inf, jnp.zeros((), nll.dtype), nll)


@functools.partial(jax.custom_vjp, nondiff_argnums=(5,))
def _ctc_nll(log_probs, ext, skip, input_lengths, target_lengths, zero_infinity):
  """Per-sample CTC loss (N,) with torch's gradient w.r.t. ``log_probs`` (T, N, C)."""
  nll, _ = _nll(log_probs, ext, skip, input_lengths, target_lengths)
  return _zero_infinite(nll, zero_infinity)


def _ctc_nll_fwd(log_probs, ext, skip, input_lengths, target_lengths, zero_infinity):
  nll, alphas = _nll(log_probs, ext, skip, input_lengths, target_lengths, history=True)
  residuals = (log_probs, alphas, nll, ext, skip, input_lengths, target_lengths)
  return _zero_infinite(nll, zero_infinity), residuals


def _ctc_nll_bwd(zero_infinity, residuals, g):
  log_probs, alphas, nll, ext, skip, input_lengths, target_lengths = residuals
  grad = _torch_grad(log_probs, ext, skip, input_lengths, target_lengths, alphas, nll, g,
                     zero_infinity)
  return grad, None, None, None, None


_ctc_nll.defvjp(_ctc_nll_fwd, _ctc_nll_bwd)


def _ctc_nll_autodiff(log_probs, ext, skip, input_lengths, target_lengths, zero_infinity):
  """The same per-sample loss without the custom VJP: plain JAX autodiff.

  Its gradient w.r.t. ``log_probs`` is the mathematical one (no ``exp(log_probs)``
  term; zero rather than NaN for impossible alignments and ``-inf`` inputs). The
  tests check that through ``log_softmax`` it equals torch's (and ours).
  """
  nll, _ = _nll(log_probs, ext, skip, input_lengths, target_lengths)
  return _zero_infinite(nll, zero_infinity)


# ----------------------------------------------------------------------------
# Validation and layout
# ----------------------------------------------------------------------------


def _lengths(name: str, x: ArrayLike, batch: int, batched: bool) -> Array:
  x = C.as_int_array(_FN, name, x)
  if batched:
    C.check_shape(_FN, name, x, (batch,), "one length per sample")
  elif x.shape not in ((), (1,)):
    raise ValueError(
        f"{_FN}: `{name}` must have shape () or (1,) for unbatched `log_probs`, got "
        f"{tuple(x.shape)}.")
  return x.reshape(batch)


def _widen(x: Array) -> Array:
  """Narrow integers as int32, so that comparisons with C, T or blank cannot wrap."""
  return x.astype(jnp.int32) if x.dtype.itemsize < 4 else x


def _check_range(name: str, x: Array, high: int, what: str, counted: Array) -> Array:
  """Checks ``0 <= x <= high`` for the counted samples; returns the samples that fail."""
  x = _widen(x)
  ok = ((x >= 0) & (x <= high)) | ~counted
  C.value_check(
      jnp.all(ok),
      f"{_FN}: `{name}` must lie in [0, {high}] ({what}); got {{bad}}.",
      bad=jnp.where(jnp.any(~ok), x.ravel()[jnp.argmax(~ok.ravel())], 0))
  return ~ok


def _padded_targets(targets: Array, target_lengths: Array, batch: int, batched: bool,
                    max_target_length: int | None) -> tuple[Array, Array]:
  """The targets as (N, S), S the static bound on the target lengths.

  Also returns whether the layout is wrong (a scalar bool: concatenated targets
  whose length is not ``sum(target_lengths)``, which torch rejects).
  """
  if targets.ndim == 2 or not batched:
    padded = targets.reshape(batch, -1) if targets.ndim == 1 else targets
    if max_target_length is not None:
      padded = padded[:, :max_target_length]
    return padded, jnp.zeros((), bool)
  # Concatenated: sample n's labels start at the sum of the previous lengths.
  total = targets.shape[0]
  mismatch = jnp.sum(target_lengths) != total
  C.value_check(
      ~mismatch,
      f"{_FN}: concatenated `targets` must have length sum(target_lengths) = {{s}}, "
      f"got {total}.", s=jnp.sum(target_lengths))
  width = total if max_target_length is None else min(max_target_length, total)
  if total == 0:
    return jnp.zeros((batch, 0), targets.dtype), mismatch
  starts = jnp.cumsum(target_lengths) - target_lengths
  index = jnp.clip(starts[:, None] + jnp.arange(width)[None, :], 0, total - 1)
  return targets[index], mismatch


def _check_labels(labels: Array, target_lengths: Array, num_classes: int, blank: int,
                  counted: Array) -> Array:
  """Checks the labels within each counted target; returns the samples that fail."""
  if labels.size == 0:
    return jnp.zeros(labels.shape[:1], bool)
  labels = _widen(labels)
  valid = (jnp.arange(labels.shape[1])[None, :] < target_lengths[:, None]) & counted[:, None]
  ok = ((labels >= 0) & (labels < num_classes) & (labels != blank)) | ~valid
  C.value_check(
      jnp.all(ok),
      f"{_FN}: `targets` holds label {{bad}}; labels must lie in [0, {num_classes}) "
      f"and differ from blank={blank}.",
      bad=jnp.where(jnp.any(~ok), labels.ravel()[jnp.argmax(~ok.ravel())], 0))
  return ~jnp.all(ok, axis=1)


# ----------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------


def ctc_loss(log_probs: ArrayLike, targets: ArrayLike, input_lengths: ArrayLike,
             target_lengths: ArrayLike, blank: int = 0, reduction: str = "mean",
             zero_infinity: bool = False, *, where: ArrayLike | None = None,
             max_target_length: int | None = None) -> Array:
  r"""Connectionist temporal classification loss, ``torch.nn.functional.ctc_loss``.

  .. math::
     \ell_n = -\log \sum_{\pi \in \mathcal{B}^{-1}(l_n)}
              \prod_{t < T_n} \exp(\texttt{log\_probs}[t, n, \pi_t])

  over the alignments ``pi`` of the first ``T_n = input_lengths[n]`` frames that
  collapse (merge repeats, drop blanks) to the target ``l_n`` of length
  ``U_n = target_lengths[n]``. An impossible alignment (``T_n`` too short for
  ``U_n`` labels plus a blank between each pair of repeated labels) gives
  ``inf``; ``T_n = 0`` gives ``0`` for an empty target (also when ``T = 0``,
  which torch rejects).

  The gradient w.r.t. ``log_probs`` is torch's (see the module docstring): for
  ``t < T_n`` it is ``g_n * (exp(log_probs) - posterior)``, i.e. the gradient
  w.r.t. the logits of a ``log_softmax``; it is ``0`` for ``t >= T_n``. As in
  torch, it is NaN for frames ``t < T_n`` of a sample with an infinite loss
  (unless ``zero_infinity``) and wherever ``log_probs`` is ``-inf``.

  Args:
    log_probs: (T, N, C) or unbatched (T, C) log-probabilities (e.g. from
      ``jax.nn.log_softmax``), ``C`` classes including the blank.
    targets: integer labels, one of: (N, S) padded (sample ``n`` uses
      ``targets[n, :U_n]``); 1-D concatenated, of length ``sum(target_lengths)``
      (batched ``log_probs`` only); or, for unbatched ``log_probs``, (S,) or
      (1, S) padded (torch reads an unbatched (S,) as concatenated, i.e. needs
      ``S == target_length``; any such input gives the same result here).
      Labels must lie in ``[0, C)`` and differ from ``blank``; entries beyond a
      target's length are ignored.
    input_lengths: (N,) (or () / (1,) when unbatched) integers in ``[0, T]``;
      a tuple or list works too.
    target_lengths: as ``input_lengths``, integers in ``[0, S]``.
    blank: the blank label, in ``[0, C)``.
    reduction: ``'none'`` (per-sample losses, (N,) or () unbatched), ``'sum'``,
      or ``'mean'``: torch's mean of ``loss_n / max(U_n, 1)`` over the samples.
    zero_infinity: replace infinite losses, and their gradients, by ``0``.
    where: optional (N,) (or () unbatched) bool mask; masked-out samples are
      ``0`` under ``'none'``, leave the sum and the mean's denominator, and get
      exactly-zero gradients.
    max_target_length: optional static bound ``S`` on ``target_lengths`` (beyond
      torch). For concatenated targets the bound is otherwise the whole length
      ``sum(target_lengths)``, and the work grows with it; pass the longest target
      length to avoid that. For padded targets it truncates ``targets[:, :S]``.

  Returns:
    The loss in ``log_probs``' dtype (computed in float32 for bf16/f16). Never
    negative for normalised ``log_probs``: a per-sample loss that rounds below 0
    (a path probability that rounds above 1; optax returns ``-8e-8`` in float32
    there, torch ``-0.0``), i.e. one in ``(-4 T eps, 0)``, is ``0.0``, with the
    gradient left exactly as computed. Unnormalised ``log_probs`` (which torch
    accepts) can give a truly negative loss below that; it is kept, as torch.

  Raises:
    ValueError: at trace time, for bad ranks, batch sizes, dtypes, ``blank`` or
      ``reduction``. Data-dependent problems (labels equal to ``blank`` or out of
      range, lengths out of range, concatenated ``targets`` not of length
      ``sum(target_lengths)``) are reported under ``checkify.checkify``; without
      it the samples concerned (every sample, for a wrong concatenated length)
      are ``nan``: their loss (also under ``zero_infinity``), any reduction
      over them, and the gradients. torch raises for the lengths and the
      layout; for labels equal to ``blank`` or outside ``[0, C)`` its CPU
      kernel returns a number (or reads out of bounds), which is not mirrored.
      Masked samples are not checked.

  Examples:
    >>> import jax
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> log_probs = jax.nn.log_softmax(jnp.zeros((4, 1, 3)))  # T=4 frames, N=1, C=3 (blank 0)
    >>> loss = jaxloss.ctc_loss(log_probs, jnp.array([[1, 2]]), jnp.array([4]), jnp.array([2]))
    >>> print(f"{float(loss):.4f}")
    0.8432

  References:
    - PyTorch, ``torch.nn.functional.ctc_loss``:
      https://pytorch.org/docs/stable/generated/torch.nn.functional.ctc_loss.html
    - Graves et al., "Connectionist Temporal Classification: Labelling Unsegmented
      Sequence Data with Recurrent Neural Networks", ICML 2006.
  """
  return _ctc_loss(_ctc_nll, log_probs, targets, input_lengths, target_lengths, blank,
                   reduction, zero_infinity, where, max_target_length)


@functools.partial(jax.jit, static_argnums=(0, 5, 6, 7, 9))
def _ctc_loss(per_sample, log_probs, targets, input_lengths, target_lengths, blank, reduction,
              zero_infinity, where, max_target_length):
  """:func:`ctc_loss` with the per-sample loss ``per_sample`` (torch's VJP or autodiff).

  Jitted (the options static), so that an eager call is one compiled program, not
  dozens of dispatched ops; inside a caller's ``jit`` it is simply inlined. Shape
  errors still raise ``ValueError`` when it is traced, i.e. at the call.
  """
  C.check_reduction(_FN, reduction)
  log_probs = C.as_float_array(_FN, "log_probs", log_probs)
  C.check_ndim(_FN, "log_probs", log_probs, (2, 3))
  batched = log_probs.ndim == 3
  t_max, num_classes = log_probs.shape[0], log_probs.shape[-1]
  batch = log_probs.shape[1] if batched else 1
  try:
    blank = operator.index(blank)
  except TypeError:
    raise ValueError(f"{_FN}: `blank` must be an integer, got {blank!r}.") from None
  if not 0 <= blank < num_classes:
    raise ValueError(
        f"{_FN}: `blank` must lie in [0, {num_classes}) for `log_probs` of shape "
        f"{tuple(log_probs.shape)}, got {blank}.")
  if max_target_length is not None:
    max_target_length = operator.index(max_target_length)
    if max_target_length < 0:
      raise ValueError(
          f"{_FN}: `max_target_length` must be non-negative, got {max_target_length}.")

  targets = C.as_int_array(_FN, "targets", targets)
  if batched:
    C.check_ndim(_FN, "targets", targets, (1, 2))
    if targets.ndim == 2 and targets.shape[0] != batch:
      raise ValueError(
          f"{_FN}: padded `targets` must have shape ({batch}, S) for `log_probs` of "
          f"shape {tuple(log_probs.shape)}, got {tuple(targets.shape)}.")
  else:
    C.check_ndim(_FN, "targets", targets, (1, 2))
    if targets.ndim == 2 and targets.shape[0] != 1:
      raise ValueError(
          f"{_FN}: `targets` must have shape (S,) or (1, S) for unbatched `log_probs` "
          f"of shape {tuple(log_probs.shape)}, got {tuple(targets.shape)}.")
  input_lengths = _lengths("input_lengths", input_lengths, batch, batched)
  target_lengths = _lengths("target_lengths", target_lengths, batch, batched)
  if where is not None:
    where = C.prepare_where(_FN, where, (batch,) if batched else (),
                            "the per-sample loss").reshape(batch)

  labels, mismatch = _padded_targets(targets, target_lengths, batch, batched,
                                     max_target_length)
  width = labels.shape[1]
  counted = jnp.ones((batch,), bool) if where is None else where
  # Every check also marks the samples it fails: torch raises for lengths out of
  # range and for a wrong concatenated layout; its CPU kernel returns a number
  # (or reads out of bounds) for labels equal to blank or outside [0, C). All of
  # them are nan here (values and gradients) and reported under checkify.
  bad = _check_range("input_lengths", input_lengths, t_max, "the number of frames", counted)
  bad = bad | _check_range("target_lengths", target_lengths, width, "the targets' width",
                           counted)
  bad = bad | _check_labels(labels, target_lengths, num_classes, blank, counted)
  bad = (bad | mismatch) & counted

  out_dtype = C.output_dtype(log_probs)
  dtype = C.compute_dtype(log_probs)
  lp = C.upcast(log_probs if batched else log_probs[:, None, :], dtype)
  (lp,) = C.nan_gradient_rows(bad[None, :], lp)

  # Lengths clipped to what exists; masked samples become empty (loss 0, zero
  # gradient), so nothing non-finite can leak out of them.
  il = jnp.clip(input_lengths, 0, t_max)
  tl = jnp.clip(target_lengths, 0, width)
  if where is not None:
    il, tl = jnp.where(where, il, 0), jnp.where(where, tl, 0)
  # Checked above; clipped so that bad labels cannot index out of bounds, in int32
  # so that the blank fits whatever the targets' integer type.
  top = min(num_classes - 1, jnp.iinfo(labels.dtype).max)
  labels = jnp.clip(labels, 0, top).astype(jnp.int32)
  ext, skip = _extend(labels, blank)
  # -log p(l|x) >= 0, but p can round above 1 in float32 (optax#1771 returns -8e-8 there):
  # each frame's log-sum-exp rounds by ~eps near log p = 0, hence the tolerance.
  tol = 4.0 * max(t_max, 1) * float(jnp.finfo(dtype).eps)
  loss = C.nonnegative_value(per_sample(lp, ext, skip, il, tl, bool(zero_infinity)), tol)

  if reduction == "mean":
    loss = loss / jnp.maximum(target_lengths, 1).astype(dtype)
  out = C.reduce_loss(loss, reduction, where, out_dtype=out_dtype, bad=bad)
  return out if batched or reduction != "none" else out.reshape(())


# ----------------------------------------------------------------------------
# optax's CTC with forward probabilities (optax's layout and log_epsilon semiring)
# ----------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("blank_id", "reduction"))
def _ctc_forward_probs_kernel(logits, logit_paddings, labels, label_paddings, log_epsilon,
                              where, *, blank_id, reduction):
  out_dtype = C.output_dtype(logits)
  dtype = C.compute_dtype(logits)
  x = C.upcast(logits, dtype)
  if where is not None:
    (x,) = C.mask_inputs(where[:, None, None], 0, x)
  batch, _, num_classes = x.shape
  max_label_len = labels.shape[1]
  log_epsilon = jnp.asarray(log_epsilon, dtype)
  logit_paddings = logit_paddings.astype(dtype)
  logprobs = jax.nn.log_softmax(x)
  label_lens = max_label_len - jnp.sum(label_paddings, axis=1).astype(jnp.int32)
  # repeat[b, n] = 1 where labels[b, n] == labels[b, n + 1]: a blank must separate them.
  repeat = jnp.pad((labels[:, :-1] == labels[:, 1:]).astype(dtype), ((0, 0), (0, 1)))
  logprobs_phi = jnp.transpose(logprobs[:, :, blank_id:blank_id + 1], (1, 0, 2))  # [T, B, 1]
  # The emission log-probabilities of each label, gathered (optax: a one-hot einsum).
  index = jnp.broadcast_to(labels[:, None, :], (batch, x.shape[1], max_label_len))
  logprobs_emit = jnp.transpose(jnp.take_along_axis(logprobs, index, axis=2), (1, 0, 2))
  phi_init = jnp.full((batch, max_label_len + 1), log_epsilon).at[:, 0].set(0.0)
  emit_init = jnp.full((batch, max_label_len), log_epsilon)

  def add_to_phi(phi, score):  # phi[:, 1:] += score, in log space
    return jnp.concatenate([phi[:, :1], jnp.logaddexp(phi[:, 1:], score)], axis=-1)

  def step(prev, xs):
    prev_phi, prev_emit = prev
    logprob_emit, logprob_phi, pad = xs
    # emit -> phi epsilon transition, except before a repeated label
    phi = add_to_phi(prev_phi, prev_emit + log_epsilon * repeat)
    next_emit = jnp.logaddexp(phi[:, :-1] + logprob_emit, prev_emit + logprob_emit)
    next_phi = add_to_phi(phi + logprob_phi,
                          prev_emit + logprob_phi + log_epsilon * (1.0 - repeat))
    pad = pad[:, None]
    next_emit = pad * prev_emit + (1.0 - pad) * next_emit
    next_phi = pad * prev_phi + (1.0 - pad) * next_phi
    return (next_phi, next_emit), (next_phi, next_emit)

  xs = (logprobs_emit, logprobs_phi, logit_paddings.T)
  _, (logalpha_phi, logalpha_emit) = jax.lax.scan(step, (phi_init, emit_init), xs)
  last = add_to_phi(logalpha_phi[-1], logalpha_emit[-1])  # the final epsilon transition
  logalpha_phi = logalpha_phi.at[-1].set(last)
  loss = -jnp.take_along_axis(last, label_lens[:, None], axis=1)[:, 0]
  loss = C.reduce_loss(loss, reduction, where, out_dtype=out_dtype)
  return loss, logalpha_phi.astype(out_dtype), logalpha_emit.astype(out_dtype)


def ctc_loss_with_forward_probs(logits: ArrayLike, logit_paddings: ArrayLike,
                                labels: ArrayLike, label_paddings: ArrayLike, *,
                                blank_id: int = 0, log_epsilon: ArrayLike = -1e5,
                                reduction: str = "none",
                                where: ArrayLike | None = None) -> tuple[Array, Array, Array]:
  r"""CTC loss and forward probabilities, ``optax.losses.ctc_loss_with_forward_probs``.

  optax's formulation of CTC (Graves et al.) on padded batches: ``logits``
  ``(B, T, K)`` (log-softmax is applied here), ``0/1`` padding indicators
  ``(B, T)`` for frames and ``(B, N)`` for right-padded labels, and
  ``log_epsilon`` standing for :math:`\log 0` (so unreachable states hold
  ``~log_epsilon`` rather than ``-inf``, and the loss stays finite). Padded
  frames are skipped wherever they are (the recursion holds its state).
  Values and gradients (plain autodiff through the recursion) are optax's.

  Returns ``(loss, logalpha_blank, logalpha_nonblank)``: the per-sequence loss
  ``(B,)``, and :math:`\log\alpha` of the blank states ``(T, B, N + 1)`` and of
  the label states ``(T, B, N)`` (the state after frame ``t`` for having
  emitted ``n`` labels and being in a blank, resp. on label ``n``).

  For torch's layout (log-probabilities ``(T, N, C)`` with lengths, exact
  ``-inf``, ``zero_infinity``), use :func:`ctc_loss`; it gives the same loss for
  feasible targets (up to the ``log_epsilon`` approximation).

  Args:
    logits: ``(B, T, K)`` logits, ``K`` classes including the blank.
    logit_paddings: ``(B, T)``, ``1.0`` at padded frames.
    labels: ``(B, N)`` integer labels.
    label_paddings: ``(B, N)``, ``1.0`` at padded labels (right padding only).
    blank_id: the blank's class index (static).
    log_epsilon: the stand-in for :math:`\log 0` (traced).
    reduction: of the loss: ``'none'`` (default, optax's), ``'mean'`` or
      ``'sum'`` over sequences.
    where: optional ``(B,)`` bool mask of sequences; a masked sequence's loss is
      ``0`` (and leaves the mean) and its logits get exactly-zero gradients.
      Beyond optax.

  Returns:
    ``(loss, logalpha_blank, logalpha_nonblank)`` in ``logits``' dtype.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> logits = jnp.zeros((1, 4, 3))  # uniform over {blank, a, b}
    >>> loss, alpha_blank, alpha_label = jaxloss.ctc_loss_with_forward_probs(
    ...     logits, jnp.zeros((1, 4)), jnp.array([[1, 2]]), jnp.zeros((1, 2)))
    >>> print(f"{float(loss[0]):.4f}", alpha_blank.shape, alpha_label.shape)
    1.6864 (4, 1, 3) (4, 1, 2)

  References:
    - Graves et al., "Connectionist Temporal Classification: Labelling
      Unsegmented Sequence Data with Recurrent Neural Networks", ICML 2006.
    - optax, ``optax.losses.ctc_loss_with_forward_probs``.
  """
  fn = "ctc_loss_with_forward_probs"
  C.check_reduction(fn, reduction)
  logits = C.as_float_array(fn, "logits", logits)
  C.check_ndim(fn, "logits", logits, 3)
  batch, frames, num_classes = logits.shape
  logit_paddings = jnp.asarray(logit_paddings)
  C.check_shape(fn, "logit_paddings", logit_paddings, (batch, frames), "`logits`' (B, T)")
  labels = C.as_int_array(fn, "labels", labels)
  C.check_ndim(fn, "labels", labels, 2)
  if labels.shape[0] != batch:
    raise ValueError(f"{fn}: `labels` must have batch size {batch} (that of `logits`), got "
                     f"shape {tuple(labels.shape)}.")
  label_paddings = jnp.asarray(label_paddings)
  C.check_shape(fn, "label_paddings", label_paddings, labels.shape, "the shape of `labels`")
  blank_id = C.static_int(fn, "blank_id", blank_id)
  if not 0 <= blank_id < num_classes:
    raise ValueError(f"{fn}: `blank_id` must lie in [0, {num_classes}), got {blank_id}.")
  where = C.prepare_where(fn, where, (batch,), "one entry per sequence")
  return _ctc_forward_probs_kernel(logits, logit_paddings, labels, label_paddings, log_epsilon,
                                   where, blank_id=blank_id, reduction=reduction)
