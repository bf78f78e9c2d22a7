r"""Bounding-box regression losses: torchvision's ``ops`` IoU losses.

* :func:`generalized_box_iou_loss` (GIoU, Rezatofighi et al. 2019),
* :func:`distance_box_iou_loss` (DIoU, Zheng et al. 2020),
* :func:`complete_box_iou_loss` (CIoU, Zheng et al. 2020),

with torchvision's names, argument order and defaults (``reduction='none'``,
``eps=1e-7``), boxes ``(x1, y1, x2, y2)`` on the last axis of ``(..., 4)``
arrays, and torchvision's values and gradients, degenerate boxes included: a
zero-area box, a box with ``x2 < x1`` (torchvision does not check the order:
neither do we, the formula gives the same number), identical boxes (the
``max``/``min`` of equal coordinates splits the gradient in halves, as torch's).

Beyond torchvision: a ``where`` mask over the boxes (masked pairs leave the sum
and the mean, and get exactly-zero gradients), and the nan contract: a box with
a non-finite coordinate is reported under ``checkify`` and gives ``nan`` (its
loss, any reduction over it, and the gradients), where torch gives a nan or an
inf that depends on which coordinate it is.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

from jaxloss import _common as C

Array = C.Array
ArrayLike = C.ArrayLike

_NAMES = {"giou": "generalized_box_iou_loss", "diou": "distance_box_iou_loss",
          "ciou": "complete_box_iou_loss"}
_TORCHVISION_EPS = 1e-7  # the eps torchvision's CIoU passes to its DIoU part, whatever `eps`


def _as_boxes(fn: str, name: str, boxes: ArrayLike) -> Array:
  boxes = jnp.asarray(boxes)
  if jnp.issubdtype(boxes.dtype, jnp.integer):  # torchvision's _upcast_non_float
    boxes = boxes.astype(jnp.float32)
  boxes = C.as_float_array(fn, name, boxes)
  if boxes.ndim < 1 or boxes.shape[-1] != 4:
    raise ValueError(f"{fn}: `{name}` must have shape (..., 4) (x1, y1, x2, y2), got "
                     f"{tuple(boxes.shape)}.")
  return boxes


def _inter_union(b1: Array, b2: Array) -> tuple[Array, Array]:
  """torchvision's ``_loss_inter_union``: the intersection is 0 unless both extents are > 0."""
  x1, y1, x2, y2 = (b1[..., i] for i in range(4))
  x1g, y1g, x2g, y2g = (b2[..., i] for i in range(4))
  xkis1, ykis1 = jnp.maximum(x1, x1g), jnp.maximum(y1, y1g)
  xkis2, ykis2 = jnp.minimum(x2, x2g), jnp.minimum(y2, y2g)
  overlap = (ykis2 > ykis1) & (xkis2 > xkis1)
  intsct = jnp.where(overlap, (xkis2 - xkis1) * (ykis2 - ykis1), jnp.zeros((), b1.dtype))
  union = (x2 - x1) * (y2 - y1) + (x2g - x1g) * (y2g - y1g) - intsct
  return intsct, union


def _enclosing(b1: Array, b2: Array) -> tuple[Array, Array, Array, Array]:
  return (jnp.minimum(b1[..., 0], b2[..., 0]), jnp.minimum(b1[..., 1], b2[..., 1]),
          jnp.maximum(b1[..., 2], b2[..., 2]), jnp.maximum(b1[..., 3], b2[..., 3]))


def _diou_iou(b1: Array, b2: Array, eps) -> tuple[Array, Array]:
  """torchvision's ``_diou_iou_loss``: ``(1 - iou + d^2 / c^2, iou)``."""
  intsct, union = _inter_union(b1, b2)
  iou = intsct / (union + eps)
  xc1, yc1, xc2, yc2 = _enclosing(b1, b2)
  diagonal_sq = (xc2 - xc1) ** 2 + (yc2 - yc1) ** 2 + eps
  x_p, y_p = (b1[..., 2] + b1[..., 0]) / 2, (b1[..., 3] + b1[..., 1]) / 2
  x_g, y_g = (b2[..., 0] + b2[..., 2]) / 2, (b2[..., 1] + b2[..., 3]) / 2
  centers_sq = (x_p - x_g) ** 2 + (y_p - y_g) ** 2
  return 1 - iou + centers_sq / diagonal_sq, iou


def _box_loss(kind: str, b1: Array, b2: Array, eps) -> Array:
  if kind == "giou":
    intsct, union = _inter_union(b1, b2)
    iou = intsct / (union + eps)
    xc1, yc1, xc2, yc2 = _enclosing(b1, b2)
    area_c = (xc2 - xc1) * (yc2 - yc1)
    return 1 - (iou - (area_c - union) / (area_c + eps))
  if kind == "diou":
    return _diou_iou(b1, b2, eps)[0]
  # ciou: torchvision's DIoU part uses its default eps (1e-7), only alpha uses `eps`.
  diou, iou = _diou_iou(b1, b2, jnp.asarray(_TORCHVISION_EPS, b1.dtype))
  w_pred, h_pred = b1[..., 2] - b1[..., 0], b1[..., 3] - b1[..., 1]
  w_gt, h_gt = b2[..., 2] - b2[..., 0], b2[..., 3] - b2[..., 1]
  v = (4 / math.pi ** 2) * (jnp.arctan(w_gt / h_gt) - jnp.arctan(w_pred / h_pred)) ** 2
  alpha = jax.lax.stop_gradient(v / (1 - iou + v + eps))  # torch.no_grad()
  return diou + alpha * v


@functools.partial(jax.jit, static_argnames=("kind", "reduction"))
def _box_kernel(boxes1, boxes2, eps, where, *, kind, reduction):
  fn = _NAMES[kind]
  out_dtype = C.output_dtype(boxes1, boxes2)
  dtype = C.compute_dtype(boxes1, boxes2)
  shape = C.broadcast_shape(fn, boxes1=boxes1, boxes2=boxes2)
  b1 = jnp.broadcast_to(C.upcast(boxes1, dtype), shape)
  b2 = jnp.broadcast_to(C.upcast(boxes2, dtype), shape)
  where = C.prepare_where(fn, where, shape[:-1], "the per-box loss (the boxes' shape without "
                          "the last axis)")
  if where is not None:  # a unit box stands in for a masked pair: finite, zero gradient
    unit = jnp.asarray([0.0, 0.0, 1.0, 1.0], dtype)
    b1, b2 = (jnp.where(where[..., None], b, unit) for b in (b1, b2))
  finite = jnp.all(jnp.isfinite(b1), axis=-1) & jnp.all(jnp.isfinite(b2), axis=-1)
  if finite.size:
    C.value_check(jnp.all(finite),
                  f"{fn}: every box coordinate must be finite; box pair {{bad}} (flat index) "
                  "is not.", bad=jnp.argmin(finite.ravel()))
  bad = ~finite
  b1, b2 = C.nan_gradient_rows(bad, b1, b2)
  loss = _box_loss(kind, b1, b2, jnp.asarray(eps, dtype))
  if reduction == "mean" and loss.size == 0:  # torchvision: 0.0 * loss.sum()
    return jnp.zeros((), out_dtype)
  return C.reduce_loss(loss, reduction, where, out_dtype=out_dtype, bad=bad)


def _box_iou_loss(kind: str, boxes1, boxes2, reduction, eps, where) -> Array:
  fn = _NAMES[kind]
  C.check_reduction(fn, reduction)
  boxes1 = _as_boxes(fn, "boxes1", boxes1)
  boxes2 = _as_boxes(fn, "boxes2", boxes2)
  C.broadcast_shape(fn, boxes1=boxes1, boxes2=boxes2)
  eps = jnp.asarray(eps)
  if eps.ndim:
    raise ValueError(f"{fn}: `eps` must be a scalar, got shape {tuple(eps.shape)}.")
  return _box_kernel(boxes1, boxes2, eps, where, kind=kind, reduction=reduction)


_ARGS_DOC = """
  Args:
    boxes1: ``(..., 4)`` boxes ``(x1, y1, x2, y2)`` (integer boxes are computed
      in float32, as torchvision's ``_upcast_non_float``).
    boxes2: ``(..., 4)`` boxes, broadcastable against ``boxes1``. The loss is
      symmetric in the two.
    reduction: ``'none'`` (the default, as torchvision) ``| 'mean' | 'sum'``.
    eps: the small number added to the denominators (traced).
    where: optional bool mask of the per-box shape ``(...)``; a masked pair
      leaves the sum and the mean's denominator and gets exactly-zero gradients
      (whatever its coordinates). Beyond torchvision.

  Returns:
    The loss, ``(...)`` for ``'none'``, in the boxes' dtype (float32 compute for
    half precision; torchvision returns float32 there). A box with a non-finite
    coordinate is reported under ``checkify`` and gives ``nan``.

"""


def generalized_box_iou_loss(boxes1: ArrayLike, boxes2: ArrayLike, reduction: str = "none",
                             eps: float = 1e-7, *, where: ArrayLike | None = None) -> Array:
  r"""Generalized IoU loss, ``torchvision.ops.generalized_box_iou_loss``.

  .. math:: \ell = 1 - \mathrm{IoU} + \frac{|C| - |A \cup B|}{|C| + \epsilon},
            \qquad \mathrm{IoU} = \frac{|A \cap B|}{|A \cup B| + \epsilon}

  with :math:`C` the smallest box enclosing :math:`A` and :math:`B`; the
  intersection is 0 unless both its width and height are positive.
  {args}
  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> pred = jnp.array([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 1.0, 1.0]])
    >>> true = jnp.array([[1.0, 1.0, 3.0, 3.0], [2.0, 2.0, 3.0, 3.0]])
    >>> print(jaxloss.generalized_box_iou_loss(pred, true).round(4))
    [1.0794 1.7778]

  References:
    - Rezatofighi et al., "Generalized Intersection over Union: A Metric and a
      Loss for Bounding Box Regression", CVPR 2019. https://arxiv.org/abs/1902.09630
    - torchvision, ``torchvision.ops.generalized_box_iou_loss``.
  """
  return _box_iou_loss("giou", boxes1, boxes2, reduction, eps, where)


def distance_box_iou_loss(boxes1: ArrayLike, boxes2: ArrayLike, reduction: str = "none",
                          eps: float = 1e-7, *, where: ArrayLike | None = None) -> Array:
  r"""Distance IoU loss, ``torchvision.ops.distance_box_iou_loss``.

  .. math:: \ell = 1 - \mathrm{IoU} + \frac{\rho^2}{c^2 + \epsilon}

  with :math:`\rho` the distance between the boxes' centres and :math:`c` the
  diagonal of the smallest enclosing box; IoU as in
  :func:`generalized_box_iou_loss`.
  {args}
  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> pred = jnp.array([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 1.0, 1.0]])
    >>> true = jnp.array([[1.0, 1.0, 3.0, 3.0], [2.0, 2.0, 3.0, 3.0]])
    >>> print(jaxloss.distance_box_iou_loss(pred, true).round(4))
    [0.9683 1.4444]

  References:
    - Zheng et al., "Distance-IoU Loss: Faster and Better Learning for Bounding
      Box Regression", AAAI 2020. https://arxiv.org/abs/1911.08287
    - torchvision, ``torchvision.ops.distance_box_iou_loss``.
  """
  return _box_iou_loss("diou", boxes1, boxes2, reduction, eps, where)


def complete_box_iou_loss(boxes1: ArrayLike, boxes2: ArrayLike, reduction: str = "none",
                          eps: float = 1e-7, *, where: ArrayLike | None = None) -> Array:
  r"""Complete IoU loss, ``torchvision.ops.complete_box_iou_loss``.

  .. math:: \ell = \ell_{\mathrm{DIoU}} + \alpha v, \quad
            v = \frac{4}{\pi^2}\Big(\arctan\frac{w_2}{h_2} - \arctan\frac{w_1}{h_1}\Big)^2,
            \quad \alpha = \frac{v}{1 - \mathrm{IoU} + v + \epsilon}

  with :math:`\alpha` a constant for the gradient (torchvision's
  ``torch.no_grad()``). As torchvision, the DIoU part always uses
  ``eps=1e-7`` (torchvision does not pass ``eps`` on); ``eps`` enters only
  :math:`\alpha`. A box of zero height gives ``nan`` gradients (torchvision's
  too: :math:`\arctan(w/0)`).
  {args}
  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> pred = jnp.array([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 1.0, 2.0]])
    >>> true = jnp.array([[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 2.0, 1.0]])
    >>> print(jaxloss.complete_box_iou_loss(pred, true).round(4))
    [0.9683 0.7629]

  References:
    - Zheng et al., "Distance-IoU Loss: Faster and Better Learning for Bounding
      Box Regression", AAAI 2020. https://arxiv.org/abs/1911.08287
    - torchvision, ``torchvision.ops.complete_box_iou_loss``.
  """
  return _box_iou_loss("ciou", boxes1, boxes2, reduction, eps, where)


for _f in (generalized_box_iou_loss, distance_box_iou_loss, complete_box_iou_loss):
  _f.__doc__ = _f.__doc__.replace("  {args}\n", _ARGS_DOC)
del _f
