r"""Segmentation losses: optax's soft Dice (Tversky) losses and smp's overlap losses.

optax's losses here compare soft predictions :math:`p_{ic}` (probabilities from
logits, unless the caller passes probabilities) with targets :math:`t_{ic}`
through per-class soft counts over the spatial axes,

.. math:: I_c = \sum_i p_{ic} t_{ic}, \quad P_c = \sum_i p_{ic}, \quad
   T_c = \sum_i t_{ic}

(:func:`soft_counts`), and turns them into a per-class overlap loss that is then
weighted and reduced over the classes (:func:`reduce_classes`). Layout, as
optax: the class axis is last (``[batch, *spatial, num_classes]``); a single
class (``[..., 1]``, or no class axis for :func:`binary_dice_loss`) is binary,
with a sigmoid instead of the softmax. ``reduction`` reduces over the
**classes** (``'none'`` keeps ``[..., num_classes]``), as optax's.

``where`` (beyond optax) masks pixels (or single class entries): masked entries
leave every count and get exactly-zero gradients, e.g. to ignore padding or
"void" regions.

The second family follows segmentation-models-pytorch's convention instead
(torch's ``(N, C, *spatial)`` layout with ``axis=1``, ``mode`` 'binary' /
'multiclass' / 'multilabel', ``from_logits``, ``smooth``, ``eps``,
``ignore_index``, ``classes``, ``class_weights``; one scalar over the whole
batch): :func:`soft_dice_loss`, :func:`soft_jaccard_loss`,
:func:`soft_tversky_loss` (focal-Tversky with ``gamma``),
:func:`generalized_soft_dice_loss`, :func:`lovasz_softmax_loss`,
:func:`lovasz_hinge_loss` and :func:`dice_cross_entropy_loss`, equal to smp's
code (``tests/test_segmentation_smp.py``). ``docs/segmentation.md`` has the
torch -> jaxloss table and where MONAI, kornia and optax differ.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from jaxloss import _common as C

Array = C.Array
ArrayLike = C.ArrayLike

_SEGMENTATION_REDUCTIONS = ("mean", "sum", "none")


# ----------------------------------------------------------------------------
# Shared helpers of the overlap losses
# ----------------------------------------------------------------------------


def prepare_segmentation(fn: str, predictions: ArrayLike, targets: ArrayLike,
                         axis: int | Sequence[int] | None, where: ArrayLike | None):
  """optax's shapes: a missing class axis is added to one side; default spatial axes.

  Returns ``(predictions, targets, axes, where)`` with ``where`` broadcast to
  ``predictions``' shape (a mask without the class axis gains it).
  """
  predictions = C.as_float_array(fn, "predictions", predictions)
  targets = C.as_float_array(fn, "targets", targets)
  if predictions.ndim == targets.ndim - 1:
    predictions = predictions[..., None]
  if targets.ndim == predictions.ndim - 1:
    targets = targets[..., None]
  if predictions.ndim < 1:
    raise ValueError(f"{fn}: `predictions` must have at least one dimension, got shape ().")
  C.check_same_shape(fn, "predictions", predictions, "targets", targets)
  ndim = predictions.ndim
  if axis is None:  # optax: every axis but the first (batch) and the last (classes)
    axes = tuple(range(1, ndim - 1))
  else:
    axes = tuple(axis) if isinstance(axis, (tuple, list)) else (axis,)
    axes = tuple(sorted(C.normalize_axis(fn, a, ndim) for a in axes))
    if len(set(axes)) != len(axes):
      raise ValueError(f"{fn}: `axis` {axis!r} repeats an axis.")
  where = C.optax_where(fn, where, predictions.shape, ndim - 1, "`predictions`")
  return predictions, targets, axes, where


def class_probabilities(predictions: Array, activate: bool) -> Array:
  """Softmax over the classes, or the sigmoid for a single (binary) class."""
  if not activate:
    return predictions
  if predictions.shape[-1] == 1:
    return jax.nn.sigmoid(predictions)
  return jax.nn.softmax(predictions, axis=-1)


def soft_counts(probs: Array, targets: Array, axes: tuple[int, ...],
                where: Array | None) -> tuple[Array, Array, Array]:
  """Per-class soft intersection ``I``, prediction mass ``P`` and target mass ``T``."""
  if where is not None:
    zero = jnp.zeros((), probs.dtype)
    probs, targets = jnp.where(where, probs, zero), jnp.where(where, targets, zero)
  return (jnp.sum(probs * targets, axis=axes), jnp.sum(probs, axis=axes),
          jnp.sum(targets, axis=axes))


def reduce_classes(loss: Array, class_weights: Array | None, ignore_background: bool,
                   reduction: str) -> Array:
  """optax's class weighting, background removal and reduction over the last axis."""
  if class_weights is not None:
    loss = loss * class_weights
  if ignore_background and loss.shape[-1] > 1:
    loss = loss[..., 1:]
  if reduction == "mean":
    return jnp.mean(loss, axis=-1)
  if reduction == "sum":
    return jnp.sum(loss, axis=-1)
  return loss


def _check_class_weights(fn: str, class_weights, num_classes: int):
  if class_weights is None:
    return None
  class_weights = C.as_float_array(fn, "class_weights", class_weights)
  C.check_shape(fn, "class_weights", class_weights, (num_classes,), "one weight per class")
  return class_weights


# ----------------------------------------------------------------------------
# Dice losses
# ----------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("activate", "reduction", "ignore_background",
                                             "axes", "generalized"))
def _dice_kernel(predictions, targets, class_weights, smooth, alpha, beta, where, *, activate,
                 reduction, ignore_background, axes, generalized):
  out_dtype = C.output_dtype(predictions, targets)
  dtype = C.compute_dtype(predictions, targets)
  x, t = C.upcast(predictions, dtype), C.upcast(targets, dtype)
  x, t = C.mask_inputs(where, 0, x, t)
  probs = class_probabilities(x, activate)
  if generalized:  # Sudre et al.: inverse squared class frequencies, normalised to mean 1
    counted_t = t if where is None else jnp.where(where, t, jnp.zeros((), dtype))
    frequencies = jnp.sum(counted_t, axis=tuple(range(t.ndim - 1)))
    class_weights = 1.0 / (frequencies ** 2 + 1e-7)
    class_weights = class_weights / jnp.sum(class_weights) * class_weights.shape[0]
  elif class_weights is not None:
    class_weights = C.upcast(class_weights, dtype)
  intersection, pred_sum, target_sum = soft_counts(probs, t, axes, where)
  smooth = jnp.asarray(smooth, dtype)
  denominator = (intersection + jnp.asarray(alpha, dtype) * (pred_sum - intersection)
                 + jnp.asarray(beta, dtype) * (target_sum - intersection) + smooth)
  loss = 1.0 - (intersection + smooth) / denominator
  loss = reduce_classes(loss, class_weights, ignore_background, reduction)
  if generalized:
    loss = jnp.mean(loss)
  return loss.astype(out_dtype)


def dice_loss(predictions: ArrayLike, targets: ArrayLike, *,
              class_weights: ArrayLike | None = None, smooth: ArrayLike = 1.0,
              alpha: ArrayLike = 0.5, beta: ArrayLike = 0.5, apply_softmax: bool = True,
              reduction: str = "mean", ignore_background: bool = False,
              axis: int | Sequence[int] | None = None,
              where: ArrayLike | None = None) -> Array:
  r"""Soft Dice / Tversky loss, ``optax.losses.dice_loss``.

  .. math:: \ell_c = 1 - \frac{I_c + s}{I_c + \alpha (P_c - I_c)
     + \beta (T_c - I_c) + s}

  per class (:math:`P_c - I_c` are the soft false positives, :math:`T_c - I_c`
  the false negatives), then weighted and reduced over the classes.
  ``alpha = beta = 0.5`` is the Dice loss :math:`1 - (2I + 2s)/(P + T + 2s)`
  (with ``2s`` for ``s``); other values give Tversky's loss. Values and
  gradients are optax's.

  Args:
    predictions: logits ``[batch, *spatial, num_classes]`` (softmax), or
      ``[..., 1]`` / one dimension fewer than ``targets`` for binary
      segmentation (sigmoid); probabilities if ``apply_softmax=False``.
    targets: one-hot (or soft) targets of the same shape (or one dimension
      fewer, for binary).
    class_weights: optional ``(num_classes,)`` weights of the per-class losses.
    smooth: the smoothing added to numerator and denominator (traced).
    alpha: weight of the false positives (traced).
    beta: weight of the false negatives (traced).
    apply_softmax: turn logits into probabilities (softmax, or sigmoid for one
      class). With ``False`` no check is made that the predictions are
      probabilities: optax's eager ``allclose`` check fails under ``jit`` and
      rejects binary probabilities (their one-class "sum" is not ``1``).
    reduction: over the classes (optax's): ``'mean'`` (default), ``'sum'``, or
      ``'none'`` for ``[..., num_classes]``.
    ignore_background: drop class ``0`` (after weighting), if there are several.
    axis: the axis or axes summed over (keyword-only); ``None``: every axis but
      the first and the last (the spatial axes of ``[batch, *spatial, C]``).
    where: optional bool mask of ``predictions``' shape or without its class
      axis (pixels); masked entries leave every count and get exactly-zero
      gradients. Beyond optax.

  Returns:
    The loss per sample (``predictions``' shape without ``axis`` and the class
    axis), with the class axis kept under ``reduction='none'``.

  Examples:
    >>> import jax
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> logits = jnp.array([[[2.0, -1.0], [0.5, 0.0], [-1.0, 1.0]]])  # (1, 3 pixels, 2)
    >>> targets = jax.nn.one_hot(jnp.array([[0, 0, 1]]), 2)
    >>> out = jaxloss.dice_loss(logits, targets)
    >>> print([round(v, 4) for v in out.tolist()])
    [0.111]

  References:
    - Milletari, Navab and Ahmadi, "V-Net: Fully Convolutional Neural Networks
      for Volumetric Medical Image Segmentation", 3DV 2016.
    - Salehi, Erdogmus and Gholipour, "Tversky loss function for image
      segmentation using 3D fully convolutional deep networks", 2017.
    - optax, ``optax.losses.dice_loss``.
  """
  fn = "dice_loss"
  C.check_reduction(fn, reduction, _SEGMENTATION_REDUCTIONS)
  predictions, targets, axes, where = prepare_segmentation(fn, predictions, targets, axis, where)
  class_weights = _check_class_weights(fn, class_weights, predictions.shape[-1])
  return _dice_kernel(predictions, targets, class_weights, smooth, alpha, beta, where,
                      activate=bool(apply_softmax), reduction=reduction,
                      ignore_background=bool(ignore_background), axes=axes, generalized=False)


def binary_dice_loss(predictions: ArrayLike, targets: ArrayLike, *, smooth: ArrayLike = 1.0,
                     apply_sigmoid: bool = True, where: ArrayLike | None = None) -> Array:
  r"""Binary soft Dice loss, ``optax.losses.binary_dice_loss``.

  :func:`dice_loss` with one (sigmoid) class: predictions and targets of shape
  ``[batch, *spatial]`` (or ``[..., 1]``), summed over the spatial axes.

  Args:
    predictions: logits (or probabilities if ``apply_sigmoid=False``).
    targets: binary (or soft) targets of the same shape.
    smooth: the smoothing (traced).
    apply_sigmoid: apply the sigmoid to ``predictions``.
    where: optional bool mask of pixels (``predictions``' shape); beyond optax.

  Returns:
    The loss per sample, ``[batch]``.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> logits = jnp.array([[3.0, -2.0, 1.0, -1.0], [0.0, 0.0, 0.0, 0.0]])
    >>> targets = jnp.array([[1.0, 0.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0]])
    >>> out = jaxloss.binary_dice_loss(logits, targets)
    >>> print([round(v, 4) for v in out.tolist()])
    [0.116, 0.3333]

  References:
    - Milletari, Navab and Ahmadi, "V-Net", 3DV 2016.
    - optax, ``optax.losses.binary_dice_loss``.
  """
  fn = "binary_dice_loss"
  predictions = C.as_float_array(fn, "predictions", predictions)
  targets = C.as_float_array(fn, "targets", targets)
  if predictions.ndim == targets.ndim and predictions.ndim and predictions.shape[-1] != 1:
    predictions, targets = predictions[..., None], targets[..., None]
    if where is not None and jnp.ndim(where) == predictions.ndim - 1:
      where = jnp.asarray(where)[..., None]
  predictions, targets, axes, where = prepare_segmentation(fn, predictions, targets, None, where)
  return _dice_kernel(predictions, targets, None, smooth, 0.5, 0.5, where,
                      activate=bool(apply_sigmoid), reduction="mean", ignore_background=False,
                      axes=axes, generalized=False)


def multiclass_generalized_dice_loss(predictions: ArrayLike, targets: ArrayLike, *,
                                     smooth: ArrayLike = 1.0, apply_softmax: bool = True,
                                     ignore_background: bool = False,
                                     where: ArrayLike | None = None) -> Array:
  r"""Generalised Dice loss, ``optax.losses.multiclass_generalized_dice_loss``.

  :func:`dice_loss` (``alpha = beta = 0.5``) per sample and class, weighted by
  :math:`w_c \propto 1 / (F_c^2 + 10^{-7})` with :math:`F_c` the class's target
  mass over the whole batch (normalised so that the weights average ``1``),
  then averaged over samples and classes: a scalar. As optax, the weights depend
  on ``targets`` (and so carry gradient to them) and are computed before
  ``ignore_background`` drops class ``0``.

  Args:
    predictions: logits ``[batch, *spatial, num_classes]`` (probabilities if
      ``apply_softmax=False``).
    targets: one-hot targets of the same shape.
    smooth: the smoothing (traced).
    apply_softmax: apply the softmax to ``predictions``.
    ignore_background: drop class ``0``.
    where: optional bool mask of pixels; masked entries leave the counts and
      the class frequencies. Beyond optax.

  Returns:
    The scalar loss.

  Examples:
    >>> import jax
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> logits = jnp.array([[[2.0, -1.0], [0.5, 0.0], [-1.0, 1.0]]])
    >>> targets = jax.nn.one_hot(jnp.array([[0, 0, 1]]), 2)
    >>> print(f"{float(jaxloss.multiclass_generalized_dice_loss(logits, targets)):.4f}")
    0.1202

  References:
    - Sudre et al., "Generalised Dice overlap as a deep learning loss function
      for highly unbalanced segmentations", DLMIA 2017.
      https://arxiv.org/abs/1707.03237
    - optax, ``optax.losses.multiclass_generalized_dice_loss``.
  """
  fn = "multiclass_generalized_dice_loss"
  predictions = C.as_float_array(fn, "predictions", predictions)
  targets = C.as_float_array(fn, "targets", targets)
  C.check_same_shape(fn, "predictions", predictions, "targets", targets)
  predictions, targets, axes, where = prepare_segmentation(fn, predictions, targets, None, where)
  return _dice_kernel(predictions, targets, None, smooth, 0.5, 0.5, where,
                      activate=bool(apply_softmax), reduction="none",
                      ignore_background=bool(ignore_background), axes=axes, generalized=True)


# ----------------------------------------------------------------------------
# segmentation-models-pytorch's convention (smp.losses): mode, from_logits, ...
# ----------------------------------------------------------------------------
#
# smp's layout is torch's: ``y_pred`` is ``(N, C, *spatial)`` (class axis
# ``axis=1``), ``y_true`` holds class indices ``(N, *spatial)`` in 'multiclass'
# mode and ``y_pred``'s shape in 'multilabel' mode (or ``(N, *spatial)`` in
# 'binary' mode, ``C = 1``). Internally everything is ``(N, C, S)``.

SMP_MODES = ("binary", "multiclass", "multilabel")


def smp_inputs(fn: str, y_pred: ArrayLike, y_true: ArrayLike, mode: str, axis: int,
               ignore_index: int | float | None, where: ArrayLike | None):
  """Validates smp-style inputs; returns ``(x, t, valid, bad, axis)`` in ``(N, C, S)``.

  ``t`` is the one-hot (multiclass) or float target, ``valid`` the counted
  entries (``None`` if all: not ``ignore_index`` and in ``where``), ``bad`` the
  counted multiclass pixels whose class index lies outside ``[0, C)`` (``(N, S)``,
  or ``None``), reported under checkify.
  """
  if mode not in SMP_MODES:
    raise ValueError(f"{fn}: `mode` must be one of {SMP_MODES}, got {mode!r}.")
  y_pred = C.as_float_array(fn, "y_pred", y_pred)
  if y_pred.ndim < 2:
    raise ValueError(f"{fn}: `y_pred` must be (N, C, *spatial), got shape "
                     f"{tuple(y_pred.shape)}.")
  ax = C.class_axis(fn, axis, y_pred, "y_pred")
  num_classes = y_pred.shape[ax]
  sample_shape = y_pred.shape[:ax] + y_pred.shape[ax + 1:]
  if ax == 0:
    raise ValueError(f"{fn}: `axis` must not be the batch axis 0, got {axis}.")
  where = C.optax_where(fn, where, y_pred.shape, ax, "`y_pred`")
  x = jnp.moveaxis(y_pred, ax, 1)
  n = x.shape[0]
  flat = (n, num_classes, -1)
  bad = None
  if mode == "multiclass":
    if num_classes < 2:
      raise ValueError(f"{fn}: 'multiclass' mode needs `y_pred` with at least 2 classes on "
                       f"`axis`, got {num_classes}.")
    y_true = C.as_int_array(fn, "y_true", y_true)
    C.check_shape(fn, "y_true", y_true, sample_shape, "`y_pred`'s shape without `axis`")
    if y_true.dtype.itemsize < 4:  # room for C and for any ignore_index
      y_true = y_true.astype(jnp.int32)
    counted = jnp.ones(sample_shape, bool)
    if ignore_index is not None:
      ignore = C.static_int(fn, "ignore_index", ignore_index)
      info = jnp.iinfo(y_true.dtype)
      if info.min <= ignore <= info.max:  # else no label can equal it
        counted = y_true != jnp.asarray(ignore, y_true.dtype)
    if where is not None:  # a pixel counts where all its entries do
      counted = counted & jnp.all(where, axis=ax)
    C.check_index_range(fn, "y_true", y_true, num_classes, valid=counted)
    bad = counted & ((y_true < 0) | (y_true >= num_classes))
    index = jnp.where(counted & ~bad, y_true, jnp.zeros((), y_true.dtype))
    t = jnp.moveaxis(jax.nn.one_hot(index, num_classes, dtype=x.dtype), -1, 1)
    valid = None if ignore_index is None else jnp.broadcast_to(counted[:, None], x.shape)
    bad = bad.reshape(n, -1)
  else:
    y_true = C.as_float_array(fn, "y_true", y_true)
    if mode == "binary":
      if num_classes != 1:
        raise ValueError(f"{fn}: 'binary' mode needs one channel on `axis`, got "
                         f"{num_classes}.")
      if y_true.shape == sample_shape:
        y_true = jnp.expand_dims(y_true, ax)
    C.check_shape(fn, "y_true", y_true, y_pred.shape,
                  "`y_pred`'s shape" + (" (or without `axis`)" if mode == "binary" else ""))
    t = jnp.moveaxis(y_true, ax, 1)
    valid = None
    if ignore_index is not None:
      valid = t != jnp.asarray(ignore_index, t.dtype)
  if where is not None:
    where = jnp.moveaxis(where, ax, 1)
    valid = where if valid is None else valid & where
  valid = None if valid is None else valid.reshape(flat)
  return x.reshape(flat), t.reshape(flat), valid, bad, ax


def smp_probabilities(x: Array, mode: str, from_logits: bool) -> Array:
  """smp's activations, as smp computes them: ``exp(log_softmax)``, ``exp(log_sigmoid)``."""
  if not from_logits:
    return x
  if mode == "multiclass":
    return jnp.exp(jax.nn.log_softmax(x, axis=1))
  return jnp.exp(jax.nn.log_sigmoid(x))


def _clamp_min(x: Array, low: Array) -> Array:
  """``torch.clamp_min``: gradient ``1`` where ``x >= low`` (the tie included)."""
  return jnp.where(x >= low, x, low)


def _check_classes(fn: str, classes, mode: str, num_classes: int):
  if classes is None:
    return None
  if mode == "binary":
    raise ValueError(f"{fn}: `classes` is not supported with mode='binary' (as smp).")
  classes = tuple(int(c) for c in classes)
  if not classes or any(not -num_classes <= c < num_classes for c in classes):
    raise ValueError(f"{fn}: `classes` must be class indices in [0, {num_classes}), got "
                     f"{classes}.")
  return classes


def _check_smp_class_weights(fn: str, class_weights, mode: str, num_classes: int):
  if class_weights is None:
    return None
  if mode == "binary":
    raise ValueError(f"{fn}: `class_weights` are not supported with mode='binary' (as smp).")
  class_weights = C.as_float_array(fn, "class_weights", class_weights)
  C.check_shape(fn, "class_weights", class_weights, (num_classes,), "one weight per class")
  return class_weights


@functools.partial(jax.jit, static_argnames=("mode", "from_logits", "log_loss", "classes",
                                             "reduction"))
def _overlap_kernel(x, t, valid, bad, class_weights, smooth, eps, alpha, beta, gamma, *, mode,
                    from_logits, log_loss, classes, reduction):
  out_dtype = C.output_dtype(x)
  dtype = C.compute_dtype(x)
  x, t = C.upcast(x, dtype), C.upcast(t, dtype)
  zero = jnp.zeros((), dtype)
  if valid is not None:
    x, t = C.mask_inputs(valid, 0, x, t)
  if bad is not None:
    x = C.nan_gradient_where(bad[:, None, :], x)
  p = smp_probabilities(x, mode, from_logits)
  if valid is not None:
    p, t = jnp.where(valid, p, zero), jnp.where(valid, t, zero)
  dims = (0, 2)
  if mode == "multiclass":  # one-hot targets: sum(p * t), smp's value, one pass fewer
    intersection, pred_sum, target_sum = soft_counts(p, t, dims, None)
  else:  # smp >= 0.5: the intersection from the L1 distance (Wang and Blaschko's
    # semimetric form): sum(p * t) for hard targets, and a metric for soft ones.
    pred_sum, target_sum = jnp.sum(p, axis=dims), jnp.sum(t, axis=dims)
    intersection = (pred_sum + target_sum - jnp.sum(C.torch_abs(p - t), axis=dims)) / 2
  smooth, eps = jnp.asarray(smooth, dtype), jnp.asarray(eps, dtype)
  denominator = (intersection + jnp.asarray(alpha, dtype) * (pred_sum - intersection)
                 + jnp.asarray(beta, dtype) * (target_sum - intersection) + smooth)
  score = (intersection + smooth) / _clamp_min(denominator, eps)
  loss = -jnp.log(_clamp_min(score, eps)) if log_loss else 1.0 - score
  loss = loss * (target_sum > 0).astype(dtype)  # smp: a class absent from y_true adds 0
  if class_weights is not None:
    class_weights = C.upcast(class_weights, dtype)
  if classes is not None:
    index = jnp.asarray(classes)
    loss = loss[index]
    class_weights = None if class_weights is None else class_weights[index]
  if class_weights is not None:
    loss = loss * class_weights
  if reduction == "mean":
    loss = (jnp.mean(loss) if class_weights is None
            else jnp.sum(loss) / jnp.sum(class_weights))
  elif reduction == "sum":
    loss = jnp.sum(loss)
  if gamma is not None:
    loss = loss ** jnp.asarray(gamma, dtype)
  if bad is not None:
    loss = C.nan_where(jnp.any(bad), loss)
  return loss.astype(out_dtype)


def _overlap_loss(fn, y_pred, y_true, mode, alpha, beta, gamma, *, classes, log_loss,
                  from_logits, smooth, ignore_index, eps, class_weights, reduction, axis,
                  where):
  C.check_reduction(fn, reduction, _SEGMENTATION_REDUCTIONS)
  x, t, valid, bad, _ = smp_inputs(fn, y_pred, y_true, mode, axis, ignore_index, where)
  num_classes = x.shape[1]
  classes = _check_classes(fn, classes, mode, num_classes)
  class_weights = _check_smp_class_weights(fn, class_weights, mode, num_classes)
  return _overlap_kernel(x, t, valid, bad, class_weights, smooth, eps, alpha, beta, gamma,
                         mode=mode, from_logits=bool(from_logits), log_loss=bool(log_loss),
                         classes=classes, reduction=reduction)


_SMP_ARGS = """
    y_pred: ``(N, C, *spatial)`` logits (probabilities if ``from_logits=False``),
      the class axis at ``axis``; ``C = 1`` in 'binary' mode.
    y_true: 'multiclass': integer class indices ``(N, *spatial)`` (``y_pred``'s
      shape without ``axis``); 'multilabel': ``y_pred``'s shape, binary (or
      soft) targets; 'binary': ``y_pred``'s shape or ``(N, *spatial)``.
    mode: ``'binary'`` (sigmoid), ``'multiclass'`` (softmax over ``axis``) or
      ``'multilabel'`` (a sigmoid per class), as smp's ``mode``."""

_SMP_COMMON = """
    classes: optional class indices (static) whose losses are kept (not in
      'binary' mode).
    log_loss: ``-log(max(score, eps))`` instead of ``1 - score``.
    from_logits: apply the mode's activation to ``y_pred``.
    smooth: added to numerator and denominator (traced).
    ignore_index: a target value whose pixels (multiclass) or entries
      (binary, multilabel) leave every count, with zero gradient.
    eps: the denominator's lower bound, ``max(denominator, eps)`` (traced).
    class_weights: optional ``(C,)`` weights; the mean becomes
      ``sum(w_c l_c) / sum(w_c)`` over the kept classes (not in 'binary' mode).
    reduction: over the classes: ``'mean'`` (smp's), ``'sum'``, or ``'none'``
      for the ``(C,)`` (or ``(len(classes),)``) weighted per-class losses.
    axis: the class axis of ``y_pred`` (keyword-only; default ``1``, torch's
      layout; ``-1`` for JAX's channels-last).
    where: optional bool mask of ``y_pred``'s shape or of its shape without
      ``axis`` (pixels); masked entries leave every count and get exactly-zero
      gradients. Beyond smp.

  Returns:
    A scalar (``(C,)`` under ``reduction='none'``). As smp, the counts are
    summed over the batch and the spatial axes together, a class without
    target pixels contributes ``0`` (it still counts in the mean), and a
    multiclass class index outside ``[0, C)`` (not ``ignore_index``) makes the
    loss and its gradients ``nan`` (reported under ``checkify``; smp raises)."""


_SMP_DOC_PARTS = {
    "{SMP_ARGS}": _SMP_ARGS,
    "{SMP_ARGS_LOGITS}": _SMP_ARGS.replace(" (probabilities if ``from_logits=False``)", ""),
    "{SMP_COMMON}": _SMP_COMMON,
    "{SMP_TVERSKY}": _SMP_COMMON.replace("""
    class_weights:""", """
    alpha: weight of the false positives (traced).
    beta: weight of the false negatives (traced).
    gamma: the focal exponent of the reduced loss (traced).
    class_weights:"""),
}


def _smp_doc(fn):
  """Fills the shared argument descriptions into ``fn``'s docstring."""
  for key, text in _SMP_DOC_PARTS.items():
    fn.__doc__ = fn.__doc__.replace(key, text)
  return fn


@_smp_doc
def soft_dice_loss(y_pred: ArrayLike, y_true: ArrayLike, mode: str, *,
                   classes: Sequence[int] | None = None, log_loss: bool = False,
                   from_logits: bool = True, smooth: ArrayLike = 0.0,
                   ignore_index: int | float | None = None, eps: ArrayLike = 1e-7,
                   class_weights: ArrayLike | None = None, reduction: str = "mean",
                   axis: int = 1, where: ArrayLike | None = None) -> Array:
  r"""Soft Dice loss, segmentation-models-pytorch's ``DiceLoss``.

  Per class :math:`c`, with the soft counts summed over the batch and the
  spatial axes, :math:`P_c = \sum p`, :math:`T_c = \sum t` and the intersection
  :math:`I_c = (P_c + T_c - \sum |p - t|) / 2` (``sum(p * t)`` for hard targets;
  smp's semimetric form for soft ones),

  .. math:: \ell_c = 1 - \frac{2 I_c + s}{\max(P_c + T_c + s, \epsilon)}

  (``-log`` of the score with ``log_loss``), zero for a class absent from
  ``y_true``, then averaged over the classes. This is smp's convention
  (``mode``, ``smooth=0``, ``eps``, ``ignore_index``, ``classes``,
  ``class_weights``); :func:`dice_loss` is optax's, with other semantics
  (class axis last, per-sample losses, ``smooth=1`` in both terms,
  ``1 - (I + s) / ((P + T)/2 + s)``, no empty-class rule).

  Args:{SMP_ARGS}{SMP_COMMON}

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> logits = jnp.array([[[2.0, 0.5, -1.0], [-1.0, 0.0, 1.0]]])  # (N=1, C=2, 3 pixels)
    >>> labels = jnp.array([[0, 0, 1]])
    >>> print(f"{float(jaxloss.soft_dice_loss(logits, labels, 'multiclass')):.4f}")
    0.1917

  References:
    - Milletari, Navab and Ahmadi, "V-Net", 3DV 2016.
    - Wang and Blaschko, "Dice Semimetric Losses: Optimizing the Dice Score
      with Soft Labels", MICCAI 2023. https://arxiv.org/abs/2303.16296
    - segmentation-models-pytorch, ``smp.losses.DiceLoss``.
  """
  return _overlap_loss("soft_dice_loss", y_pred, y_true, mode, 0.5, 0.5, None,
                       classes=classes, log_loss=log_loss, from_logits=from_logits,
                       smooth=smooth, ignore_index=ignore_index, eps=eps,
                       class_weights=class_weights, reduction=reduction, axis=axis,
                       where=where)


@_smp_doc
def soft_jaccard_loss(y_pred: ArrayLike, y_true: ArrayLike, mode: str, *,
                      classes: Sequence[int] | None = None, log_loss: bool = False,
                      from_logits: bool = True, smooth: ArrayLike = 0.0,
                      ignore_index: int | float | None = None, eps: ArrayLike = 1e-7,
                      class_weights: ArrayLike | None = None, reduction: str = "mean",
                      axis: int = 1, where: ArrayLike | None = None) -> Array:
  r"""Soft Jaccard (IoU) loss, segmentation-models-pytorch's ``JaccardLoss``.

  :func:`soft_dice_loss` with the Jaccard score per class,

  .. math:: \ell_c = 1 - \frac{I_c + s}{\max(P_c + T_c - I_c + s, \epsilon)}.

  Args:{SMP_ARGS}{SMP_COMMON}

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> logits = jnp.array([[[2.0, 0.5, -1.0], [-1.0, 0.0, 1.0]]])
    >>> labels = jnp.array([[0, 0, 1]])
    >>> print(f"{float(jaxloss.soft_jaccard_loss(logits, labels, 'multiclass')):.4f}")
    0.3193

  References:
    - Rahman and Wang, "Optimizing Intersection-Over-Union in Deep Neural
      Networks for Image Segmentation", ISVC 2016.
    - segmentation-models-pytorch, ``smp.losses.JaccardLoss``.
  """
  return _overlap_loss("soft_jaccard_loss", y_pred, y_true, mode, 1.0, 1.0, None,
                       classes=classes, log_loss=log_loss, from_logits=from_logits,
                       smooth=smooth, ignore_index=ignore_index, eps=eps,
                       class_weights=class_weights, reduction=reduction, axis=axis,
                       where=where)


@_smp_doc
def soft_tversky_loss(y_pred: ArrayLike, y_true: ArrayLike, mode: str, *,
                      classes: Sequence[int] | None = None, log_loss: bool = False,
                      from_logits: bool = True, smooth: ArrayLike = 0.0,
                      ignore_index: int | float | None = None, eps: ArrayLike = 1e-7,
                      alpha: ArrayLike = 0.5, beta: ArrayLike = 0.5, gamma: ArrayLike = 1.0,
                      class_weights: ArrayLike | None = None, reduction: str = "mean",
                      axis: int = 1, where: ArrayLike | None = None) -> Array:
  r"""Tversky and focal-Tversky loss, segmentation-models-pytorch's ``TverskyLoss``.

  .. math:: \ell_c = 1 - \frac{I_c + s}{\max(I_c + \alpha (P_c - I_c)
     + \beta (T_c - I_c) + s, \epsilon)}, \qquad
     \ell = \Big(\tfrac{\sum_c w_c \ell_c}{\sum_c w_c}\Big)^{\gamma}

  (:func:`soft_dice_loss`'s counts; ``alpha`` weighs the false positives,
  ``beta`` the false negatives; ``alpha = beta = 0.5`` is the Dice loss).
  ``gamma != 1`` is the focal-Tversky loss **as smp computes it**: the power of
  the class-averaged loss (Abraham and Khan apply it per class); under
  ``reduction='none'`` it applies per class.

  Args:{SMP_ARGS}{SMP_TVERSKY}

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> logits = jnp.array([[[2.0, 0.5, -1.0], [-1.0, 0.0, 1.0]]])
    >>> labels = jnp.array([[0, 0, 1]])
    >>> out = jaxloss.soft_tversky_loss(logits, labels, 'multiclass', alpha=0.3, beta=0.7,
    ...                                 gamma=0.75)
    >>> print(f"{float(out):.4f}")
    0.2808

  References:
    - Salehi, Erdogmus and Gholipour, "Tversky loss function for image
      segmentation using 3D fully convolutional deep networks", 2017.
    - Abraham and Khan, "A Novel Focal Tversky loss function with improved
      Attention U-Net for lesion segmentation", ISBI 2019.
    - segmentation-models-pytorch, ``smp.losses.TverskyLoss``.
  """
  return _overlap_loss("soft_tversky_loss", y_pred, y_true, mode, alpha, beta, gamma,
                       classes=classes, log_loss=log_loss, from_logits=from_logits,
                       smooth=smooth, ignore_index=ignore_index, eps=eps,
                       class_weights=class_weights, reduction=reduction, axis=axis,
                       where=where)


@functools.partial(jax.jit, static_argnames=("mode", "from_logits"))
def _generalized_dice_kernel(x, t, valid, bad, smooth, eps, *, mode, from_logits):
  out_dtype = C.output_dtype(x)
  dtype = C.compute_dtype(x)
  x, t = C.upcast(x, dtype), C.upcast(t, dtype)
  zero = jnp.zeros((), dtype)
  if valid is not None:
    x, t = C.mask_inputs(valid, 0, x, t)
  if bad is not None:
    x = C.nan_gradient_where(bad[:, None, :], x)
  p = smp_probabilities(x, mode, from_logits)
  if valid is not None:
    p, t = jnp.where(valid, p, zero), jnp.where(valid, t, zero)
  intersection, pred_sum, target_sum = soft_counts(p, t, (0, 2), None)
  present = target_sum > 0
  # Sudre's 1 / T_c^2; an absent class (infinite weight) gets the largest finite weight,
  # as MONAI's GeneralizedDiceLoss(batch=True).
  weights = jnp.where(present, 1.0 / jnp.where(present, target_sum, 1.0) ** 2, zero)
  weights = jnp.where(present, weights, jnp.max(weights))
  smooth, eps = jnp.asarray(smooth, dtype), jnp.asarray(eps, dtype)
  numerator = 2.0 * jnp.sum(weights * intersection) + smooth
  denominator = jnp.sum(weights * (pred_sum + target_sum)) + smooth
  loss = 1.0 - numerator / _clamp_min(denominator, eps)
  if bad is not None:
    loss = C.nan_where(jnp.any(bad), loss)
  return loss.astype(out_dtype)


@_smp_doc
def generalized_soft_dice_loss(y_pred: ArrayLike, y_true: ArrayLike, mode: str, *,
                               from_logits: bool = True, smooth: ArrayLike = 0.0,
                               ignore_index: int | float | None = None, eps: ArrayLike = 1e-7,
                               axis: int = 1, where: ArrayLike | None = None) -> Array:
  r"""Generalised Dice loss (Sudre et al.) in segmentation-models-pytorch's convention.

  smp has no generalised Dice loss; this one takes smp's arguments and counts
  (summed over the batch and the spatial axes, as smp's :func:`soft_dice_loss`)
  and MONAI's weights, ``GeneralizedDiceLoss(batch=True, w_type='square')``:

  .. math:: \ell = 1 - \frac{2 \sum_c w_c I_c + s}{\max(\sum_c w_c (P_c + T_c) + s,
     \epsilon)}, \qquad w_c = 1 / T_c^2,

  with :math:`I_c = \sum p t` and the weight of a class absent from ``y_true``
  (infinite) replaced by the largest finite weight, as MONAI. MONAI's
  ``smooth_nr = smooth_dr = 1e-5`` is ``smooth=1e-5`` here. optax's
  :func:`multiclass_generalized_dice_loss` differs: per-sample Dice losses
  weighted by normalised ``1 / (F_c^2 + 1e-7)`` and averaged.

  Args:{SMP_ARGS}
    from_logits: apply the mode's activation to ``y_pred``.
    smooth: added to numerator and denominator (traced).
    ignore_index: a target value whose pixels (multiclass) or entries leave
      every count, with zero gradient.
    eps: the denominator's lower bound (traced).
    axis: the class axis of ``y_pred`` (keyword-only, default ``1``).
    where: optional bool mask of ``y_pred``'s shape or of its shape without
      ``axis``; exactly-zero gradients outside. Beyond smp and MONAI.

  Returns:
    The scalar loss; ``nan`` (values and gradients, reported under
    ``checkify``) for a counted multiclass label outside ``[0, C)``.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> logits = jnp.array([[[2.0, 0.5, -1.0], [-1.0, 0.0, 1.0]]])
    >>> labels = jnp.array([[0, 0, 1]])
    >>> out = jaxloss.generalized_soft_dice_loss(logits, labels, 'multiclass')
    >>> print(f"{float(out):.4f}")
    0.2106

  References:
    - Sudre et al., "Generalised Dice overlap as a deep learning loss function
      for highly unbalanced segmentations", DLMIA 2017.
      https://arxiv.org/abs/1707.03237
    - MONAI, ``monai.losses.GeneralizedDiceLoss``.
  """
  fn = "generalized_soft_dice_loss"
  x, t, valid, bad, _ = smp_inputs(fn, y_pred, y_true, mode, axis, ignore_index, where)
  return _generalized_dice_kernel(x, t, valid, bad, smooth, eps, mode=mode,
                                  from_logits=bool(from_logits))


# ----------------------------------------------------------------------------
# Lovasz losses (Berman et al.), as smp's LovaszLoss
# ----------------------------------------------------------------------------


def lovasz_grad(gt_sorted: Array) -> Array:
  """The Lovasz extension's gradient w.r.t. errors sorted in decreasing order (Alg. 1)."""
  gts = jnp.sum(gt_sorted)
  intersection = gts - jnp.cumsum(gt_sorted)
  union = gts + jnp.cumsum(1.0 - gt_sorted)
  jaccard = 1.0 - intersection / union
  return jnp.concatenate([jaccard[:1], jaccard[1:] - jaccard[:-1]])


def _lovasz_hinge_flat(logits: Array, labels: Array, valid: Array | None) -> Array:
  signs = 2.0 * labels - 1.0
  errors = 1.0 - logits * signs
  if valid is not None:  # left out: sorted last, with no error and no label
    errors = jnp.where(valid, errors, jnp.full((), -jnp.inf, errors.dtype))
    labels = jnp.where(valid, labels, jnp.zeros((), labels.dtype))
  perm = jnp.argsort(-errors)  # decreasing (ties broken by position)
  return jnp.dot(jax.nn.relu(errors[perm]), lovasz_grad(labels[perm]))


@functools.partial(jax.jit, static_argnames=("per_image",))
def _lovasz_hinge_kernel(x, t, valid, *, per_image):
  out_dtype = C.output_dtype(x)
  dtype = C.compute_dtype(x)
  x, t = C.upcast(x, dtype), jax.lax.stop_gradient(C.upcast(t, dtype))
  if valid is not None:
    x, t = C.mask_inputs(valid, 0, x, t)
  n = x.shape[0]
  if per_image:
    flat_valid = None if valid is None else valid.reshape(n, -1)
    losses = jax.vmap(_lovasz_hinge_flat)(x.reshape(n, -1), t.reshape(n, -1), flat_valid)
    loss = jnp.mean(losses)
  else:
    loss = _lovasz_hinge_flat(x.reshape(-1), t.reshape(-1),
                              None if valid is None else valid.reshape(-1))
  return loss.astype(out_dtype)


def _lovasz_softmax_flat(probas: Array, labels: Array, valid: Array | None) -> Array:
  """smp's ``classes='present'``: the mean over the classes present in ``labels``."""
  num_classes = probas.shape[1]
  dtype = probas.dtype

  def per_class(c, class_pred):
    fg = (labels == c).astype(dtype)
    if valid is not None:
      fg = jnp.where(valid, fg, jnp.zeros((), dtype))
    errors = C.torch_abs(fg - class_pred)
    if valid is not None:  # sorted after every counted error (all >= 0)
      errors = jnp.where(valid, errors, -jnp.ones((), dtype))
    perm = jnp.argsort(-errors)
    errors_sorted = errors[perm]
    if valid is not None:
      errors_sorted = jnp.where(valid[perm], errors_sorted, jnp.zeros((), dtype))
    return jnp.dot(errors_sorted, lovasz_grad(fg[perm])), jnp.sum(fg) > 0

  losses, present = jax.vmap(per_class, in_axes=(0, 1))(jnp.arange(num_classes), probas)
  count = jnp.sum(present)
  total = jnp.sum(jnp.where(present, losses, jnp.zeros((), dtype)))
  return jnp.where(count > 0, total / jnp.maximum(count, 1).astype(dtype), 0.0)


@functools.partial(jax.jit, static_argnames=("per_image", "from_logits"))
def _lovasz_softmax_kernel(x, labels, valid, bad, *, per_image, from_logits):
  out_dtype = C.output_dtype(x)
  dtype = C.compute_dtype(x)
  x = C.upcast(x, dtype)
  if valid is not None:
    x = jnp.where(valid[:, None, :], x, jnp.zeros((), dtype))
  x = C.nan_gradient_where(bad[:, None, :], x)
  probas = jax.nn.softmax(x, axis=1) if from_logits else x
  probas = jnp.swapaxes(probas, 1, 2)  # (N, S, C)
  if per_image:
    loss = jnp.mean(jax.vmap(_lovasz_softmax_flat)(probas, labels, valid))
  else:
    loss = _lovasz_softmax_flat(probas.reshape(-1, probas.shape[-1]), labels.reshape(-1),
                                None if valid is None else valid.reshape(-1))
  loss = C.nan_where(jnp.any(bad), loss)
  return loss.astype(out_dtype)


def lovasz_softmax_loss(y_pred: ArrayLike, y_true: ArrayLike, *, per_image: bool = False,
                        ignore_index: int | None = None, from_logits: bool = True,
                        axis: int = 1, where: ArrayLike | None = None) -> Array:
  r"""Lovasz-softmax loss, segmentation-models-pytorch's ``LovaszLoss('multiclass')``.

  For each class :math:`c` present in ``y_true``, the errors
  :math:`e_i = |[y_i = c] - p_{ic}|` sorted in decreasing order are weighted by
  the Lovasz extension's gradient of the Jaccard loss (Berman et al., Alg. 1)
  and summed; the loss is the mean over the present classes, over the whole
  batch (or per image, then averaged, with ``per_image``).

  Args:
    y_pred: ``(N, C, *spatial)`` logits (probabilities if ``from_logits=False``;
      smp always applies the softmax), the class axis at ``axis``.
    y_true: integer class indices ``(N, *spatial)``.
    per_image: the loss per image, then the mean over the batch (static).
    ignore_index: a label whose pixels are left out (zero gradient).
    from_logits: apply the softmax over ``axis``.
    axis: the class axis (keyword-only, default ``1``).
    where: optional bool mask of pixels (``y_true``'s shape, or ``y_pred``'s:
      a pixel counts if all its entries do); exactly-zero gradients outside.

  Returns:
    The scalar loss; ``nan`` (values and gradients, reported under
    ``checkify``) if a counted label lies outside ``[0, C)``. An image (or
    batch) without counted pixels gives ``0``.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> logits = jnp.array([[[2.0, 0.5, -1.0], [-1.0, 0.0, 1.0]]])
    >>> labels = jnp.array([[0, 0, 1]])
    >>> print(f"{float(jaxloss.lovasz_softmax_loss(logits, labels)):.4f}")
    0.2364

  References:
    - Berman, Triki and Blaschko, "The Lovasz-Softmax loss: A tractable
      surrogate for the optimization of the intersection-over-union measure in
      neural networks", CVPR 2018. https://arxiv.org/abs/1705.08790
    - segmentation-models-pytorch, ``smp.losses.LovaszLoss``.
  """
  fn = "lovasz_softmax_loss"
  x, _, valid, bad, ax = smp_inputs(fn, y_pred, y_true, "multiclass", axis, ignore_index,
                                    where)
  labels = jnp.asarray(y_true)
  labels = labels.reshape(labels.shape[0], -1)
  valid = None if valid is None else jnp.all(valid, axis=1)
  return _lovasz_softmax_kernel(x, labels, valid, bad, per_image=bool(per_image),
                                from_logits=bool(from_logits))


def lovasz_hinge_loss(y_pred: ArrayLike, y_true: ArrayLike, mode: str = "binary", *,
                      per_image: bool = False, ignore_index: int | float | None = None,
                      axis: int = 1, where: ArrayLike | None = None) -> Array:
  r"""Lovasz hinge loss, segmentation-models-pytorch's ``LovaszLoss('binary' | 'multilabel')``.

  The hinge errors :math:`e_i = 1 - x_i (2 y_i - 1)` of every entry (every
  pixel, and every class in 'multilabel' mode), sorted in decreasing order,
  weighted by the Lovasz extension's gradient of the Jaccard loss of the
  binary labels, :math:`\sum_i \max(e_{(i)}, 0)\, g_{(i)}`; over the whole
  batch, or per image then averaged with ``per_image``.

  Args:
    y_pred: ``(N, C, *spatial)`` logits (``C = 1`` in 'binary' mode), the
      class axis at ``axis``.
    y_true: binary labels of ``y_pred``'s shape (or ``(N, *spatial)`` in
      'binary' mode).
    mode: ``'binary'`` or ``'multilabel'``.
    per_image: the loss per image, then the mean over the batch (static).
    ignore_index: a label value whose entries are left out (zero gradient).
    axis: the class axis (keyword-only, default ``1``).
    where: optional bool mask of ``y_pred``'s shape (or without ``axis``);
      exactly-zero gradients outside.

  Returns:
    The scalar loss (``0`` for an image or batch without counted entries).

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> logits = jnp.array([[[2.0, 0.5, -1.0]]])  # (N=1, C=1, 3 pixels)
    >>> labels = jnp.array([[1.0, 0.0, 0.0]])
    >>> print(f"{float(jaxloss.lovasz_hinge_loss(logits, labels)):.4f}")
    0.7500

  References:
    - Berman, Triki and Blaschko, "The Lovasz-Softmax loss", CVPR 2018.
      https://arxiv.org/abs/1705.08790
    - segmentation-models-pytorch, ``smp.losses.LovaszLoss``.
  """
  fn = "lovasz_hinge_loss"
  if mode not in ("binary", "multilabel"):
    raise ValueError(f"{fn}: `mode` must be 'binary' or 'multilabel', got {mode!r} (use "
                     f"lovasz_softmax_loss for 'multiclass').")
  x, t, valid, _, _ = smp_inputs(fn, y_pred, y_true, mode, axis, ignore_index, where)
  return _lovasz_hinge_kernel(x, t, valid, per_image=bool(per_image))


# ----------------------------------------------------------------------------
# Dice + cross-entropy
# ----------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("mode",))
def _segmentation_ce_kernel(x, t, valid, bad, *, mode):
  out_dtype = C.output_dtype(x)
  dtype = C.compute_dtype(x)
  x, t = C.upcast(x, dtype), C.upcast(t, dtype)
  if valid is not None:
    x, t = C.mask_inputs(valid, 0, x, t)
  if bad is not None:
    x = C.nan_gradient_where(bad[:, None, :], x)
  if mode == "multiclass":
    entries = -jnp.sum(t * jax.nn.log_softmax(x, axis=1), axis=1)  # (N, S)
    counted = None if valid is None else valid[:, 0, :]
  else:  # binary_cross_entropy_with_logits
    entries = jax.nn.softplus(x) - x * t
    counted = valid
  if counted is None:
    loss = jnp.mean(entries)
  else:
    total = jnp.sum(jnp.where(counted, entries, jnp.zeros((), dtype)))
    loss = total / jnp.sum(counted, dtype=dtype)
  if bad is not None:
    loss = C.nan_where(jnp.any(bad), loss)
  return loss.astype(out_dtype)


@_smp_doc
def dice_cross_entropy_loss(y_pred: ArrayLike, y_true: ArrayLike, mode: str, *,
                            lambda_dice: ArrayLike = 1.0, lambda_ce: ArrayLike = 1.0,
                            classes: Sequence[int] | None = None, log_loss: bool = False,
                            smooth: ArrayLike = 0.0, ignore_index: int | float | None = None,
                            eps: ArrayLike = 1e-7, class_weights: ArrayLike | None = None,
                            axis: int = 1, where: ArrayLike | None = None) -> Array:
  r"""Dice + cross-entropy: ``lambda_dice * soft_dice_loss + lambda_ce * CE``.

  The Dice term is :func:`soft_dice_loss` (smp's ``DiceLoss``, logits); the
  cross-entropy is torch's ``F.cross_entropy`` over ``axis`` ('multiclass',
  the mean over pixels not ``ignore_index``) or
  ``F.binary_cross_entropy_with_logits`` ('binary', 'multilabel', the mean over
  entries not ``ignore_index``), the combination smp users write by hand
  (MONAI's ``DiceCELoss``). ``classes`` and ``class_weights`` apply to the Dice
  term only.

  Args:{SMP_ARGS_LOGITS}
    lambda_dice: weight of the Dice term (traced).
    lambda_ce: weight of the cross-entropy term (traced).
    classes, log_loss, smooth, ignore_index, eps, class_weights, axis, where:
      as :func:`soft_dice_loss` (``where`` also masks the cross-entropy).

  Returns:
    The scalar loss (``nan`` for an invalid class index, as the Dice term).

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> logits = jnp.array([[[2.0, 0.5, -1.0], [-1.0, 0.0, 1.0]]])
    >>> labels = jnp.array([[0, 0, 1]])
    >>> out = jaxloss.dice_cross_entropy_loss(logits, labels, 'multiclass')
    >>> print(f"{float(out):.4f}")
    0.4082

  References:
    - Isensee et al., "nnU-Net", Nature Methods 2021 (Dice + CE).
    - segmentation-models-pytorch, ``smp.losses.DiceLoss``; torch's
      ``F.cross_entropy``.
  """
  fn = "dice_cross_entropy_loss"
  x, t, valid, bad, _ = smp_inputs(fn, y_pred, y_true, mode, axis, ignore_index, where)
  num_classes = x.shape[1]
  classes = _check_classes(fn, classes, mode, num_classes)
  class_weights = _check_smp_class_weights(fn, class_weights, mode, num_classes)
  dice = _overlap_kernel(x, t, valid, bad, class_weights, smooth, eps, 0.5, 0.5, None,
                         mode=mode, from_logits=True, log_loss=bool(log_loss),
                         classes=classes, reduction="mean")
  ce = _segmentation_ce_kernel(x, t, valid, bad, mode=mode)
  return lambda_dice * dice + lambda_ce * ce
