"""jaxloss: torch.nn's losses as pure JAX functions, margin-softmax losses, AM-LFS.

Every function of ``torch.nn.functional``'s losses, with torch's names, argument
names, order and defaults; see ``jaxloss.nn`` for the class wrappers and
``jaxloss.search`` for the AM-LFS loss-function search.
"""

from jaxloss.regression import huber_loss, l1_loss, mse_loss, smooth_l1_loss
from jaxloss.classification import cross_entropy, nll_loss
from jaxloss.linear import linear_cross_entropy
from jaxloss.binary import binary_cross_entropy, binary_cross_entropy_with_logits
from jaxloss.likelihood import gaussian_nll_loss, kl_div, poisson_nll_loss
from jaxloss.margin import (
    hinge_embedding_loss, margin_ranking_loss, multi_margin_loss, multilabel_margin_loss,
    multilabel_soft_margin_loss, soft_margin_loss,
)
from jaxloss.embedding import (
    cosine_embedding_loss, pairwise_distance, triplet_margin_loss,
    triplet_margin_with_distance_loss,
)
from jaxloss.ctc import ctc_loss
from jaxloss.angular import (
    arcface, combined_margin, cosface, cosine_logits, large_margin_softmax, margin_lambda,
    sphereface,
)
from jaxloss.focal import sigmoid_focal_loss, softmax_focal_loss
from jaxloss.amlfs import (
    amlfs_curves, amlfs_loss, amlfs_transforms, arcface_theta, cosface_theta, fit_theta,
    identity_theta,
)

from jaxloss import nn  # noqa: E402  (class wrappers; import after the functions)

__version__ = "0.1.0"

__all__ = [
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
