# ruff: noqa: UP008, E501  (the reference code below is copied verbatim)
"""jaxloss.robust against its authors' reference code, and its definitions.

* The active-passive family (GCE, NGCE, NCE, NFL, RCE, MAE, SCE and their
  combinations) against a copy of the APL authors' torch ``loss.py``
  (github.com/HanxunH/Active-Passive-Losses, ``loss.py``), run with CPU torch.
* The bi-tempered loss against a copy of Google's reference JAX code
  (github.com/google/bi-tempered-loss, ``jax/loss.py``), run as-is.

The references have no class ``weight``, ``ignore_index``, ``where``, reduction
other than the mean (APL) or none (bi-tempered), nor class axes other than the
second (APL) or the last (bi-tempered): those are tested against their
definitions (``WeightsMasksTest``).
"""

from __future__ import annotations

import functools
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import torch
import torch.nn.functional as F
from absl.testing import absltest, parameterized
from jax.experimental import checkify
from jax.lax import cond, while_loop
from jax.scipy.special import logsumexp

import jaxloss
from tests.parity import ParityTestCase, assert_close, rand, reduction_cases

N, C = 6, 5

# ----------------------------------------------------------------------------
# Reference 1: github.com/HanxunH/Active-Passive-Losses, loss.py (the classes used
# here, verbatim but for the mlconfig registration and the device, which is the CPU).
# ----------------------------------------------------------------------------
device = torch.device("cpu")


class SCELoss(torch.nn.Module):
    def __init__(self, alpha, beta, num_classes=10):
        super(SCELoss, self).__init__()
        self.device = device
        self.alpha = alpha
        self.beta = beta
        self.num_classes = num_classes
        self.cross_entropy = torch.nn.CrossEntropyLoss()

    def forward(self, pred, labels):
        # CCE
        ce = self.cross_entropy(pred, labels)

        # RCE
        pred = F.softmax(pred, dim=1)
        pred = torch.clamp(pred, min=1e-7, max=1.0)
        label_one_hot = torch.nn.functional.one_hot(labels, self.num_classes).float().to(self.device)
        label_one_hot = torch.clamp(label_one_hot, min=1e-4, max=1.0)
        rce = (-1*torch.sum(pred * torch.log(label_one_hot), dim=1))

        # Loss
        loss = self.alpha * ce + self.beta * rce.mean()
        return loss


class ReverseCrossEntropy(torch.nn.Module):
    def __init__(self, num_classes, scale=1.0):
        super(ReverseCrossEntropy, self).__init__()
        self.device = device
        self.num_classes = num_classes
        self.scale = scale

    def forward(self, pred, labels):
        pred = F.softmax(pred, dim=1)
        pred = torch.clamp(pred, min=1e-7, max=1.0)
        label_one_hot = torch.nn.functional.one_hot(labels, self.num_classes).float().to(self.device)
        label_one_hot = torch.clamp(label_one_hot, min=1e-4, max=1.0)
        rce = (-1*torch.sum(pred * torch.log(label_one_hot), dim=1))
        return self.scale * rce.mean()


class NormalizedCrossEntropy(torch.nn.Module):
    def __init__(self, num_classes, scale=1.0):
        super(NormalizedCrossEntropy, self).__init__()
        self.device = device
        self.num_classes = num_classes
        self.scale = scale

    def forward(self, pred, labels):
        pred = F.log_softmax(pred, dim=1)
        label_one_hot = torch.nn.functional.one_hot(labels, self.num_classes).float().to(self.device)
        nce = -1 * torch.sum(label_one_hot * pred, dim=1) / (- pred.sum(dim=1))
        return self.scale * nce.mean()


class GeneralizedCrossEntropy(torch.nn.Module):
    def __init__(self, num_classes, q=0.7):
        super(GeneralizedCrossEntropy, self).__init__()
        self.device = device
        self.num_classes = num_classes
        self.q = q

    def forward(self, pred, labels):
        pred = F.softmax(pred, dim=1)
        pred = torch.clamp(pred, min=1e-7, max=1.0)
        label_one_hot = torch.nn.functional.one_hot(labels, self.num_classes).float().to(self.device)
        gce = (1. - torch.pow(torch.sum(label_one_hot * pred, dim=1), self.q)) / self.q
        return gce.mean()


class NormalizedGeneralizedCrossEntropy(torch.nn.Module):
    def __init__(self, num_classes, scale=1.0, q=0.7):
        super(NormalizedGeneralizedCrossEntropy, self).__init__()
        self.device = device
        self.num_classes = num_classes
        self.q = q
        self.scale = scale

    def forward(self, pred, labels):
        pred = F.softmax(pred, dim=1)
        pred = torch.clamp(pred, min=1e-7, max=1.0)
        label_one_hot = torch.nn.functional.one_hot(labels, self.num_classes).float().to(self.device)
        numerators = 1. - torch.pow(torch.sum(label_one_hot * pred, dim=1), self.q)
        denominators = self.num_classes - pred.pow(self.q).sum(dim=1)
        ngce = numerators / denominators
        return self.scale * ngce.mean()


class MeanAbsoluteError(torch.nn.Module):
    def __init__(self, num_classes, scale=1.0):
        super(MeanAbsoluteError, self).__init__()
        self.device = device
        self.num_classes = num_classes
        self.scale = scale
        return

    def forward(self, pred, labels):
        pred = F.softmax(pred, dim=1)
        label_one_hot = torch.nn.functional.one_hot(labels, self.num_classes).float().to(self.device)
        mae = 1. - torch.sum(label_one_hot * pred, dim=1)
        return self.scale * mae.mean()


class NormalizedFocalLoss(torch.nn.Module):
    def __init__(self, scale=1.0, gamma=0, num_classes=10, alpha=None, size_average=True):
        super(NormalizedFocalLoss, self).__init__()
        self.gamma = gamma
        self.size_average = size_average
        self.num_classes = num_classes
        self.scale = scale

    def forward(self, input, target):
        target = target.view(-1, 1)
        logpt = F.log_softmax(input, dim=1)
        normalizor = torch.sum(-1 * (1 - logpt.data.exp()) ** self.gamma * logpt, dim=1)
        logpt = logpt.gather(1, target)
        logpt = logpt.view(-1)
        pt = torch.autograd.Variable(logpt.data.exp())
        loss = -1 * (1-pt)**self.gamma * logpt
        loss = self.scale * loss / normalizor

        if self.size_average:
            return loss.mean()
        else:
            return loss.sum()


class NCEandRCE(torch.nn.Module):
    def __init__(self, alpha, beta, num_classes):
        super(NCEandRCE, self).__init__()
        self.num_classes = num_classes
        self.nce = NormalizedCrossEntropy(scale=alpha, num_classes=num_classes)
        self.rce = ReverseCrossEntropy(scale=beta, num_classes=num_classes)

    def forward(self, pred, labels):
        return self.nce(pred, labels) + self.rce(pred, labels)


class NCEandMAE(torch.nn.Module):
    def __init__(self, alpha, beta, num_classes):
        super(NCEandMAE, self).__init__()
        self.num_classes = num_classes
        self.nce = NormalizedCrossEntropy(scale=alpha, num_classes=num_classes)
        self.mae = MeanAbsoluteError(scale=beta, num_classes=num_classes)

    def forward(self, pred, labels):
        return self.nce(pred, labels) + self.mae(pred, labels)


class NGCEandMAE(torch.nn.Module):
    def __init__(self, alpha, beta, num_classes, q=0.7):
        super(NGCEandMAE, self).__init__()
        self.num_classes = num_classes
        self.ngce = NormalizedGeneralizedCrossEntropy(scale=alpha, q=q, num_classes=num_classes)
        self.mae = MeanAbsoluteError(scale=beta, num_classes=num_classes)

    def forward(self, pred, labels):
        return self.ngce(pred, labels) + self.mae(pred, labels)


class NGCEandRCE(torch.nn.Module):
    def __init__(self, alpha, beta, num_classes, q=0.7):
        super(NGCEandRCE, self).__init__()
        self.num_classes = num_classes
        self.ngce = NormalizedGeneralizedCrossEntropy(scale=alpha, q=q, num_classes=num_classes)
        self.rce = ReverseCrossEntropy(scale=beta, num_classes=num_classes)

    def forward(self, pred, labels):
        return self.ngce(pred, labels) + self.rce(pred, labels)


class NFLandMAE(torch.nn.Module):
    def __init__(self, alpha, beta, num_classes, gamma=0.5):
        super(NFLandMAE, self).__init__()
        self.num_classes = num_classes
        self.nfl = NormalizedFocalLoss(scale=alpha, gamma=gamma, num_classes=num_classes)
        self.mae = MeanAbsoluteError(scale=beta, num_classes=num_classes)

    def forward(self, pred, labels):
        return self.nfl(pred, labels) + self.mae(pred, labels)


class NFLandRCE(torch.nn.Module):
    def __init__(self, alpha, beta, num_classes, gamma=0.5):
        super(NFLandRCE, self).__init__()
        self.num_classes = num_classes
        self.nfl = NormalizedFocalLoss(scale=alpha, gamma=gamma, num_classes=num_classes)
        self.rce = ReverseCrossEntropy(scale=beta, num_classes=num_classes)

    def forward(self, pred, labels):
        return self.nfl(pred, labels) + self.rce(pred, labels)

# ---------------------------------------------------------------------------- (end of copy)


class NormalizedFocalLossExactGradient(NormalizedFocalLoss):
  """The reference with its two ``.data`` detaches removed: the same values, and the
  gradient of its formula (the reference's treats ``(1 - p)^gamma`` as constants)."""

  def forward(self, input, target):
    target = target.view(-1, 1)
    logpt = F.log_softmax(input, dim=1)
    normalizor = torch.sum(-1 * (1 - logpt.exp()) ** self.gamma * logpt, dim=1)
    logpt = logpt.gather(1, target)
    logpt = logpt.view(-1)
    pt = logpt.exp()
    loss = -1 * (1-pt)**self.gamma * logpt
    loss = self.scale * loss / normalizor
    return loss.mean() if self.size_average else loss.sum()


def _exact_nfl(module):
  """A reference combination with its NFL term's gradient made exact."""
  module.nfl = NormalizedFocalLossExactGradient(scale=module.nfl.scale, gamma=module.nfl.gamma,
                                                num_classes=module.nfl.num_classes)
  return module


# The one-hot target clamped at 1e-4 in float32: the reference's log 0.
A_REF = float(torch.log(torch.tensor(1e-4, dtype=torch.float32)))


def _per_sample(module):
  """The reference's batch mean applied to each sample alone: its unreduced loss."""
  def f(x, y):
    return torch.stack([module(x[i:i + 1], y[i:i + 1]) for i in range(x.shape[0])])
  return f


def _reduced(module, reduction):
  if reduction == "mean":
    return module
  per_sample = _per_sample(module)
  return per_sample if reduction == "none" else (lambda x, y: per_sample(x, y).sum())


# name -> (jaxloss function, keyword arguments, reference module)
_APL_CONFIGS = (
    ("gce", (jaxloss.generalized_cross_entropy, dict(q=0.7),
             lambda: GeneralizedCrossEntropy(C, q=0.7))),
    ("ngce", (jaxloss.normalized_generalized_cross_entropy, dict(q=0.1),
              lambda: NormalizedGeneralizedCrossEntropy(C, q=0.1))),
    ("nce", (jaxloss.normalized_cross_entropy, {}, lambda: NormalizedCrossEntropy(C))),
    ("nfl_gamma0", (jaxloss.normalized_focal_loss, dict(gamma=0.0),
                    lambda: NormalizedFocalLoss(gamma=0, num_classes=C))),
    ("nfl_gamma0.5_exact_grad", (jaxloss.normalized_focal_loss, dict(gamma=0.5),
                                 lambda: NormalizedFocalLossExactGradient(gamma=0.5,
                                                                          num_classes=C))),
    ("rce", (jaxloss.reverse_cross_entropy, dict(A=A_REF), lambda: ReverseCrossEntropy(C))),
    ("mae", (jaxloss.softmax_mae_loss, {}, lambda: MeanAbsoluteError(C))),
    ("sce", (jaxloss.symmetric_cross_entropy, dict(alpha=0.1, beta=1.0, A=A_REF),
             lambda: SCELoss(0.1, 1.0, C))),
    ("sce_a2_b0.5", (jaxloss.symmetric_cross_entropy, dict(alpha=2.0, beta=0.5, A=A_REF),
                     lambda: SCELoss(2.0, 0.5, C))),
    ("nce_rce", (jaxloss.active_passive_loss, dict(active="nce", passive="rce", A=A_REF),
                 lambda: NCEandRCE(1.0, 1.0, C))),
    ("nce_rce_a10_b0.1", (jaxloss.active_passive_loss,
                          dict(active="nce", passive="rce", alpha=10.0, beta=0.1, A=A_REF),
                          lambda: NCEandRCE(10.0, 0.1, C))),
    ("nce_mae", (jaxloss.active_passive_loss, dict(active="nce", passive="mae"),
                 lambda: NCEandMAE(1.0, 1.0, C))),
    ("nfl_rce", (jaxloss.active_passive_loss,
                 dict(active="nfl", passive="rce", gamma=0.5, A=A_REF),
                 lambda: _exact_nfl(NFLandRCE(1.0, 1.0, C, gamma=0.5)))),
    ("nfl_mae", (jaxloss.active_passive_loss,
                 dict(active="nfl", passive="mae", alpha=2.0, beta=0.5, gamma=0.5),
                 lambda: _exact_nfl(NFLandMAE(2.0, 0.5, C, gamma=0.5)))),
    ("ngce_rce", (jaxloss.active_passive_loss,
                  dict(active="ngce", passive="rce", q=0.1, A=A_REF),
                  lambda: NGCEandRCE(1.0, 1.0, C, q=0.1))),
    ("ngce_mae", (jaxloss.active_passive_loss, dict(active="ngce", passive="mae", q=0.1),
                  lambda: NGCEandMAE(1.0, 1.0, C, q=0.1))),
)


class APLReferenceParityTest(ParityTestCase):
  """Values and VJPs against the APL authors' torch code (float32 and float64)."""

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(*reduction_cases(_APL_CONFIGS))
  def test_matches_reference(self, cfg, reduction, dtype):
    fn, kwargs, module = cfg
    rng = np.random.default_rng(0)
    x = rand(rng, (N, C), dtype, -3.0, 3.0)
    y = rng.integers(0, C, N)
    self.assert_parity(functools.partial(fn, reduction=reduction, **kwargs),
                       _reduced(module(), reduction), (x, y))

  @parameterized.named_parameters(("nfl", "nfl"), ("nfl_rce", "nfl_rce"))
  def test_nfl_values_equal_the_detaching_reference(self, which):
    rng = np.random.default_rng(1)
    x = rand(rng, (N, C), np.float64, -3.0, 3.0)
    y = rng.integers(0, C, N)
    if which == "nfl":
      ours = jaxloss.normalized_focal_loss(x, y, gamma=0.5)
      ref = NormalizedFocalLoss(gamma=0.5, num_classes=C)(torch.from_numpy(x), torch.from_numpy(y))
    else:
      ours = jaxloss.active_passive_loss(x, y, "nfl", "rce", gamma=0.5, A=A_REF)
      ref = NFLandRCE(1.0, 1.0, C, gamma=0.5)(torch.from_numpy(x), torch.from_numpy(y))
    assert_close(ours, ref.numpy(), 1e-12)


# ----------------------------------------------------------------------------
# Reference 2: github.com/google/bi-tempered-loss, jax/loss.py (the functions
# bi_tempered_logistic_loss needs, verbatim).
# ----------------------------------------------------------------------------

@jax.jit
def _cross_entropy_loss(logits: jnp.ndarray,
                        labels: jnp.ndarray) -> jnp.ndarray:
  log_preds = jax.nn.log_softmax(logits)
  return jnp.sum(labels * (jnp.log(labels + 1e-15) - log_preds), axis=-1)


@jax.jit
def log_t(u: jnp.ndarray, t: float) -> jnp.ndarray:
  """Compute log_t for `u`."""

  def _internal_log_t(u: jnp.ndarray, t: float) -> jnp.ndarray:
    return (jnp.power(u, (1.0 - t)) - 1.0) / (1.0 - t)

  return cond(
      jnp.abs(t - 1.0) < 1e-15, jnp.log,
      functools.partial(_internal_log_t, t=t), u)


@jax.jit
def exp_t(u: jnp.ndarray, t: float) -> jnp.ndarray:
  """Compute exp_t for `u`."""

  def _internal_exp_t(u: jnp.ndarray, t: float) -> jnp.ndarray:
    return jnp.power(jnp.maximum(1.0 + (1.0 - t) * u, 0.0), 1.0 / (1.0 - t))

  return cond(
      jnp.abs(t - 1.0) < 1e-15, jnp.exp,
      functools.partial(_internal_exp_t, t=t), u)


@jax.jit
def compute_normalization_fixed_point(activations: jnp.ndarray,
                                      t: float,
                                      num_iters: int = 5):
  mu = jnp.max(activations, -1, keepdims=True)
  normalized_activations_step_0 = activations - mu

  def cond_fun(carry):
    _, iters = carry
    return iters < num_iters

  def body_fun(carry):
    normalized_activations, iters = carry
    logt_partition = jnp.sum(
        exp_t(normalized_activations, t), -1, keepdims=True)
    normalized_activations_t = normalized_activations_step_0 * jnp.power(
        logt_partition, 1.0 - t)
    return normalized_activations_t, iters + 1

  normalized_activations_t, _ = while_loop(cond_fun, body_fun,
                                           (normalized_activations_step_0, 0))
  logt_partition = jnp.sum(
      exp_t(normalized_activations_t, t), -1, keepdims=True)
  return -log_t(1.0 / logt_partition, t) + mu


@jax.jit
def compute_normalization_binary_search(activations: jnp.ndarray,
                                        t: float,
                                        num_iters: int = 10):
  mu = jnp.max(activations, -1, keepdims=True)
  normalized_activations = activations - mu
  shape_activations = activations.shape
  effective_dim = jnp.float32(
      jnp.sum(
          jnp.int32(normalized_activations > -1.0 / (1.0 - t)),
          -1,
          keepdims=True))
  shape_partition = list(shape_activations[:-1]) + [1]
  lower = jnp.zeros(shape_partition)
  upper = -log_t(1.0 / effective_dim, t) * jnp.ones(shape_partition)

  def cond_fun(carry):
    _, _, iters = carry
    return iters < num_iters

  def body_fun(carry):
    lower, upper, iters = carry
    logt_partition = (upper + lower) / 2.0
    sum_probs = jnp.sum(
        exp_t(normalized_activations - logt_partition, t), -1, keepdims=True)
    update = jnp.float32(sum_probs < 1.0)
    lower = jnp.reshape(lower * update + (1.0 - update) * logt_partition,
                        shape_partition)
    upper = jnp.reshape(upper * (1.0 - update) + update * logt_partition,
                        shape_partition)
    return lower, upper, iters + 1

  lower = jnp.zeros(shape_partition)
  upper = -log_t(1.0 / effective_dim, t) * jnp.ones(shape_partition)
  lower, upper, _ = while_loop(cond_fun, body_fun, (lower, upper, 0))

  logt_partition = (upper + lower) / 2.0
  return logt_partition + mu


@jax.jit
def compute_tempered_normalization(activations: jnp.ndarray,
                                   t: float,
                                   num_iters: int = 5):
  return cond(
      t < 1.0,
      functools.partial(
          compute_normalization_binary_search, t=t, num_iters=num_iters),
      functools.partial(
          compute_normalization_fixed_point, t=t, num_iters=num_iters),
      activations)


@jax.jit
def compute_normalization(activations: jnp.ndarray,
                          t: float,
                          num_iters: int = 5):
  return cond(
      jnp.abs(t - 1.0) < 1e-15,
      functools.partial(logsumexp, axis=-1, keepdims=True),
      functools.partial(
          compute_tempered_normalization, t=t, num_iters=num_iters),
      activations)


@jax.jit
def tempered_softmax(activations, t, num_iters=5):
  normalization_constants = compute_normalization(activations, t, num_iters)
  return exp_t(activations - normalization_constants, t)


@jax.custom_vjp
def bi_tempered_logistic_loss(activations,
                              labels,
                              t1,
                              t2,
                              label_smoothing=0.0,
                              num_iters=5):
  loss_values, _ = bi_tempered_logistic_loss_fwd(activations, labels, t1, t2,
                                                 label_smoothing, num_iters)
  return loss_values


@jax.jit
def bi_tempered_logistic_loss_fwd(activations,
                                  labels,
                                  t1,
                                  t2,
                                  label_smoothing=0.0,
                                  num_iters=5):
  num_classes = jnp.int32(labels.shape[-1])
  labels = cond(
      label_smoothing > 0.0,
      lambda u:  # pylint: disable=g-long-lambda
      (1 - num_classes /
       (num_classes - 1) * label_smoothing) * u + label_smoothing /
      (num_classes - 1),
      lambda u: u,
      labels)
  probabilities = tempered_softmax(activations, t2, num_iters)

  def _tempred_cross_entropy_loss(unused_activations):
    loss_values = jnp.multiply(
        labels,
        log_t(labels + 1e-10, t1) -
        log_t(probabilities, t1)) - 1.0 / (2.0 - t1) * (
            jnp.power(labels, 2.0 - t1) - jnp.power(probabilities, 2.0 - t1))
    loss_values = jnp.sum(loss_values, -1)
    return loss_values

  loss_values = cond(
      jnp.logical_and(
          jnp.less(jnp.abs(t1 - 1.0), 1e-15),
          jnp.less(jnp.abs(t2 - 1.0), 1e-15)),
      functools.partial(_cross_entropy_loss, labels=labels),
      _tempred_cross_entropy_loss,
      activations)
  return loss_values, (labels, t1, t2, probabilities)


@jax.jit
def bi_tempered_logistic_loss_bwd(res, d_loss):
  labels, t1, t2, probabilities = res
  delta_probs = probabilities - labels
  forget_factor = jnp.power(probabilities, t2 - t1)
  delta_probs_times_forget_factor = jnp.multiply(delta_probs, forget_factor)
  delta_forget_sum = jnp.sum(
      delta_probs_times_forget_factor, -1, keepdims=True)
  escorts = jnp.power(probabilities, t2)
  escorts = escorts / jnp.sum(escorts, -1, keepdims=True)
  derivative = delta_probs_times_forget_factor - jnp.multiply(
      escorts, delta_forget_sum)
  if len(d_loss.shape) < len(derivative.shape):
    d_loss = jnp.expand_dims(d_loss, -1)
  return (jnp.multiply(d_loss, derivative), None, None, None, None, None)


bi_tempered_logistic_loss.defvjp(
    bi_tempered_logistic_loss_fwd, bi_tempered_logistic_loss_bwd)

# ---------------------------------------------------------------------------- (end of copy)

# name -> (t1, t2, label_smoothing, num_iters, target kind, float64 tolerance)
_BT_CONFIGS = (
    ("t0.5_1.5", (0.5, 1.5, 0.0, 5, "index", 1e-10)),
    ("t0.8_1.2_smoothed", (0.8, 1.2, 0.1, 5, "index", 1e-10)),
    ("t0.2_4.0_iters10", (0.2, 4.0, 0.0, 10, "index", 1e-10)),
    # t2 < 1: bisection. The reference's initial bound is float32 even in float64.
    ("t0.5_0.8_bisection", (0.5, 0.8, 0.0, 20, "index", 1e-6)),
    ("t0.2_0.9_bisection_soft", (0.2, 0.9, 0.0, 5, "soft", 1e-6)),
    ("t1_1_ce", (1.0, 1.0, 0.0, 5, "index", 1e-10)),
    ("t1_1_soft_smoothed", (1.0, 1.0, 0.2, 5, "soft", 1e-10)),
    ("t1_1.5", (1.0, 1.5, 0.0, 5, "index", 1e-10)),
    ("t0.7_1", (0.7, 1.0, 0.0, 5, "soft", 1e-10)),
    ("t0.6_1.4_soft_smoothed", (0.6, 1.4, 0.2, 5, "soft", 1e-10)),
)


class BiTemperedReferenceParityTest(chex.TestCase):
  """Values and VJPs (class-last, per-sample and reduced) against Google's JAX code."""

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(*reduction_cases(_BT_CONFIGS))
  def test_matches_reference(self, cfg, reduction, dtype):
    t1, t2, smoothing, num_iters, kind, rtol64 = cfg
    rng = np.random.default_rng(2)
    x = jnp.asarray(rand(rng, (N, C), dtype, -3.0, 3.0))
    if kind == "index":
      target = jnp.asarray(rng.integers(0, C, N))
      labels = jax.nn.one_hot(target, C, dtype=dtype)
    else:
      target = labels = jnp.asarray(rng.dirichlet(np.ones(C), N).astype(dtype))

    def ref(x):
      out = bi_tempered_logistic_loss(x, labels, t1, t2, smoothing, num_iters)
      return {"none": out, "mean": jnp.mean(out), "sum": jnp.sum(out)}[reduction]

    def ours(x, target):
      f = lambda x: jaxloss.bi_tempered_logistic_loss(  # noqa: E731
          x, target, t1, t2, smoothing, num_iters, reduction=reduction, axis=-1)
      out, vjp = jax.vjp(f, x)
      return out, vjp(jnp.asarray(cot, out.dtype))[0]

    # The reference is written for JAX's default 32-bit mode (with x64 on, its float32
    # bisection branch fails cond's type check): float32 cases run it there.
    with jax.enable_x64(dtype == np.float64):
      ref_out, ref_vjp = jax.vjp(ref, jnp.asarray(x))
      cot = np.random.default_rng(3).normal(size=ref_out.shape)
      (ref_grad,) = ref_vjp(jnp.asarray(cot, ref_out.dtype))
      ref_out, ref_grad = np.asarray(ref_out), np.asarray(ref_grad)
    out, grad = self.variant(ours)(x, target)
    self.assertEqual(out.dtype, dtype)
    rtol = 1e-5 if dtype == np.float32 else rtol64
    assert_close(out, ref_out, rtol, "value")
    assert_close(grad, ref_grad, rtol, "gradient")

  def test_the_reference_tests_precomputed_values(self):
    # google/bi-tempered-loss, jax/loss_test.py: test_loss_value and test_label_smoothing.
    labels = jnp.array([[0.2, 0.3, 0.5], [0.6, 0.3, 0.1], [0.2, 0.8, 0.0]])
    x = jnp.array([[-0.5, 0.1, 2.0], [0.1, 1.5, -5.0], [4.0, -3.0, -6.0]])
    f = functools.partial(jaxloss.bi_tempered_logistic_loss, reduction="none", axis=-1)
    np.testing.assert_allclose(f(x, labels, 0.5, 1.5),
                               [0.02301914, 0.18972909, 0.93874922], atol=1e-4)
    np.testing.assert_allclose(f(x, labels, 0.5, 0.8, num_iters=20),
                               [0.21646356, 0.41836615, 1.33997854], atol=1e-4)
    np.testing.assert_allclose(f(x, jnp.array([0, 1, 2]), 0.5, 1.5, label_smoothing=0.1),
                               [0.76652711, 0.08627685, 1.35443510], atol=1e-5)


# ----------------------------------------------------------------------------
# Limits and identities
# ----------------------------------------------------------------------------

def _data(seed=0, dtype=np.float64, shape=(N, C)):
  rng = np.random.default_rng(seed)
  x = jnp.asarray(rand(rng, shape, dtype, -3.0, 3.0))
  y = jnp.asarray(rng.integers(0, shape[1], (shape[0],) + tuple(shape[2:])))
  return x, y


def _value_and_grad(f, x):
  return jax.value_and_grad(f)(x)


class IdentitiesTest(parameterized.TestCase):

  def assert_same(self, f, g, x, rtol=1e-12):
    (v1, g1), (v2, g2) = _value_and_grad(f, x), _value_and_grad(g, x)
    np.testing.assert_allclose(v1, v2, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(g1, g2, rtol=rtol, atol=rtol)

  def test_gce_at_q0_is_cross_entropy(self):
    x, y = _data()
    y = y.at[1].set(-100)
    w = jnp.linspace(0.5, 2.0, C)
    self.assert_same(lambda x: jaxloss.generalized_cross_entropy(x, y, 0.0, w),
                     lambda x: jaxloss.cross_entropy(x, y, w), x)

  def test_gce_tends_to_cross_entropy(self):
    x, y = _data()
    self.assert_same(lambda x: jaxloss.generalized_cross_entropy(x, y, 1e-7),
                     lambda x: jaxloss.cross_entropy(x, y), x, rtol=1e-6)

  def test_gce_at_q1_is_mae(self):
    x, y = _data()
    self.assert_same(lambda x: jaxloss.generalized_cross_entropy(x, y, 1.0),
                     lambda x: jaxloss.softmax_mae_loss(x, y), x)

  def test_sce_with_beta0_is_alpha_times_cross_entropy(self):
    x, y = _data()
    w = jnp.linspace(0.5, 2.0, C)
    self.assert_same(lambda x: jaxloss.symmetric_cross_entropy(x, y, 0.3, 0.0, weight=w),
                     lambda x: 0.3 * jaxloss.cross_entropy(x, y, w), x)

  def test_rce_is_minus_A_times_mae(self):
    x, y = _data()
    self.assert_same(lambda x: jaxloss.reverse_cross_entropy(x, y, -2.5, reduction="sum"),
                     lambda x: 2.5 * jaxloss.softmax_mae_loss(x, y, reduction="sum"), x)

  def test_mae_is_half_the_l1_distance(self):
    x, y = _data()
    l1 = 0.5 * jnp.sum(jnp.abs(jax.nn.softmax(x) - jax.nn.one_hot(y, C)), -1)
    np.testing.assert_allclose(jaxloss.softmax_mae_loss(x, y, reduction="none"), l1,
                               rtol=1e-12)

  @parameterized.named_parameters(("nfl", "nfl", dict(gamma=0.0)), ("ngce", "ngce", dict(q=0.0)))
  def test_normalized_limits_are_nce(self, active, kwargs):
    x, y = _data()
    fn = {"nfl": jaxloss.normalized_focal_loss,
          "ngce": jaxloss.normalized_generalized_cross_entropy}[active]
    self.assert_same(lambda x: fn(x, y, **kwargs), lambda x: jaxloss.normalized_cross_entropy(
        x, y), x)

  def test_active_passive_is_the_weighted_sum(self):
    x, y = _data()
    w = jnp.linspace(0.5, 2.0, C)
    for active, passive in (("nfl", "rce"), ("gce", "mae")):
      self.assert_same(
          lambda x, a=active, p=passive: jaxloss.active_passive_loss(
              x, y, a, p, 0.7, 1.3, w, gamma=0.5, q=0.4, A=-3.0),
          lambda x, a=active, p=passive: 0.7 * _single(a, x, y, w) + 1.3 * _single(p, x, y, w),
          x)

  def test_focal_term_is_softmax_focal_loss(self):
    x, y = _data()
    self.assert_same(
        lambda x: jaxloss.active_passive_loss(x, y, "focal", "mae", 1.0, 0.0, gamma=2.0,
                                              reduction="sum"),
        lambda x: jaxloss.softmax_focal_loss(x, y, 2.0, reduction="sum"), x)

  def test_bi_tempered_at_t1_t2_1_is_cross_entropy(self):
    x, y = _data()
    self.assert_same(lambda x: jaxloss.bi_tempered_logistic_loss(x, y, 1.0, 1.0),
                     lambda x: jaxloss.cross_entropy(x, y), x)

  def test_bi_tempered_smoothed_at_t1_t2_1_is_kl(self):
    x, y = _data()
    eps = 0.3
    q = jax.nn.one_hot(y, C) * (1 - eps) + (1 - jax.nn.one_hot(y, C)) * eps / (C - 1)
    entropy = -jnp.sum(q * jnp.log(q), -1)
    self.assert_same(
        lambda x: jaxloss.bi_tempered_logistic_loss(x, y, 1.0, 1.0, eps, reduction="sum"),
        lambda x: jnp.sum(jaxloss.cross_entropy(x, q, reduction="none") - entropy), x,
        rtol=1e-9)

  @parameterized.named_parameters(("t2_1", 1.0, 5), ("t2_1.3", 1.3, 100))
  def test_bi_tempered_class_weight_gradient_is_exact(self, t2, num_iters):
    # Probability targets with class weights: the custom gradient against autodiff of
    # sum_c w_c term_c at a converged normalization (the reference has no weights).
    x, _ = _data()
    q = jnp.asarray(np.random.default_rng(4).dirichlet(np.ones(C), N))
    w = jnp.linspace(0.5, 2.0, C)
    t1 = 0.7

    def log_t1(u):
      return (u ** (1 - t1) - 1) / (1 - t1)

    def exp_t2(u):
      return jnp.maximum(1 + (1 - t2) * u, 0) ** (1 / (1 - t2))

    def tempered_softmax_unrolled(x):  # the fixed point, differentiable, converged
      a0 = x - jnp.max(x, -1, keepdims=True)
      a = a0
      for _ in range(100):
        a = a0 * jnp.sum(exp_t2(a), -1, keepdims=True) ** (1 - t2)
      partition = jnp.sum(exp_t2(a), -1, keepdims=True)
      return exp_t2(a0 + ((1 / partition) ** (1 - t2) - 1) / (1 - t2))

    def direct(x, w):
      p = jax.nn.softmax(x) if t2 == 1.0 else tempered_softmax_unrolled(x)
      terms = (q * (log_t1(q + 1e-10) - log_t1(p))
               - (q ** (2 - t1) - p ** (2 - t1)) / (2 - t1))
      return jnp.sum(w * terms)

    ours = lambda x, w: jaxloss.bi_tempered_logistic_loss(  # noqa: E731
        x, q, t1, t2, num_iters=num_iters, weight=w, reduction="sum", axis=-1)
    (v1, g1), (v2, g2) = (jax.value_and_grad(f, (0, 1))(x, w) for f in (ours, direct))
    np.testing.assert_allclose(v1, v2, rtol=1e-9)
    np.testing.assert_allclose(g1[0], g2[0], rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(g1[1], g2[1], rtol=1e-7, atol=1e-9)

  def test_confident_predictions_stay_accurate(self):
    # p_y = 1 - 1e-30: 1 - p_y and 1 - p_y^q are formed without cancellation.
    x = jnp.array([[70.0, 0.0, 0.0]])
    y = jnp.array([0])
    rest = 2 * math.exp(-70.0)
    np.testing.assert_allclose(jaxloss.softmax_mae_loss(x, y), rest, rtol=1e-10)
    np.testing.assert_allclose(jaxloss.generalized_cross_entropy(x, y, 0.5), rest, rtol=1e-10)
    g = jax.grad(lambda x: jaxloss.normalized_focal_loss(x.astype(jnp.float32), y, 0.3))(x)
    self.assertTrue(np.all(np.isfinite(g)))


def _single(name, x, y, w):
  return {
      "nfl": lambda: jaxloss.normalized_focal_loss(x, y, 0.5, w),
      "gce": lambda: jaxloss.generalized_cross_entropy(x, y, 0.4, w),
      "ngce": lambda: jaxloss.normalized_generalized_cross_entropy(x, y, 0.4, w),
      "rce": lambda: jaxloss.reverse_cross_entropy(x, y, -3.0, w),
      "mae": lambda: jaxloss.softmax_mae_loss(x, y, w),
  }[name]()


# ----------------------------------------------------------------------------
# Options the references lack: weights, ignore_index, where, axis, bf16
# ----------------------------------------------------------------------------

_LOSSES = (
    ("gce", functools.partial(jaxloss.generalized_cross_entropy, q=0.5)),
    ("ngce", functools.partial(jaxloss.normalized_generalized_cross_entropy, q=0.3)),
    ("nfl", functools.partial(jaxloss.normalized_focal_loss, gamma=0.5)),
    ("sce", jaxloss.symmetric_cross_entropy),
    ("apl_nfl_mae", functools.partial(jaxloss.active_passive_loss, active="nfl",
                                      passive="mae", alpha=2.0, beta=0.5)),
    ("apl_focal_rce", functools.partial(jaxloss.active_passive_loss, active="focal",
                                        passive="rce", gamma=1.5)),
    ("bi_tempered", functools.partial(jaxloss.bi_tempered_logistic_loss, t1=0.7, t2=1.3,
                                      label_smoothing=0.1)),
    ("bi_tempered_bisection", functools.partial(jaxloss.bi_tempered_logistic_loss, t1=0.5,
                                                t2=0.8, num_iters=20)),
)


# The class-axis and dtype handling is shared by every loss of a kernel: a few suffice.
_KERNEL_SAMPLES = tuple(c for c in _LOSSES if c[0] in ("gce", "apl_nfl_mae", "bi_tempered"))


class WeightsMasksTest(parameterized.TestCase):

  @parameterized.named_parameters(*_LOSSES)
  def test_weighted_reductions_follow_their_definition(self, fn):
    x, y = _data()
    w = jnp.linspace(0.5, 2.0, C)
    plain = fn(x, y, reduction="none")
    wy = w[y]
    np.testing.assert_allclose(fn(x, y, weight=w, reduction="none"), wy * plain, rtol=1e-12)
    np.testing.assert_allclose(fn(x, y, weight=w, reduction="sum"), jnp.sum(wy * plain),
                               rtol=1e-12)
    np.testing.assert_allclose(fn(x, y, weight=w), jnp.sum(wy * plain) / jnp.sum(wy),
                               rtol=1e-12)
    np.testing.assert_allclose(fn(x, y), jnp.mean(plain), rtol=1e-12)
    # The weight is differentiable: d mean / d w.
    g = jax.grad(lambda w: fn(x, y, weight=w))(w)
    expected = jax.grad(lambda w: jnp.sum(w[y] * plain) / jnp.sum(w[y]))(w)
    np.testing.assert_allclose(g, expected, rtol=1e-10, atol=1e-12)

  @parameterized.named_parameters(*_LOSSES)
  def test_ignore_index_and_where_drop_samples_with_zero_gradients(self, fn):
    x, y = _data()
    full = fn(x, y, reduction="none")  # per-sample losses are independent of each other
    keep = np.array([True, False, True, True, False, True])
    # Dropped samples with non-finite logits: zero loss, exactly-zero gradients.
    x_bad = x.at[1].set(jnp.nan).at[4, 0].set(jnp.inf)
    both = np.array([True, False, False, True, False, True])  # sample 2 ignored as well
    for kwargs, target, counted in (
        (dict(where=jnp.asarray(keep)), y, keep),
        (dict(ignore_index=-1, where=jnp.asarray(keep)), y.at[2].set(-1), both)):
      out = fn(x_bad, target, reduction="none", **kwargs)
      np.testing.assert_allclose(out, jnp.where(counted, full, 0.0), rtol=1e-12)
      mean, g = jax.value_and_grad(lambda x, t=target, kw=kwargs: fn(x, t, **kw))(x_bad)
      np.testing.assert_allclose(mean, jnp.mean(full[counted]), rtol=1e-12)
      np.testing.assert_array_equal(g[~counted], 0.0)
      self.assertTrue(np.all(np.isfinite(g[counted])))

  @parameterized.named_parameters(*_KERNEL_SAMPLES)
  def test_class_axis(self, fn):
    x, y = _data(shape=(2, C, 3))
    flat = fn(jnp.moveaxis(x, 1, -1).reshape(-1, C), y.reshape(-1), reduction="none")
    np.testing.assert_allclose(fn(x, y, reduction="none"), flat.reshape(2, 3), rtol=1e-12)
    np.testing.assert_allclose(fn(jnp.moveaxis(x, 1, -1), y, reduction="none", axis=-1),
                               flat.reshape(2, 3), rtol=1e-12)
    # Unbatched (C,) input with a scalar target.
    np.testing.assert_allclose(fn(x[0, :, 0], y[0, 0], reduction="none"), flat[0],
                               rtol=1e-12)

  @parameterized.named_parameters(*_KERNEL_SAMPLES)
  def test_bfloat16_computes_in_float32(self, fn):
    x, y = _data(dtype=np.float32)
    xb = x.astype(jnp.bfloat16)
    out = fn(xb, y)
    self.assertEqual(out.dtype, jnp.bfloat16)
    expected = fn(xb.astype(jnp.float32), y)
    np.testing.assert_allclose(float(out), float(expected), rtol=1e-2)
    g = jax.grad(lambda x: fn(x, y))(xb)
    self.assertEqual(g.dtype, jnp.bfloat16)


class BiTemperedProbabilityTargetsTest(absltest.TestCase):

  def test_where_and_weights(self):
    x, _ = _data()
    q = jnp.asarray(np.random.default_rng(5).dirichlet(np.ones(C), N))
    keep = jnp.array([True, False, True, True, True, False])
    f = functools.partial(jaxloss.bi_tempered_logistic_loss, t1=0.6, t2=1.4)
    full = f(x, q, reduction="none")
    out = f(x.at[1].set(jnp.inf), q.at[5].set(jnp.nan), reduction="none", where=keep)
    np.testing.assert_allclose(out, jnp.where(keep, full, 0.0), rtol=1e-12)
    g = jax.grad(lambda x: f(x, q.at[5].set(jnp.nan), where=keep))(x.at[1].set(jnp.inf))
    np.testing.assert_array_equal(g[~keep], 0.0)
    self.assertEqual(float(jnp.sum(jax.grad(lambda q: f(x, q))(q) != 0)), 0.0)  # not differentiated
    # Class weights scale each class's term; the mean divides by the number of samples.
    w = jnp.linspace(0.5, 2.0, C)
    np.testing.assert_allclose(f(x, q, weight=jnp.ones(C)), jnp.mean(full), rtol=1e-12)
    self.assertFalse(np.allclose(f(x, q, weight=w), jnp.mean(full)))
    with self.assertRaisesRegex(ValueError, "ignore_index"):
      f(x, q, ignore_index=0)


# ----------------------------------------------------------------------------
# Traced hyper-parameters, validation, the nan contract
# ----------------------------------------------------------------------------

class HyperParameterTest(parameterized.TestCase):

  @parameterized.named_parameters(
      ("gce_q", lambda x, y, v: jaxloss.generalized_cross_entropy(x, y, v), [0.0, 0.3, 1.0]),
      ("ngce_q", lambda x, y, v: jaxloss.normalized_generalized_cross_entropy(x, y, v),
       [0.0, 0.1, 0.7]),
      ("nfl_gamma", lambda x, y, v: jaxloss.normalized_focal_loss(x, y, v), [0.0, 0.5, 2.0]),
      ("rce_A", lambda x, y, v: jaxloss.reverse_cross_entropy(x, y, v), [-4.0, -9.0]),
      ("sce_alpha_beta", lambda x, y, v: jaxloss.symmetric_cross_entropy(x, y, v, 1.0 - v),
       [0.0, 0.1, 1.0]),
      ("apl_gamma", lambda x, y, v: jaxloss.active_passive_loss(x, y, "nfl", "mae", gamma=v),
       [0.0, 0.5]),
      ("bt_t2", lambda x, y, v: jaxloss.bi_tempered_logistic_loss(x, y, 0.5, v, num_iters=20),
       [1.0, 0.8, 1.5, 3.0]),
      ("bt_t1", lambda x, y, v: jaxloss.bi_tempered_logistic_loss(x, y, v, 1.0),
       [1.0, 0.5, 0.0]),
      ("bt_smoothing", lambda x, y, v: jaxloss.bi_tempered_logistic_loss(x, y, 0.8, 1.2, v),
       [0.0, 0.1, 1.0]),
  )
  def test_vmap_over_traced_values_equals_static_calls(self, f, values):
    x, y = _data()
    vals, grads = jax.jit(jax.vmap(jax.value_and_grad(f), (None, None, 0)))(
        x, y, jnp.asarray(values))
    for i, v in enumerate(values):
      val, grad = jax.value_and_grad(f)(x, y, v)
      np.testing.assert_allclose(vals[i], val, rtol=1e-12, atol=1e-14)
      np.testing.assert_allclose(grads[i], grad, rtol=1e-12, atol=1e-14)

  @parameterized.named_parameters(
      ("q", lambda x, y: jaxloss.generalized_cross_entropy(x, y, 1.5), "`q` must lie in"),
      ("gamma", lambda x, y: jaxloss.normalized_focal_loss(x, y, -1.0), "`gamma` must be"),
      ("A", lambda x, y: jaxloss.reverse_cross_entropy(x, y, 4.0), "`A` must be finite and "
       "negative"),
      ("alpha", lambda x, y: jaxloss.symmetric_cross_entropy(x, y, -0.1), "`alpha` must be"),
      ("beta", lambda x, y: jaxloss.active_passive_loss(x, y, beta=math.nan), "`beta` must be"),
      ("t1", lambda x, y: jaxloss.bi_tempered_logistic_loss(x, y, 1.5, 1.0), "`t1` must lie"),
      ("t2", lambda x, y: jaxloss.bi_tempered_logistic_loss(x, y, 0.5, 0.0), "`t2` must be"),
      ("label_smoothing", lambda x, y: jaxloss.bi_tempered_logistic_loss(x, y, 0.5, 1.0, 2.0),
       "`label_smoothing` must lie"),
      ("num_iters", lambda x, y: jaxloss.bi_tempered_logistic_loss(x, y, 0.5, 1.5,
                                                                   num_iters=0), "`num_iters`"),
      ("q_array", lambda x, y: jaxloss.generalized_cross_entropy(x, y, jnp.ones(2)),
       "`q` must be a scalar"),
      ("active", lambda x, y: jaxloss.active_passive_loss(x, y, "mae"), "`active` must be"),
      ("passive", lambda x, y: jaxloss.active_passive_loss(x, y, "nce", "nce"), "`passive`"),
      ("axis", lambda x, y: jaxloss.softmax_mae_loss(x, y, axis=2), "`axis`=2 is out of range"),
      ("weight", lambda x, y: jaxloss.generalized_cross_entropy(x, y, weight=jnp.ones(3)),
       "`weight` must have shape"),
      ("target", lambda x, y: jaxloss.normalized_cross_entropy(x, y[:2]), "`target` must have"),
      ("float_target", lambda x, y: jaxloss.symmetric_cross_entropy(x, x), "`target` must be an "
       "integer"),
      ("one_class", lambda x, y: jaxloss.normalized_cross_entropy(x[:, :1], y * 0),
       "at least 2 classes"),
      ("reduction", lambda x, y: jaxloss.reverse_cross_entropy(x, y, reduction="avg"),
       "`reduction`"),
  )
  def test_errors_name_the_argument(self, f, message):
    x, y = _data()
    with self.assertRaisesRegex(ValueError, message):
      f(x, y)

  def test_invalid_traced_values_give_nan_and_are_reported(self):
    x, y = _data()
    f = jax.jit(lambda q: jaxloss.generalized_cross_entropy(x, y, q))
    self.assertTrue(np.isnan(f(1.5)))
    self.assertTrue(np.isfinite(f(0.5)))
    g = jax.grad(lambda x, t2: jaxloss.bi_tempered_logistic_loss(x, y, 0.5, t2))
    self.assertTrue(np.all(np.isnan(jax.jit(g)(x, -1.0))))
    vals = jax.vmap(lambda a: jaxloss.symmetric_cross_entropy(x, y, a))(jnp.array([0.1, -1.0]))
    np.testing.assert_array_equal(np.isnan(vals), [False, True])
    err, _ = jax.jit(checkify.checkify(
        lambda g: jaxloss.normalized_focal_loss(x, y, g)))(-0.5)
    self.assertRegex(err.get(), r"normalized_focal_loss: `gamma` must be finite and "
                     r"non-negative; got -0.5")
    err, _ = jax.jit(checkify.checkify(
        lambda g: jaxloss.normalized_focal_loss(x, y, g)))(0.5)
    self.assertIsNone(err.get())


class NNWrappersTest(absltest.TestCase):

  def test_wrappers_call_the_functions(self):
    x, y = _data()
    w = jnp.linspace(0.5, 2.0, C)
    keep = jnp.array([True, True, False, True, True, True])
    pairs = (
        (jaxloss.nn.GeneralizedCrossEntropyLoss(q=0.4, weight=w),
         jaxloss.generalized_cross_entropy(x, y, 0.4, w, where=keep)),
        (jaxloss.nn.NormalizedGeneralizedCrossEntropyLoss(q=0.2),
         jaxloss.normalized_generalized_cross_entropy(x, y, 0.2, where=keep)),
        (jaxloss.nn.NormalizedCrossEntropyLoss(reduction="sum"),
         jaxloss.normalized_cross_entropy(x, y, reduction="sum", where=keep)),
        (jaxloss.nn.NormalizedFocalLoss(gamma=1.0),
         jaxloss.normalized_focal_loss(x, y, 1.0, where=keep)),
        (jaxloss.nn.ReverseCrossEntropyLoss(A=-2.0),
         jaxloss.reverse_cross_entropy(x, y, -2.0, where=keep)),
        (jaxloss.nn.SoftmaxMAELoss(), jaxloss.softmax_mae_loss(x, y, where=keep)),
        (jaxloss.nn.SymmetricCrossEntropyLoss(alpha=0.5, beta=0.5),
         jaxloss.symmetric_cross_entropy(x, y, 0.5, 0.5, where=keep)),
        (jaxloss.nn.ActivePassiveLoss("nfl", "mae", gamma=1.0),
         jaxloss.active_passive_loss(x, y, "nfl", "mae", gamma=1.0, where=keep)),
        (jaxloss.nn.BiTemperedLogisticLoss(0.8, 1.2, label_smoothing=0.1),
         jaxloss.bi_tempered_logistic_loss(x, y, 0.8, 1.2, 0.1, where=keep)),
    )
    for module, expected in pairs:
      np.testing.assert_allclose(module(x, y, where=keep), expected, rtol=1e-12,
                                 err_msg=repr(module))
    x3 = jnp.moveaxis(x, 1, -1)
    np.testing.assert_allclose(jaxloss.nn.SoftmaxMAELoss(axis=-1)(x3, y),
                               jaxloss.softmax_mae_loss(x, y), rtol=1e-12)


if __name__ == "__main__":
  absltest.main()
