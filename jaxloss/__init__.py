"""jaxloss: torch.nn's losses as pure JAX functions, margin-softmax losses, AM-LFS.

Every loss of ``torch.nn.functional`` with torch's names, argument names, order
and defaults; ``jaxloss.nn`` has the class wrappers and ``jaxloss.search`` the
AM-LFS loss-function search.

Index: torch function -> jaxloss function -> module -> ``jaxloss.nn`` class. The
jaxloss function has the torch function's name (``F.l1_loss`` is
``jaxloss.l1_loss``, defined in ``jaxloss/regression.py``)::

  torch.nn.functional = jaxloss        module          jaxloss.nn
  l1_loss                              regression      L1Loss
  mse_loss                             regression      MSELoss
  huber_loss                           regression      HuberLoss
  smooth_l1_loss                       regression      SmoothL1Loss
  cross_entropy                        classification  CrossEntropyLoss
  nll_loss                             classification  NLLLoss
  linear_cross_entropy                 linear          LinearCrossEntropyLoss
  binary_cross_entropy                 binary          BCELoss
  binary_cross_entropy_with_logits     binary          BCEWithLogitsLoss
  kl_div                               likelihood      KLDivLoss
  poisson_nll_loss                     likelihood      PoissonNLLLoss
  gaussian_nll_loss                    likelihood      GaussianNLLLoss
  soft_margin_loss                     margin          SoftMarginLoss
  multilabel_soft_margin_loss          margin          MultiLabelSoftMarginLoss
  multilabel_margin_loss               margin          MultiLabelMarginLoss
  multi_margin_loss                    margin          MultiMarginLoss
  margin_ranking_loss                  margin          MarginRankingLoss
  hinge_embedding_loss                 margin          HingeEmbeddingLoss
  cosine_embedding_loss                embedding       CosineEmbeddingLoss
  triplet_margin_loss                  embedding       TripletMarginLoss
  triplet_margin_with_distance_loss    embedding       TripletMarginWithDistanceLoss
  pairwise_distance                    embedding       -
  cosine_similarity                    embedding       -
  ctc_loss                             ctc             CTCLoss

  torch.nn.AdaptiveLogSoftmaxWithLoss  adaptive        AdaptiveLogSoftmaxWithLoss (Flax)
    forward  -> adaptive_log_softmax_with_loss   log_prob -> adaptive_log_prob
    predict  -> adaptive_predict

Under optax's names (no torch counterpart): ``safe_softmax_cross_entropy``,
``poly_loss_cross_entropy``, ``multiclass_hinge_loss``, ``multiclass_perceptron_loss``
(``classification``); ``log_cosh`` (``regression``); ``generalized_kl_divergence``
and its deprecated alias ``convex_kl_divergence`` (``likelihood``);
``ctc_loss_with_forward_probs`` (``ctc``); ``sparsemax_loss``,
``multiclass_sparsemax_loss``, ``make_fenchel_young_loss`` (``fenchel_young``);
``dice_loss``, ``binary_dice_loss``, ``multiclass_generalized_dice_loss``
(``segmentation``); ``ntxent`` (``self_supervised``); ``ranking_softmax_loss``
(``ranking``). ``cosine_similarity`` is torch's (``embedding``).

Beyond torch: ``cosine_logits``, ``cosface``, ``arcface``, ``sphereface``,
``combined_margin``, ``large_margin_softmax``, ``margin_lambda`` (``angular``);
``softmax_focal_loss``, ``sigmoid_focal_loss`` (``focal``, torchvision's);
``generalized_box_iou_loss``, ``distance_box_iou_loss``, ``complete_box_iou_loss``
(``box``, torchvision's box losses, ``docs/box_losses.md``); ``info_nce``,
``supervised_contrastive_loss``, ``batch_hard_triplet_loss``, ``batch_all_triplet_loss``,
``multi_similarity_loss`` (``self_supervised``, pytorch-metric-learning's, with ``ntxent``;
``docs/metric_learning.md``); the
AM-LFS loss and its helpers (``amlfs``).

Noisy labels (``robust``; ``jaxloss.nn`` class in parentheses)::

  generalized_cross_entropy             GCE, Zhang & Sabuncu 2018  (GeneralizedCrossEntropyLoss)
  symmetric_cross_entropy               SCE, Wang et al. 2019      (SymmetricCrossEntropyLoss)
  reverse_cross_entropy                 RCE                        (ReverseCrossEntropyLoss)
  softmax_mae_loss                      1 - p_y (not l1_loss)      (SoftmaxMAELoss)
  normalized_cross_entropy              NCE, Ma et al. 2020        (NormalizedCrossEntropyLoss)
  normalized_focal_loss                 NFL                        (NormalizedFocalLoss)
  normalized_generalized_cross_entropy  NGCE                 (NormalizedGeneralizedCrossEntropyLoss)
  active_passive_loss                   NCE+RCE, NFL+MAE, ...      (ActivePassiveLoss)
  bi_tempered_logistic_loss             Amid et al. 2019           (BiTemperedLogisticLoss)

Segmentation in segmentation-models-pytorch's convention (``segmentation``;
torch's ``(N, C, *spatial)``, ``mode``, ``from_logits``, ``smooth``, ``eps``,
``ignore_index``, ``classes``, ``class_weights``; ``jaxloss.nn`` class in
parentheses; ``docs/segmentation.md``)::

  soft_dice_loss               smp DiceLoss                      (DiceLoss)
  soft_jaccard_loss            smp JaccardLoss                   (JaccardLoss)
  soft_tversky_loss            smp TverskyLoss, focal: gamma     (TverskyLoss)
  lovasz_softmax_loss          smp LovaszLoss('multiclass')      (LovaszLoss)
  lovasz_hinge_loss            smp LovaszLoss('binary'/'multilabel')
  generalized_soft_dice_loss   MONAI GeneralizedDiceLoss(batch)  (GeneralizedDiceLoss)
  dice_cross_entropy_loss      Dice + CE (MONAI DiceCELoss)      (DiceCELoss)

Coming from optax: a counterpart for each of optax 0.2.8's 32 ``optax.losses``
names, each row the same number (``tests/test_optax_parity.py``). torch's functions
take the class axis at position 1 (pass the keyword ``axis=-1`` for JAX's class-last
layout) and reduce with ``reduction=``; the functions
under optax's names keep optax's layout (class axis last, keyword-only ``axis``)
and per-sample values (``reduction='none'``), and add ``where=``. Footnotes (1-3)
as in README's table::

  optax.losses
      -> jaxloss
  softmax_cross_entropy_with_integer_labels(z, y).mean()
      -> cross_entropy(z, y)
  softmax_cross_entropy(z, q).mean()
      -> cross_entropy(z, q)
  softmax_cross_entropy(z, smooth_labels(one_hot(y, C), a)).mean()
      -> cross_entropy(z, y, label_smoothing=a) (no one-hot)
  softmax_cross_entropy(z, smooth_labels(q, a))
      -> cross_entropy(z, q, label_smoothing=a, reduction='none')
  safe_softmax_cross_entropy(z, q)
      -> safe_softmax_cross_entropy(z, q) (-inf logits of zero-label classes are safe)
  poly_loss_cross_entropy(z, q, epsilon=e)
      -> poly_loss_cross_entropy(z, q, epsilon=e)
  sigmoid_binary_cross_entropy(x, b).mean()
      -> binary_cross_entropy_with_logits(x, b)
  sigmoid_focal_loss(x, b, alpha=a).mean()
      -> sigmoid_focal_loss(x, b, alpha=a, reduction='mean')
  perceptron_loss(x, s)
      -> margin_ranking_loss(x, 0 * x, s, margin=0.0, reduction='none') ¹
  multiclass_hinge_loss(z, y)
      -> multiclass_hinge_loss(z, y) (Crammer-Singer; torch's multi_margin_loss averages)
  multiclass_perceptron_loss(z, y)
      -> multiclass_perceptron_loss(z, y)
  sparsemax_loss(x, b)
      -> sparsemax_loss(x, b)
  multiclass_sparsemax_loss(z, y)
      -> multiclass_sparsemax_loss(z, y)
  make_fenchel_young_loss(max_fun)
      -> make_fenchel_young_loss(max_fun)
  squared_error(x, t).mean() / l2_loss(x, t).mean()
      -> mse_loss(x, t) / 0.5 * mse_loss(x, t)
  huber_loss(x, t, delta=d).mean()
      -> huber_loss(x, t, delta=d)
  huber_loss(x, t, delta=b).mean() / b
      -> smooth_l1_loss(x, t, beta=b)
  log_cosh(x, t)
      -> log_cosh(x, t)
  cosine_similarity(a, b, epsilon=e)
      -> cosine_similarity(a, b, dim=-1, eps=sqrt(e)) (torch's) ²
  cosine_distance(a, b, epsilon=e)
      -> 1 - cosine_similarity(a, b, dim=-1, eps=sqrt(e)) ²
  kl_divergence(log_p, q).mean()
      -> kl_div(log_p, q, reduction='batchmean')
  kl_divergence_with_log_targets(log_p, log_q).mean()
      -> kl_div(log_p, log_q, reduction='batchmean', log_target=True)
  generalized_kl_divergence(log_p, t)
      -> generalized_kl_divergence(log_p, t)
  triplet_margin_loss(a, p, n, eps=0).mean()
      -> triplet_margin_loss(a, p, n, eps=0) ³
  ntxent(e, labels, temperature)
      -> ntxent(e, labels, temperature)
  ranking_softmax_loss(s, y)
      -> ranking_softmax_loss(s, y)
  dice_loss(x, t) / binary_dice_loss(x, b)
      -> dice_loss(x, t) / binary_dice_loss(x, b)
  multiclass_generalized_dice_loss(x, t)
      -> multiclass_generalized_dice_loss(x, t)
  ctc_loss(logits, logit_pad, labels, label_pad).sum()
      -> ctc_loss(log_probs as (T, N, C), labels, input_lengths, target_lengths, reduction='sum')
  ctc_loss_with_forward_probs(logits, logit_pad, labels, label_pad)
      -> ctc_loss_with_forward_probs(logits, logit_pad, labels, label_pad)

``import jaxloss`` imports neither optax, chex nor Flax (``jaxloss.nn.
AdaptiveLogSoftmaxWithLoss`` imports Flax when first accessed).
"""

from jaxloss import nn  # the class wrappers (nn imports the family modules, not this package)
from jaxloss.adaptive import adaptive_log_prob, adaptive_log_softmax_with_loss, adaptive_predict
from jaxloss.amlfs import (
    amlfs_curves,
    amlfs_loss,
    amlfs_transforms,
    arcface_theta,
    cosface_theta,
    fit_theta,
    identity_theta,
)
from jaxloss.angular import (
    arcface,
    combined_margin,
    cosface,
    cosine_logits,
    large_margin_softmax,
    margin_lambda,
    sphereface,
)
from jaxloss.binary import binary_cross_entropy, binary_cross_entropy_with_logits
from jaxloss.box import complete_box_iou_loss, distance_box_iou_loss, generalized_box_iou_loss
from jaxloss.classification import (
    cross_entropy,
    multiclass_hinge_loss,
    multiclass_perceptron_loss,
    nll_loss,
    poly_loss_cross_entropy,
    safe_softmax_cross_entropy,
)
from jaxloss.ctc import ctc_loss, ctc_loss_with_forward_probs
from jaxloss.embedding import (
    cosine_embedding_loss,
    cosine_similarity,
    pairwise_distance,
    triplet_margin_loss,
    triplet_margin_with_distance_loss,
)
from jaxloss.fenchel_young import (
    make_fenchel_young_loss,
    multiclass_sparsemax_loss,
    sparsemax_loss,
)
from jaxloss.focal import sigmoid_focal_loss, softmax_focal_loss
from jaxloss.likelihood import (
    convex_kl_divergence,
    gaussian_nll_loss,
    generalized_kl_divergence,
    kl_div,
    poisson_nll_loss,
)
from jaxloss.linear import linear_cross_entropy
from jaxloss.margin import (
    hinge_embedding_loss,
    margin_ranking_loss,
    multi_margin_loss,
    multilabel_margin_loss,
    multilabel_soft_margin_loss,
    soft_margin_loss,
)
from jaxloss.ranking import ranking_softmax_loss
from jaxloss.regression import huber_loss, l1_loss, log_cosh, mse_loss, smooth_l1_loss
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
    binary_dice_loss,
    dice_cross_entropy_loss,
    dice_loss,
    generalized_soft_dice_loss,
    lovasz_hinge_loss,
    lovasz_softmax_loss,
    multiclass_generalized_dice_loss,
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

__version__ = "0.1.0"

__all__ = [
    "active_passive_loss",
    "adaptive_log_prob",
    "adaptive_log_softmax_with_loss",
    "adaptive_predict",
    "amlfs_curves",
    "amlfs_loss",
    "amlfs_transforms",
    "arcface",
    "arcface_theta",
    "batch_all_triplet_loss",
    "batch_hard_triplet_loss",
    "bi_tempered_logistic_loss",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "binary_dice_loss",
    "combined_margin",
    "complete_box_iou_loss",
    "convex_kl_divergence",
    "cosface",
    "cosface_theta",
    "cosine_embedding_loss",
    "cosine_logits",
    "cosine_similarity",
    "cross_entropy",
    "ctc_loss",
    "ctc_loss_with_forward_probs",
    "dice_cross_entropy_loss",
    "dice_loss",
    "distance_box_iou_loss",
    "fit_theta",
    "gaussian_nll_loss",
    "generalized_box_iou_loss",
    "generalized_cross_entropy",
    "generalized_kl_divergence",
    "generalized_soft_dice_loss",
    "hinge_embedding_loss",
    "huber_loss",
    "identity_theta",
    "info_nce",
    "kl_div",
    "l1_loss",
    "large_margin_softmax",
    "linear_cross_entropy",
    "log_cosh",
    "lovasz_hinge_loss",
    "lovasz_softmax_loss",
    "make_fenchel_young_loss",
    "margin_lambda",
    "margin_ranking_loss",
    "mse_loss",
    "multi_margin_loss",
    "multi_similarity_loss",
    "multiclass_generalized_dice_loss",
    "multiclass_hinge_loss",
    "multiclass_perceptron_loss",
    "multiclass_sparsemax_loss",
    "multilabel_margin_loss",
    "multilabel_soft_margin_loss",
    "nll_loss",
    "nn",
    "normalized_cross_entropy",
    "normalized_focal_loss",
    "normalized_generalized_cross_entropy",
    "ntxent",
    "pairwise_distance",
    "poisson_nll_loss",
    "poly_loss_cross_entropy",
    "ranking_softmax_loss",
    "reverse_cross_entropy",
    "safe_softmax_cross_entropy",
    "sigmoid_focal_loss",
    "smooth_l1_loss",
    "soft_dice_loss",
    "soft_jaccard_loss",
    "soft_margin_loss",
    "soft_tversky_loss",
    "softmax_focal_loss",
    "softmax_mae_loss",
    "sparsemax_loss",
    "sphereface",
    "supervised_contrastive_loss",
    "symmetric_cross_entropy",
    "triplet_margin_loss",
    "triplet_margin_with_distance_loss",
]
