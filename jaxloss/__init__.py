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
  ctc_loss                             ctc             CTCLoss

  torch.nn.AdaptiveLogSoftmaxWithLoss  adaptive        AdaptiveLogSoftmaxWithLoss (Flax)
    forward  -> adaptive_log_softmax_with_loss   log_prob -> adaptive_log_prob
    predict  -> adaptive_predict

Beyond torch: ``cosine_logits``, ``cosface``, ``arcface``, ``sphereface``,
``combined_margin``, ``large_margin_softmax``, ``margin_lambda`` (``angular``);
``softmax_focal_loss``, ``sigmoid_focal_loss`` (``focal``, torchvision's); the
AM-LFS loss and its helpers (``amlfs``).

Coming from optax (each row the same number; jaxloss takes the class axis at
position 1, torch's layout, unless you pass the keyword ``axis=-1`` (JAX's
class-last layout), and reduces with ``reduction=`` instead of ``.mean()``)::

  optax.losses                                          jaxloss
  softmax_cross_entropy_with_integer_labels(z, y).mean() cross_entropy(z, y)
  softmax_cross_entropy(z, q).mean()                     cross_entropy(z, q)
  softmax_cross_entropy(z, smooth_labels(                cross_entropy(z, y, label_smoothing=a)
      one_hot(y, C), a)).mean()                            (no one-hot is built)
  (z = x @ W.T, then either of the above)                linear_cross_entropy(x, W, y) (no logits)
  sigmoid_binary_cross_entropy(x, b).mean()             binary_cross_entropy_with_logits(x, b)
  squared_error(x, t).mean()                            mse_loss(x, t)
  l2_loss(x, t).mean()                                  0.5 * mse_loss(x, t)
  huber_loss(x, t, delta=d).mean()                      huber_loss(x, t, delta=d)
  huber_loss(x, t, delta=b).mean() / b                  smooth_l1_loss(x, t, beta=b)
  kl_divergence(log_p, q).mean()                        kl_div(log_p, q, reduction='batchmean')
  kl_divergence_with_log_targets(log_p, log_q).mean()   kl_div(log_p, log_q, reduction='batchmean',
                                                               log_target=True)
  triplet_margin_loss(a, p, n).mean()                   triplet_margin_loss(a, p, n)
  sigmoid_focal_loss(x, b, alpha=a).mean()              sigmoid_focal_loss(x, b, alpha=a,
                                                                           reduction='mean')
  ctc_loss(logits, logit_pad, labels, label_pad).sum()  ctc_loss(log_softmax(logits) as (T, N, C),
                                                                 labels, input_lengths,
                                                                 target_lengths, reduction='sum')

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
from jaxloss.classification import cross_entropy, nll_loss
from jaxloss.ctc import ctc_loss
from jaxloss.embedding import (
    cosine_embedding_loss,
    pairwise_distance,
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

__version__ = "0.1.0"

__all__ = [
    "adaptive_log_prob",
    "adaptive_log_softmax_with_loss",
    "adaptive_predict",
    "amlfs_curves",
    "amlfs_loss",
    "amlfs_transforms",
    "arcface",
    "arcface_theta",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "combined_margin",
    "cosface",
    "cosface_theta",
    "cosine_embedding_loss",
    "cosine_logits",
    "cross_entropy",
    "ctc_loss",
    "fit_theta",
    "gaussian_nll_loss",
    "hinge_embedding_loss",
    "huber_loss",
    "identity_theta",
    "kl_div",
    "l1_loss",
    "large_margin_softmax",
    "linear_cross_entropy",
    "margin_lambda",
    "margin_ranking_loss",
    "mse_loss",
    "multi_margin_loss",
    "multilabel_margin_loss",
    "multilabel_soft_margin_loss",
    "nll_loss",
    "nn",
    "pairwise_distance",
    "poisson_nll_loss",
    "sigmoid_focal_loss",
    "smooth_l1_loss",
    "soft_margin_loss",
    "softmax_focal_loss",
    "sphereface",
    "triplet_margin_loss",
    "triplet_margin_with_distance_loss",
]
