"""Margin (hinge-type) losses, as in ``torch.nn.functional`` (torch 2.13).

Six losses, value for value and gradient for gradient with torch's CPU kernels
(``aten/src/ATen/native/Loss.cpp``, ``LossMultiMargin.cpp``,
``LossMultiLabelMargin.cpp`` and the Python ``multilabel_soft_margin_loss``):

* Element-wise, any shape: :func:`soft_margin_loss`, :func:`margin_ranking_loss`,
  :func:`hinge_embedding_loss`. ``where`` masks elements.
* Per sample over a class axis: :func:`multilabel_soft_margin_loss`,
  :func:`multilabel_margin_loss`, :func:`multi_margin_loss`. Batched ``(N, C)``
  or unbatched ``(C,)`` inputs; the per-sample loss is divided by ``C`` (torch's
  normalisation), and ``where`` masks samples.

Subgradients at the kinks follow torch: a hinge written with ``clamp_min``
(:func:`margin_ranking_loss`, :func:`hinge_embedding_loss`) passes the gradient
when the hinge argument is exactly ``0``; the hand-written kernels
(:func:`multi_margin_loss`, :func:`multilabel_margin_loss`) only count terms
with ``z > 0`` and so give ``0`` there.

Gradients beyond torch: torch refuses to differentiate ``soft_margin_loss``
w.r.t. ``target`` and ``multi_margin_loss`` w.r.t. ``weight``; here they get
their exact mathematical gradients. Where torch does differentiate a target or
weight (``margin_ranking_loss``'s ``target``, ``multilabel_soft_margin_loss``'s
``target`` and ``weight``), the gradients match torch's.

Each public function validates its arguments in Python (trace time) and then
calls a jitted kernel, so that eager (un-jitted) calls run one compiled program
instead of dozens of separately dispatched operations.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxloss import _common as C

Array = C.Array
ArrayLike = C.ArrayLike

_jit = functools.partial(jax.jit, static_argnames=("reduction", "dtype", "out_dtype"))


# ----------------------------------------------------------------------------
# Private helpers
# ----------------------------------------------------------------------------


def _as_real_array(fn: str, name: str, x: ArrayLike) -> Array:
  """A floating or integer array (torch accepts integer ``±1`` labels)."""
  x = jnp.asarray(x)
  if not (jnp.issubdtype(x.dtype, jnp.floating) or jnp.issubdtype(x.dtype, jnp.integer)):
    raise ValueError(
        f"{fn}: `{name}` must be a floating-point or integer array, got dtype {x.dtype}."
    )
  return x


def _broadcast_to(fn: str, name: str, x: Array, shape, ref: str) -> Array:
  """Broadcasts ``x`` to ``shape`` (the shape of ``ref``), or raises."""
  try:
    return jnp.broadcast_to(x, tuple(shape))
  except ValueError:
    raise ValueError(
        f"{fn}: `{name}` must be broadcastable to the shape of `{ref}` "
        f"{tuple(shape)}, got {tuple(x.shape)}."
    ) from None


def _float_dtypes(*xs: Array) -> list[Array]:
  return [x for x in xs if x is not None and jnp.issubdtype(x.dtype, jnp.floating)]


def _widen(x: Array) -> Array:
  """Narrow integers as int32, so that comparisons with ``C`` cannot wrap."""
  return x.astype(jnp.int32) if x.dtype.itemsize < 4 else x


def _positive_part(x: Array) -> Array:
  """``x if x > 0 else 0`` with gradient ``0`` at ``x == 0``, as torch's hand-written kernels."""
  return jnp.where(x > 0, x, jnp.zeros((), x.dtype))


def _sample_mask(where: Array | None, nframe: int) -> Array | None:
  """A per-sample mask as a ``(nframe, 1)`` column to mask the rows of ``input``."""
  return None if where is None else jnp.reshape(where, (nframe, 1))


def _check_class_input(fn: str, input: Array) -> tuple[int, int]:
  """torch's ``(C,)``/``(N, C)``/``()`` input check; returns ``(nframe, C)``."""
  if input.ndim > 2 or (input.ndim >= 1 and input.shape[-1] == 0):
    raise ValueError(
        f"{fn}: `input` must be a non-empty vector (C,) or matrix (N, C) (or a "
        f"scalar, C = 1), got shape {tuple(input.shape)}."
    )
  if input.ndim == 2:
    return input.shape[0], input.shape[1]
  return 1, (input.shape[0] if input.ndim == 1 else 1)


# ----------------------------------------------------------------------------
# Element-wise losses
# ----------------------------------------------------------------------------


def soft_margin_loss(input: ArrayLike, target: ArrayLike, size_average=None, reduce=None,
                     reduction: str = "mean", *, where: ArrayLike | None = None) -> Array:
  r"""Two-class logistic loss, ``torch.nn.functional.soft_margin_loss``.

  .. math:: \ell_i = \log\bigl(1 + e^{-y_i x_i}\bigr)

  computed as ``softplus(-y x)``. torch evaluates ``log(1 + exp(-y x))``
  literally, which overflows to ``inf`` (and a ``nan`` gradient) once
  ``-y x`` exceeds ~88 (float32) or ~709 (float64); this stable form agrees with
  torch everywhere torch is finite and stays finite beyond.

  Args:
    input: scores, any shape.
    target: labels (usually ``±1``; any real value is used as is), floating or
      integer, broadcastable to ``input``'s shape.
    size_average: deprecated in torch; must be ``None``.
    reduce: deprecated in torch; must be ``None``.
    reduction: ``'none' | 'mean' | 'sum'``.
    where: optional bool mask broadcastable to ``input``'s shape; masked
      elements leave the sum and the mean's denominator.

  Returns:
    The loss in ``input``'s dtype, of ``input``'s shape for ``'none'``.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> loss = jaxloss.soft_margin_loss(jnp.array([0.8, -0.4, 2.0]), jnp.array([1.0, 1.0, -1.0]))
    >>> print(f"{float(loss):.4f}")
    1.1370

  References:
    - PyTorch, ``torch.nn.functional.soft_margin_loss``:
      https://pytorch.org/docs/stable/generated/torch.nn.functional.soft_margin_loss.html
  """
  fn = "soft_margin_loss"
  C.reject_legacy_args(fn, size_average, reduce)
  C.check_reduction(fn, reduction)
  input = C.as_float_array(fn, "input", input)
  target = _broadcast_to(fn, "target", _as_real_array(fn, "target", target), input.shape,
                         "input")
  dtype = C.compute_dtype(*_float_dtypes(input, target))
  where = C.prepare_where(fn, where, input.shape)
  return _soft_margin(input, target, where, reduction=reduction, dtype=dtype,
                      out_dtype=input.dtype)


@_jit
def _soft_margin(input, target, where, *, reduction, dtype, out_dtype):
  x, y = C.mask_inputs(where, 0, C.upcast(input, dtype), C.upcast(target, dtype))
  loss = jax.nn.softplus(-y * x)
  return C.reduce_loss(loss, reduction, where, out_dtype=out_dtype)


def margin_ranking_loss(input1: ArrayLike, input2: ArrayLike, target: ArrayLike,
                        margin: float = 0, size_average=None, reduce=None,
                        reduction: str = "mean", *, where: ArrayLike | None = None) -> Array:
  r"""Ranking hinge, ``torch.nn.functional.margin_ranking_loss``.

  .. math:: \ell_i = \max\bigl(0,\; -y_i\,(x^{(1)}_i - x^{(2)}_i) + \text{margin}\bigr)

  As torch, the three arrays must have the same number of dimensions and are
  broadcast together; ``target`` is differentiable (gradient
  ``-(x1 - x2)`` on the active hinge). At the kink the gradient passes
  (torch's ``clamp_min``).

  Args:
    input1, input2: scores, same number of dimensions.
    target: ``±1`` labels (floating or integer), same number of dimensions.
    margin: the margin.
    size_average, reduce: deprecated in torch; must be ``None``.
    reduction: ``'none' | 'mean' | 'sum'``.
    where: optional bool mask broadcastable to the broadcast shape.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> x1, x2 = jnp.array([0.8, 0.1, 0.5]), jnp.array([0.3, 0.6, 0.5])
    >>> loss = jaxloss.margin_ranking_loss(x1, x2, jnp.array([1.0, -1.0, 1.0]), margin=0.2)
    >>> print(f"{float(loss):.4f}")
    0.0667

  References:
    - PyTorch, ``torch.nn.functional.margin_ranking_loss``:
      https://pytorch.org/docs/stable/generated/torch.nn.functional.margin_ranking_loss.html
  """
  fn = "margin_ranking_loss"
  C.reject_legacy_args(fn, size_average, reduce)
  C.check_reduction(fn, reduction)
  input1 = C.as_float_array(fn, "input1", input1)
  input2 = C.as_float_array(fn, "input2", input2)
  target = _as_real_array(fn, "target", target)
  if not input1.ndim == input2.ndim == target.ndim:
    raise ValueError(
        f"{fn}: `input1`, `input2` and `target` must have the same number of "
        f"dimensions, got shapes {tuple(input1.shape)}, {tuple(input2.shape)} and "
        f"{tuple(target.shape)}."
    )
  shape = C.broadcast_shape(fn, input1=input1, input2=input2, target=target)
  out_dtype = jnp.result_type(input1, input2, target)
  dtype = C.compute_dtype(input1, input2, target)
  where = C.prepare_where(fn, where, shape)
  return _margin_ranking(input1, input2, target, margin, where, reduction=reduction,
                         dtype=dtype, out_dtype=out_dtype)


@_jit
def _margin_ranking(input1, input2, target, margin, where, *, reduction, dtype, out_dtype):
  shape = jnp.broadcast_shapes(input1.shape, input2.shape, target.shape)
  x1, x2, y = (C.upcast(jnp.broadcast_to(a, shape), dtype) for a in (input1, input2, target))
  x1, x2, y = C.mask_inputs(where, 0, x1, x2, y)
  loss = C.clamp_min0(-y * (x1 - x2) + margin)
  return C.reduce_loss(loss, reduction, where, out_dtype=out_dtype)


def hinge_embedding_loss(input: ArrayLike, target: ArrayLike, margin: float = 1.0,
                         size_average=None, reduce=None, reduction: str = "mean", *,
                         where: ArrayLike | None = None) -> Array:
  r"""Hinge embedding loss, ``torch.nn.functional.hinge_embedding_loss``.

  .. math::
     \ell_i = [y_i \ne 1]\,\max(0, \text{margin} - x_i) + [y_i \ne -1]\,x_i

  i.e. ``x`` for ``y = 1`` and ``max(0, margin - x)`` for ``y = -1``. As in
  torch, labels other than ``±1`` get *both* terms (no error), ``target`` gets
  no gradient, ``input`` and ``target`` broadcast together, and the gradient
  passes at the kink ``x = margin``.

  Args:
    input: distances (or scores), any shape.
    target: labels, floating or integer, broadcastable with ``input``.
    margin: the margin.
    size_average, reduce: deprecated in torch; must be ``None``.
    reduction: ``'none' | 'mean' | 'sum'``.
    where: optional bool mask broadcastable to the broadcast shape.

  Returns:
    The loss in ``input``'s dtype.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> distances = jnp.array([0.3, 1.5, 0.4])
    >>> loss = jaxloss.hinge_embedding_loss(distances, jnp.array([1.0, -1.0, -1.0]))
    >>> print(f"{float(loss):.4f}")
    0.3000

  References:
    - PyTorch, ``torch.nn.functional.hinge_embedding_loss``:
      https://pytorch.org/docs/stable/generated/torch.nn.functional.hinge_embedding_loss.html
  """
  fn = "hinge_embedding_loss"
  C.reject_legacy_args(fn, size_average, reduce)
  C.check_reduction(fn, reduction)
  input = C.as_float_array(fn, "input", input)
  target = _as_real_array(fn, "target", target)
  shape = C.broadcast_shape(fn, input=input, target=target)
  where = C.prepare_where(fn, where, shape)
  return _hinge_embedding(input, target, margin, where, reduction=reduction,
                          dtype=C.compute_dtype(input), out_dtype=input.dtype)


@_jit
def _hinge_embedding(input, target, margin, where, *, reduction, dtype, out_dtype):
  shape = jnp.broadcast_shapes(input.shape, target.shape)
  (x,) = C.mask_inputs(where, 0, C.upcast(jnp.broadcast_to(input, shape), dtype))
  y = jax.lax.stop_gradient(jnp.broadcast_to(target, shape))
  zero = jnp.zeros((), dtype)
  loss = (jnp.where(y != 1, C.clamp_min0(margin - x), zero)
          + jnp.where(y != -1, x, zero))
  return C.reduce_loss(loss, reduction, where, out_dtype=out_dtype)


# ----------------------------------------------------------------------------
# Per-sample losses over a class axis
# ----------------------------------------------------------------------------


def multilabel_soft_margin_loss(input: ArrayLike, target: ArrayLike,
                                weight: ArrayLike | None = None, size_average=None,
                                reduce=None, reduction: str = "mean", *,
                                axis: int | None = None,
                                where: ArrayLike | None = None) -> Array:
  r"""Multi-label one-vs-all logistic loss, ``torch.nn.functional.multilabel_soft_margin_loss``.

  .. math::
     \ell_n = -\frac{1}{C}\sum_c w_c\,\bigl[y_{nc}\log\sigma(x_{nc})
              + (1 - y_{nc})\log\sigma(-x_{nc})\bigr]

  over the last axis of ``input`` (``C = input.shape[-1]``); ``'mean'`` is the
  mean over samples. ``target`` and ``weight`` are differentiable, as in torch.

  Args:
    input: logits ``(C,)``, ``(N, C)`` or ``(..., C)``.
    target: labels in ``{0, 1}`` (or soft labels), floating or integer,
      broadcastable to ``input``'s shape.
    weight: optional weights broadcastable to ``input``'s shape (typically
      ``(C,)``, one per class).
    size_average, reduce: deprecated in torch; must be ``None``.
    reduction: ``'none' | 'mean' | 'sum'``.
    axis: the class axis (keyword-only, beyond torch); ``None`` is torch's, the
      **last** axis for this loss (so ``axis=-1`` changes nothing); e.g.
      ``axis=1`` for ``(N, C, d1, ...)`` scores.
    where: optional bool mask broadcastable to the per-sample loss shape
      (``input``'s shape without the class axis, ``input.shape[:-1]`` by
      default; ``()`` for unbatched input).

  Returns:
    The loss; ``input``'s shape without the class axis for ``'none'``.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> logits = jnp.array([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]])
    >>> labels = jnp.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    >>> loss = jaxloss.multilabel_soft_margin_loss(logits, labels)
    >>> print(f"{float(loss):.4f}")
    0.3282

  References:
    - PyTorch, ``torch.nn.functional.multilabel_soft_margin_loss``:
      https://pytorch.org/docs/stable/generated/torch.nn.functional.multilabel_soft_margin_loss.html
  """
  fn = "multilabel_soft_margin_loss"
  C.reject_legacy_args(fn, size_average, reduce)
  C.check_reduction(fn, reduction)
  input = C.as_float_array(fn, "input", input)
  if input.ndim < 1:
    raise ValueError(f"{fn}: `input` must be (C,) or (N, C), got shape {tuple(input.shape)}.")
  target = _broadcast_to(fn, "target", _as_real_array(fn, "target", target), input.shape,
                         "input")
  if weight is not None:
    weight = _broadcast_to(fn, "weight", C.as_float_array(fn, "weight", weight),
                           input.shape, "input")
  if axis is not None:  # the class axis goes last, torch's layout for this loss
    input, target, weight = (None if a is None else C.move_class_axis(fn, axis, a, to=-1)
                             for a in (input, target, weight))
  floats = _float_dtypes(input, target, weight)
  out_dtype = C.output_dtype(*floats)
  dtype = C.compute_dtype(*floats)
  where = C.prepare_where(fn, where, input.shape[:-1], "the per-sample loss")
  return _multilabel_soft_margin(input, target, weight, where, reduction=reduction,
                                 dtype=dtype, out_dtype=out_dtype)


@_jit
def _multilabel_soft_margin(input, target, weight, where, *, reduction, dtype, out_dtype):
  row_mask = None if where is None else where[..., None]
  x, y = C.mask_inputs(row_mask, 0, C.upcast(input, dtype), C.upcast(target, dtype))
  loss = -(y * jax.nn.log_sigmoid(x) + (1 - y) * jax.nn.log_sigmoid(-x))
  if weight is not None:
    (w,) = C.mask_inputs(row_mask, 0, C.upcast(weight, dtype))
    loss = loss * w
  loss = jnp.sum(loss, axis=-1) / input.shape[-1]
  return C.reduce_loss(loss, reduction, where, out_dtype=out_dtype)


def multilabel_margin_loss(input: ArrayLike, target: ArrayLike, size_average=None,
                           reduce=None, reduction: str = "mean", *, axis: int | None = None,
                           where: ArrayLike | None = None) -> Array:
  r"""Multi-label hinge, ``torch.nn.functional.multilabel_margin_loss``.

  .. math::
     \ell_n = \frac{1}{C}\sum_{j \in J_n}\sum_{i \notin J_n}
              \max\bigl(0,\; 1 - (x_{n,y_{nj}} - x_{ni})\bigr)

  ``target`` holds class indices padded with ``-1``: only the prefix before the
  first negative entry counts (``J_n``; a repeated index counts once per
  occurrence in the outer sum, as in torch's loop). A term at exactly ``z = 0``
  gets gradient ``0``, as torch's kernel.

  Shapes (torch's): ``input`` ``(N, C)`` with ``target`` ``(N, C)``, or unbatched
  ``input`` ``(C,)`` with ``target`` ``(C,)`` (then the loss is a scalar even for
  ``'none'``). ``target`` must hold integers in ``[-1, C)`` everywhere (also after
  the first ``-1``), as torch checks; a sample that does not is reported under
  ``checkify`` and is ``nan`` without it (its loss, any reduction over it, and
  the gradients). Masked samples are not checked.

  Cost: the pairs (target slot, class) make an ``(N, C, C)`` intermediate, as
  torch's ``O(N C^2)`` loop; fine for the usual tens to hundreds of classes.

  Args:
    input: scores ``(C,)`` or ``(N, C)``.
    target: integer class indices of ``input``'s shape, padded with ``-1``.
    size_average, reduce: deprecated in torch; must be ``None``.
    reduction: ``'none' | 'mean' | 'sum'``.
    axis: the class axis of ``input`` and ``target`` (keyword-only, beyond
      torch): ``None`` is torch's (1, or 0 for 1-D); ``0`` takes ``(C, N)``.
    where: optional bool mask of the per-sample loss, ``(N,)`` (or ``()``).

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> scores = jnp.array([[0.1, 0.2, 0.4, 0.8]])
    >>> target = jnp.array([[3, 0, -1, 1]])  # classes 3 and 0; -1 ends the list
    >>> loss = jaxloss.multilabel_margin_loss(scores, target)
    >>> print(f"{float(loss):.4f}")
    0.8500

  References:
    - PyTorch, ``torch.nn.functional.multilabel_margin_loss``:
      https://pytorch.org/docs/stable/generated/torch.nn.functional.multilabel_margin_loss.html
  """
  fn = "multilabel_margin_loss"
  C.reject_legacy_args(fn, size_average, reduce)
  C.check_reduction(fn, reduction)
  input = C.as_float_array(fn, "input", input)
  target = C.as_int_array(fn, "target", target)
  nframe, num_classes = _check_class_input(fn, input)
  if axis is not None:
    if input.ndim == 2 and target.ndim == 2:
      target = C.move_class_axis(fn, axis, target, "target")
    input = C.move_class_axis(fn, axis, input)
    nframe, num_classes = _check_class_input(fn, input)
  if input.ndim == 2:
    C.check_shape(fn, "target", target, input.shape, "the shape of `input`")
  elif not (target.ndim <= 1 and target.size == num_classes):
    expected = "(C,)" if input.ndim == 1 else "() or (1,)"
    raise ValueError(
        f"{fn}: `target` must have shape {expected} for `input` of shape "
        f"{tuple(input.shape)}, got {tuple(target.shape)}."
    )
  out_shape = (nframe,) if input.ndim == 2 else ()
  where = C.prepare_where(fn, where, out_shape, "the per-sample loss")
  return _multilabel_margin(input, target, where, reduction=reduction,
                            dtype=C.compute_dtype(input), out_dtype=input.dtype)


@_jit
def _multilabel_margin(input, target, where, *, reduction, dtype, out_dtype):
  fn = "multilabel_margin_loss"
  nframe, num_classes = _check_class_input(fn, input)
  out_shape = (nframe,) if input.ndim == 2 else ()
  t = _widen(jnp.reshape(target, (nframe, num_classes)))
  # torch checks the whole row, also after the first -1; masked rows are not checked.
  ok = (t >= -1) & (t < num_classes)
  if where is not None:
    ok = ok | ~jnp.reshape(where, (nframe, 1))
  if target.size:
    C.value_check(
        jnp.all(ok),
        f"{fn}: `target` holds {{bad}}, outside [-1, {num_classes}) (-1 pads).",
        bad=jnp.where(jnp.any(~ok), t.ravel()[jnp.argmax(~ok.ravel())], 0),
    )
  bad = ~jnp.all(ok, axis=1)  # (n,): torch raises; the sample's loss is nan here
  (x,) = C.mask_inputs(_sample_mask(where, nframe), 0,
                       C.upcast(jnp.reshape(input, (nframe, num_classes)), dtype))
  (x,) = C.nan_gradient_rows(bad, x)
  # Entries before the first negative one are the sample's targets.
  counted = jnp.cumsum(t < 0, axis=1) == 0
  classes = jnp.arange(num_classes)
  is_target = jnp.any(counted[:, :, None] & (t[:, :, None] == classes), axis=1)  # (n, C)
  x_target = jnp.take_along_axis(x, jnp.clip(t, 0, num_classes - 1), axis=1)  # (n, J)
  z = 1 - x_target[:, :, None] + x[:, None, :]  # (n, J, C)
  terms = jnp.where(counted[:, :, None] & ~is_target[:, None, :], _positive_part(z),
                    jnp.zeros((), dtype))
  loss = jnp.sum(terms, axis=(1, 2)) / num_classes
  return C.reduce_loss(jnp.reshape(loss, out_shape), reduction, where, out_dtype=out_dtype,
                       bad=jnp.reshape(bad, out_shape))


def multi_margin_loss(input: ArrayLike, target: ArrayLike, p: int = 1, margin: float = 1.0,
                      weight: ArrayLike | None = None, size_average=None, reduce=None,
                      reduction: str = "mean", *, axis: int | None = None,
                      where: ArrayLike | None = None) -> Array:
  r"""Multi-class hinge, ``torch.nn.functional.multi_margin_loss``.

  .. math::
     \ell_n = \frac{1}{C}\sum_{i \ne y_n}
              w_{y_n}\,\max\bigl(0,\; \text{margin} - x_{n,y_n} + x_{ni}\bigr)^p

  ``'mean'`` is the plain mean over samples (not divided by the weights). A
  term at exactly ``z = 0`` gets gradient ``0``, as torch's kernel.

  Shapes (torch's): ``input`` ``(N, C)`` with ``target`` ``(N,)``; unbatched
  ``input`` ``(C,)`` with ``target`` ``()`` (scalar loss) or ``(1,)`` (loss
  ``(1,)`` for ``'none'``). In general ``target`` is 0-D or 1-D with one entry
  per sample, and ``'none'`` returns ``(N,)`` exactly when ``target`` is 1-D.
  Class indices outside ``[0, C)`` (torch raises) are reported under
  ``checkify`` and give ``nan`` without it (the sample's loss, any reduction
  over it, and the gradients); masked samples are not checked.

  Args:
    input: scores ``(C,)`` or ``(N, C)``.
    target: integer class indices.
    p: ``1`` or ``2``, the hinge's power.
    margin: the margin: a Python float (nan raises ``ValueError``) or a traced
      scalar (a population under ``jax.vmap``, one compilation; a traced nan
      gives ``nan``).
    weight: optional per-class weights ``(C,)``; the sample's term is scaled by
      the weight of its target class. Differentiable (torch refuses).
    size_average, reduce: deprecated in torch; must be ``None``.
    reduction: ``'none' | 'mean' | 'sum'``.
    axis: the class axis of ``input`` (keyword-only, beyond torch): ``None`` is
      torch's (1, or 0 for 1-D); ``0`` takes ``(C, N)`` scores.
    where: optional bool mask of the per-sample loss.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> scores = jnp.array([[0.1, 0.2, 0.4, 0.8], [1.0, 0.0, 0.5, 0.2]])
    >>> loss = jaxloss.multi_margin_loss(scores, jnp.array([3, 0]))
    >>> print(f"{float(loss):.4f}")
    0.2500

  References:
    - PyTorch, ``torch.nn.functional.multi_margin_loss``:
      https://pytorch.org/docs/stable/generated/torch.nn.functional.multi_margin_loss.html
    - Weston and Watkins, "Support Vector Machines for Multi-Class Pattern
      Recognition", ESANN 1999.
  """
  fn = "multi_margin_loss"
  C.reject_legacy_args(fn, size_average, reduce)
  C.check_reduction(fn, reduction)
  if isinstance(p, bool) or p not in (1, 2):
    raise ValueError(f"{fn}: only `p` == 1 and `p` == 2 are supported, got {p!r}.")
  p = int(p)
  margin = C.numeric_option(fn, "margin", margin, _not_nan, "be a number, not nan")
  input = C.as_float_array(fn, "input", input)
  target = C.as_int_array(fn, "target", target)
  nframe, num_classes = _check_class_input(fn, input)
  if axis is not None:
    input = C.move_class_axis(fn, axis, input)
    nframe, num_classes = _check_class_input(fn, input)
  if not (target.ndim <= 1 and target.size == nframe):
    expected = f"({nframe},)" + (" or ()" if nframe == 1 else "")
    raise ValueError(
        f"{fn}: `target` must have shape {expected} (one class index per sample of "
        f"`input` {tuple(input.shape)}), got {tuple(target.shape)}."
    )
  floats = [input]
  if weight is not None:
    weight = C.as_float_array(fn, "weight", weight)
    C.check_shape(fn, "weight", weight, (num_classes,), "one weight per class")
    floats.append(weight)
  out_dtype = C.output_dtype(*floats)
  dtype = C.compute_dtype(*floats)
  out_shape = (nframe,) if target.ndim == 1 else ()
  where = C.prepare_where(fn, where, out_shape, "the per-sample loss")
  return _multi_margin(input, target, margin, weight, where, reduction=reduction, p=p,
                       dtype=dtype, out_dtype=out_dtype,
                       margin_traced=C.is_traced_option(margin))


@functools.partial(jax.jit, static_argnames=("reduction", "p", "dtype", "out_dtype",
                                             "margin_traced"))
def _multi_margin(input, target, margin, weight, where, *, reduction, p, dtype, out_dtype,
                  margin_traced):
  nframe, num_classes = _check_class_input("multi_margin_loss", input)
  out_shape = (nframe,) if target.ndim == 1 else ()
  t = _widen(jnp.reshape(target, (nframe,)))
  counted = None if where is None else jnp.reshape(where, (nframe,))
  if nframe:  # _common.check_index_range takes an argmax, undefined for empty arrays
    C.check_index_range("multi_margin_loss", "target", t, num_classes, valid=counted)
  bad = (t < 0) | (t >= num_classes)  # torch raises; the sample's loss is nan here
  if counted is not None:
    bad = bad & counted
  (x,) = C.mask_inputs(_sample_mask(where, nframe), 0,
                       C.upcast(jnp.reshape(input, (nframe, num_classes)), dtype))
  (x,) = C.nan_gradient_rows(bad, x)
  bad_margin = None
  if margin_traced:  # a traced nan margin: nan value and gradients (the hinge would hide it)
    bad_margin = C.option_out_of_range("multi_margin_loss", "margin", margin, _not_nan,
                                       "not be nan")
    x = C.nan_gradient_where(bad_margin, x)
  is_target = t[:, None] == jnp.arange(num_classes)  # (n, C)
  x_target = jnp.sum(jnp.where(is_target, x, jnp.zeros((), dtype)), axis=1, keepdims=True)
  hinge = _positive_part(margin - x_target + x)
  if p == 2:
    hinge = hinge * hinge
  loss = jnp.sum(jnp.where(is_target, jnp.zeros((), dtype), hinge), axis=1)
  if weight is not None:
    w = C.upcast(weight, dtype)[jnp.clip(t, 0, num_classes - 1)]
    if where is not None:
      w = jnp.where(where.reshape(nframe), w, jnp.zeros((), dtype))
    loss = loss * w
  loss = loss / num_classes
  out = C.reduce_loss(jnp.reshape(loss, out_shape), reduction, where, out_dtype=out_dtype,
                      bad=jnp.reshape(bad, out_shape))
  return out if bad_margin is None else C.nan_where(bad_margin, out)


def _not_nan(x):
  return x == x
