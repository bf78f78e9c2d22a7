r"""Segmentation losses: soft Dice (Tversky) losses, as optax's.

Every loss here compares soft predictions :math:`p_{ic}` (probabilities from
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

Another overlap loss (Jaccard, Lovasz) belongs here, built on the same two
helpers.
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
