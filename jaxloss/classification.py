"""Classification losses: cross-entropy on logits and NLL on log-probabilities.

``cross_entropy`` and ``nll_loss`` mirror ``torch.nn.functional`` (torch 2.13,
``aten/src/ATen/native/LossNLL.cpp``) value for value and gradient for gradient:

* Class-index targets: ``input`` is ``(C,)`` with a scalar target, ``(N, C)``
  with ``(N,)`` targets, or ``(N, C, d1, ..., dK)`` with ``(N, d1, ..., dK)``
  targets (torch's layout; the keyword ``axis`` names any other class axis, e.g.
  ``axis=-1`` for ``(N, T, C)`` logits, and the kernels reduce along it in place,
  without a transpose). Targets equal to ``ignore_index`` contribute ``0`` and leave the
  mean's denominator, which is the number (or, with ``weight``, the summed class
  weights) of the counted targets. A batch whose targets are all ignored has a
  ``nan`` mean (``0 / 0``, as torch) and a zero gradient.
* Class-probability targets (``cross_entropy`` only): a floating ``target`` of
  ``input``'s shape. The mean divides by the number of samples, never by the
  weights (torch's choice).
* ``label_smoothing`` ``eps`` (``cross_entropy`` only). With class indices
  torch computes ``(1 - eps) * nll + eps / C * smooth`` where
  ``smooth_i = -sum_c w_c log p_ic`` shares the NLL's ignore mask and
  denominator; with probabilities the target becomes ``(1 - eps) * y + eps / C``.

Memory: the forward pass never builds a one-hot or any other logits-sized
temporary; the target's log-probability is gathered with ``take_along_axis`` and
every class-axis term is a fused reduction. The gradient with respect to the
logits is one fused element-wise pass (no scatter into a second buffer), and
masked or ignored samples get exactly-zero gradients without a masked copy of
the logits (see ``_gradient_only_where``). With float32 class-index targets,
XLA:CPU compiles N=8192, C=131072 (4 GiB of logits) to ~0.1 MiB of forward
temporaries and ~0.1 MiB besides the gradient for ``value_and_grad``;
``weight`` together with ``label_smoothing`` costs one extra logits-sized
buffer in the backward pass there, and half-precision logits a float32 copy.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxloss import _common as C

Array = C.Array
ArrayLike = C.ArrayLike


# ----------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------


def _check_input(fn: str, input: ArrayLike) -> Array:
  input = C.as_float_array(fn, "input", input)
  if input.ndim < 1:
    raise ValueError(
        f"{fn}: `input` must have shape (C,), (N, C) or (N, C, d1, ..., dK), "
        f"got {tuple(input.shape)}."
    )
  return input


def _sample_shape(input: Array, cax: int) -> tuple[int, ...]:
  """The per-sample loss shape: ``input``'s shape without the class axis ``cax``."""
  return tuple(input.shape[:cax]) + tuple(input.shape[cax + 1:])


def _check_weight(fn: str, weight: ArrayLike | None, num_classes: int, dtype) -> Array | None:
  if weight is None:
    return None
  weight = C.as_float_array(fn, "weight", weight)
  C.check_shape(fn, "weight", weight, (num_classes,), "one weight per class")
  return C.upcast(weight, dtype)


_check_label_smoothing = C.check_label_smoothing


def _check_ignore_index(fn: str, ignore_index) -> int:
  return C.static_int(fn, "ignore_index", ignore_index)


# ----------------------------------------------------------------------------
# Class-index targets
# ----------------------------------------------------------------------------


def _weighted_nll(target_logp: Array, counted: Array, index: Array,
                  weight: Array | None) -> tuple[Array, Array | None]:
  """``-w[y] log p_y`` where counted, else 0; also ``w[y]`` (``None`` without weights)."""
  zero = jnp.zeros((), target_logp.dtype)
  if weight is None:
    return jnp.where(counted, -target_logp, zero), None
  target_weight = jnp.take(weight, index, mode="fill")
  return jnp.where(counted, -(target_logp * target_weight), zero), target_weight


def _prepare_index_target(fn: str, input: Array, target: ArrayLike, ignore_index: int,
                          where: ArrayLike | None, cax: int,
                          axis: int | None) -> tuple[Array, Array]:
  """Validates class indices; returns ``(counted, safe_index)``.

  ``counted`` is ``True`` for targets that are neither ``ignore_index`` nor
  masked by ``where``. ``safe_index`` is ``0`` where not counted and an
  out-of-bounds index (so the gather yields ``nan``) for a counted target
  outside ``[0, C)``; JAX would otherwise wrap negative indices silently.
  """
  target = jnp.asarray(target)
  expected = _sample_shape(input, cax)
  if target.shape == input.shape and jnp.issubdtype(target.dtype, jnp.integer):
    raise ValueError(
        f"{fn}: `target` of `input`'s shape {tuple(input.shape)} holds class "
        f"probabilities and must be floating-point, got dtype {target.dtype}."
    )
  what = f"class indices for `input` of shape {tuple(input.shape)}"
  target = C.as_int_array(fn, "target", target)
  C.check_class_target_shape(fn, target, input.shape, cax, axis, what)
  return C.prepare_class_index(fn, target, expected, input.shape[cax], ignore_index, where,
                               what)


@jax.custom_jvp
def _gradient_only_where(x: Array, keep: Array) -> Array:
  """The identity on ``x`` whose derivative is zeroed where ``keep`` is ``False``.

  The "double where" trick (``_common.mask_inputs``) selects safe values in the
  forward pass, which on XLA:CPU materialises a logits-sized copy in front of
  the class-axis reductions. Zeroing the *tangent* instead keeps the forward a
  pure read of the logits while still making the gradient of uncounted
  samples exactly zero, even where their logits are inf/nan (the select
  discards the nan that ``0 * inf`` produces further down the backward pass).
  """
  del keep
  return x


@_gradient_only_where.defjvp
def _gradient_only_where_jvp(primals, tangents):
  x, keep = primals
  dx, _ = tangents
  return x, jnp.where(keep, dx, jnp.zeros((), dx.dtype))


def _mask_rows(counted: Array, x: Array, cax: int) -> Array:
  """``x`` with exactly-zero derivatives at the uncounted samples (see above)."""
  return _gradient_only_where(x, jnp.expand_dims(counted, cax))


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def _take_class(x: Array, index: Array, cax: int) -> Array:
  """``x[..., index, ...]`` along the class axis; ``nan`` for out-of-bounds indices.

  The value is a gather. Its derivative is written as a masked sum over the
  class axis, whose transpose is an element-wise ``where(c == index, ct, 0)``
  that XLA fuses into the rest of the gradient, instead of the scatter-add
  into a separate logits-sized buffer that the gather's own transpose is.
  """
  taken = jnp.take_along_axis(x, jnp.expand_dims(index, cax), axis=cax, mode="fill")
  return jnp.squeeze(taken, cax)


@_take_class.defjvp
def _take_class_jvp(cax, primals, tangents):
  x, index = primals
  dx, _ = tangents
  hit = jax.lax.broadcasted_iota(index.dtype, x.shape, cax) == jnp.expand_dims(index, cax)
  return _take_class(x, index, cax), jnp.sum(jnp.where(hit, dx, jnp.zeros((), dx.dtype)),
                                             axis=cax)


def _in_bounds(index: Array, bad: Array) -> Array:
  """``index`` with the invalid targets (``bad``) sent to class 0.

  Their values and gradients are made ``nan`` by ``bad`` itself
  (``_reduce_index_loss``, ``C.nan_gradient_rows``), so the gathers need no
  out-of-bounds fill: an in-bounds gather is the one optax's loss compiles to,
  and the fill's bounds test cost ~5% of ``cross_entropy``'s time on XLA:CPU.
  """
  return jnp.where(bad, jnp.zeros((), index.dtype), index)


def _log_normalizer(x: Array, cax: int) -> tuple[Array, Array]:
  """``(m, log_z)``, per sample (the class axis reduced away), with
  ``log_softmax(x) = (x - m) - log_z`` along ``cax``, as torch computes it.

  The per-sample shape (not ``keepdims``) matters for speed on XLA:CPU: with a
  size-1 class axis the value of ``cross_entropy`` ran ~5% slower (bench/losses.py).
  """
  m = jax.lax.stop_gradient(jnp.max(x, axis=cax))
  m = jnp.where(jnp.isfinite(m), m, jnp.zeros((), m.dtype))
  log_z = jnp.log(jnp.sum(jnp.exp(x - jnp.expand_dims(m, cax)), axis=cax))
  return m, log_z


def _reduce_index_loss(loss: Array, counted: Array, target_weight: Array | None,
                       reduction: str, out_dtype, bad: Array) -> Array:
  """Reduces a per-sample loss that is already ``0`` where not counted; ``nan`` where ``bad``.

  ``C.reduce_loss``'s semantics, the nan contract included, in the form that
  compiles to optax's kernels: the sum over samples fuses into the class-axis
  reduction, and an invalid target enters only through a ``nan`` in the mean's
  denominator (or, for ``'sum'``, a factor ``1 + nan``). Either way the value is
  ``nan`` and so is its derivative with respect to the sum, hence the gradient
  of every argument; masked and ignored samples keep their zero gradient (the
  ``where`` above them drops the cotangent). A separate count of the invalid
  targets with ``C.nan_where`` would add two kernels and cost ~5% on XLA:CPU.
  """
  if reduction == "none":
    return C.reduce_loss(loss, reduction, counted, out_dtype=out_dtype, bad=bad)
  zero, nan = jnp.zeros((), loss.dtype), jnp.full((), jnp.nan, loss.dtype)
  bad = bad & counted
  total = jnp.sum(loss)
  if reduction == "sum":
    out = total * (1 + jnp.sum(jnp.where(bad, nan, zero))) if bad.size else total
  else:
    weights = counted.astype(loss.dtype) if target_weight is None else target_weight
    out = total / jnp.sum(jnp.where(counted, jnp.where(bad, nan, weights), zero))
  return out.astype(out_dtype)


# Jitted kernels: fn, ignore_index, reduction, whether there is smoothing, the class axis
# and whether `where` masks classes are static; the smoothing eps is traced (a sweep over
# it does not recompile). An eager call runs one compiled program; inside a caller's jit
# they are inlined.
_kernel = functools.partial(jax.jit, static_argnums=(0, 4, 5, 6, 7, 8, 9))


def _poison_bad_option(fn: str, out: Array, eps, smoothing) -> Array:
  """``nan`` (value and gradients) for a traced ``label_smoothing`` outside ``[0, 1]``.

  ``smoothing`` is static: ``False`` (none), ``'python'`` (checked when called) or
  ``'traced'``.
  """
  if smoothing != "traced":
    return out
  bad = C.option_out_of_range(fn, "label_smoothing", eps, C.in_unit_interval, "lie in [0, 1]")
  return C.nan_where(bad, out)


@_kernel
def _index_cross_entropy(fn, input, target, weight, ignore_index, reduction, smoothing, cax,
                         axis, class_where, eps, where):
  out_dtype = C.output_dtype(input)
  dtype = C.compute_dtype(input)
  num_classes = input.shape[cax]
  weight = _check_weight(fn, weight, num_classes, dtype)
  if class_where:
    out = _class_masked_index_loss(fn, input, target, weight, ignore_index, reduction,
                                   smoothing, cax, axis, eps, where, dtype, out_dtype)
    return _poison_bad_option(fn, out, eps, smoothing)
  counted, index = _prepare_index_target(fn, input, target, ignore_index, where, cax, axis)
  bad = C.invalid_class_index(index, num_classes)
  index = _in_bounds(index, bad)
  # One upcast for every use, so that the gradient's terms are summed in
  # float32 before the single cast back to half precision.
  (x,) = C.nan_gradient_rows(bad, _mask_rows(counted, C.upcast(input, dtype), cax), axis=cax)

  m, log_z = _log_normalizer(x, cax)
  target_logp = (_take_class(x, index, cax) - m) - log_z
  nll, target_weight = _weighted_nll(target_logp, counted, index, weight)
  loss = nll
  if smoothing:
    # sum_c w_c log p_c as one fused reduction over the logits. Subtracting
    # the row constant `m + log_z` in one step (rather than `x - m`, which the
    # log-normaliser also computes) keeps XLA from sharing, hence
    # materialising, a logits-sized `x - m` between the two reductions.
    # The row constant enters under stop_gradient and its derivative is added
    # back as `W * (log_z - sg(log_z))` (value exactly 0): otherwise the
    # backward pass reduces a logits-sized broadcast of `w_c * cotangent` to
    # get `W * cotangent`, and XLA materialises it.
    shape = [1] * x.ndim
    shape[cax] = num_classes
    logp = x - jax.lax.stop_gradient(jnp.expand_dims(m + log_z, cax))
    if weight is None:
      total_weight = num_classes
      weighted = logp
    else:
      total_weight = jnp.sum(weight)
      weighted = logp * weight.reshape(shape)
    smooth = -jnp.sum(weighted, axis=cax) + total_weight * (log_z - jax.lax.stop_gradient(log_z))
    smooth = jnp.where(counted, smooth, jnp.zeros((), dtype))
    loss = (1.0 - eps) * nll + smooth * (eps / num_classes)
  out = _reduce_index_loss(loss, counted, target_weight, reduction, out_dtype, bad)
  return _poison_bad_option(fn, out, eps, smoothing)


# ----------------------------------------------------------------------------
# `where` of `input`'s shape: classes masked out of the softmax (optax's `where`)
# ----------------------------------------------------------------------------


def _class_mask(fn: str, where: ArrayLike, input: Array) -> Array:
  where = jnp.asarray(where)
  if where.dtype != jnp.bool_:
    raise ValueError(f"{fn}: `where` must be a boolean array, got dtype {where.dtype}.")
  try:
    return jnp.broadcast_to(where, input.shape)
  except ValueError:
    raise ValueError(
        f"{fn}: `where` of shape {tuple(where.shape)} has `input`'s number of dimensions, so "
        f"it masks classes and must be broadcastable to `input`'s shape "
        f"{tuple(input.shape)}.") from None


def _masked_log_softmax(x: Array, keep: Array, cax: int) -> tuple[Array, Array]:
  """``log_softmax`` over the kept classes (``0`` at the others, with a zero gradient).

  Also returns the number of kept classes per sample. A sample without kept
  classes has ``log p = 0`` everywhere and finite (zero) gradients.
  """
  zero = jnp.zeros((), x.dtype)
  xs = jnp.where(keep, x, zero)  # the "double where": masked inf/nan reach no gradient
  m = jax.lax.stop_gradient(jnp.max(jnp.where(keep, xs, -jnp.inf), axis=cax, keepdims=True))
  m = jnp.where(jnp.isfinite(m), m, zero)
  total = jnp.sum(jnp.where(keep, jnp.exp(xs - m), zero), axis=cax, keepdims=True)
  kept = jnp.sum(keep, axis=cax, dtype=x.dtype)
  total = jnp.where(jnp.expand_dims(kept, cax) > 0, total, jnp.ones((), x.dtype))
  return jnp.where(keep, (xs - m) - jnp.log(total), zero), kept


def _class_masked_index_loss(fn, input, target, weight, ignore_index, reduction, smoothing,
                             cax, axis, eps, where, dtype, out_dtype):
  keep = _class_mask(fn, where, input)
  any_kept = jnp.any(keep, axis=cax)
  counted, index = _prepare_index_target(fn, input, target, ignore_index, any_kept, cax, axis)
  num_classes = input.shape[cax]
  bad = C.invalid_class_index(index, num_classes)
  index = _in_bounds(index, bad)
  # A target class that `where` masks out has no probability: nan (torch-style
  # contract for an invalid target), reported under checkify.
  target_kept = jnp.squeeze(jnp.take_along_axis(keep, jnp.expand_dims(index, cax), axis=cax),
                            cax)
  masked_target = counted & ~bad & ~target_kept
  C.value_check(~jnp.any(masked_target),
                f"{fn}: `target` holds class {{bad}}, which `where` masks out of the softmax.",
                bad=jnp.max(jnp.where(masked_target, index, -1), initial=-1))
  bad = bad | masked_target
  (x,) = C.nan_gradient_rows(bad, _mask_rows(counted, C.upcast(input, dtype), cax), axis=cax)
  logp, kept = _masked_log_softmax(x, keep, cax)
  nll, target_weight = _weighted_nll(_take_class(logp, index, cax), counted, index, weight)
  loss = nll
  if smoothing:
    if weight is not None:
      shape = [1] * x.ndim
      shape[cax] = num_classes
      logp = logp * weight.reshape(shape)
    smooth = jnp.where(counted, -jnp.sum(logp, axis=cax), jnp.zeros((), dtype))
    loss = (1.0 - eps) * nll + smooth * (eps / jnp.maximum(kept, 1))
  return _reduce_index_loss(loss, counted, target_weight, reduction, out_dtype, bad)


# ----------------------------------------------------------------------------
# Class-probability targets
# ----------------------------------------------------------------------------


@_kernel
def _probability_cross_entropy(fn, input, target, weight, ignore_index, reduction, smoothing,
                               cax, axis, class_where, eps, where):
  del axis
  if ignore_index >= 0:
    raise ValueError(
        f"{fn}: `ignore_index` is not supported for class-probability targets; it "
        f"must be negative (the default -100), got {ignore_index}."
    )
  out_dtype = C.output_dtype(input, target)
  dtype = C.compute_dtype(input, target)
  num_classes = input.shape[cax]
  weight = _check_weight(fn, weight, num_classes, dtype)
  x, t = C.upcast(input, dtype), C.upcast(target, dtype)
  if class_where:
    keep = _class_mask(fn, where, input)
    where = jnp.any(keep, axis=cax)
    x, t = _mask_rows(where, x, cax), _mask_rows(where, t, cax)
    (t,) = C.mask_inputs(keep, 0, t)
    logp, kept = _masked_log_softmax(x, keep, cax)
    if smoothing:
      uniform = jnp.expand_dims(eps / jnp.maximum(kept, 1), cax)
      t = jnp.where(keep, t * (1.0 - eps) + uniform, jnp.zeros((), dtype))
  else:
    where = C.prepare_where(fn, where, _sample_shape(input, cax),
                            "the per-sample loss (`input`'s shape without the class axis)")
    if where is not None:
      x, t = _mask_rows(where, x, cax), _mask_rows(where, t, cax)
    m, log_z = _log_normalizer(x, cax)
    logp = (x - jnp.expand_dims(m, cax)) - jnp.expand_dims(log_z, cax)
    if smoothing:
      t = t * (1.0 - eps) + eps / num_classes
  terms = logp * t
  if weight is not None:
    shape = [1] * x.ndim
    shape[cax] = num_classes
    terms = terms * weight.reshape(shape)
  loss = -jnp.sum(terms, axis=cax)
  out = C.reduce_loss(loss, reduction, where, out_dtype=out_dtype)
  return _poison_bad_option(fn, out, eps, smoothing)


# ----------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------


def cross_entropy(input: ArrayLike, target: ArrayLike, weight: ArrayLike | None = None,
                  size_average=None, ignore_index: int = -100, reduce=None,
                  reduction: str = "mean", label_smoothing: float = 0.0, *,
                  axis: int | None = None, where: ArrayLike | None = None) -> Array:
  r"""Cross-entropy between logits and a target, ``torch.nn.functional.cross_entropy``.

  With class indices :math:`y_n`, :math:`\log p = \operatorname{log\_softmax}(x)`
  over the class axis, class weights :math:`w` and smoothing :math:`\varepsilon`:

  .. math::
     \ell_n = (1 - \varepsilon)\,(-w_{y_n} \log p_{n, y_n})
              + \frac{\varepsilon}{C} \sum_c -w_c \log p_{n, c}

  (``0`` where :math:`y_n` is ``ignore_index`` or ``where`` is ``False``);
  ``'mean'`` is :math:`\sum_n \ell_n / \sum_n w_{y_n}` over the counted samples.
  With class probabilities :math:`q` (a floating target of ``input``'s shape):

  .. math::
     \ell_n = -\sum_c w_c\, \tilde q_{n,c} \log p_{n,c}, \qquad
     \tilde q = (1 - \varepsilon)\, q + \varepsilon / C

  and ``'mean'`` divides by the number of (unmasked) samples.

  Args:
    input: logits, ``(C,)``, ``(N, C)`` or ``(N, C, d1, ..., dK)`` (torch's
      layout), or with the classes on the axis ``axis``: e.g. Flax's
      ``(N, T, C)`` with ``axis=-1``.
    target: integer class indices of ``input``'s shape without the class axis:
      ``()``, ``(N,)`` or ``(N, d1, ..., dK)``; or floating class probabilities
      of ``input``'s shape (differentiable).
    weight: optional class weights ``(C,)``. torch refuses to differentiate
      ``weight`` with class-index targets; here its gradient is exact.
    size_average: deprecated in torch; must be ``None``.
    ignore_index: a class index whose targets are ignored (class-index targets
      only; must be negative for probability targets, as in torch). May be a
      valid class index.
    reduce: deprecated in torch; must be ``None``.
    reduction: ``'none' | 'mean' | 'sum'``.
    label_smoothing: :math:`\varepsilon \in [0, 1]`: a Python float, or a
      traced scalar (e.g. under ``jax.vmap`` over a population of values; one
      compilation serves every value). A traced value outside ``[0, 1]`` (or
      nan) makes the result ``nan`` and is reported under ``checkify``.
    axis: the class axis of ``input`` (keyword-only, beyond torch). ``None``
      (the default) is torch's layout: axis 1, or 0 for a 1-D ``input``. Pass
      ``axis=-1`` for class-last logits (JAX's and optax's layout).
    where: optional bool mask, in one of two shapes (as optax's ``where``):

      * **per sample**: fewer dimensions than ``input``, broadcastable to the
        per-sample loss shape (``input``'s shape without the class axis, i.e.
        the index target's shape). Masked samples leave the sum and the
        (weighted) denominator and get exactly-zero gradients, even with
        non-finite logits.
      * **per class**: ``input``'s number of dimensions, broadcastable to
        ``input``'s shape. ``False`` entries are classes removed from that
        sample's softmax, as if they were not there (their logits get
        exactly-zero gradients; label smoothing spreads ``eps`` over the kept
        classes :math:`C_n`, i.e. ``eps / C_n`` each; probability targets lose
        their mass there). A sample with no kept class is masked out as a whole.
        A class-index target at a masked class gives ``nan`` (reported under
        ``checkify``): optax returns a finite number there.

  Returns:
    The loss in ``input``'s dtype (float32 compute for half precision): a
    scalar, or the per-sample loss for ``reduction='none'``.

  Ignored samples are treated like masked ones for gradients: their logits get
  an exactly-zero gradient even when non-finite (torch gives ``nan`` there);
  with finite logits this is identical to torch.
  Out-of-range class indices (not ``ignore_index``; torch raises) give ``nan``:
  the sample's loss, any reduction over it, and the gradients (every argument's
  for a reduced loss, the sample's logits for ``'none'``); they are reported
  under ``checkify.checkify``.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> logits = jnp.array([[2.0, 0.5, -1.0], [0.0, 1.0, 0.0]])
    >>> loss = jaxloss.cross_entropy(logits, jnp.array([0, 2]), label_smoothing=0.1)
    >>> print(f"{float(loss):.4f}")
    0.9547

  References:
    - PyTorch, ``torch.nn.functional.cross_entropy``:
      https://pytorch.org/docs/stable/generated/torch.nn.functional.cross_entropy.html
    - Szegedy et al., "Rethinking the Inception Architecture for Computer Vision", CVPR 2016
      (label smoothing).
  """
  fn = "cross_entropy"
  C.reject_legacy_args(fn, size_average, reduce)
  C.check_reduction(fn, reduction)
  eps = _check_label_smoothing(fn, label_smoothing)
  # A Python 0 needs no smoothing terms (static branch); any other value is traced.
  smoothing = "traced" if C.is_traced_option(eps) else "python" if eps != 0.0 else False
  eps = eps if smoothing else None
  ignore_index = _check_ignore_index(fn, ignore_index)
  input = _check_input(fn, input)
  cax = C.class_axis(fn, axis, input)
  axis = None if axis is None else cax  # hashable, one cache entry per layout
  class_where = where is not None and jnp.ndim(where) == input.ndim
  target = jnp.asarray(target)
  if jnp.issubdtype(target.dtype, jnp.floating):
    if target.shape != input.shape:
      raise ValueError(
          f"{fn}: a floating-point `target` holds class probabilities and must "
          f"have the shape of `input` {tuple(input.shape)}, got "
          f"{tuple(target.shape)} (class indices must be integers)."
      )
    return _probability_cross_entropy(fn, input, target, weight, ignore_index, reduction,
                                      smoothing, cax, axis, class_where, eps, where)
  return _index_cross_entropy(fn, input, target, weight, ignore_index, reduction, smoothing,
                              cax, axis, class_where, eps, where)


def nll_loss(input: ArrayLike, target: ArrayLike, weight: ArrayLike | None = None,
             size_average=None, ignore_index: int = -100, reduce=None,
             reduction: str = "mean", *, axis: int | None = None,
             where: ArrayLike | None = None) -> Array:
  r"""Negative log-likelihood, ``torch.nn.functional.nll_loss``.

  .. math:: \ell_n = -w_{y_n}\, x_{n, y_n}

  (``0`` where :math:`y_n` is ``ignore_index`` or ``where`` is ``False``);
  ``'mean'`` is :math:`\sum_n \ell_n / \sum_n w_{y_n}` over the counted
  samples (``nan`` if none is counted, as in torch).

  Args:
    input: log-probabilities, ``(C,)``, ``(N, C)`` or ``(N, C, d1, ..., dK)``
      (torch's layout), or with the classes on the axis ``axis``.
    target: integer class indices of ``input``'s shape without the class axis:
      ``()``, ``(N,)`` or ``(N, d1, ..., dK)``.
    weight: optional class weights ``(C,)`` (differentiable here; torch
      refuses).
    size_average: deprecated in torch; must be ``None``.
    ignore_index: a class index whose targets are ignored.
    reduce: deprecated in torch; must be ``None``.
    reduction: ``'none' | 'mean' | 'sum'``.
    axis: the class axis of ``input`` (keyword-only, beyond torch); ``None`` is
      torch's (1, or 0 for 1-D ``input``), ``-1`` class-last.
    where: optional bool mask broadcastable to ``target``'s shape; masked
      samples leave the sum and the (weighted) denominator. (Per sample only:
      ``input`` is already normalised, so there is no softmax to mask classes
      out of.)

  Returns:
    The loss in ``input``'s dtype: a scalar, or ``target``'s shape for
    ``reduction='none'``. Out-of-range class indices give ``nan`` (values and
    gradients, as :func:`cross_entropy`) and are reported under ``checkify``.

  Examples:
    >>> import jax
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> log_probs = jax.nn.log_softmax(jnp.array([[2.0, 0.5, -1.0], [0.0, 1.0, 0.0]]))
    >>> loss = jaxloss.nll_loss(log_probs, jnp.array([0, 2]))
    >>> print(f"{float(loss):.4f}")
    0.8964

  References:
    - PyTorch, ``torch.nn.functional.nll_loss``:
      https://pytorch.org/docs/stable/generated/torch.nn.functional.nll_loss.html
  """
  fn = "nll_loss"
  C.reject_legacy_args(fn, size_average, reduce)
  C.check_reduction(fn, reduction)
  ignore_index = _check_ignore_index(fn, ignore_index)
  input = _check_input(fn, input)
  cax = C.class_axis(fn, axis, input)
  axis = None if axis is None else cax
  return _nll_kernel(fn, input, target, weight, ignore_index, reduction, False, cax, axis,
                     False, None, where)


@_kernel
def _nll_kernel(fn, input, target, weight, ignore_index, reduction, smoothing, cax, axis,
                class_where, eps, where):
  del smoothing, class_where, eps
  out_dtype = C.output_dtype(input)
  dtype = C.compute_dtype(input)
  weight = _check_weight(fn, weight, input.shape[cax], dtype)
  counted, index = _prepare_index_target(fn, input, target, ignore_index, where, cax, axis)
  bad = C.invalid_class_index(index, input.shape[cax])
  index = _in_bounds(index, bad)
  (x,) = C.nan_gradient_rows(bad, _mask_rows(counted, input, cax), axis=cax)
  picked = C.upcast(_take_class(x, index, cax), dtype)
  loss, target_weight = _weighted_nll(picked, counted, index, weight)
  return _reduce_index_loss(loss, counted, target_weight, reduction, out_dtype, bad)


# ----------------------------------------------------------------------------
# optax's classification losses without a torch counterpart (optax's names,
# arguments and layout: the class axis is the keyword-only `axis`, default -1;
# per-sample values by default, `reduction='none'`)
# ----------------------------------------------------------------------------


def _soft_label_prepare(fn: str, logits, labels, axis, where):
  """Validates ``logits``/``labels`` (probabilities, broadcastable to ``logits``) and ``where``."""
  logits = C.as_float_array(fn, "logits", logits)
  labels = C.as_float_array(fn, "labels", labels)
  if logits.ndim < 1:
    raise ValueError(f"{fn}: `logits` must have a class axis, got shape {tuple(logits.shape)}.")
  axis = C.normalize_axis(fn, axis, logits.ndim)
  if C.broadcast_shape(fn, logits=logits, labels=labels) != tuple(logits.shape):
    raise ValueError(f"{fn}: `labels` of shape {tuple(labels.shape)} must be broadcastable "
                     f"to the shape of `logits` {tuple(logits.shape)}.")
  where = C.optax_where(fn, where, logits.shape, axis)
  return logits, labels, axis, where


@jax.custom_jvp
def _weighted_log_softmax(x: Array, weights: Array) -> Array:
  """``weights * log_softmax(x)`` over the last axis with ``0 * log 0 = 0`` (optax's)."""
  log_p = jax.nn.log_softmax(x, axis=-1)
  return jnp.where(weights != 0, weights * log_p, jnp.zeros((), log_p.dtype))


@_weighted_log_softmax.defjvp
def _weighted_log_softmax_jvp(primals, tangents):
  # optax's rule: the derivative of w * log_softmax(x) without its 0 * inf = nan
  # where a zero weight meets a -inf logit (the x-term is w-scaled, hence 0 there).
  x, weights = primals
  x_dot, weights_dot = tangents
  log_p = jax.nn.log_softmax(x, axis=-1)
  out = jnp.where(weights != 0, weights * log_p, jnp.zeros((), log_p.dtype))
  p = jnp.exp(log_p)
  out_dot = (weights * x_dot - weights * jnp.sum(x_dot * p, axis=-1, keepdims=True)
             + weights_dot * log_p)
  return out, out_dot


@functools.partial(jax.jit, static_argnames=("axis", "reduction", "poly"))
def _soft_label_kernel(logits, labels, where, epsilon, *, axis, reduction, poly):
  """Safe softmax cross-entropy (``+ epsilon * sum(y * (1 - p))`` if ``poly``) per sample."""
  out_dtype = C.output_dtype(logits)
  dtype = C.compute_dtype(logits, labels)
  labels = jnp.broadcast_to(labels, logits.shape)
  x = C.upcast(jnp.moveaxis(logits, axis, -1), dtype)
  y = C.upcast(jnp.moveaxis(labels, axis, -1), dtype)
  counted = None
  if where is not None:
    w = jnp.moveaxis(where, axis, -1)
    counted = jnp.any(w, axis=-1)
    # Masked classes leave the softmax (a -inf logit, a 0 label: the safe 0 log 0);
    # a sample with no class left is all zeros, whose loss is then 0. Both through
    # jnp.where, so that masked entries get exactly-zero gradients.
    x = jnp.where(w, x, jnp.full((), -jnp.inf, dtype))
    x = jnp.where(counted[..., None], x, jnp.zeros((), dtype))
    y = jnp.where(w, y, jnp.zeros((), dtype))
  loss = -jnp.sum(_weighted_log_softmax(x, y), axis=-1)
  if poly:  # exp(log_softmax): the same expression as in the custom JVP, which XLA shares
    p = jnp.exp(jax.nn.log_softmax(x, axis=-1))
    loss = loss + jnp.asarray(epsilon, dtype) * jnp.sum(y * (1 - p), axis=-1)
  return C.reduce_loss(loss, reduction, counted, out_dtype=out_dtype)


def safe_softmax_cross_entropy(logits: ArrayLike, labels: ArrayLike, *, axis: int = -1,
                               reduction: str = "none",
                               where: ArrayLike | None = None) -> Array:
  r"""Softmax cross-entropy with ``0 log 0 = 0``, ``optax.losses.safe_softmax_cross_entropy``.

  .. math:: \ell_n = -\sum_c y_{nc} \log \operatorname{softmax}(x_n)_c,
     \qquad y_{nc} \log p_{nc} := 0 \text{ where } y_{nc} = 0

  so a class with a ``-inf`` logit and a zero label contributes ``0``, where
  :func:`cross_entropy` (as torch, and ``optax.losses.softmax_cross_entropy``)
  gives ``nan``: masking classes with ``-inf`` logits is safe. Values and
  gradients are optax's, including its custom derivative: the gradient w.r.t.
  ``logits`` is finite there, the one w.r.t. such a label is ``+inf`` (the
  true derivative ``-log p``). A ``-inf`` logit of a class with a positive
  label gives ``+inf``, as it should.

  Args:
    logits: unnormalised log-probabilities, ``[..., num_classes]`` (class axis
      at ``axis``).
    labels: class probabilities, broadcastable to ``logits``.
    axis: the class axis (keyword-only), ``-1`` as optax.
    reduction: ``'none'`` (default, optax's per-sample values), ``'mean'`` or
      ``'sum'`` over the samples.
    where: optional bool mask, as optax's ``where``: of ``logits``' shape (masked
      classes leave the softmax and the sum, as if their logit were ``-inf``),
      or of the per-sample shape (masked samples). A sample without any counted
      class is ``0`` and leaves the mean's denominator; masked entries get
      exactly-zero gradients.

  Returns:
    The per-sample loss, ``logits``' shape without ``axis`` (a scalar unless
    ``reduction='none'``), in ``logits``' dtype.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> logits = jnp.array([[1.2, -jnp.inf, -0.5], [0.9, -1.2, 1.1]])
    >>> labels = jnp.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    >>> out = jaxloss.safe_softmax_cross_entropy(logits, labels)
    >>> print([round(v, 4) for v in out.tolist()])
    [0.1678, 2.9518]

  References:
    - optax, ``optax.losses.safe_softmax_cross_entropy``:
      https://optax.readthedocs.io/en/latest/api/losses.html
  """
  fn = "safe_softmax_cross_entropy"
  C.check_reduction(fn, reduction)
  logits, labels, axis, where = _soft_label_prepare(fn, logits, labels, axis, where)
  return _soft_label_kernel(logits, labels, where, 0.0, axis=axis, reduction=reduction,
                            poly=False)


def poly_loss_cross_entropy(logits: ArrayLike, labels: ArrayLike, *, epsilon: ArrayLike = 2.0,
                            axis: int = -1, reduction: str = "none",
                            where: ArrayLike | None = None) -> Array:
  r"""Poly-1 loss, ``optax.losses.poly_loss_cross_entropy``.

  .. math:: \ell_n = -\sum_c y_{nc} \log p_{nc}
     + \epsilon \sum_c y_{nc}\,(1 - p_{nc}), \qquad p_n = \operatorname{softmax}(x_n)

  the cross-entropy plus ``epsilon`` times the first polynomial term of its
  Taylor expansion in :math:`1 - p_t` (Leng et al.). Values and gradients are
  optax's, except where optax gives ``nan``: a ``-inf`` logit with a zero label
  (optax's cross-entropy term is ``0 * -inf``) contributes ``0`` here, as in
  :func:`safe_softmax_cross_entropy`.

  Args:
    logits: unnormalised log-probabilities (class axis at ``axis``).
    labels: class probabilities, broadcastable to ``logits``.
    epsilon: the coefficient of the first polynomial term (traced: a sweep does
      not recompile); ``2.0`` for ImageNet, ``-1.0`` for detection in the paper.
    axis: the class axis (keyword-only), ``-1`` as optax.
    reduction: ``'none'`` (default, optax's), ``'mean'`` or ``'sum'``.
    where: optional bool mask of ``logits``' shape (classes) or of the
      per-sample shape (samples), as :func:`safe_softmax_cross_entropy`'s.

  Returns:
    The per-sample loss, ``logits``' shape without ``axis`` (a scalar unless
    ``reduction='none'``).

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> logits = jnp.array([[1.2, -0.8, -0.5], [0.9, -1.2, 1.1]])
    >>> labels = jnp.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    >>> out = jaxloss.poly_loss_cross_entropy(logits, labels)
    >>> print([round(v, 4) for v in out.tolist()])
    [0.7587, 4.8473]

  References:
    - Leng et al., "PolyLoss: A Polynomial Expansion Perspective of
      Classification Loss Functions", ICLR 2022. https://arxiv.org/abs/2204.12511
    - optax, ``optax.losses.poly_loss_cross_entropy``.
  """
  fn = "poly_loss_cross_entropy"
  C.check_reduction(fn, reduction)
  logits, labels, axis, where = _soft_label_prepare(fn, logits, labels, axis, where)
  epsilon = jnp.asarray(epsilon)
  if epsilon.ndim:
    raise ValueError(f"{fn}: `epsilon` must be a scalar, got shape {tuple(epsilon.shape)}.")
  return _soft_label_kernel(logits, labels, where, epsilon, axis=axis, reduction=reduction,
                            poly=True)


@functools.partial(jax.jit, static_argnames=("axis", "reduction", "margin"))
def _multiclass_margin_kernel(scores, index, counted, bad, *, axis, reduction, margin):
  """``max_c (s_c + margin [c != y]) - s_y``: Crammer-Singer hinge (1) or perceptron (0)."""
  out_dtype = C.output_dtype(scores)
  dtype = C.compute_dtype(scores)
  s = C.upcast(jnp.moveaxis(scores, axis, -1), dtype)
  if counted is not None:
    (s,) = C.mask_inputs(counted[..., None], 0, s)
  (s,) = C.nan_gradient_rows(bad, s)
  is_label = jax.lax.broadcasted_iota(index.dtype, s.shape, s.ndim - 1) == index[..., None]
  picked = jnp.sum(jnp.where(is_label, s, jnp.zeros((), dtype)), axis=-1)
  shifted = s if margin == 0 else jnp.where(is_label, s, s + margin)
  loss = jnp.max(shifted, axis=-1) - picked
  return C.reduce_loss(loss, reduction, counted, out_dtype=out_dtype, bad=bad)


def multiclass_hinge_loss(scores: ArrayLike, labels: ArrayLike, *, axis: int = -1,
                          reduction: str = "none", where: ArrayLike | None = None) -> Array:
  r"""Crammer-Singer multiclass hinge, ``optax.losses.multiclass_hinge_loss``.

  .. math:: \ell_n = \max_c \bigl(s_{nc} + [c \ne y_n]\bigr) - s_{n y_n}

  The largest margin violation (a single max over classes). torch's
  ``multi_margin_loss`` (:func:`multi_margin_loss`) is Weston-Watkins': it
  *averages* the violations over the classes, a different loss. At ties of the
  max the gradient is split equally between the tied classes (``jnp.max``'s, as
  optax).

  Args:
    scores: class scores, class axis at ``axis``.
    labels: integer class indices, ``scores``' shape without ``axis``.
    axis: the class axis (keyword-only), ``-1`` as optax.
    reduction: ``'none'`` (default, optax's), ``'mean'`` or ``'sum'``.
    where: optional bool mask of the per-sample shape; masked samples are ``0``,
      leave the mean's denominator and get exactly-zero gradients.

  Returns:
    The per-sample loss (a scalar unless ``reduction='none'``). A label outside
    ``[0, C)`` gives ``nan`` (optax: a finite number from an all-zero one-hot),
    reported under ``checkify``.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> scores = jnp.array([[2.0, 1.5, -1.0], [0.0, 0.5, 0.2]])
    >>> print(jaxloss.multiclass_hinge_loss(scores, jnp.array([0, 2])))
    [0.5 1.3]

  References:
    - Crammer and Singer, "On the Algorithmic Implementation of Multiclass
      Kernel-based Vector Machines", JMLR 2001.
    - optax, ``optax.losses.multiclass_hinge_loss``.
  """
  fn = "multiclass_hinge_loss"
  C.check_reduction(fn, reduction)
  scores, axis, counted, index, bad = C.prepare_index_labels(fn, scores, labels, axis, where)
  return _multiclass_margin_kernel(scores, index, counted, bad, axis=axis, reduction=reduction,
                                   margin=1.0)


def multiclass_perceptron_loss(scores: ArrayLike, labels: ArrayLike, *, axis: int = -1,
                               reduction: str = "none",
                               where: ArrayLike | None = None) -> Array:
  r"""Multiclass perceptron loss, ``optax.losses.multiclass_perceptron_loss``.

  .. math:: \ell_n = \max_c s_{nc} - s_{n y_n}

  Zero when the label's score is (one of) the largest. At ties of the max the
  gradient is split equally between the tied classes (as optax: all-equal scores
  give ``1/C - [c = y]``). Arguments as :func:`multiclass_hinge_loss`.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> scores = jnp.array([[2.0, 1.5, -1.0], [0.0, 0.5, 0.2]])
    >>> print(jaxloss.multiclass_perceptron_loss(scores, jnp.array([0, 2])))
    [0.  0.3]

  References:
    - Collins, "Discriminative Training Methods for Hidden Markov Models:
      Theory and Experiments with Perceptron Algorithms", EMNLP 2002.
    - optax, ``optax.losses.multiclass_perceptron_loss``.
  """
  fn = "multiclass_perceptron_loss"
  C.check_reduction(fn, reduction)
  scores, axis, counted, index, bad = C.prepare_index_labels(fn, scores, labels, axis, where)
  return _multiclass_margin_kernel(scores, index, counted, bad, axis=axis, reduction=reduction,
                                   margin=0.0)
