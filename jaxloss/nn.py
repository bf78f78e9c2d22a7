"""Class-style wrappers mirroring ``torch.nn``'s loss modules, for porting.

Each class takes the constructor arguments of its torch module (same names,
order and defaults), holds them, and calls the functional loss::

    criterion = jaxloss.nn.CrossEntropyLoss(label_smoothing=0.1)
    loss = criterion(logits, labels)                 # == jaxloss.cross_entropy(...)
    loss = criterion(logits, labels, where=valid)    # jaxloss's keyword-only mask

The wrappers of losses with a class axis also take a keyword-only ``axis``
(beyond torch; ``None``, the default, is torch's layout), e.g.
``CrossEntropyLoss(axis=-1)`` for class-last logits.

The objects are plain, immutable Python objects with no parameters: closing over
one inside a jitted function is free, and array options (``weight``,
``pos_weight``) are treated as constants of the traced program.

``TORCH_LOSSES`` holds the wrappers of torch 2.13's 22 loss classes except
``AdaptiveLogSoftmaxWithLoss``, which has parameters: ``jaxloss.nn.
AdaptiveLogSoftmaxWithLoss`` is the Flax module of :mod:`jaxloss.adaptive`
(Flax is imported on first access to that name, never by ``import jaxloss``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# The loss modules themselves, not the `jaxloss` package: `jaxloss/__init__.py`
# imports this module, so `import jaxloss` here would be an import cycle.
from jaxloss import _common as C
from jaxloss.amlfs import amlfs_loss
from jaxloss.angular import arcface, combined_margin, cosface, large_margin_softmax, sphereface
from jaxloss.binary import binary_cross_entropy, binary_cross_entropy_with_logits
from jaxloss.box import complete_box_iou_loss, distance_box_iou_loss, generalized_box_iou_loss
from jaxloss.classification import cross_entropy, nll_loss
from jaxloss.ctc import ctc_loss
from jaxloss.embedding import (
  cosine_embedding_loss,
  triplet_margin_loss,
  triplet_margin_with_distance_loss,
)
from jaxloss.focal import sigmoid_focal_loss, softmax_focal_loss
from jaxloss.likelihood import gaussian_nll_loss, kl_div, poisson_nll_loss
from jaxloss.linear import linear_cross_entropy
from jaxloss.margin import (
  hinge_embedding_loss,
  margin_ranking_loss,
  multi_margin_loss,
  multilabel_margin_loss,
  multilabel_soft_margin_loss,
  soft_margin_loss,
)
from jaxloss.regression import huber_loss, l1_loss, mse_loss, smooth_l1_loss
from jaxloss.robust import (
  active_passive_loss,
  bi_tempered_logistic_loss,
  generalized_cross_entropy,
  normalized_cross_entropy,
  normalized_focal_loss,
  normalized_generalized_cross_entropy,
  reverse_cross_entropy,
  softmax_mae_loss,
  symmetric_cross_entropy,
)
from jaxloss.segmentation import (
  dice_cross_entropy_loss,
  generalized_soft_dice_loss,
  lovasz_hinge_loss,
  lovasz_softmax_loss,
  soft_dice_loss,
  soft_jaccard_loss,
  soft_tversky_loss,
)
from jaxloss.self_supervised import (
  batch_all_triplet_loss,
  batch_hard_triplet_loss,
  info_nce,
  multi_similarity_loss,
  ntxent,
  supervised_contrastive_loss,
)

ArrayLike = C.ArrayLike


class _Loss:
  """Holds the options of one functional loss and applies it."""

  _fn: Callable[..., Any]

  def __init__(self, **options: Any):
    object.__setattr__(self, "_options", options)

  def __setattr__(self, name: str, value: Any) -> None:
    raise AttributeError(f"{type(self).__name__} is immutable; build a new one.")

  def __getattr__(self, name: str) -> Any:
    options = object.__getattribute__(self, "_options")
    if name in options:
      return options[name]
    raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

  def __call__(self, *inputs: ArrayLike, where: ArrayLike | None = None):
    kwargs = dict(self._options)
    if where is not None:
      kwargs["where"] = where
    return type(self)._fn(*inputs, **kwargs)

  def __repr__(self) -> str:
    shown = ", ".join(f"{k}={_short(v)}" for k, v in self._options.items())
    return f"{type(self).__name__}({shown})"


def _short(value: Any) -> str:
  shape = getattr(value, "shape", None)
  return f"<array {tuple(shape)}>" if shape is not None else repr(value)


def _axis(axis: int | None) -> dict:
  """The keyword-only class ``axis`` (beyond torch), kept only when given: ``None`` is torch's."""
  return {} if axis is None else {"axis": axis}


def _reduction_only(name: str, size_average: Any, reduce: Any, reduction: str) -> dict:
  C.reject_legacy_args(name, size_average, reduce)
  return {"reduction": reduction}


class L1Loss(_Loss):
  """``torch.nn.L1Loss``; see :func:`jaxloss.l1_loss`."""
  _fn = staticmethod(l1_loss)

  def __init__(self, size_average=None, reduce=None, reduction: str = "mean"):
    super().__init__(**_reduction_only("L1Loss", size_average, reduce, reduction))


class MSELoss(_Loss):
  """``torch.nn.MSELoss``; see :func:`jaxloss.mse_loss`."""
  _fn = staticmethod(mse_loss)

  def __init__(self, size_average=None, reduce=None, reduction: str = "mean"):
    super().__init__(**_reduction_only("MSELoss", size_average, reduce, reduction))


class HuberLoss(_Loss):
  """``torch.nn.HuberLoss``; see :func:`jaxloss.huber_loss`."""
  _fn = staticmethod(huber_loss)

  def __init__(self, reduction: str = "mean", delta: float = 1.0):
    super().__init__(reduction=reduction, delta=delta)


class SmoothL1Loss(_Loss):
  """``torch.nn.SmoothL1Loss``; see :func:`jaxloss.smooth_l1_loss`."""
  _fn = staticmethod(smooth_l1_loss)

  def __init__(self, size_average=None, reduce=None, reduction: str = "mean",
               beta: float = 1.0):
    super().__init__(**_reduction_only("SmoothL1Loss", size_average, reduce, reduction),
                     beta=beta)


class CrossEntropyLoss(_Loss):
  """``torch.nn.CrossEntropyLoss``; see :func:`jaxloss.cross_entropy`.

  ``axis`` (keyword-only, beyond torch): the class axis; ``-1`` for class-last logits.
  """
  _fn = staticmethod(cross_entropy)

  def __init__(self, weight: ArrayLike | None = None, size_average=None,
               ignore_index: int = -100, reduce=None, reduction: str = "mean",
               label_smoothing: float = 0.0, *, axis: int | None = None):
    C.reject_legacy_args("CrossEntropyLoss", size_average, reduce)
    super().__init__(weight=weight, ignore_index=ignore_index, reduction=reduction,
                     label_smoothing=label_smoothing, **_axis(axis))


class NLLLoss(_Loss):
  """``torch.nn.NLLLoss``; see :func:`jaxloss.nll_loss`."""
  _fn = staticmethod(nll_loss)

  def __init__(self, weight: ArrayLike | None = None, size_average=None,
               ignore_index: int = -100, reduce=None, reduction: str = "mean", *,
               axis: int | None = None):
    C.reject_legacy_args("NLLLoss", size_average, reduce)
    super().__init__(weight=weight, ignore_index=ignore_index, reduction=reduction,
                     **_axis(axis))


class LinearCrossEntropyLoss(_Loss):
  """``torch.nn.LinearCrossEntropyLoss``; call as ``loss(input, linear_weight, target)``.

  See :func:`jaxloss.linear_cross_entropy`. torch's module owns its ``Linear``
  (``in_features``, ``num_classes``, ``out_features``, ``bias``, ``device``,
  ``dtype``); like every wrapper here this one holds no parameters, so the head's
  weight (``(C, in_features)``, or ``(C, d1, ..., dK, in_features)`` for torch's
  ``out_features``) and its bias (``linear_bias=``, keyword) are call arguments.
  The loss options keep torch's names and defaults; ``chunk_size`` is jaxloss's.
  """
  _fn = staticmethod(linear_cross_entropy)

  def __init__(self, *, reduction: str = "mean", weight: ArrayLike | None = None,
               ignore_index: int | None = None, label_smoothing: float = 0.0, options=None,
               chunk_size: int | None = None):
    super().__init__(reduction=reduction, weight=weight, ignore_index=ignore_index,
                     label_smoothing=label_smoothing, options=options, chunk_size=chunk_size)

  def __call__(self, input: ArrayLike, linear_weight: ArrayLike, target: ArrayLike, *,
               linear_bias: ArrayLike | None = None, where: ArrayLike | None = None):
    return linear_cross_entropy(input, linear_weight, target, linear_bias=linear_bias,
                                where=where, **self._options)


class BCELoss(_Loss):
  """``torch.nn.BCELoss``; see :func:`jaxloss.binary_cross_entropy`."""
  _fn = staticmethod(binary_cross_entropy)

  def __init__(self, weight: ArrayLike | None = None, size_average=None, reduce=None,
               reduction: str = "mean"):
    C.reject_legacy_args("BCELoss", size_average, reduce)
    super().__init__(weight=weight, reduction=reduction)


class BCEWithLogitsLoss(_Loss):
  """``torch.nn.BCEWithLogitsLoss``; see :func:`jaxloss.binary_cross_entropy_with_logits`."""
  _fn = staticmethod(binary_cross_entropy_with_logits)

  def __init__(self, weight: ArrayLike | None = None, size_average=None, reduce=None,
               reduction: str = "mean", pos_weight: ArrayLike | None = None):
    C.reject_legacy_args("BCEWithLogitsLoss", size_average, reduce)
    super().__init__(weight=weight, reduction=reduction, pos_weight=pos_weight)


class KLDivLoss(_Loss):
  """``torch.nn.KLDivLoss``; see :func:`jaxloss.kl_div`."""
  _fn = staticmethod(kl_div)

  def __init__(self, size_average=None, reduce=None, reduction: str = "mean",
               log_target: bool = False):
    super().__init__(**_reduction_only("KLDivLoss", size_average, reduce, reduction),
                     log_target=log_target)


class PoissonNLLLoss(_Loss):
  """``torch.nn.PoissonNLLLoss``; see :func:`jaxloss.poisson_nll_loss`."""
  _fn = staticmethod(poisson_nll_loss)

  def __init__(self, log_input: bool = True, full: bool = False, size_average=None,
               eps: float = 1e-8, reduce=None, reduction: str = "mean"):
    C.reject_legacy_args("PoissonNLLLoss", size_average, reduce)
    super().__init__(log_input=log_input, full=full, eps=eps, reduction=reduction)


class GaussianNLLLoss(_Loss):
  """``torch.nn.GaussianNLLLoss``; call as ``loss(input, target, var)``."""
  _fn = staticmethod(gaussian_nll_loss)

  def __init__(self, *, full: bool = False, eps: float = 1e-6, reduction: str = "mean"):
    super().__init__(full=full, eps=eps, reduction=reduction)


class SoftMarginLoss(_Loss):
  """``torch.nn.SoftMarginLoss``; see :func:`jaxloss.soft_margin_loss`."""
  _fn = staticmethod(soft_margin_loss)

  def __init__(self, size_average=None, reduce=None, reduction: str = "mean"):
    super().__init__(**_reduction_only("SoftMarginLoss", size_average, reduce, reduction))


class MultiLabelSoftMarginLoss(_Loss):
  """``torch.nn.MultiLabelSoftMarginLoss``; see :func:`jaxloss.multilabel_soft_margin_loss`."""
  _fn = staticmethod(multilabel_soft_margin_loss)

  def __init__(self, weight: ArrayLike | None = None, size_average=None, reduce=None,
               reduction: str = "mean", *, axis: int | None = None):
    C.reject_legacy_args("MultiLabelSoftMarginLoss", size_average, reduce)
    super().__init__(weight=weight, reduction=reduction, **_axis(axis))


class MultiLabelMarginLoss(_Loss):
  """``torch.nn.MultiLabelMarginLoss``; see :func:`jaxloss.multilabel_margin_loss`."""
  _fn = staticmethod(multilabel_margin_loss)

  def __init__(self, size_average=None, reduce=None, reduction: str = "mean", *,
               axis: int | None = None):
    super().__init__(
        **_reduction_only("MultiLabelMarginLoss", size_average, reduce, reduction),
        **_axis(axis))


class MultiMarginLoss(_Loss):
  """``torch.nn.MultiMarginLoss``; see :func:`jaxloss.multi_margin_loss`."""
  _fn = staticmethod(multi_margin_loss)

  def __init__(self, p: int = 1, margin: float = 1.0, weight: ArrayLike | None = None,
               size_average=None, reduce=None, reduction: str = "mean", *,
               axis: int | None = None):
    C.reject_legacy_args("MultiMarginLoss", size_average, reduce)
    super().__init__(p=p, margin=margin, weight=weight, reduction=reduction, **_axis(axis))


class MarginRankingLoss(_Loss):
  """``torch.nn.MarginRankingLoss``; call as ``loss(input1, input2, target)``."""
  _fn = staticmethod(margin_ranking_loss)

  def __init__(self, margin: float = 0.0, size_average=None, reduce=None,
               reduction: str = "mean"):
    C.reject_legacy_args("MarginRankingLoss", size_average, reduce)
    super().__init__(margin=margin, reduction=reduction)


class HingeEmbeddingLoss(_Loss):
  """``torch.nn.HingeEmbeddingLoss``; see :func:`jaxloss.hinge_embedding_loss`."""
  _fn = staticmethod(hinge_embedding_loss)

  def __init__(self, margin: float = 1.0, size_average=None, reduce=None,
               reduction: str = "mean"):
    C.reject_legacy_args("HingeEmbeddingLoss", size_average, reduce)
    super().__init__(margin=margin, reduction=reduction)


class CosineEmbeddingLoss(_Loss):
  """``torch.nn.CosineEmbeddingLoss``; call as ``loss(input1, input2, target)``."""
  _fn = staticmethod(cosine_embedding_loss)

  def __init__(self, margin: float = 0.0, size_average=None, reduce=None,
               reduction: str = "mean"):
    C.reject_legacy_args("CosineEmbeddingLoss", size_average, reduce)
    super().__init__(margin=margin, reduction=reduction)


class TripletMarginLoss(_Loss):
  """``torch.nn.TripletMarginLoss``; call as ``loss(anchor, positive, negative)``."""
  _fn = staticmethod(triplet_margin_loss)

  def __init__(self, margin: float = 1.0, p: float = 2.0, eps: float = 1e-6,
               swap: bool = False, size_average=None, reduce=None, reduction: str = "mean"):
    C.reject_legacy_args("TripletMarginLoss", size_average, reduce)
    super().__init__(margin=margin, p=p, eps=eps, swap=swap, reduction=reduction)


class TripletMarginWithDistanceLoss(_Loss):
  """``torch.nn.TripletMarginWithDistanceLoss``; ``distance_function`` is a JAX callable."""
  _fn = staticmethod(triplet_margin_with_distance_loss)

  def __init__(self, *, distance_function: Callable[[Any, Any], Any] | None = None,
               margin: float = 1.0, swap: bool = False, reduction: str = "mean"):
    super().__init__(distance_function=distance_function, margin=margin, swap=swap,
                     reduction=reduction)


class CTCLoss(_Loss):
  """``torch.nn.CTCLoss``; call as ``loss(log_probs, targets, input_lengths, target_lengths)``."""
  _fn = staticmethod(ctc_loss)

  def __init__(self, blank: int = 0, reduction: str = "mean", zero_infinity: bool = False):
    super().__init__(blank=blank, reduction=reduction, zero_infinity=zero_infinity)


TORCH_LOSSES = (
    L1Loss, MSELoss, CrossEntropyLoss, LinearCrossEntropyLoss, NLLLoss, BCELoss, BCEWithLogitsLoss,
    KLDivLoss, PoissonNLLLoss, GaussianNLLLoss, HuberLoss, SmoothL1Loss, SoftMarginLoss,
    MultiLabelSoftMarginLoss, MultiLabelMarginLoss, MultiMarginLoss, MarginRankingLoss,
    HingeEmbeddingLoss, CosineEmbeddingLoss, TripletMarginLoss, TripletMarginWithDistanceLoss,
    CTCLoss,
)


# ----------------------------------------------------------------------------
# Beyond torch: margin-softmax, focal and AM-LFS losses.
# ----------------------------------------------------------------------------


class CosFaceLoss(_Loss):
  """CosFace on cosine logits; call as ``loss(cosine, target)``. See :func:`jaxloss.cosface`."""
  _fn = staticmethod(cosface)

  def __init__(self, scale: float = 64.0, m: float = 0.35, weight: ArrayLike | None = None,
               ignore_index: int = -100, reduction: str = "mean", label_smoothing: float = 0.0,
               *, axis: int | None = None):
    super().__init__(scale=scale, m=m, weight=weight, ignore_index=ignore_index,
                     reduction=reduction,
                     label_smoothing=label_smoothing, **_axis(axis))


class ArcFaceLoss(_Loss):
  """ArcFace on cosine logits; call as ``loss(cosine, target)``. See :func:`jaxloss.arcface`."""
  _fn = staticmethod(arcface)

  def __init__(self, scale: float = 64.0, m: float = 0.5, weight: ArrayLike | None = None,
               ignore_index: int = -100, reduction: str = "mean", label_smoothing: float = 0.0,
               *, easy_margin: bool = False, axis: int | None = None):
    super().__init__(scale=scale, m=m, weight=weight, ignore_index=ignore_index,
                     reduction=reduction,
                     label_smoothing=label_smoothing, easy_margin=easy_margin, **_axis(axis))


class SphereFaceLoss(_Loss):
  """SphereFace (A-Softmax) on cosine logits; see :func:`jaxloss.sphereface`.

  ``scale`` is required (the authors scale by the feature norm). ``lambda_`` is fixed per
  object; for an annealed schedule call :func:`jaxloss.sphereface` with
  :func:`jaxloss.margin_lambda` of the step.
  """
  _fn = staticmethod(sphereface)

  def __init__(self, scale: ArrayLike, m: int = 4, weight: ArrayLike | None = None,
               ignore_index: int = -100, reduction: str = "mean", label_smoothing: float = 0.0,
               *, lambda_: float = 0.0, axis: int | None = None):
    super().__init__(scale=scale, m=m, weight=weight, ignore_index=ignore_index,
                     reduction=reduction,
                     label_smoothing=label_smoothing, lambda_=lambda_, **_axis(axis))


class CombinedMarginLoss(_Loss):
  """``s * (cos(m1 theta + m2) - m3)`` on the target; see :func:`jaxloss.combined_margin`."""
  _fn = staticmethod(combined_margin)

  def __init__(self, scale: float = 64.0, m1: float = 1.0, m2: float = 0.3, m3: float = 0.2,
               weight: ArrayLike | None = None, ignore_index: int = -100,
               reduction: str = "mean", label_smoothing: float = 0.0, *,
               axis: int | None = None):
    super().__init__(scale=scale, m1=m1, m2=m2, m3=m3, weight=weight, ignore_index=ignore_index,
                     reduction=reduction, label_smoothing=label_smoothing, **_axis(axis))


class LargeMarginSoftmaxLoss(_Loss):
  """L-Softmax; call as ``loss(features, weight_matrix, target)``.

  See :func:`jaxloss.large_margin_softmax`.
  """
  _fn = staticmethod(large_margin_softmax)

  def __init__(self, m: int = 2, scale: float = 1.0, weight: ArrayLike | None = None,
               ignore_index: int = -100, reduction: str = "mean", label_smoothing: float = 0.0,
               *, weight_layout: str = "cd", lambda_: float = 0.0, eps: float = 1e-12):
    super().__init__(m=m, scale=scale, weight=weight, ignore_index=ignore_index,
                     reduction=reduction,
                     label_smoothing=label_smoothing, weight_layout=weight_layout,
                     lambda_=lambda_, eps=eps)


class SoftmaxFocalLoss(_Loss):
  """Multi-class focal loss on logits; see :func:`jaxloss.softmax_focal_loss`."""
  _fn = staticmethod(softmax_focal_loss)

  def __init__(self, gamma: float = 2.0, alpha: ArrayLike | None = None,
               reduction: str = "mean", ignore_index: int = -100, *, axis: int | None = None):
    super().__init__(gamma=gamma, alpha=alpha, reduction=reduction, ignore_index=ignore_index,
                     **_axis(axis))


class SigmoidFocalLoss(_Loss):
  """torchvision's ``sigmoid_focal_loss``; see :func:`jaxloss.sigmoid_focal_loss`."""
  _fn = staticmethod(sigmoid_focal_loss)

  def __init__(self, alpha: float = 0.25, gamma: float = 2.0, reduction: str = "none"):
    super().__init__(alpha=alpha, gamma=gamma, reduction=reduction)


class GeneralizedCrossEntropyLoss(_Loss):
  """GCE on logits; see :func:`jaxloss.generalized_cross_entropy`."""
  _fn = staticmethod(generalized_cross_entropy)

  def __init__(self, q: float = 0.7, weight: ArrayLike | None = None, ignore_index: int = -100,
               reduction: str = "mean", *, axis: int = 1):
    super().__init__(q=q, weight=weight, ignore_index=ignore_index, reduction=reduction,
                     axis=axis)


class NormalizedGeneralizedCrossEntropyLoss(_Loss):
  """NGCE on logits; see :func:`jaxloss.normalized_generalized_cross_entropy`."""
  _fn = staticmethod(normalized_generalized_cross_entropy)

  def __init__(self, q: float = 0.7, weight: ArrayLike | None = None, ignore_index: int = -100,
               reduction: str = "mean", *, axis: int = 1):
    super().__init__(q=q, weight=weight, ignore_index=ignore_index, reduction=reduction,
                     axis=axis)


class NormalizedCrossEntropyLoss(_Loss):
  """NCE on logits; see :func:`jaxloss.normalized_cross_entropy`."""
  _fn = staticmethod(normalized_cross_entropy)

  def __init__(self, weight: ArrayLike | None = None, ignore_index: int = -100,
               reduction: str = "mean", *, axis: int = 1):
    super().__init__(weight=weight, ignore_index=ignore_index, reduction=reduction, axis=axis)


class NormalizedFocalLoss(_Loss):
  """NFL on logits; see :func:`jaxloss.normalized_focal_loss`."""
  _fn = staticmethod(normalized_focal_loss)

  def __init__(self, gamma: float = 0.5, weight: ArrayLike | None = None,
               ignore_index: int = -100, reduction: str = "mean", *, axis: int = 1):
    super().__init__(gamma=gamma, weight=weight, ignore_index=ignore_index, reduction=reduction,
                     axis=axis)


class ReverseCrossEntropyLoss(_Loss):
  """RCE on logits; see :func:`jaxloss.reverse_cross_entropy`."""
  _fn = staticmethod(reverse_cross_entropy)

  def __init__(self, A: float = -4.0, weight: ArrayLike | None = None,
               ignore_index: int = -100, reduction: str = "mean", *, axis: int = 1):
    super().__init__(A=A, weight=weight, ignore_index=ignore_index, reduction=reduction,
                     axis=axis)


class SoftmaxMAELoss(_Loss):
  """``1 - p_y`` of the softmax; see :func:`jaxloss.softmax_mae_loss` (not ``L1Loss``)."""
  _fn = staticmethod(softmax_mae_loss)

  def __init__(self, weight: ArrayLike | None = None, ignore_index: int = -100,
               reduction: str = "mean", *, axis: int = 1):
    super().__init__(weight=weight, ignore_index=ignore_index, reduction=reduction, axis=axis)


class SymmetricCrossEntropyLoss(_Loss):
  """SCE on logits; see :func:`jaxloss.symmetric_cross_entropy`."""
  _fn = staticmethod(symmetric_cross_entropy)

  def __init__(self, alpha: float = 0.1, beta: float = 1.0, A: float = -4.0,
               weight: ArrayLike | None = None, ignore_index: int = -100,
               reduction: str = "mean", *, axis: int = 1):
    super().__init__(alpha=alpha, beta=beta, A=A, weight=weight, ignore_index=ignore_index,
                     reduction=reduction, axis=axis)


class ActivePassiveLoss(_Loss):
  """An active-passive loss (NCE+RCE, ...); see :func:`jaxloss.active_passive_loss`."""
  _fn = staticmethod(active_passive_loss)

  def __init__(self, active: str = "nce", passive: str = "rce", alpha: float = 1.0,
               beta: float = 1.0, weight: ArrayLike | None = None, ignore_index: int = -100,
               reduction: str = "mean", *, gamma: float = 0.5, q: float = 0.7,
               A: float = -4.0, axis: int = 1):
    super().__init__(active=active, passive=passive, alpha=alpha, beta=beta, weight=weight,
                     ignore_index=ignore_index, reduction=reduction, gamma=gamma, q=q, A=A,
                     axis=axis)


class BiTemperedLogisticLoss(_Loss):
  """The bi-tempered logistic loss; see :func:`jaxloss.bi_tempered_logistic_loss`."""
  _fn = staticmethod(bi_tempered_logistic_loss)

  def __init__(self, t1: float, t2: float, label_smoothing: float = 0.0, num_iters: int = 5,
               weight: ArrayLike | None = None, ignore_index: int = -100,
               reduction: str = "mean", *, axis: int = 1):
    super().__init__(t1=t1, t2=t2, label_smoothing=label_smoothing, num_iters=num_iters,
                     weight=weight, ignore_index=ignore_index, reduction=reduction, axis=axis)


class AMLFSLoss(_Loss):
  """The AM-LFS loss; call as ``loss(cosine, target, theta)``. See :func:`jaxloss.amlfs_loss`.

  ``scale`` is required: a float ``s`` or per-logit norms (the paper's eq. 4).
  """
  _fn = staticmethod(amlfs_loss)

  def __init__(self, *, scale: ArrayLike, weight: ArrayLike | None = None,
               ignore_index: int = -100, reduction: str = "mean", tau_min_ratio: float = 0.01,
               axis: int | None = None):
    super().__init__(scale=scale, weight=weight, ignore_index=ignore_index,
                     reduction=reduction, tau_min_ratio=tau_min_ratio, **_axis(axis))


# ----------------------------------------------------------------------------
# segmentation-models-pytorch's loss classes (smp.losses), and MONAI's names for
# the two smp lacks; `mode` first, smp's argument order, then jaxloss's keywords.
# ----------------------------------------------------------------------------


class DiceLoss(_Loss):
  """smp's ``DiceLoss``; see :func:`jaxloss.soft_dice_loss` (optax's is ``dice_loss``)."""
  _fn = staticmethod(soft_dice_loss)

  def __init__(self, mode: str, classes: list[int] | None = None, log_loss: bool = False,
               from_logits: bool = True, smooth: float = 0.0, ignore_index: int | None = None,
               eps: float = 1e-7, class_weights: ArrayLike | None = None, *,
               reduction: str = "mean", axis: int = 1):
    super().__init__(mode=mode, classes=None if classes is None else tuple(classes),
                     log_loss=log_loss, from_logits=from_logits, smooth=smooth,
                     ignore_index=ignore_index, eps=eps, class_weights=class_weights,
                     reduction=reduction, axis=axis)


class JaccardLoss(DiceLoss):
  """smp's ``JaccardLoss``; see :func:`jaxloss.soft_jaccard_loss`."""
  _fn = staticmethod(soft_jaccard_loss)


class TverskyLoss(_Loss):
  """smp's ``TverskyLoss`` (focal-Tversky with ``gamma``); see :func:`jaxloss.soft_tversky_loss`."""
  _fn = staticmethod(soft_tversky_loss)

  def __init__(self, mode: str, classes: list[int] | None = None, log_loss: bool = False,
               from_logits: bool = True, smooth: float = 0.0, ignore_index: int | None = None,
               eps: float = 1e-7, alpha: float = 0.5, beta: float = 0.5, gamma: float = 1.0,
               class_weights: ArrayLike | None = None, *, reduction: str = "mean",
               axis: int = 1):
    super().__init__(mode=mode, classes=None if classes is None else tuple(classes),
                     log_loss=log_loss, from_logits=from_logits, smooth=smooth,
                     ignore_index=ignore_index, eps=eps, alpha=alpha, beta=beta, gamma=gamma,
                     class_weights=class_weights, reduction=reduction, axis=axis)


class LovaszLoss(_Loss):
  """smp's ``LovaszLoss``: :func:`jaxloss.lovasz_softmax_loss` in 'multiclass' mode,
  :func:`jaxloss.lovasz_hinge_loss` (on logits) in 'binary' and 'multilabel' modes."""

  def __init__(self, mode: str, per_image: bool = False, ignore_index: int | None = None,
               from_logits: bool = True, *, axis: int = 1):
    if mode not in ("binary", "multiclass", "multilabel"):
      raise ValueError(f"LovaszLoss: `mode` must be 'binary', 'multiclass' or 'multilabel', "
                       f"got {mode!r}.")
    if mode != "multiclass" and not from_logits:  # smp ignores it; the hinge needs logits
      raise ValueError("LovaszLoss: the Lovasz hinge ('binary', 'multilabel') takes logits: "
                       "`from_logits` must be True.")
    super().__init__(mode=mode, per_image=per_image, ignore_index=ignore_index,
                     from_logits=from_logits, axis=axis)

  def __call__(self, *inputs: ArrayLike, where: ArrayLike | None = None):
    o = self._options
    if o["mode"] == "multiclass":
      return lovasz_softmax_loss(*inputs, per_image=o["per_image"],
                                 ignore_index=o["ignore_index"],
                                 from_logits=o["from_logits"], axis=o["axis"], where=where)
    return lovasz_hinge_loss(*inputs, o["mode"], per_image=o["per_image"],
                             ignore_index=o["ignore_index"], axis=o["axis"], where=where)


class GeneralizedDiceLoss(_Loss):
  """Generalised Dice (MONAI's name, smp has none): :func:`jaxloss.generalized_soft_dice_loss`."""
  _fn = staticmethod(generalized_soft_dice_loss)

  def __init__(self, mode: str, from_logits: bool = True, smooth: float = 0.0,
               ignore_index: int | None = None, eps: float = 1e-7, *, axis: int = 1):
    super().__init__(mode=mode, from_logits=from_logits, smooth=smooth,
                     ignore_index=ignore_index, eps=eps, axis=axis)


class DiceCELoss(_Loss):
  """Dice + cross-entropy (MONAI's name); see :func:`jaxloss.dice_cross_entropy_loss`."""
  _fn = staticmethod(dice_cross_entropy_loss)

  def __init__(self, mode: str, lambda_dice: float = 1.0, lambda_ce: float = 1.0,
               classes: list[int] | None = None, log_loss: bool = False, smooth: float = 0.0,
               ignore_index: int | None = None, eps: float = 1e-7,
               class_weights: ArrayLike | None = None, *, axis: int = 1):
    super().__init__(mode=mode, lambda_dice=lambda_dice, lambda_ce=lambda_ce,
                     classes=None if classes is None else tuple(classes), log_loss=log_loss,
                     smooth=smooth, ignore_index=ignore_index, eps=eps,
                     class_weights=class_weights, axis=axis)


def __getattr__(name: str):
  if name == "AdaptiveLogSoftmaxWithLoss":  # a Flax module: flax is imported only now
    from jaxloss import adaptive  # noqa: PLC0415
    return adaptive.AdaptiveLogSoftmaxWithLoss
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# torchvision's box losses (torchvision has functions only: named after them).


class GeneralizedBoxIoULoss(_Loss):
  """torchvision's ``generalized_box_iou_loss``; see :func:`jaxloss.generalized_box_iou_loss`."""
  _fn = staticmethod(generalized_box_iou_loss)

  def __init__(self, reduction: str = "none", eps: float = 1e-7):
    super().__init__(reduction=reduction, eps=eps)


class DistanceBoxIoULoss(_Loss):
  """torchvision's ``distance_box_iou_loss``; see :func:`jaxloss.distance_box_iou_loss`."""
  _fn = staticmethod(distance_box_iou_loss)

  def __init__(self, reduction: str = "none", eps: float = 1e-7):
    super().__init__(reduction=reduction, eps=eps)


class CompleteBoxIoULoss(_Loss):
  """torchvision's ``complete_box_iou_loss``; see :func:`jaxloss.complete_box_iou_loss`."""
  _fn = staticmethod(complete_box_iou_loss)

  def __init__(self, reduction: str = "none", eps: float = 1e-7):
    super().__init__(reduction=reduction, eps=eps)


# Metric learning: pytorch-metric-learning's class names and defaults; called as
# ``loss(embeddings, labels)`` (``InfoNCELoss``: ``loss(query, key)``).


class NTXentLoss(_Loss):
  """pml's ``NTXentLoss`` (and optax's ``ntxent``); see :func:`jaxloss.ntxent`."""
  _fn = staticmethod(ntxent)

  def __init__(self, temperature: float = 0.07, chunk_size: int | None = None):
    super().__init__(temperature=temperature, chunk_size=chunk_size)


class InfoNCELoss(_Loss):
  """InfoNCE with in-batch negatives (CLIP's when symmetric); see :func:`jaxloss.info_nce`."""
  _fn = staticmethod(info_nce)

  def __init__(self, temperature: float = 0.07, symmetric: bool = False,
               normalize: bool = True, chunk_size: int | None = None):
    super().__init__(temperature=temperature, symmetric=symmetric, normalize=normalize,
                     chunk_size=chunk_size)


class SupConLoss(_Loss):
  """pml's ``SupConLoss``; see :func:`jaxloss.supervised_contrastive_loss`."""
  _fn = staticmethod(supervised_contrastive_loss)

  def __init__(self, temperature: float = 0.1, chunk_size: int | None = None):
    super().__init__(temperature=temperature, chunk_size=chunk_size)


class BatchHardTripletLoss(_Loss):
  """pml's ``TripletMarginLoss(margin)`` with ``BatchHardMiner()``; see
  :func:`jaxloss.batch_hard_triplet_loss` (``TripletMarginLoss`` here is torch.nn's)."""
  _fn = staticmethod(batch_hard_triplet_loss)

  def __init__(self, margin: float = 0.05, normalize: bool = True,
               chunk_size: int | None = None):
    super().__init__(margin=margin, normalize=normalize, chunk_size=chunk_size)


class BatchAllTripletLoss(_Loss):
  """pml's ``TripletMarginLoss(margin)`` without a miner; see
  :func:`jaxloss.batch_all_triplet_loss`."""
  _fn = staticmethod(batch_all_triplet_loss)

  def __init__(self, margin: float = 0.05, normalize: bool = True,
               chunk_size: int | None = None):
    super().__init__(margin=margin, normalize=normalize, chunk_size=chunk_size)


class MultiSimilarityLoss(_Loss):
  """pml's ``MultiSimilarityLoss``; see :func:`jaxloss.multi_similarity_loss`."""
  _fn = staticmethod(multi_similarity_loss)

  def __init__(self, alpha: float = 2.0, beta: float = 50.0, base: float = 0.5,
               chunk_size: int | None = None):
    super().__init__(alpha=alpha, beta=beta, base=base, chunk_size=chunk_size)
