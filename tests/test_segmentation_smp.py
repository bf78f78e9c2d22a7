# ruff: noqa: UP006, UP008, UP010, UP031, UP032, UP035, UP045, E501, E741, B007, B904, F841, I001
"""jaxloss's smp-convention segmentation losses against segmentation-models-pytorch's own code.

The reference below is copied verbatim (plain torch) from
github.com/qubvel-org/segmentation_models.pytorch, commit
4bf6ec09b62956d9690883842417382a27e2cb89 (the last one touching
segmentation_models_pytorch/losses/ in the snapshot at 5006616357631a48c7c8e11977cf5abb00803590,
version 0.5.1.dev0), files segmentation_models_pytorch/losses/{constants.py, _functional.py
(to_tensor and the soft_*_score functions), dice.py, jaccard.py, tversky.py, lovasz.py}; only
their relative imports are replaced by the definitions themselves. smp is not installed: its
package pulls a CUDA torchvision.
"""

from __future__ import print_function, division

from itertools import filterfalse as ifilterfalse
from typing import List, Optional

import numpy as np
import torch
import torch.linalg as LA
import torch.nn.functional as F
from torch.nn.modules.loss import _Loss


# --- constants.py
BINARY_MODE: str = "binary"
MULTICLASS_MODE: str = "multiclass"
MULTILABEL_MODE: str = "multilabel"


# --- _functional.py
def to_tensor(x, dtype=None) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        if dtype is not None:
            x = x.type(dtype)
        return x
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
        if dtype is not None:
            x = x.type(dtype)
        return x
    if isinstance(x, (list, tuple)):
        x = np.array(x)
        x = torch.from_numpy(x)
        if dtype is not None:
            x = x.type(dtype)
        return x


def soft_jaccard_score(
    output: torch.Tensor,
    target: torch.Tensor,
    smooth: float = 0.0,
    eps: float = 1e-7,
    dims=None,
) -> torch.Tensor:
    assert output.size() == target.size()
    jaccard_score = soft_tversky_score(output, target, 1.0, 1.0, smooth, eps, dims)
    return jaccard_score


def soft_dice_score(
    output: torch.Tensor,
    target: torch.Tensor,
    smooth: float = 0.0,
    eps: float = 1e-7,
    dims=None,
) -> torch.Tensor:
    assert output.size() == target.size()
    dice_score = soft_tversky_score(output, target, 0.5, 0.5, smooth, eps, dims)
    return dice_score


def soft_tversky_score(
    output: torch.Tensor,
    target: torch.Tensor,
    alpha: float,
    beta: float,
    smooth: float = 0.0,
    eps: float = 1e-7,
    dims=None,
) -> torch.Tensor:
    """Tversky loss

    References:
        https://arxiv.org/pdf/2302.05666
        https://arxiv.org/pdf/2303.16296

    """
    assert output.size() == target.size()

    if dims is not None:
        output_sum = torch.sum(output, dim=dims)
        target_sum = torch.sum(target, dim=dims)
        difference = LA.vector_norm(output - target, ord=1, dim=dims)
    else:
        output_sum = torch.sum(output)
        target_sum = torch.sum(target)
        difference = LA.vector_norm(output - target, ord=1)

    intersection = (output_sum + target_sum - difference) / 2  # TP
    fp = output_sum - intersection
    fn = target_sum - intersection

    tversky_score = (intersection + smooth) / (
        intersection + alpha * fp + beta * fn + smooth
    ).clamp_min(eps)
    return tversky_score


# --- dice.py
class DiceLoss(_Loss):
    def __init__(
        self,
        mode: str,
        classes: Optional[List[int]] = None,
        log_loss: bool = False,
        from_logits: bool = True,
        smooth: float = 0.0,
        ignore_index: Optional[int] = None,
        eps: float = 1e-7,
        class_weights: Optional[List[float]] = None,
    ):
        """Dice loss for image segmentation task.
        It supports binary, multiclass and multilabel cases

        Args:
            mode: Loss mode 'binary', 'multiclass' or 'multilabel'
            classes:  List of classes that contribute in loss computation. By default, all channels are included.
            log_loss: If True, loss computed as `- log(dice_coeff)`, otherwise `1 - dice_coeff`
            from_logits: If True, assumes input is raw logits
            smooth: Smoothness constant for dice coefficient (a)
            ignore_index: Label that indicates ignored pixels (does not contribute to loss)
            eps: A small epsilon for numerical stability to avoid zero division error
                (denominator will be always greater or equal to eps)
            class_weights: List of weights for each class. If not ``None``, the loss for each class
                is multiplied by the corresponding weight. Only supported for multiclass and
                multilabel modes. Weights do not need to be normalized.

        Shape
             - **y_pred** - torch.Tensor of shape (N, C, H, W)
             - **y_true** - torch.Tensor of shape (N, H, W) or (N, C, H, W)

        Reference
            https://github.com/BloodAxe/pytorch-toolbelt
        """
        assert mode in {BINARY_MODE, MULTILABEL_MODE, MULTICLASS_MODE}
        super(DiceLoss, self).__init__()
        self.mode = mode
        if class_weights is not None and mode == BINARY_MODE:
            raise ValueError("class_weights are not supported with mode=binary")
        if classes is not None:
            assert mode != BINARY_MODE, (
                "Masking classes is not supported with mode=binary"
            )
            classes = to_tensor(classes, dtype=torch.long)

        self.classes = classes
        self.from_logits = from_logits
        self.smooth = smooth
        self.eps = eps
        self.log_loss = log_loss
        self.ignore_index = ignore_index
        self.class_weights = (
            to_tensor(class_weights, dtype=torch.float)
            if class_weights is not None
            else None
        )

    def forward(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        assert y_true.size(0) == y_pred.size(0)

        if self.from_logits:
            # Apply activations to get [0..1] class probabilities
            # Using Log-Exp as this gives more numerically stable result and does not cause vanishing gradient on
            # extreme values 0 and 1
            if self.mode == MULTICLASS_MODE:
                y_pred = y_pred.log_softmax(dim=1).exp()
            else:
                y_pred = F.logsigmoid(y_pred).exp()

        bs = y_true.size(0)
        num_classes = y_pred.size(1)
        dims = (0, 2)

        if self.mode == BINARY_MODE:
            y_true = y_true.reshape(bs, 1, -1)
            y_pred = y_pred.reshape(bs, 1, -1)

            if self.ignore_index is not None:
                mask = y_true != self.ignore_index
                y_pred = y_pred * mask
                y_true = y_true * mask

        if self.mode == MULTICLASS_MODE:
            y_true = y_true.reshape(bs, -1)
            y_pred = y_pred.reshape(bs, num_classes, -1)

            if self.ignore_index is not None:
                mask = y_true != self.ignore_index
                y_pred = y_pred * mask.unsqueeze(1)

                y_true = F.one_hot(
                    (y_true * mask).to(torch.long), num_classes
                )  # N,H*W -> N,H*W, C
                y_true = y_true.permute(0, 2, 1) * mask.unsqueeze(1)  # N, C, H*W
            else:
                y_true = F.one_hot(y_true, num_classes)  # N,H*W -> N,H*W, C
                y_true = y_true.permute(0, 2, 1)  # N, C, H*W

        if self.mode == MULTILABEL_MODE:
            y_true = y_true.reshape(bs, num_classes, -1)
            y_pred = y_pred.reshape(bs, num_classes, -1)

            if self.ignore_index is not None:
                mask = y_true != self.ignore_index
                y_pred = y_pred * mask
                y_true = y_true * mask

        scores = self.compute_score(
            y_pred, y_true.type_as(y_pred), smooth=self.smooth, eps=self.eps, dims=dims
        )

        if self.log_loss:
            loss = -torch.log(scores.clamp_min(self.eps))
        else:
            loss = 1.0 - scores

        # Dice loss is undefined for empty images with no classes
        # So we set the contribution of any channel without true pixels to zero
        # NOTE: A better workaround would be to use loss term `mean(y_pred)`
        # for this case, however it will be a modified jaccard loss

        mask = y_true.sum(dims) > 0
        loss *= mask.to(loss.dtype)

        if self.classes is not None:
            loss = loss[self.classes]

        return self.aggregate_loss(loss)

    def aggregate_loss(self, loss: torch.Tensor) -> torch.Tensor:
        """Aggregate per-class losses into a single scalar.

        Args:
            loss: Per-class loss tensor of shape (C,)

        Returns:
            Scalar loss value
        """
        if self.class_weights is not None:
            weights = self.class_weights.to(loss.device)
            # If classes filter is applied, slice weights accordingly
            if self.classes is not None:
                weights = weights[self.classes]
            return (loss * weights).sum() / weights.sum()
        return loss.mean()

    def compute_score(
        self, output, target, smooth=0.0, eps=1e-7, dims=None
    ) -> torch.Tensor:
        return soft_dice_score(output, target, smooth, eps, dims)


# --- jaccard.py
class JaccardLoss(_Loss):
    def __init__(
        self,
        mode: str,
        classes: Optional[List[int]] = None,
        log_loss: bool = False,
        from_logits: bool = True,
        smooth: float = 0.0,
        ignore_index: Optional[int] = None,
        eps: float = 1e-7,
        class_weights: Optional[List[float]] = None,
    ):
        """Jaccard loss for image segmentation task.
        It supports binary, multiclass and multilabel cases

        Args:
            mode: Loss mode 'binary', 'multiclass' or 'multilabel'
            classes:  List of classes that contribute in loss computation. By default, all channels are included.
            log_loss: If True, loss computed as `- log(jaccard_coeff)`, otherwise `1 - jaccard_coeff`
            from_logits: If True, assumes input is raw logits
            smooth: Smoothness constant for dice coefficient
            eps: A small epsilon for numerical stability to avoid zero division error
                (denominator will be always greater or equal to eps)
            class_weights: List of weights for each class. If not ``None``, the loss for each class
                is multiplied by the corresponding weight. Only supported for multiclass and
                multilabel modes. Weights do not need to be normalized.

        Shape
             - **y_pred** - torch.Tensor of shape (N, C, H, W)
             - **y_true** - torch.Tensor of shape (N, H, W) or (N, C, H, W)

        Reference
            https://github.com/BloodAxe/pytorch-toolbelt
        """
        assert mode in {BINARY_MODE, MULTILABEL_MODE, MULTICLASS_MODE}
        super(JaccardLoss, self).__init__()

        self.mode = mode
        if class_weights is not None and mode == BINARY_MODE:
            raise ValueError("class_weights are not supported with mode=binary")
        if classes is not None:
            assert mode != BINARY_MODE, (
                "Masking classes is not supported with mode=binary"
            )
            classes = to_tensor(classes, dtype=torch.long)

        self.classes = classes
        self.from_logits = from_logits
        self.smooth = smooth
        self.ignore_index = ignore_index
        self.eps = eps
        self.log_loss = log_loss
        self.class_weights = (
            to_tensor(class_weights, dtype=torch.float)
            if class_weights is not None
            else None
        )

    def forward(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        assert y_true.size(0) == y_pred.size(0)

        if self.from_logits:
            # Apply activations to get [0..1] class probabilities
            # Using Log-Exp as this gives more numerically stable result and does not cause vanishing gradient on
            # extreme values 0 and 1
            if self.mode == MULTICLASS_MODE:
                y_pred = y_pred.log_softmax(dim=1).exp()
            else:
                y_pred = F.logsigmoid(y_pred).exp()

        bs = y_true.size(0)
        num_classes = y_pred.size(1)
        dims = (0, 2)

        if self.mode == BINARY_MODE:
            y_true = y_true.reshape(bs, 1, -1)
            y_pred = y_pred.reshape(bs, 1, -1)

            if self.ignore_index is not None:
                mask = y_true != self.ignore_index
                y_pred = y_pred * mask
                y_true = y_true * mask

        if self.mode == MULTICLASS_MODE:
            y_true = y_true.reshape(bs, -1)
            y_pred = y_pred.reshape(bs, num_classes, -1)

            if self.ignore_index is not None:
                mask = y_true != self.ignore_index
                y_pred = y_pred * mask.unsqueeze(1)

                y_true = F.one_hot(
                    (y_true * mask).to(torch.long), num_classes
                )  # N,H*W -> N,H*W, C
                y_true = y_true.permute(0, 2, 1) * mask.unsqueeze(1)  # N, C, H*W
            else:
                y_true = F.one_hot(y_true, num_classes)  # N,H*W -> N,H*W, C
                y_true = y_true.permute(0, 2, 1)  # N, C, H*W

        if self.mode == MULTILABEL_MODE:
            y_true = y_true.reshape(bs, num_classes, -1)
            y_pred = y_pred.reshape(bs, num_classes, -1)

            if self.ignore_index is not None:
                mask = y_true != self.ignore_index
                y_pred = y_pred * mask
                y_true = y_true * mask

        scores = soft_jaccard_score(
            y_pred,
            y_true.type(y_pred.dtype),
            smooth=self.smooth,
            eps=self.eps,
            dims=dims,
        )

        if self.log_loss:
            loss = -torch.log(scores.clamp_min(self.eps))
        else:
            loss = 1.0 - scores

        # IoU loss is defined for non-empty classes
        # So we zero contribution of channel that does not have true pixels
        # NOTE: A better workaround would be to use loss term `mean(y_pred)`
        # for this case, however it will be a modified jaccard loss

        mask = y_true.sum(dims) > 0
        loss *= mask.float()

        if self.classes is not None:
            loss = loss[self.classes]

        if self.class_weights is not None:
            weights = self.class_weights.to(loss.device)
            if self.classes is not None:
                weights = weights[self.classes]
            return (loss * weights).sum() / weights.sum()

        return loss.mean()


# --- tversky.py
class TverskyLoss(DiceLoss):
    """Tversky loss for image segmentation task.
    Where FP and FN is weighted by alpha and beta params.
    With alpha == beta == 0.5, this loss becomes equal DiceLoss.
    It supports binary, multiclass and multilabel cases

    Args:
        mode: Metric mode {'binary', 'multiclass', 'multilabel'}
        classes: Optional list of classes that contribute in loss computation;
            By default, all channels are included.
        log_loss: If True, loss computed as ``-log(tversky)`` otherwise ``1 - tversky``
        from_logits: If True assumes input is raw logits
        smooth:
        ignore_index: Label that indicates ignored pixels (does not contribute to loss)
        eps: Small epsilon for numerical stability
        alpha: Weight constant that penalize model for FPs (False Positives)
        beta: Weight constant that penalize model for FNs (False Negatives)
        gamma: Constant that squares the error function. Defaults to ``1.0``
        class_weights: List of weights for each class. If not ``None``, the loss for each class
            is multiplied by the corresponding weight. Only supported for multiclass and
            multilabel modes. Weights do not need to be normalized.

    Return:
        torch.Tensor: loss
    """

    def __init__(
        self,
        mode: str,
        classes: Optional[List[int]] = None,
        log_loss: bool = False,
        from_logits: bool = True,
        smooth: float = 0.0,
        ignore_index: Optional[int] = None,
        eps: float = 1e-7,
        alpha: float = 0.5,
        beta: float = 0.5,
        gamma: float = 1.0,
        class_weights: Optional[List[float]] = None,
    ):
        assert mode in {BINARY_MODE, MULTILABEL_MODE, MULTICLASS_MODE}
        super().__init__(
            mode,
            classes,
            log_loss,
            from_logits,
            smooth,
            ignore_index,
            eps,
            class_weights,
        )
        self.alpha = alpha
        self.beta = beta
        self.gamma = gamma

    def aggregate_loss(self, loss: torch.Tensor) -> torch.Tensor:
        """Aggregate per-class losses into a single scalar, raised to the power of gamma.

        Args:
            loss: Per-class loss tensor of shape (C,)

        Returns:
            Scalar loss value
        """
        if self.class_weights is not None:
            weights = self.class_weights.to(loss.device)
            if self.classes is not None:
                weights = weights[self.classes]
            return ((loss * weights).sum() / weights.sum()) ** self.gamma
        return loss.mean() ** self.gamma

    def compute_score(
        self, output, target, smooth=0.0, eps=1e-7, dims=None
    ) -> torch.Tensor:
        return soft_tversky_score(
            output, target, self.alpha, self.beta, smooth, eps, dims
        )


# --- lovasz.py
def _lovasz_grad(gt_sorted):
    """Compute gradient of the Lovasz extension w.r.t sorted errors
    See Alg. 1 in paper
    """
    p = len(gt_sorted)
    gts = gt_sorted.sum()
    intersection = gts - gt_sorted.float().cumsum(0)
    union = gts + (1 - gt_sorted).float().cumsum(0)
    jaccard = 1.0 - intersection / union
    if p > 1:  # cover 1-pixel case
        jaccard[1:p] = jaccard[1:p] - jaccard[0:-1]
    return jaccard


def _lovasz_hinge(logits, labels, per_image=True, ignore=None):
    """
    Binary Lovasz hinge loss
        logits: [B, H, W] Logits at each pixel (between -infinity and +infinity)
        labels: [B, H, W] Tensor, binary ground truth masks (0 or 1)
        per_image: compute the loss per image instead of per batch
        ignore: void class id
    """
    if per_image:
        loss = mean(
            _lovasz_hinge_flat(
                *_flatten_binary_scores(log.unsqueeze(0), lab.unsqueeze(0), ignore)
            )
            for log, lab in zip(logits, labels)
        )
    else:
        loss = _lovasz_hinge_flat(*_flatten_binary_scores(logits, labels, ignore))
    return loss


def _lovasz_hinge_flat(logits, labels):
    """Binary Lovasz hinge loss
    Args:
        logits: [P] Logits at each prediction (between -infinity and +infinity)
        labels: [P] Tensor, binary ground truth labels (0 or 1)
        ignore: label to ignore
    """
    if len(labels) == 0:
        # only void pixels, the gradients should be 0
        return logits.sum() * 0.0
    signs = 2.0 * labels.float() - 1.0
    errors = 1.0 - logits * signs
    errors_sorted, perm = torch.sort(errors, dim=0, descending=True)
    perm = perm.data
    gt_sorted = labels[perm]
    grad = _lovasz_grad(gt_sorted)
    loss = torch.dot(F.relu(errors_sorted), grad)
    return loss


def _flatten_binary_scores(scores, labels, ignore=None):
    """Flattens predictions in the batch (binary case)
    Remove labels equal to 'ignore'
    """
    scores = scores.reshape(-1)
    labels = labels.reshape(-1)
    if ignore is None:
        return scores, labels
    valid = labels != ignore
    vscores = scores[valid]
    vlabels = labels[valid]
    return vscores, vlabels


# --------------------------- MULTICLASS LOSSES ---------------------------


def _lovasz_softmax(probas, labels, classes="present", per_image=False, ignore=None):
    """Multi-class Lovasz-Softmax loss
    Args:
        @param probas: [B, C, H, W] Class probabilities at each prediction (between 0 and 1).
        Interpreted as binary (sigmoid) output with outputs of size [B, H, W].
        @param labels: [B, H, W] Tensor, ground truth labels (between 0 and C - 1)
        @param classes: 'all' for all, 'present' for classes present in labels, or a list of classes to average.
        @param per_image: compute the loss per image instead of per batch
        @param ignore: void class labels
    """
    if per_image:
        loss = mean(
            _lovasz_softmax_flat(
                *_flatten_probas(prob.unsqueeze(0), lab.unsqueeze(0), ignore),
                classes=classes,
            )
            for prob, lab in zip(probas, labels)
        )
    else:
        loss = _lovasz_softmax_flat(
            *_flatten_probas(probas, labels, ignore), classes=classes
        )
    return loss


def _lovasz_softmax_flat(probas, labels, classes="present"):
    """Multi-class Lovasz-Softmax loss
    Args:
        @param probas: [P, C] Class probabilities at each prediction (between 0 and 1)
        @param labels: [P] Tensor, ground truth labels (between 0 and C - 1)
        @param classes: 'all' for all, 'present' for classes present in labels, or a list of classes to average.
    """
    if probas.numel() == 0:
        # only void pixels, the gradients should be 0
        return probas * 0.0
    C = probas.size(1)
    losses = []
    class_to_sum = list(range(C)) if classes in ["all", "present"] else classes
    for c in class_to_sum:
        fg = (labels == c).type_as(probas)  # foreground for class c
        if classes == "present" and fg.sum() == 0:
            continue
        if C == 1:
            if len(classes) > 1:
                raise ValueError("Sigmoid output possible only with 1 class")
            class_pred = probas[:, 0]
        else:
            class_pred = probas[:, c]
        errors = (fg - class_pred).abs()
        errors_sorted, perm = torch.sort(errors, 0, descending=True)
        perm = perm.data
        fg_sorted = fg[perm]
        losses.append(torch.dot(errors_sorted, _lovasz_grad(fg_sorted)))
    return mean(losses)


def _flatten_probas(probas, labels, ignore=None):
    """Flattens predictions in the batch"""
    if probas.dim() == 3:
        # assumes output of a sigmoid layer
        B, H, W = probas.size()
        probas = probas.reshape(B, 1, H, W)

    C = probas.size(1)
    probas = torch.movedim(probas, 1, -1)  # [B, C, Di, Dj, ...] -> [B, Di, Dj, ..., C]
    probas = probas.reshape(-1, C)  # [P, C]

    labels = labels.reshape(-1)
    if ignore is None:
        return probas, labels
    valid = labels != ignore
    vprobas = probas[valid]
    vlabels = labels[valid]
    return vprobas, vlabels


# --------------------------- HELPER FUNCTIONS ---------------------------
def isnan(x):
    return x != x


def mean(values, ignore_nan=False, empty=0):
    """Nanmean compatible with generators."""
    values = iter(values)
    if ignore_nan:
        values = ifilterfalse(isnan, values)
    try:
        n = 1
        acc = next(values)
    except StopIteration:
        if empty == "raise":
            raise ValueError("Empty mean")
        return empty
    for n, v in enumerate(values, 2):
        acc += v
    if n == 1:
        return acc
    return acc / n


class LovaszLoss(_Loss):
    def __init__(
        self,
        mode: str,
        per_image: bool = False,
        ignore_index: Optional[int] = None,
        from_logits: bool = True,
    ):
        """Lovasz loss for image segmentation task.
        It supports binary, multiclass and multilabel cases

        Args:
            mode: Loss mode 'binary', 'multiclass' or 'multilabel'
            ignore_index: Label that indicates ignored pixels (does not contribute to loss)
            per_image: If True loss computed per each image and then averaged, else computed per whole batch

        Shape
             - **y_pred** - torch.Tensor of shape (N, C, H, W)
             - **y_true** - torch.Tensor of shape (N, H, W) or (N, C, H, W)

        Reference
            https://github.com/BloodAxe/pytorch-toolbelt
        """
        assert mode in {BINARY_MODE, MULTILABEL_MODE, MULTICLASS_MODE}
        super().__init__()

        self.mode = mode
        self.ignore_index = ignore_index
        self.per_image = per_image

    def forward(self, y_pred, y_true):
        if self.mode in {BINARY_MODE, MULTILABEL_MODE}:
            loss = _lovasz_hinge(
                y_pred, y_true, per_image=self.per_image, ignore=self.ignore_index
            )
        elif self.mode == MULTICLASS_MODE:
            y_pred = y_pred.softmax(dim=1)
            loss = _lovasz_softmax(
                y_pred, y_true, per_image=self.per_image, ignore=self.ignore_index
            )
        else:
            raise ValueError("Wrong mode {}.".format(self.mode))
        return loss


# ---------------------------------------------------------------------------- end of smp's code


# ---------------------------------------------------------------------------- the tests

from unittest import mock  # noqa: E402

import chex  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import pytest  # noqa: E402
from absl.testing import absltest, parameterized  # noqa: E402
from jax.experimental import checkify  # noqa: E402

import jaxloss  # noqa: E402
from tests.parity import DTYPES, ParityTestCase  # noqa: E402

SHAPE = (2, 3, 4, 5)  # (N, C, H, W)


def _inputs(mode, dtype, seed, *, ignore=None, soft=False, probs=False, shape=SHAPE):
  rng = np.random.default_rng(seed)
  n, c = shape[:2]
  x = rng.normal(size=(n, 1 if mode == "binary" else c) + shape[2:]) * 1.5
  if probs:
    x = 1 / (1 + np.exp(-x)) if mode != "multiclass" else np.exp(x) / np.exp(x).sum(1, keepdims=True)
  x = x.astype(dtype)
  if mode == "multiclass":
    y = rng.integers(0, c - 1, size=(n,) + shape[2:])  # class c-1 absent: an empty class
    if ignore is not None:
      y = np.where(rng.random(y.shape) < 0.3, ignore, y)
  else:
    tshape = (n,) + shape[2:] if mode == "binary" else x.shape
    y = rng.random(tshape) if soft else (rng.random(tshape) < 0.4).astype(np.float64)
    if mode == "multilabel" and not soft:
      y[:, -1] = 0.0  # an empty class
    if ignore is not None:
      y = np.where(rng.random(y.shape) < 0.3, ignore, y)
    y = y.astype(dtype)
  return x, y


# (name, mode, smp options, jaxloss-only options, input options)
OVERLAP_CASES = (
    ("multiclass", "multiclass", {}, {}, {}),
    ("multiclass_smooth_log", "multiclass", dict(smooth=1.0, log_loss=True), {}, {}),
    ("multiclass_ignore_classes_weights", "multiclass",
     dict(ignore_index=-1, classes=[0, 2], class_weights=[0.5, 2.0, 0.25]), {},
     dict(ignore=-1)),
    ("multiclass_probs", "multiclass", dict(from_logits=False, smooth=0.5), {}, dict(probs=True)),
    ("multilabel", "multilabel", {}, {}, {}),
    ("multilabel_soft_weights", "multilabel", dict(class_weights=[1.0, 0.5, 2.0]), {},
     dict(soft=True)),
    ("multilabel_ignore", "multilabel", dict(ignore_index=255, smooth=1.0), {},
     dict(ignore=255)),
    ("binary", "binary", {}, {}, {}),
    ("binary_ignore_log", "binary", dict(ignore_index=255, log_loss=True), {}, dict(ignore=255)),
    ("binary_probs", "binary", dict(from_logits=False), {}, dict(probs=True)),
)

LOSSES = (
    ("dice", lambda **o: DiceLoss(**o), jaxloss.soft_dice_loss, {}),
    ("jaccard", lambda **o: JaccardLoss(**o), jaxloss.soft_jaccard_loss, {}),
    ("tversky", lambda **o: TverskyLoss(**o), jaxloss.soft_tversky_loss,
     dict(alpha=0.3, beta=0.7)),
    ("focal_tversky", lambda **o: TverskyLoss(**o), jaxloss.soft_tversky_loss,
     dict(alpha=0.7, beta=0.3, gamma=1.5)),
)


def _overlap_params():
  for i, (name, mode, opts, _, in_opts) in enumerate(OVERLAP_CASES):
    for j, (loss_name, make, fn, loss_opts) in enumerate(LOSSES):
      for dtype in DTYPES:
        yield dict(testcase_name=f"{loss_name}_{name}_{dtype.__name__}", mode=mode, opts=opts,
                   in_opts=in_opts, make=make, fn=fn, loss_opts=loss_opts, dtype=dtype,
                   seed=10 * i + j)


def _jax_opts(opts):
  opts = dict(opts)
  if "classes" in opts:
    opts["classes"] = tuple(opts["classes"])
  return opts


class SmpOverlapParityTest(ParityTestCase):
  """Values and gradients against smp's DiceLoss / JaccardLoss / TverskyLoss."""

  @chex.variants(with_jit=True)
  @parameterized.named_parameters(*_overlap_params())
  def test_parity(self, mode, opts, in_opts, make, fn, loss_opts, dtype, seed):
    self._check(mode, opts, in_opts, make, fn, loss_opts, dtype, seed)

  # Eager too, for the losses' shared code path (Dice and focal-Tversky), to keep the suite fast.
  @chex.variants(without_jit=True)
  @parameterized.named_parameters(
      p for p in _overlap_params() if p["testcase_name"].startswith(("dice", "focal")))
  def test_parity_eager(self, mode, opts, in_opts, make, fn, loss_opts, dtype, seed):
    self._check(mode, opts, in_opts, make, fn, loss_opts, dtype, seed)

  def _check(self, mode, opts, in_opts, make, fn, loss_opts, dtype, seed):
    x, y = _inputs(mode, dtype, seed, **in_opts)
    criterion = make(mode=mode, **opts, **loss_opts)
    jopts = {**_jax_opts(opts), **loss_opts}
    self.assert_parity(lambda a, b: fn(a, b, mode, **jopts), criterion, (x, y))

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(
      (f"{name}_{dtype.__name__}", name, dtype) for name in ("dice", "tversky")
      for dtype in DTYPES)
  def test_channels_last(self, name, dtype):
    _, make, fn, loss_opts = dict((n[0], n) for n in LOSSES)[name]
    x, y = _inputs("multiclass", dtype, 3)
    criterion = make(mode="multiclass", smooth=1.0, **loss_opts)
    self.assert_parity(
        lambda a, b: fn(jnp.moveaxis(a, 1, -1), b, "multiclass", smooth=1.0, axis=-1,
                        **loss_opts),
        criterion, (x, y))


# (name, smp mode, smp options, jaxloss function, jaxloss options, input options)
LOVASZ_CASES = (
    ("softmax", "multiclass", {}, "softmax", {}, {}),
    ("softmax_per_image", "multiclass", dict(per_image=True), "softmax", {}, {}),
    ("softmax_ignore", "multiclass", dict(ignore_index=-1), "softmax", {}, dict(ignore=-1)),
    ("softmax_ignore_per_image", "multiclass", dict(ignore_index=-1, per_image=True),
     "softmax", {}, dict(ignore=-1)),
    ("hinge_binary", "binary", {}, "hinge", {}, {}),
    ("hinge_binary_per_image_ignore", "binary", dict(per_image=True, ignore_index=255), "hinge",
     {}, dict(ignore=255)),
    ("hinge_multilabel", "multilabel", {}, "hinge", {}, {}),
    ("hinge_multilabel_ignore", "multilabel", dict(ignore_index=255), "hinge", {},
     dict(ignore=255)),
)


def _lovasz_grad_float64(gt_sorted):
  """smp's ``_lovasz_grad`` in the labels' dtype: smp's ``.float()`` casts to float32, so
  that smp's Lovasz losses fail on float64 inputs (``torch.dot`` of float64 and float32)."""
  p = len(gt_sorted)
  gts = gt_sorted.sum()
  intersection = gts - gt_sorted.cumsum(0)
  union = gts + (1 - gt_sorted).cumsum(0)
  jaccard = 1.0 - intersection / union
  if p > 1:
    jaccard[1:p] = jaccard[1:p] - jaccard[0:-1]
  return jaccard


def _lovasz_params():
  for i, case in enumerate(LOVASZ_CASES):
    for dtype in DTYPES:
      yield dict(testcase_name=f"{case[0]}_{dtype.__name__}", case=case, dtype=dtype, seed=i)


def _with_float64_lovasz_grad(criterion, a, b):
  with mock.patch.dict(globals(), _lovasz_grad=_lovasz_grad_float64):
    return criterion(a, b)


class SmpLovaszParityTest(ParityTestCase):
  """Values and gradients against smp's LovaszLoss (random inputs: no ties in the sort)."""

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(*_lovasz_params())
  def test_parity(self, case, dtype, seed):
    _, mode, opts, kind, _, in_opts = case
    x, y = _inputs(mode, dtype, 100 + seed, **in_opts)
    criterion = LovaszLoss(mode=mode, **opts)
    if dtype == np.float64:  # smp's Lovasz losses run in float32 only
      smp_criterion = criterion
      criterion = lambda a, b: _with_float64_lovasz_grad(smp_criterion, a, b)
    if kind == "softmax":
      fn = lambda a, b: jaxloss.lovasz_softmax_loss(a, b, **opts)
    else:
      fn = lambda a, b: jaxloss.lovasz_hinge_loss(a, b, mode, **opts)
    self.assert_parity(fn, criterion, (x, y))


class DiceCrossEntropyParityTest(ParityTestCase):
  """smp's DiceLoss plus torch's cross-entropy, the combination written by hand."""

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(
      (f"{mode}_{ignore}_{dtype.__name__}", mode, ignore, dtype)
      for mode, ignore in (("multiclass", None), ("multiclass", -1), ("binary", None),
                           ("multilabel", None))
      for dtype in DTYPES)
  def test_parity(self, mode, ignore, dtype):
    x, y = _inputs(mode, dtype, 7, ignore=ignore)
    dice = DiceLoss(mode=mode, ignore_index=ignore, smooth=1.0)

    def torch_fn(a, b):
      if mode == "multiclass":
        ce = F.cross_entropy(a, b, ignore_index=-100 if ignore is None else ignore)
      else:
        ce = F.binary_cross_entropy_with_logits(a, b.reshape(a.shape))
      return 0.6 * dice(a, b) + 1.5 * ce

    self.assert_parity(
        lambda a, b: jaxloss.dice_cross_entropy_loss(a, b, mode, ignore_index=ignore,
                                                     smooth=1.0, lambda_dice=0.6,
                                                     lambda_ce=1.5),
        torch_fn, (x, y))


class GeneralizedDiceMonaiParityTest(ParityTestCase):
  """smp has no generalised Dice: MONAI's GeneralizedDiceLoss(batch=True) is the reference."""

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(
      (f"{mode}_{dtype.__name__}", mode, dtype)
      for mode in ("multiclass", "multilabel", "binary") for dtype in DTYPES)
  def test_parity(self, mode, dtype):
    monai_losses = pytest.importorskip("monai.losses")
    x, y = _inputs(mode, dtype, 21)
    if mode == "multiclass":
      criterion = monai_losses.GeneralizedDiceLoss(softmax=True, to_onehot_y=True, batch=True)
      torch_fn = lambda a, b: criterion(a, b[:, None])
    else:
      criterion = monai_losses.GeneralizedDiceLoss(sigmoid=True, batch=True)
      torch_fn = lambda a, b: criterion(a, b.reshape(a.shape))
    if dtype == np.float64:  # MONAI computes the weights of `.float()` counts in float32;
      # the counts are small integers (exact in float32): their weights in float64
      criterion.w_func = lambda counts: 1.0 / (counts.double() * counts.double())
    self.assert_parity(
        lambda a, b: jaxloss.generalized_soft_dice_loss(a, b, mode, smooth=1e-5), torch_fn,
        (x, y))


class WrapperTest(ParityTestCase):
  """jaxloss.nn's classes under smp's names, against smp's classes."""

  @chex.variants(with_jit=True)
  @parameterized.named_parameters(
      ("DiceLoss", "DiceLoss", "multiclass", dict(smooth=1.0, classes=[0, 1])),
      ("JaccardLoss", "JaccardLoss", "multilabel", dict(log_loss=True)),
      ("TverskyLoss", "TverskyLoss", "multiclass", dict(alpha=0.2, beta=0.8, gamma=2.0)),
      ("LovaszLoss_multiclass", "LovaszLoss", "multiclass", dict(per_image=True)),
      ("LovaszLoss_binary", "LovaszLoss", "binary", {}))
  def test_wrapper(self, name, mode, opts):
    x, y = _inputs(mode, np.float32, 31)
    ours = getattr(jaxloss.nn, name)(mode, **opts)
    self.assertIn(mode, repr(ours))
    self.assert_parity(lambda a, b: ours(a, b), globals()[name](mode, **opts), (x, y))
    keep = np.ones(y.shape, bool)
    chex.assert_trees_all_close(ours(x, y, where=keep), ours(x, y), rtol=1e-6)

  def test_monai_names(self):
    x, y = _inputs("multiclass", np.float64, 32)
    chex.assert_trees_all_close(
        jaxloss.nn.GeneralizedDiceLoss("multiclass", smooth=1e-5)(x, y),
        jaxloss.generalized_soft_dice_loss(x, y, "multiclass", smooth=1e-5), rtol=1e-12)
    chex.assert_trees_all_close(
        jaxloss.nn.DiceCELoss("multiclass", lambda_ce=0.5, ignore_index=-1)(x, y),
        jaxloss.dice_cross_entropy_loss(x, y, "multiclass", lambda_ce=0.5, ignore_index=-1),
        rtol=1e-12)
    with self.assertRaisesRegex(ValueError, "from_logits"):
      jaxloss.nn.LovaszLoss("binary", from_logits=False)


ALL_LOSSES = (
    ("generalized_soft_dice_loss",
     lambda x, y, **k: jaxloss.generalized_soft_dice_loss(x, y, "multiclass", **k)),
    ("soft_dice_loss", lambda x, y, **k: jaxloss.soft_dice_loss(x, y, "multiclass", **k)),
    ("soft_jaccard_loss", lambda x, y, **k: jaxloss.soft_jaccard_loss(x, y, "multiclass", **k)),
    ("soft_tversky_loss",
     lambda x, y, **k: jaxloss.soft_tversky_loss(x, y, "multiclass", gamma=2.0, **k)),
    ("lovasz_softmax_loss", jaxloss.lovasz_softmax_loss),
    ("dice_cross_entropy_loss",
     lambda x, y, **k: jaxloss.dice_cross_entropy_loss(x, y, "multiclass", **k)),
)


class SmpContractTest(chex.TestCase):
  """The nan contract, `where`, errors and precision."""

  @parameterized.named_parameters(*ALL_LOSSES)
  def test_invalid_class_index_is_nan(self, fn):
    x, y = _inputs("multiclass", np.float32, 0)
    bad = y.copy()
    bad[0, 1, 2] = 3  # == C: outside [0, C)
    value, grad = jax.value_and_grad(lambda a: fn(a, bad))(x)
    self.assertTrue(np.isnan(value))
    self.assertTrue(np.isnan(np.asarray(grad)[0, :, 1, 2]).all())
    err, _ = checkify.checkify(jax.jit(lambda a: fn(a, bad)))(x)
    self.assertIn("`y_true` holds class index 3 outside [0, 3)", str(err.get()))
    err, out = checkify.checkify(jax.jit(lambda a: fn(a, y)))(x)  # the valid half
    self.assertIsNone(err.get())
    self.assertTrue(np.isfinite(out))
    ignored = np.where(bad == 3, -1, bad)  # an ignored label is never checked
    err, out = checkify.checkify(jax.jit(lambda a: fn(a, ignored, ignore_index=-1)))(x)
    self.assertIsNone(err.get())
    self.assertTrue(np.isfinite(out))

  @parameterized.named_parameters(*ALL_LOSSES)
  def test_where_is_ignore_index_with_zero_gradients(self, fn):
    x, y = _inputs("multiclass", np.float64, 1)
    keep = np.random.default_rng(2).random(y.shape) < 0.7
    poisoned = np.where(keep[:, None], x, np.inf)  # inf/nan outside `where` must not leak
    poisoned[0, 0, ~keep[0]] = np.nan
    got, grad = jax.value_and_grad(lambda a: fn(a, y, where=keep))(poisoned)
    expected, expected_grad = jax.value_and_grad(
        lambda a: fn(a, np.where(keep, y, -1), ignore_index=-1))(x)
    chex.assert_trees_all_close(got, expected, rtol=1e-12)
    grad = np.asarray(grad)
    self.assertTrue(np.all(grad[np.broadcast_to(~keep[:, None], grad.shape)] == 0.0))
    chex.assert_trees_all_close(np.where(keep[:, None], grad, 0.0), expected_grad, rtol=1e-10)

  def test_where_multilabel_and_hinge(self):
    x, y = _inputs("multilabel", np.float64, 3)
    keep = np.random.default_rng(4).random(y.shape) < 0.6
    for fn in (lambda a, b, **k: jaxloss.soft_dice_loss(a, b, "multilabel", **k),
               lambda a, b, **k: jaxloss.lovasz_hinge_loss(a, b, "multilabel", **k)):
      got, grad = jax.value_and_grad(lambda a: fn(a, y, where=keep))(np.where(keep, x, np.nan))
      expected = fn(x, np.where(keep, y, 255.0), ignore_index=255)
      chex.assert_trees_all_close(got, expected, rtol=1e-12)
      self.assertTrue(np.all(np.asarray(grad)[~keep] == 0.0))

  def test_bfloat16_in_float32(self):
    x, y = _inputs("multiclass", np.float32, 5)
    for _, fn in ALL_LOSSES:
      out = fn(jnp.asarray(x, jnp.bfloat16), y)
      self.assertEqual(out.dtype, jnp.bfloat16)
      chex.assert_trees_all_close(float(out), float(fn(jnp.asarray(x, jnp.bfloat16)
                                                        .astype(jnp.float32), y)), rtol=1e-2)

  def test_reduction_none_and_sum(self):
    x, y = _inputs("multiclass", np.float64, 6)
    w = np.array([0.5, 2.0, 1.0])
    per_class = jaxloss.soft_dice_loss(x, y, "multiclass", reduction="none", class_weights=w)
    self.assertEqual(per_class.shape, (3,))
    chex.assert_trees_all_close(
        jaxloss.soft_dice_loss(x, y, "multiclass", reduction="sum", class_weights=w),
        jnp.sum(per_class), rtol=1e-12)
    chex.assert_trees_all_close(
        jaxloss.soft_dice_loss(x, y, "multiclass", class_weights=w),
        jnp.sum(per_class) / w.sum(), rtol=1e-12)
    self.assertEqual(float(per_class[2]), 0.0)  # class 2 is absent from y: smp's zero

  def test_vmap(self):
    x, y = _inputs("multiclass", np.float64, 8)
    xs, ys = np.stack([x, x[::-1]]), np.stack([y, y[::-1]])
    for _, fn in ALL_LOSSES:
      chex.assert_trees_all_close(jax.vmap(fn)(xs, ys), jnp.stack([fn(x, y), fn(x[::-1],
                                                                                y[::-1])]),
                                  rtol=1e-12)

  def test_errors(self):
    x, y = _inputs("multiclass", np.float32, 9)
    with self.assertRaisesRegex(ValueError, "`mode`"):
      jaxloss.soft_dice_loss(x, y, "multi")
    with self.assertRaisesRegex(ValueError, "`y_true`"):
      jaxloss.soft_dice_loss(x, y[:, :2], "multiclass")
    with self.assertRaisesRegex(ValueError, "`y_true`"):
      jaxloss.soft_dice_loss(x, y.astype(np.float32), "multiclass")
    with self.assertRaisesRegex(ValueError, "`classes`"):
      jaxloss.soft_jaccard_loss(x, y, "multiclass", classes=(5,))
    with self.assertRaisesRegex(ValueError, "`class_weights`"):
      jaxloss.soft_jaccard_loss(x, y, "multiclass", class_weights=[1.0, 2.0])
    xb, yb = _inputs("binary", np.float32, 9)
    with self.assertRaisesRegex(ValueError, "`class_weights`"):
      jaxloss.soft_dice_loss(xb, yb, "binary", class_weights=[1.0])
    with self.assertRaisesRegex(ValueError, "`classes`"):
      jaxloss.soft_dice_loss(xb, yb, "binary", classes=(0,))
    with self.assertRaisesRegex(ValueError, "'binary' mode"):
      jaxloss.soft_dice_loss(x, y.astype(np.float32), "binary")
    with self.assertRaisesRegex(ValueError, "`reduction`"):
      jaxloss.soft_dice_loss(x, y, "multiclass", reduction="batchmean")
    with self.assertRaisesRegex(ValueError, "`mode`"):
      jaxloss.lovasz_hinge_loss(x, y, "multiclass")
    with self.assertRaisesRegex(ValueError, "`axis`"):
      jaxloss.soft_dice_loss(x, y, "multiclass", axis=7)


if __name__ == "__main__":
  absltest.main()
