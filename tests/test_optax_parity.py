"""Parity with optax 0.2.8: a jaxloss counterpart for each of the 32 ``optax.losses`` names.

Each case evaluates the jaxloss form (through ``self.variant``: with and without
``jit``) and the optax function on the same inputs and compares the value and
the VJP with a random cotangent for every differentiable argument, in float32
(1e-5) and float64 (1e-10), relative to the reference's largest magnitude
(``tests.parity.assert_close``). The jaxloss form is the one in README's
"Coming from optax" table. ``OPTAX_NAMES`` lists the 32 names and
``test_every_optax_name_has_a_case`` keeps the cases complete.

Also here: the ``where`` masks, ``vmap``, errors and the documented departures
from optax of the optax-named functions appended to the existing family modules
(``poly_loss_cross_entropy``, ``safe_softmax_cross_entropy``,
``multiclass_hinge_loss``, ``multiclass_perceptron_loss``, ``log_cosh``,
``generalized_kl_divergence``, ``convex_kl_divergence``,
``ctc_loss_with_forward_probs``); ``cosine_similarity``'s torch parity is in
``tests/test_cosine_similarity.py``, the new family modules have their own files.
"""

from __future__ import annotations

import warnings

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl.testing import absltest, parameterized
from jax.experimental import checkify
from jax.scipy.special import logsumexp

import jaxloss
from tests.parity import DTYPES, assert_close, rand

OL = optax.losses
RTOL = {np.float64: 1e-10, np.float32: 1e-5}

OPTAX_NAMES = (
    "binary_dice_loss", "convex_kl_divergence", "cosine_distance", "cosine_similarity",
    "ctc_loss", "ctc_loss_with_forward_probs", "dice_loss", "generalized_kl_divergence",
    "hinge_loss", "huber_loss", "kl_divergence", "kl_divergence_with_log_targets", "l2_loss",
    "log_cosh", "make_fenchel_young_loss", "multiclass_generalized_dice_loss",
    "multiclass_hinge_loss", "multiclass_perceptron_loss", "multiclass_sparsemax_loss", "ntxent",
    "perceptron_loss", "poly_loss_cross_entropy", "ranking_softmax_loss",
    "safe_softmax_cross_entropy", "sigmoid_binary_cross_entropy", "sigmoid_focal_loss",
    "smooth_labels", "softmax_cross_entropy", "softmax_cross_entropy_with_integer_labels",
    "sparsemax_loss", "squared_error", "triplet_margin_loss",
)


# ----------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------


def _logits(rng, dtype, shape=(5, 4)):
  return rand(rng, shape, dtype, -3.0, 3.0)


def _probs(rng, dtype, shape=(5, 4)):
  z = rng.normal(size=shape)
  return (np.exp(z) / np.exp(z).sum(-1, keepdims=True)).astype(dtype)


def _labels(rng, shape=(5,), num_classes=4):
  return rng.integers(0, num_classes, size=shape).astype(np.int32)


def _signs(rng, dtype, shape=(5, 3)):
  return np.where(rng.random(shape) < 0.5, -1.0, 1.0).astype(dtype)


def _ctc_inputs(rng, dtype):
  """optax's padded layout and torch's lengths for the same batch (B=3, T=7, K=4, N=3)."""
  logits = rand(rng, (3, 7, 4), dtype)
  labels = rng.integers(1, 4, size=(3, 3)).astype(np.int32)
  labels[0, 1] = labels[0, 0]  # a repeated label
  label_lengths = np.array([3, 2, 1], np.int32)
  input_lengths = np.array([7, 6, 4], np.int32)
  label_pad = (np.arange(3)[None] >= label_lengths[:, None]).astype(dtype)
  logit_pad = (np.arange(7)[None] >= input_lengths[:, None]).astype(dtype)
  return logits, logit_pad, labels, label_pad, input_lengths, label_lengths


def _torch_layout_ctc(logits, labels, input_lengths, label_lengths):
  log_probs = jnp.transpose(jax.nn.log_softmax(logits, axis=-1), (1, 0, 2))
  return jaxloss.ctc_loss(log_probs, labels, input_lengths, label_lengths, reduction="none")


def _fenchel_young_logsumexp():
  return jaxloss.make_fenchel_young_loss(logsumexp), OL.make_fenchel_young_loss(logsumexp)


def _no_warnings(fn):
  def wrapped(*args):
    with warnings.catch_warnings():
      warnings.simplefilter("ignore", DeprecationWarning)
      return fn(*args)
  return wrapped


# Each case: name -> (optax name, jaxloss form, optax form, inputs(rng, dtype), differentiable
# argument positions). The inputs are NumPy arrays; the forms take them positionally.
def _cases():
  fy_ours, fy_theirs = _fenchel_young_logsumexp()
  cases = {
      # -- the names jaxloss already had (torch's functions) ----------------------------------
      "softmax_cross_entropy_with_integer_labels": (
          "softmax_cross_entropy_with_integer_labels",
          lambda z, y: jaxloss.cross_entropy(z, y, reduction="none"),
          OL.softmax_cross_entropy_with_integer_labels,
          lambda r, d: (_logits(r, d), _labels(r)), (0,)),
      "softmax_cross_entropy": (
          "softmax_cross_entropy",
          lambda z, q: jaxloss.cross_entropy(z, q, reduction="none"),
          OL.softmax_cross_entropy, lambda r, d: (_logits(r, d), _probs(r, d)), (0, 1)),
      "smooth_labels_index": (
          "smooth_labels",
          lambda z, y: jaxloss.cross_entropy(z, y, label_smoothing=0.1, reduction="none"),
          lambda z, y: OL.softmax_cross_entropy(
              z, OL.smooth_labels(jax.nn.one_hot(y, z.shape[-1], dtype=z.dtype), 0.1)),
          lambda r, d: (_logits(r, d), _labels(r)), (0,)),
      "smooth_labels_probs": (
          "smooth_labels",
          lambda z, q: jaxloss.cross_entropy(z, q, label_smoothing=0.3, reduction="none"),
          lambda z, q: OL.softmax_cross_entropy(z, OL.smooth_labels(q, 0.3)),
          lambda r, d: (_logits(r, d), _probs(r, d)), (0, 1)),
      "sigmoid_binary_cross_entropy": (
          "sigmoid_binary_cross_entropy",
          lambda x, b: jaxloss.binary_cross_entropy_with_logits(x, b, reduction="none"),
          OL.sigmoid_binary_cross_entropy,
          lambda r, d: (_logits(r, d, (4, 3)), r.random((4, 3)).astype(d)), (0, 1)),
      "squared_error": (
          "squared_error", lambda x, t: jaxloss.mse_loss(x, t, reduction="none"),
          OL.squared_error, lambda r, d: (rand(r, (4, 3), d), rand(r, (4, 3), d)), (0, 1)),
      "l2_loss": (
          "l2_loss", lambda x, t: 0.5 * jaxloss.mse_loss(x, t, reduction="none"),
          OL.l2_loss, lambda r, d: (rand(r, (4, 3), d), rand(r, (4, 3), d)), (0, 1)),
      "huber_loss": (
          "huber_loss", lambda x, t: jaxloss.huber_loss(x, t, reduction="none", delta=0.7),
          lambda x, t: OL.huber_loss(x, t, delta=0.7),
          lambda r, d: (rand(r, (4, 3), d), rand(r, (4, 3), d)), (0, 1)),
      "huber_loss_as_smooth_l1": (
          "huber_loss", lambda x, t: jaxloss.smooth_l1_loss(x, t, beta=0.5),
          lambda x, t: OL.huber_loss(x, t, delta=0.5).mean() / 0.5,
          lambda r, d: (rand(r, (4, 3), d), rand(r, (4, 3), d)), (0, 1)),
      "kl_divergence": (
          "kl_divergence", lambda lp, q: jaxloss.kl_div(lp, q, reduction="batchmean"),
          lambda lp, q: OL.kl_divergence(lp, q).mean(),
          lambda r, d: (np.log(_probs(r, d)), _probs(r, d)), (0, 1)),
      "kl_divergence_with_log_targets": (
          "kl_divergence_with_log_targets",
          lambda lp, lq: jaxloss.kl_div(lp, lq, reduction="batchmean", log_target=True),
          lambda lp, lq: OL.kl_divergence_with_log_targets(lp, lq).mean(),
          lambda r, d: (np.log(_probs(r, d)), np.log(_probs(r, d))), (0, 1)),
      "triplet_margin_loss": (  # eps=0: torch adds eps to the difference, optax to the sum
          "triplet_margin_loss",
          lambda a, p, n: jaxloss.triplet_margin_loss(a, p, n, eps=0.0, reduction="none"),
          lambda a, p, n: OL.triplet_margin_loss(a, p, n, eps=0.0),
          lambda r, d: tuple(rand(r, (5, 3), d) for _ in range(3)), (0, 1, 2)),
      "sigmoid_focal_loss": (
          "sigmoid_focal_loss",
          lambda x, b: jaxloss.sigmoid_focal_loss(x, b, alpha=0.25, reduction="mean"),
          lambda x, b: OL.sigmoid_focal_loss(x, b, alpha=0.25).mean(),
          lambda r, d: (_logits(r, d, (4, 3)), (r.random((4, 3)) < 0.4).astype(d)), (0,)),
      "ctc_loss": (
          "ctc_loss",
          lambda x, lp, y, yp, il, yl: _torch_layout_ctc(x, y, il, yl),
          lambda x, lp, y, yp, il, yl: OL.ctc_loss(x, lp, y, yp),
          _ctc_inputs, (0,)),
      "hinge_loss": (
          "hinge_loss",
          lambda x, y: jaxloss.margin_ranking_loss(x, jnp.zeros_like(x), y, margin=1.0,
                                                   reduction="none"),
          OL.hinge_loss, lambda r, d: (rand(r, (5, 3), d), _signs(r, d)), (0, 1)),
      "perceptron_loss": (
          "perceptron_loss",
          lambda x, y: jaxloss.margin_ranking_loss(x, jnp.zeros_like(x), y, margin=0.0,
                                                   reduction="none"),
          OL.perceptron_loss, lambda r, d: (rand(r, (5, 3), d), _signs(r, d)), (0, 1)),
      # -- the names added for optax --------------------------------------------------------
      "poly_loss_cross_entropy": (
          "poly_loss_cross_entropy", jaxloss.poly_loss_cross_entropy, OL.poly_loss_cross_entropy,
          lambda r, d: (_logits(r, d), _probs(r, d)), (0, 1)),
      "poly_loss_cross_entropy_eps_axis0": (
          "poly_loss_cross_entropy",
          lambda z, q: jaxloss.poly_loss_cross_entropy(z, q, epsilon=-1.0, axis=0),
          lambda z, q: OL.poly_loss_cross_entropy(z, q, epsilon=-1.0, axis=0),
          lambda r, d: (_logits(r, d, (4, 2, 3)), _probs(r, d, (3, 2, 4)).T.copy()), (0, 1)),
      "poly_loss_cross_entropy_where": (
          "poly_loss_cross_entropy",
          lambda z, q, w: jaxloss.poly_loss_cross_entropy(z, q, epsilon=0.5, where=w),
          lambda z, q, w: OL.poly_loss_cross_entropy(z, q, epsilon=0.5, where=w),
          lambda r, d: (_logits(r, d), _probs(r, d), r.random((5, 4)) < 0.8), (0,)),
      "safe_softmax_cross_entropy": (
          "safe_softmax_cross_entropy", jaxloss.safe_softmax_cross_entropy,
          OL.safe_softmax_cross_entropy, lambda r, d: (_logits(r, d), _probs(r, d)), (0, 1)),
      "safe_softmax_cross_entropy_neg_inf": (  # -inf logits of zero-label classes: finite
          "safe_softmax_cross_entropy", jaxloss.safe_softmax_cross_entropy,
          OL.safe_softmax_cross_entropy, _neg_inf_logits, (0,)),
      "multiclass_hinge_loss": (
          "multiclass_hinge_loss", jaxloss.multiclass_hinge_loss, OL.multiclass_hinge_loss,
          lambda r, d: (_logits(r, d, (6, 4)) * 0.3, _labels(r, (6,))), (0,)),
      "multiclass_hinge_loss_3d": (
          "multiclass_hinge_loss", jaxloss.multiclass_hinge_loss, OL.multiclass_hinge_loss,
          lambda r, d: (_logits(r, d, (2, 3, 4)) * 0.3, _labels(r, (2, 3))), (0,)),
      "multiclass_perceptron_loss": (
          "multiclass_perceptron_loss", jaxloss.multiclass_perceptron_loss,
          OL.multiclass_perceptron_loss, lambda r, d: (_logits(r, d, (6, 4)), _labels(r, (6,))),
          (0,)),
      "multiclass_perceptron_loss_ties": (  # equal scores: the max's gradient is shared
          "multiclass_perceptron_loss", jaxloss.multiclass_perceptron_loss,
          OL.multiclass_perceptron_loss,
          lambda r, d: (np.zeros((3, 4), d), _labels(r, (3,))), (0,)),
      "multiclass_sparsemax_loss": (
          "multiclass_sparsemax_loss", jaxloss.multiclass_sparsemax_loss,
          OL.multiclass_sparsemax_loss, lambda r, d: (_logits(r, d, (6, 5)), _labels(r, (6,), 5)),
          (0,)),
      "sparsemax_loss": (
          "sparsemax_loss", jaxloss.sparsemax_loss, OL.sparsemax_loss,
          lambda r, d: (_logits(r, d, (4, 5)), r.integers(0, 2, (4, 5)).astype(np.int32)), (0,)),
      "make_fenchel_young_loss": (
          "make_fenchel_young_loss", fy_ours, fy_theirs,
          lambda r, d: (_logits(r, d, (2, 3, 4)), _probs(r, d, (2, 3, 4))), (0, 1)),
      "log_cosh": (
          "log_cosh", jaxloss.log_cosh, OL.log_cosh,
          lambda r, d: (rand(r, (4, 3), d, -8, 8), rand(r, (4, 3), d)), (0, 1)),
      "log_cosh_no_targets": (
          "log_cosh", jaxloss.log_cosh, OL.log_cosh, lambda r, d: (rand(r, (7,), d, -30, 30),),
          (0,)),
      "generalized_kl_divergence": (
          "generalized_kl_divergence", jaxloss.generalized_kl_divergence,
          OL.generalized_kl_divergence,
          lambda r, d: (rand(r, (4, 3), d, -2, 1), rand(r, (4, 3), d, 0.1, 2)), (0, 1)),
      "generalized_kl_divergence_axes": (
          "generalized_kl_divergence",
          lambda lp, t: jaxloss.generalized_kl_divergence(lp, t, axis=(0, 2)),
          lambda lp, t: OL.generalized_kl_divergence(lp, t, axis=(0, 2)),
          lambda r, d: (rand(r, (2, 3, 4), d, -2, 1), rand(r, (2, 3, 4), d, 0.1, 2)), (0, 1)),
      "convex_kl_divergence": (
          "convex_kl_divergence", _no_warnings(jaxloss.convex_kl_divergence),
          _no_warnings(OL.convex_kl_divergence),
          lambda r, d: (rand(r, (4, 3), d, -2, 1), rand(r, (4, 3), d, 0.1, 2)), (0, 1)),
      "cosine_similarity": (
          "cosine_similarity", lambda a, b: jaxloss.cosine_similarity(a, b, dim=-1, eps=0.0),
          OL.cosine_similarity, lambda r, d: (rand(r, (5, 3), d), rand(r, (5, 3), d)), (0, 1)),
      "cosine_similarity_epsilon": (  # optax's epsilon clamps |x|^2: eps = sqrt(epsilon)
          "cosine_similarity",
          lambda a, b: jaxloss.cosine_similarity(a, b, dim=0, eps=0.1),
          lambda a, b: OL.cosine_similarity(a, b, epsilon=0.01, axis=0),
          lambda r, d: (rand(r, (3, 5), d, 0.5, 2), rand(r, (3, 5), d, 0.5, 2)), (0, 1)),
      "cosine_distance": (
          "cosine_distance",
          lambda a, b: 1.0 - jaxloss.cosine_similarity(a, b, dim=-1, eps=0.0),
          OL.cosine_distance, lambda r, d: (rand(r, (5, 3), d), rand(r, (5, 3), d)), (0, 1)),
      "dice_loss": (
          "dice_loss", jaxloss.dice_loss, OL.dice_loss,
          lambda r, d: (_logits(r, d, (2, 3, 2, 3)), _one_hot(r, d, (2, 3, 2), 3)), (0, 1)),
      "dice_loss_tversky_weighted": (
          "dice_loss",
          lambda x, t: jaxloss.dice_loss(x, t, alpha=0.3, beta=0.7, smooth=0.5,
                                         class_weights=jnp.array([0.5, 1.0, 2.0], x.dtype),
                                         reduction="none"),
          lambda x, t: OL.dice_loss(x, t, alpha=0.3, beta=0.7, smooth=0.5,
                                   class_weights=jnp.array([0.5, 1.0, 2.0], x.dtype),
                                   reduction="none"),
          lambda r, d: (_logits(r, d, (2, 4, 3)), _one_hot(r, d, (2, 4), 3)), (0, 1)),
      "dice_loss_probabilities": (
          "dice_loss",
          lambda p, t: jaxloss.dice_loss(p, t, apply_softmax=False, reduction="sum",
                                         ignore_background=True, axis=(1, 2)),
          lambda p, t: OL.dice_loss(p, t, apply_softmax=False, reduction="sum",
                                   ignore_background=True, axis=(1, 2)),
          lambda r, d: (_probs(r, d, (2, 3, 2, 3)), _one_hot(r, d, (2, 3, 2), 3)), ()),
      "binary_dice_loss": (
          "binary_dice_loss", jaxloss.binary_dice_loss, OL.binary_dice_loss,
          lambda r, d: (_logits(r, d, (3, 4, 2)), (r.random((3, 4, 2)) < 0.5).astype(d)), (0, 1)),
      "multiclass_generalized_dice_loss": (
          "multiclass_generalized_dice_loss", jaxloss.multiclass_generalized_dice_loss,
          OL.multiclass_generalized_dice_loss,
          lambda r, d: (_logits(r, d, (2, 3, 2, 3)), _one_hot(r, d, (2, 3, 2), 3)), (0, 1)),
      "multiclass_generalized_dice_loss_background": (
          "multiclass_generalized_dice_loss",
          lambda x, t: jaxloss.multiclass_generalized_dice_loss(x, t, smooth=0.1,
                                                                ignore_background=True),
          lambda x, t: OL.multiclass_generalized_dice_loss(x, t, smooth=0.1,
                                                          ignore_background=True),
          lambda r, d: (_logits(r, d, (2, 5, 3)), _one_hot(r, d, (2, 5), 3)), (0, 1)),
      "ntxent": (
          "ntxent", jaxloss.ntxent, OL.ntxent,
          lambda r, d: (rand(r, (6, 4), d), np.array([0, 0, 1, 1, 2, 2], np.int32),
                        np.asarray(0.3, d)), (0, 2)),
      "ntxent_groups": (
          "ntxent", jaxloss.ntxent, OL.ntxent,
          lambda r, d: (rand(r, (7, 3), d), np.array([0, 1, 0, 1, 1, 2, 0], np.int32)), (0,)),
      "ranking_softmax_loss": (
          "ranking_softmax_loss", jaxloss.ranking_softmax_loss, OL.ranking_softmax_loss,
          lambda r, d: (_logits(r, d, (3, 5)), r.integers(0, 3, (3, 5)).astype(d)), (0, 1)),
      "ranking_softmax_loss_where_weights": (
          "ranking_softmax_loss",
          lambda x, y, w, m: jaxloss.ranking_softmax_loss(x, y, weights=w, where=m),
          lambda x, y, w, m: OL.ranking_softmax_loss(x, y, weights=w, where=m),
          _ranking_masked, (0, 1)),
      "ranking_softmax_loss_sum_none": (
          "ranking_softmax_loss",
          lambda x, y, m: (jaxloss.ranking_softmax_loss(x, y, where=m, reduce_fn=None),
                           jaxloss.ranking_softmax_loss(x, y, where=m, reduce_fn=jnp.sum)),
          lambda x, y, m: (OL.ranking_softmax_loss(x, y, where=m, reduce_fn=None),
                           OL.ranking_softmax_loss(x, y, where=m, reduce_fn=jnp.sum)),
          lambda r, d: _ranking_masked(r, d)[:2] + _ranking_masked(r, d)[3:], (0, 1)),
      "ctc_loss_with_forward_probs": (
          "ctc_loss_with_forward_probs",
          lambda x, lp, y, yp: jaxloss.ctc_loss_with_forward_probs(x, lp, y, yp),
          lambda x, lp, y, yp: OL.ctc_loss_with_forward_probs(x, lp, y, yp),
          lambda r, d: _ctc_inputs(r, d)[:4], (0,)),
      "ctc_loss_with_forward_probs_blank2": (
          "ctc_loss_with_forward_probs",
          lambda x, lp, y, yp: jaxloss.ctc_loss_with_forward_probs(x, lp, y, yp, blank_id=2,
                                                                   log_epsilon=-1e4),
          lambda x, lp, y, yp: OL.ctc_loss_with_forward_probs(x, lp, y, yp, blank_id=2,
                                                             log_epsilon=-1e4),
          _ctc_blank2_inputs, (0,)),
  }
  return cases


def _neg_inf_logits(rng, dtype):
  z = _logits(rng, dtype)
  q = _probs(rng, dtype)
  q[:, 1] = 0.0
  q[2, 3] = 0.0
  q /= q.sum(-1, keepdims=True)
  z[:, 1] = -np.inf
  z[2, 3] = -np.inf
  return z, q


def _one_hot(rng, dtype, shape, num_classes):
  return np.eye(num_classes, dtype=dtype)[rng.integers(0, num_classes, shape)]


def _ranking_masked(rng, dtype):
  x = _logits(rng, dtype, (4, 5))
  y = rng.integers(0, 3, (4, 5)).astype(dtype)
  w = rand(rng, (4, 5), dtype, 0.2, 2.0)
  m = rng.random((4, 5)) < 0.7
  m[1] = False  # a list without valid items
  return x, y, w, m


def _ctc_blank2_inputs(rng, dtype):
  logits, logit_pad, labels, label_pad, *_ = _ctc_inputs(rng, dtype)
  labels = np.where(labels == 2, 0, labels).astype(np.int32)  # labels avoid the blank (2)
  logit_pad[1, 2] = 1.0  # a padded frame inside the sequence: skipped
  return logits, logit_pad, labels, label_pad


CASES = _cases()


def _parity_params():
  for name in CASES:
    for dtype in DTYPES:
      yield dict(testcase_name=f"{name}_{dtype.__name__}", name=name, dtype=dtype)


def _put(args, positions, values):
  args = list(args)
  for i, v in zip(positions, values, strict=True):
    args[i] = v
  return args


class OptaxParityTest(chex.TestCase):
  """Values and VJPs of the jaxloss form against optax, float32 and float64, jit and eager."""

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(*_parity_params())
  def test_parity(self, name, dtype):
    _, ours, theirs, make_inputs, grad_argnums = CASES[name]
    rng = np.random.default_rng(sum(map(ord, name)))
    args = [jnp.asarray(a) for a in make_inputs(rng, dtype)]

    def value_and_vjp(fn, cot):
      def run(*a):
        out, pullback = jax.vjp(lambda *d: fn(*_put(a, grad_argnums, d)),
                                *[a[i] for i in grad_argnums])
        return out, pullback(cot)
      return run

    # The reference runs in the case's precision: float32 with x64 off, where optax's
    # constants are float32 too (with x64 on, its jnp.ones(...) would be float64).
    def reference(*a):
      return jax.tree.map(lambda o: o.astype(dtype), theirs(*a))

    cot_rng = np.random.default_rng(0)
    with jax.enable_x64(dtype == np.float64):
      ref_args = [jnp.asarray(np.asarray(a)) for a in args]
      if grad_argnums:
        shapes = jax.eval_shape(reference, *ref_args)
        cot = jax.tree.map(lambda s: np.asarray(cot_rng.normal(size=s.shape), dtype), shapes)
        expected, expected_grads = value_and_vjp(reference, cot)(*ref_args)
      else:  # optax's check of apply_softmax=False probabilities runs only eagerly
        expected, expected_grads = reference(*ref_args), ()
      expected = jax.tree.map(np.asarray, expected)
      expected_grads = jax.tree.map(np.asarray, expected_grads)
    if grad_argnums:
      out, grads = self.variant(value_and_vjp(ours, jax.tree.map(jnp.asarray, cot)))(*args)
    else:
      out, grads = self.variant(ours)(*args), ()
    rtol = RTOL[dtype]
    for o, e in zip(jax.tree.leaves(out), jax.tree.leaves(expected), strict=True):
      self.assertEqual(o.shape, e.shape)
      self.assertEqual(np.dtype(o.dtype), np.dtype(dtype))
      assert_close(o, e, rtol, f"{name}: value")
    for i, g, e in zip(grad_argnums, grads, expected_grads, strict=True):
      self.assertTrue(np.all(np.isfinite(np.asarray(g))), f"{name}: gradient {i} not finite")
      assert_close(g, e, rtol, f"{name}: gradient w.r.t. argument {i}")

  def test_every_optax_name_has_a_case(self):
    public = sorted(n for n in dir(OL) if not n.startswith("_"))
    self.assertEqual(sorted(OPTAX_NAMES), public)  # optax 0.2.8's 32 names
    self.assertEqual(len(OPTAX_NAMES), 32)
    self.assertEqual(sorted({case[0] for case in CASES.values()}), sorted(OPTAX_NAMES))


# ----------------------------------------------------------------------------
# The optax-named functions appended to existing modules: where, vmap, errors
# ----------------------------------------------------------------------------


def _soft(rng, shape=(5, 4)):
  return _logits(rng, np.float64, shape), _probs(rng, np.float64, shape)


def _index(rng, shape=(5, 4)):
  return _logits(rng, np.float64, shape), _labels(rng, shape[:-1], shape[-1])


PER_SAMPLE = (
    ("poly_loss_cross_entropy", jaxloss.poly_loss_cross_entropy, _soft),
    ("safe_softmax_cross_entropy", jaxloss.safe_softmax_cross_entropy, _soft),
    ("multiclass_hinge_loss", jaxloss.multiclass_hinge_loss, _index),
    ("multiclass_perceptron_loss", jaxloss.multiclass_perceptron_loss, _index),
    ("multiclass_sparsemax_loss", jaxloss.multiclass_sparsemax_loss, _index),
    ("generalized_kl_divergence", jaxloss.generalized_kl_divergence,
     lambda r, shape=(5, 4): (rand(r, shape, np.float64, -2, 1),
                              rand(r, shape, np.float64, 0.1, 2))),
)


class AppendedBehaviourTest(chex.TestCase):

  @parameterized.named_parameters(*PER_SAMPLE)
  def test_sample_mask_drops_samples_with_zero_gradients(self, fn, make):
    rng = np.random.default_rng(4)
    x, y = make(rng)
    keep = np.array([True, False, True, True, False])
    x_inf = x.copy()
    x_inf[~keep] = np.inf  # must not leak into the gradient
    for reduction in ("mean", "sum"):
      masked = fn(x_inf, y, reduction=reduction, where=keep)
      chex.assert_trees_all_close(masked, fn(x[keep], y[keep], reduction=reduction),
                                  rtol=1e-12)
    unreduced = fn(x_inf, y, where=keep)
    chex.assert_trees_all_close(unreduced[~keep], 0.0)
    chex.assert_trees_all_close(unreduced[keep], fn(x[keep], y[keep]), rtol=1e-12)
    g = jax.grad(lambda a: fn(a, y, reduction="mean", where=keep))(jnp.asarray(x_inf))
    self.assertTrue(np.all(np.asarray(g)[~keep] == 0.0))
    self.assertTrue(np.all(np.isfinite(np.asarray(g))))
    self.assertTrue(np.any(np.asarray(g)[keep] != 0.0))

  @parameterized.named_parameters(("poly", jaxloss.poly_loss_cross_entropy),
                                  ("safe", jaxloss.safe_softmax_cross_entropy))
  def test_class_mask_is_a_minus_inf_logit(self, fn):
    rng = np.random.default_rng(5)
    z, q = _soft(rng)
    keep = np.ones((5, 4), bool)
    keep[:, 2] = False
    q = np.where(keep, q, 0.0)
    z_masked = np.where(keep, z, -np.inf)
    chex.assert_trees_all_close(fn(z, q, where=keep), fn(z_masked, q), rtol=1e-12)
    chex.assert_trees_all_close(fn(z, q, where=keep), fn(z[:, keep[0]], q[:, keep[0]]),
                                rtol=1e-12)
    z_nan = np.where(keep, z, np.nan)
    g = jax.grad(lambda a: fn(a, q, reduction="sum", where=keep))(jnp.asarray(z_nan))
    self.assertTrue(np.all(np.asarray(g)[:, 2] == 0.0))
    self.assertTrue(np.all(np.isfinite(np.asarray(g))))

  def test_safe_softmax_cross_entropy_minus_inf_logits(self):
    z = np.array([[1.2, -np.inf, -0.5], [-np.inf, -np.inf, 0.3]])
    q = np.array([[0.7, 0.0, 0.3], [0.0, 0.0, 1.0]])
    loss = jaxloss.safe_softmax_cross_entropy(z, q)
    chex.assert_trees_all_close(loss, OL.safe_softmax_cross_entropy(z, q), rtol=1e-12)
    self.assertTrue(np.all(np.isfinite(np.asarray(loss))))
    self.assertEqual(float(loss[1]), 0.0)  # the only finite class holds all the mass
    self.assertTrue(np.isnan(float(jaxloss.cross_entropy(z, q, reduction="none")[0])))  # torch's
    g = jax.grad(lambda a: jnp.sum(jaxloss.safe_softmax_cross_entropy(a, q)))(jnp.asarray(z))
    self.assertTrue(np.all(np.isfinite(np.asarray(g))))
    # A -inf logit of a class with mass: +inf, as it should.
    q_mass = np.array([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
    self.assertEqual(float(jaxloss.safe_softmax_cross_entropy(z, q_mass)[0]), np.inf)

  def test_poly_loss_finite_where_optax_is_nan(self):
    z, q = _neg_inf_logits(np.random.default_rng(6), np.float64)
    ours = jaxloss.poly_loss_cross_entropy(z, q)
    self.assertTrue(np.all(np.isnan(np.asarray(OL.poly_loss_cross_entropy(z, q)))))
    expected = (OL.safe_softmax_cross_entropy(z, q)
                + 2.0 * np.sum(q * (1 - jax.nn.softmax(jnp.asarray(z))), axis=-1))
    chex.assert_trees_all_close(ours, expected, rtol=1e-12)

  def test_invalid_labels_are_nan_and_reported(self):
    scores = jnp.asarray(np.random.default_rng(7).normal(size=(3, 4)))
    labels = jnp.array([0, 4, 1])
    for fn in (jaxloss.multiclass_hinge_loss, jaxloss.multiclass_perceptron_loss,
               jaxloss.multiclass_sparsemax_loss):
      loss = fn(scores, labels)
      self.assertTrue(np.isnan(float(loss[1])))
      self.assertTrue(np.all(np.isfinite(np.asarray(loss)[[0, 2]])))
      self.assertTrue(np.isnan(float(fn(scores, labels, reduction="mean"))))
      g = jax.grad(lambda s, fn=fn: jnp.sum(fn(s, labels)))(scores)
      self.assertTrue(np.all(np.isnan(np.asarray(g[1]))))
      err, _ = checkify.checkify(jax.jit(lambda s, fn=fn: fn(s, labels)))(scores)
      with self.assertRaisesRegex(Exception, "class index 4 outside"):
        err.throw()
      # masked invalid labels are neither checked nor poisoned
      where = jnp.array([True, False, True])
      self.assertTrue(np.isfinite(float(fn(scores, labels, reduction="sum", where=where))))

  def test_log_cosh(self):
    x = np.array([0.3, -40.0, 800.0, 0.0])
    exact = np.abs(x) - np.log(2.0) + np.log1p(np.exp(-2 * np.abs(x)))  # log cosh x
    chex.assert_trees_all_close(jaxloss.log_cosh(x), exact, rtol=1e-12, atol=1e-15)
    g = jax.grad(lambda a: jnp.sum(jaxloss.log_cosh(a)))(jnp.asarray(x))
    chex.assert_trees_all_close(g, np.tanh(x), rtol=1e-12)
    t = np.zeros(4)
    w = np.array([1.0, 2.0, 0.5, 1.0])
    where = np.array([True, True, False, True])
    xi = np.where(where, x, np.inf)
    mean = jaxloss.log_cosh(xi, t, reduction="mean", weight=w, where=where)
    keep = where
    expected = np.sum((w * np.log(np.cosh(np.where(keep, x, 0))))[keep]) / np.sum(w[keep])
    self.assertAlmostEqual(float(mean), expected, places=12)
    g = jax.grad(lambda a: jaxloss.log_cosh(a, t, reduction="sum", where=where))(jnp.asarray(xi))
    self.assertEqual(float(g[2]), 0.0)

  def test_generalized_kl(self):
    rng = np.random.default_rng(8)
    q = _probs(rng, np.float64)
    logp = np.log(_probs(rng, np.float64))
    # normalised measures: the KL divergence
    chex.assert_trees_all_close(jaxloss.generalized_kl_divergence(logp, q),
                                OL.kl_divergence(logp, q), rtol=1e-10)
    # a zero target: 0 log 0 = 0, and the true derivative -inf (optax: nan)
    t = np.array([[0.0, 0.5, 1.5]])
    lp = np.log(np.array([[0.2, 0.5, 1.0]]))
    chex.assert_trees_all_close(jaxloss.generalized_kl_divergence(lp, t),
                                OL.generalized_kl_divergence(lp, t), rtol=1e-12)
    g = jax.grad(lambda a: jnp.sum(jaxloss.generalized_kl_divergence(lp, a)))(jnp.asarray(t))
    self.assertEqual(float(g[0, 0]), -np.inf)
    g_lp = jax.grad(lambda a: jnp.sum(jaxloss.generalized_kl_divergence(a, t)))(jnp.asarray(lp))
    chex.assert_trees_all_close(g_lp, np.exp(lp) - t, rtol=1e-12)
    out = jaxloss.generalized_kl_divergence(logp, q, axis=None)
    self.assertEqual(out.shape, ())

  def test_convex_kl_divergence_warns(self):
    lp, t = np.log(np.array([0.5, 0.5])), np.array([0.3, 0.9])
    with self.assertWarnsRegex(DeprecationWarning, "generalized_kl_divergence"):
      value = jaxloss.convex_kl_divergence(lp, t)
    chex.assert_trees_all_close(value, jaxloss.generalized_kl_divergence(lp, t))

  def test_ctc_forward_probs_matches_torch_layout_and_masks(self):
    rng = np.random.default_rng(9)
    logits, logit_pad, labels, label_pad, input_lengths, label_lengths = _ctc_inputs(
        rng, np.float64)
    loss, alpha_blank, alpha_label = jaxloss.ctc_loss_with_forward_probs(
        logits, logit_pad, labels, label_pad)
    self.assertEqual(alpha_blank.shape, (7, 3, 4))
    self.assertEqual(alpha_label.shape, (7, 3, 3))
    chex.assert_trees_all_close(loss, _torch_layout_ctc(logits, labels, input_lengths,
                                                        label_lengths), rtol=1e-10)
    where = np.array([True, False, True])
    bad = logits.copy()
    bad[1] = np.nan
    masked = jaxloss.ctc_loss_with_forward_probs(bad, logit_pad, labels, label_pad,
                                                 where=where, reduction="mean")[0]
    self.assertAlmostEqual(float(masked), float(np.mean(np.asarray(loss)[where])), places=10)
    g = jax.grad(lambda x: jaxloss.ctc_loss_with_forward_probs(
        x, logit_pad, labels, label_pad, where=where, reduction="sum")[0])(jnp.asarray(bad))
    self.assertTrue(np.all(np.asarray(g)[1] == 0.0))
    self.assertTrue(np.all(np.isfinite(np.asarray(g))))

  def test_vmap_matches_loop(self):
    rng = np.random.default_rng(10)
    z = rand(rng, (3, 5, 4), np.float64)
    q = _probs(rng, np.float64, (3, 5, 4))
    y = rng.integers(0, 4, (3, 5)).astype(np.int32)
    for fn, second in ((jaxloss.poly_loss_cross_entropy, q),
                       (jaxloss.safe_softmax_cross_entropy, q),
                       (jaxloss.generalized_kl_divergence, q),
                       (jaxloss.multiclass_hinge_loss, y),
                       (jaxloss.multiclass_perceptron_loss, y),
                       (jaxloss.multiclass_sparsemax_loss, y),
                       (jaxloss.log_cosh, q)):
      batched = jax.vmap(lambda a, b, fn=fn: fn(a, b, reduction="mean"))(z, second)
      looped = jnp.stack([fn(z[i], second[i], reduction="mean") for i in range(3)])
      chex.assert_trees_all_close(batched, looped, rtol=1e-12)

  def test_half_precision_computes_in_float32(self):
    rng = np.random.default_rng(11)
    z, q = _soft(rng, (64, 8))
    y = rng.integers(0, 8, 64)
    for fn, second in ((jaxloss.poly_loss_cross_entropy, q),
                       (jaxloss.multiclass_sparsemax_loss, y),
                       (jaxloss.multiclass_hinge_loss, y)):
      half = fn(jnp.asarray(z, jnp.bfloat16), second, reduction="mean")
      self.assertEqual(half.dtype, jnp.bfloat16)
      exact = fn(jnp.asarray(z, jnp.bfloat16).astype(jnp.float64), second, reduction="mean")
      self.assertLess(abs(float(half) - float(exact)), 1e-2 * max(1.0, abs(float(exact))))

  def test_errors(self):
    z, q = jnp.ones((3, 4)), jnp.full((3, 4), 0.25)
    with self.assertRaisesRegex(ValueError, r"poly_loss_cross_entropy: `reduction` must be"):
      jaxloss.poly_loss_cross_entropy(z, q, reduction="batchmean")
    with self.assertRaisesRegex(ValueError, r"`axis`=2 is out of range"):
      jaxloss.poly_loss_cross_entropy(z, q, axis=2)
    with self.assertRaisesRegex(ValueError, r"`labels` of shape \(3, 5\) cannot be broadcast"):
      jaxloss.safe_softmax_cross_entropy(z, jnp.ones((3, 5)))
    with self.assertRaisesRegex(ValueError, r"`labels` must be an integer array"):
      jaxloss.multiclass_hinge_loss(z, jnp.zeros(3))
    with self.assertRaisesRegex(ValueError, r"`labels` must have shape \(3,\)"):
      jaxloss.multiclass_perceptron_loss(z, jnp.zeros(4, jnp.int32))
    with self.assertRaisesRegex(ValueError, r"`axis` must be a static Python int"):
      jaxloss.multiclass_hinge_loss(z, jnp.zeros(3, jnp.int32), axis=(0, 1))
    with self.assertRaisesRegex(ValueError, r"`where` of shape \(2,\)"):
      jaxloss.multiclass_hinge_loss(z, jnp.zeros(3, jnp.int32), where=jnp.ones(2, bool))
    with self.assertRaisesRegex(ValueError, r"`axis` \(1, 1\) repeats"):
      jaxloss.generalized_kl_divergence(z, q, axis=(1, 1))
    with self.assertRaisesRegex(ValueError, r"`predictions` must be a floating-point"):
      jaxloss.log_cosh(jnp.ones(3, jnp.int32))
    with self.assertRaisesRegex(ValueError, r"`labels` must have batch size 3"):
      jaxloss.ctc_loss_with_forward_probs(jnp.ones((3, 4, 5)), jnp.zeros((3, 4)),
                                          jnp.ones((2, 2), jnp.int32), jnp.zeros((2, 2)))
    with self.assertRaisesRegex(ValueError, r"`blank_id` must lie in \[0, 5\)"):
      jaxloss.ctc_loss_with_forward_probs(jnp.ones((3, 4, 5)), jnp.zeros((3, 4)),
                                          jnp.ones((3, 2), jnp.int32), jnp.zeros((3, 2)),
                                          blank_id=5)
    with self.assertRaisesRegex(ValueError, r"multiclass_hinge_loss: `labels`"):
      jax.jit(jaxloss.multiclass_hinge_loss).lower(z, jnp.zeros(3))


if __name__ == "__main__":
  absltest.main()
