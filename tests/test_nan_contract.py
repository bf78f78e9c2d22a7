"""The nan contract, for every loss with a data-dependent error.

Every input that torch rejects with a value error (and every other input a jaxloss
check reports) gives ``nan`` without ``checkify``: the offending elements of the
``'none'`` loss (the others stay finite), every reduction, and the gradient at the
offending elements' inputs; under ``checkify`` the error is reported, naming the
function and the argument. Valid input of the same shapes reports nothing, and a
masked (``where=False``) offending sample is neither reported nor poisoned.

Second part: masked and ignored rows never reach a shared weight's gradient,
whatever their features hold (``large_margin_softmax`` and every loss through
``cosine_logits``).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized
from jax.experimental import checkify

import jaxloss

N, C = 3, 4
_X = jax.random.normal(jax.random.key(0), (N, C))
_P = jax.nn.sigmoid(_X)
_COS = jnp.tanh(_X)
_W = 0.5 * _X[jnp.array([0, 1, 2, 0])] + 1.0   # (C, C): a weight matrix for D = C
_THETA = jaxloss.identity_theta(2)
T_CTC, N_CTC, C_CTC = 6, 2, 5
_LP = jax.nn.log_softmax(jax.random.normal(jax.random.key(1), (T_CTC, N_CTC, C_CTC)))
_IL, _TL = jnp.array([6, 6]), jnp.array([2, 2])
_ROW0 = np.array([True, False, False])      # the offending sample, rows of (N, C)
_CTC0 = np.array([True, False])             # the offending CTC sample


@dataclasses.dataclass(frozen=True)
class Case:
  fn: Callable[..., jax.Array]     # fn(*args, reduction=..., where=...) -> loss
  valid: tuple                     # args of valid input
  invalid: tuple                   # the same shapes and dtypes, one sample invalid
  bad_out: np.ndarray              # the 'none' entries that must be nan
  bad_in: np.ndarray               # entries of args[0] whose gradient must be nan
  message: str                     # regex of the checkify report
  mask: np.ndarray | None = None   # a `where` that masks the offending sample


def _rows(bad_rows):
  """Entries of an (N, C) input in the offending rows."""
  return np.broadcast_to(np.asarray(bad_rows)[:, None], (N, C))


def _ctc(targets, il=_IL, tl=_TL):
  return (_LP, jnp.asarray(targets), jnp.asarray(il), jnp.asarray(tl))


def _ctc_case(targets, il=_IL, tl=_TL, message="", bad=_CTC0):
  bad = np.asarray(bad)
  return Case(lambda lp, t, il, tl, **kw: jaxloss.ctc_loss(lp, t, il, tl, **kw),
              _ctc([[1, 2], [3, 4]]), _ctc(targets, il, tl), bad,
              np.broadcast_to(bad[None, :, None], _LP.shape), message,
              mask=None if bad.all() else ~bad)


_GOOD_T = jnp.array([0, 1, 3])
_CASES = {
    "cross_entropy_index_too_large": Case(
        jaxloss.cross_entropy, (_X, _GOOD_T), (_X, jnp.array([C, 1, 3])), _ROW0, _rows(_ROW0),
        r"cross_entropy: `target` holds class index 4 outside \[0, 4\)", _ROW0 == 0),
    "cross_entropy_negative_index_smoothed": Case(
        lambda x, t, **kw: jaxloss.cross_entropy(x, t, label_smoothing=0.1, **kw),
        (_X, _GOOD_T), (_X, jnp.array([-2, 1, 3])), _ROW0, _rows(_ROW0),
        r"cross_entropy: `target` holds class index -2 outside"),
    "nll_loss_index_too_large": Case(
        jaxloss.nll_loss, (_X, _GOOD_T), (_X, jnp.array([7, 1, 3])), _ROW0, _rows(_ROW0),
        r"nll_loss: `target` holds class index 7", _ROW0 == 0),
    "binary_cross_entropy_input_above_1": Case(
        jaxloss.binary_cross_entropy, (_P, _P), (_P.at[0, 1].set(1.5), _P),
        np.arange(N * C).reshape(N, C) == 1, np.arange(N * C).reshape(N, C) == 1,
        r"binary_cross_entropy: every element of `input` must lie in \[0, 1\]; found 1\.5",
        np.arange(N * C).reshape(N, C) != 1),
    "binary_cross_entropy_target_below_0": Case(
        jaxloss.binary_cross_entropy, (_P, _P), (_P, _P.at[2, 0].set(-0.5)),
        np.arange(N * C).reshape(N, C) == 8, np.arange(N * C).reshape(N, C) == 8,
        r"binary_cross_entropy: every element of `target` must lie in \[0, 1\]; found -0\.5"),
    "gaussian_nll_loss_negative_var": Case(
        jaxloss.gaussian_nll_loss, (_X, _X * 0.5, _P), (_X, _X * 0.5, _P.at[1, 2].set(-0.5)),
        np.arange(N * C).reshape(N, C) == 6, np.arange(N * C).reshape(N, C) == 6,
        r"gaussian_nll_loss: `var` has negative entry/entries; found -0\.5",
        np.arange(N * C).reshape(N, C) != 6),
    "multi_margin_loss_index_too_large": Case(
        jaxloss.multi_margin_loss, (_X, _GOOD_T), (_X, jnp.array([C, 1, 3])), _ROW0,
        _rows(_ROW0), r"multi_margin_loss: `target` holds class index 4", _ROW0 == 0),
    "multi_margin_loss_negative_index": Case(
        jaxloss.multi_margin_loss, (_X, _GOOD_T), (_X, jnp.array([-1, 1, 3])), _ROW0,
        _rows(_ROW0), r"multi_margin_loss: `target` holds class index -1"),
    "multilabel_margin_loss_index_too_large": Case(
        jaxloss.multilabel_margin_loss, (_X, jnp.array([[0, -1, 2, 0], [1, 2, -1, 0],
                                                        [3, -1, 0, 0]])),
        (_X, jnp.array([[0, -1, 7, 0], [1, 2, -1, 0], [3, -1, 0, 0]])), _ROW0, _rows(_ROW0),
        r"multilabel_margin_loss: `target` holds 7, outside \[-1, 4\)", _ROW0 == 0),
    "multilabel_margin_loss_below_minus_1": Case(
        jaxloss.multilabel_margin_loss, (_X, jnp.array([[0, -1, 2, 0], [1, 2, -1, 0],
                                                        [3, -1, 0, 0]])),
        (_X, jnp.array([[0, -2, 2, 0], [1, 2, -1, 0], [3, -1, 0, 0]])), _ROW0, _rows(_ROW0),
        r"multilabel_margin_loss: `target` holds -2"),
    "ctc_label_is_blank": _ctc_case([[1, 0], [3, 4]], message=r"ctc_loss: `targets` holds label "
                                    r"0; labels must lie in \[0, 5\) and differ from blank=0"),
    "ctc_label_too_large": _ctc_case([[1, 5], [3, 4]], message=r"ctc_loss: `targets` holds "
                                     r"label 5"),
    "ctc_negative_label": _ctc_case([[-1, 2], [3, 4]], message=r"`targets` holds label -1"),
    "ctc_target_length_too_large": _ctc_case([[1, 2], [3, 4]], tl=[3, 2],
                                             message=r"ctc_loss: `target_lengths` must lie "
                                             r"in \[0, 2\].*got 3"),
    "ctc_negative_target_length": _ctc_case([[1, 2], [3, 4]], tl=[-1, 2],
                                            message=r"`target_lengths` must lie.*got -1"),
    "ctc_input_length_too_large": _ctc_case([[1, 2], [3, 4]], il=[7, 6],
                                            message=r"ctc_loss: `input_lengths` must lie in "
                                            r"\[0, 6\].*got 7"),
    "ctc_negative_input_length": _ctc_case([[1, 2], [3, 4]], il=[-1, 6],
                                           message=r"`input_lengths` must lie.*got -1"),
    "cosface_index_too_large": Case(
        jaxloss.cosface, (_COS, _GOOD_T), (_COS, jnp.array([C, 1, 3])), _ROW0, _rows(_ROW0),
        r"cosface: `target` holds class index 4", _ROW0 == 0),
    "cosface_not_a_cosine": Case(
        jaxloss.cosface, (_COS, _GOOD_T), (_COS.at[0, 2].set(1.5), _GOOD_T), _ROW0,
        _rows(_ROW0), r"cosface: every element of `cosine` must be a cosine in \[-1, 1\].*"
        r"found 1\.5", _ROW0 == 0),
    "arcface_index_too_large": Case(
        jaxloss.arcface, (_COS, _GOOD_T), (_COS, jnp.array([C, 1, 3])), _ROW0, _rows(_ROW0),
        r"arcface: `target` holds class index 4"),
    "arcface_not_a_cosine": Case(
        jaxloss.arcface, (_COS, _GOOD_T), (_COS.at[0, 0].set(-2.0), _GOOD_T), _ROW0,
        _rows(_ROW0), r"arcface: every element of `cosine` must be a cosine"),
    "sphereface_index_too_large": Case(
        lambda c, t, **kw: jaxloss.sphereface(c, t, 16.0, **kw), (_COS, _GOOD_T),
        (_COS, jnp.array([-3, 1, 3])), _ROW0, _rows(_ROW0), r"sphereface: `target` holds class "
        r"index -3"),
    "combined_margin_not_a_cosine": Case(
        jaxloss.combined_margin, (_COS, _GOOD_T), (_COS.at[0, 1].set(3.0), _GOOD_T), _ROW0,
        _rows(_ROW0), r"combined_margin: every element of `cosine`"),
    "large_margin_softmax_index_too_large": Case(
        lambda x, w, t, **kw: jaxloss.large_margin_softmax(x, w, t, **kw),
        (_X, _W, _GOOD_T), (_X, _W, jnp.array([C, 1, 3])), _ROW0, _rows(_ROW0),
        r"large_margin_softmax: `target` holds class index 4", _ROW0 == 0),
    "softmax_focal_loss_index_too_large": Case(
        jaxloss.softmax_focal_loss, (_X, _GOOD_T), (_X, jnp.array([C, 1, 3])), _ROW0,
        _rows(_ROW0), r"softmax_focal_loss: `target` holds class index 4", _ROW0 == 0),
    "sigmoid_focal_loss_target_above_1": Case(
        jaxloss.sigmoid_focal_loss, (_X, _P), (_X, _P.at[0, 3].set(2.0)),
        np.arange(N * C).reshape(N, C) == 3, np.arange(N * C).reshape(N, C) == 3,
        r"sigmoid_focal_loss: every element of `targets` must lie in \[0, 1\]; found 2",
        np.arange(N * C).reshape(N, C) != 3),
    "amlfs_loss_index_too_large": Case(
        lambda c, t, **kw: jaxloss.amlfs_loss(c, t, _THETA, scale=8.0, **kw),
        (_COS, _GOOD_T), (_COS, jnp.array([C, 1, 3])), _ROW0, _rows(_ROW0),
        r"amlfs_loss: `target` holds class index 4", _ROW0 == 0),
    "amlfs_loss_not_a_cosine": Case(
        lambda c, t, **kw: jaxloss.amlfs_loss(c, t, _THETA, scale=8.0, **kw),
        (_COS, _GOOD_T), (_COS.at[0, 2].set(1.5), _GOOD_T), _ROW0, _rows(_ROW0),
        r"amlfs_loss: every element of `cosine` must be a cosine"),
}
_ALL = np.ones(N, bool)
_CASES["triplet_margin_loss_traced_margin"] = Case(
    lambda a, p, n, m, **kw: jaxloss.triplet_margin_loss(a, p, n, margin=m, **kw),
    (_X, _P, _COS, jnp.array(1.0)), (_X, _P, _COS, jnp.array(-1.0)), _ALL,
    np.ones((N, C), bool), r"triplet_margin_loss: `margin` must be greater than 0, got -1")
_CASES["triplet_margin_with_distance_loss_traced_margin"] = Case(
    lambda a, p, n, m, **kw: jaxloss.triplet_margin_with_distance_loss(
        a, p, n, distance_function=lambda x, y: jnp.sum((x - y) ** 2, -1), margin=m, **kw),
    (_X, _P, _COS, jnp.array(0.5)), (_X, _P, _COS, jnp.array(0.0)), _ALL,
    np.ones((N, C), bool), r"triplet_margin_with_distance_loss: `margin` must be greater than 0")
_CASES["generalized_cross_entropy_index_too_large"] = Case(
    jaxloss.generalized_cross_entropy, (_X, _GOOD_T), (_X, jnp.array([C, 1, 3])), _ROW0,
    _rows(_ROW0), r"generalized_cross_entropy: `target` holds class index 4", _ROW0 == 0)
_CASES["active_passive_loss_negative_index"] = Case(
    lambda x, t, **kw: jaxloss.active_passive_loss(x, t, "nfl", "rce", **kw), (_X, _GOOD_T),
    (_X, jnp.array([-2, 1, 3])), _ROW0, _rows(_ROW0),
    r"active_passive_loss: `target` holds class index -2", _ROW0 == 0)
_CASES["bi_tempered_logistic_loss_index_too_large"] = Case(
    lambda x, t, **kw: jaxloss.bi_tempered_logistic_loss(x, t, 0.8, 1.2, **kw), (_X, _GOOD_T),
    (_X, jnp.array([C, 1, 3])), _ROW0, _rows(_ROW0),
    r"bi_tempered_logistic_loss: `target` holds class index 4", _ROW0 == 0)
_CASES["generalized_cross_entropy_traced_q"] = Case(
    lambda x, t, q, **kw: jaxloss.generalized_cross_entropy(x, t, q, **kw),
    (_X, _GOOD_T, jnp.array(0.7)), (_X, _GOOD_T, jnp.array(1.5)), _ALL, np.ones((N, C), bool),
    r"generalized_cross_entropy: `q` must lie in \[0, 1\]; got 1.5")
_CASES["bi_tempered_logistic_loss_traced_t2"] = Case(
    lambda x, t, t2, **kw: jaxloss.bi_tempered_logistic_loss(x, t, 0.5, t2, **kw),
    (_X, _GOOD_T, jnp.array(1.5)), (_X, _GOOD_T, jnp.array(-1.0)), _ALL, np.ones((N, C), bool),
    r"bi_tempered_logistic_loss: `t2` must be finite and positive; got -1")
# Traced numeric options (issue 22): out of range or nan gives nan everywhere.
_ALL_IN = np.ones((N, C), bool)
_CASES["cross_entropy_traced_label_smoothing"] = Case(
    lambda x, t, e, **kw: jaxloss.cross_entropy(x, t, label_smoothing=e, **kw),
    (_X, _GOOD_T, jnp.array(0.1)), (_X, _GOOD_T, jnp.array(1.5)), _ALL, _ALL_IN,
    r"cross_entropy: `label_smoothing` must lie in \[0, 1\]; got 1.5")
_CASES["softmax_focal_loss_traced_gamma"] = Case(
    lambda x, t, g, **kw: jaxloss.softmax_focal_loss(x, t, gamma=g, **kw),
    (_X, _GOOD_T, jnp.array(2.0)), (_X, _GOOD_T, jnp.array(-1.0)), _ALL, _ALL_IN,
    r"softmax_focal_loss: `gamma` must be non-negative; got -1")
_CASES["sigmoid_focal_loss_traced_alpha"] = Case(
    lambda x, t, a, **kw: jaxloss.sigmoid_focal_loss(x, t, alpha=a, **kw),
    (_X, _P, jnp.array(0.25)), (_X, _P, jnp.array(jnp.nan)), _ALL_IN, _ALL_IN,
    r"sigmoid_focal_loss: `alpha` must not be nan")
_CASES["multi_margin_loss_traced_margin"] = Case(
    lambda x, t, m, **kw: jaxloss.multi_margin_loss(x, t, margin=m, **kw),
    (_X, _GOOD_T, jnp.array(1.0)), (_X, _GOOD_T, jnp.array(jnp.nan)), _ALL, _ALL_IN,
    r"multi_margin_loss: `margin` must not be nan")
_CASES["arcface_traced_margin"] = Case(
    lambda c, t, m, **kw: jaxloss.arcface(c, t, scale=8.0, m=m, **kw),
    (_COS, _GOOD_T, jnp.array(0.5)), (_COS, _GOOD_T, jnp.array(4.0)), _ALL, _ALL_IN,
    r"arcface: `m` must lie in \[0, pi\) radians; got 4")
_CASES["sphereface_traced_lambda"] = Case(
    lambda c, t, lam, **kw: jaxloss.sphereface(c, t, scale=8.0, lambda_=lam, **kw),
    (_COS, _GOOD_T, jnp.array(5.0)), (_COS, _GOOD_T, jnp.array(-1.0)), _ALL, _ALL_IN,
    r"sphereface: `lambda_` must be non-negative; got -1")
# A class-shaped `where` (optax's) that masks out a sample's target class.
_CLASS_MASK = jnp.ones((N, C), bool).at[0, 2].set(False)
_CASES["cross_entropy_target_class_masked_by_where"] = Case(
    lambda x, t, **kw: jaxloss.cross_entropy(x, t, where=_CLASS_MASK, **kw),
    (_X, _GOOD_T), (_X, jnp.array([2, 1, 3])), _ROW0, _rows(_ROW0),
    r"cross_entropy: `target` holds class 2, which `where` masks out of the softmax")
_CASES["ctc_concatenated_length_mismatch"] = Case(
    lambda lp, t, il, tl, **kw: jaxloss.ctc_loss(lp, t, il, tl, **kw),
    _ctc([1, 2, 3, 4]), _ctc([1, 2, 3, 4], tl=[2, 1]), np.array([True, True]),
    np.ones(_LP.shape, bool), r"ctc_loss: concatenated `targets` must have length "
    r"sum\(target_lengths\) = 3, got 4")
_BOXES = jnp.concatenate([_P[:, :2], _P[:, :2] + 0.5 + _P[:, 2:]], axis=1)  # (N, 4) valid
_BOXES2 = _BOXES[jnp.array([1, 2, 0])] + 0.1
for _name in ("generalized_box_iou_loss", "distance_box_iou_loss", "complete_box_iou_loss"):
  _CASES[f"{_name}_nan_coordinate"] = Case(
      getattr(jaxloss, _name), (_BOXES, _BOXES2), (_BOXES.at[0, 2].set(jnp.nan), _BOXES2),
      _ROW0, _rows(_ROW0), rf"{_name}: every box coordinate must be finite; box pair 0",
      _ROW0 == 0)

# Segmentation (smp's layout): logits (2, 3 classes, 4 pixels), labels (2, 4); pixel (0, 1)
# holds class 3 of 3.
_SEG_X = jax.random.normal(jax.random.key(2), (2, 3, 4))
_SEG_T = jnp.array([[0, 1, 2, 1], [2, 0, 0, 1]])
_SEG_BAD_T = _SEG_T.at[0, 1].set(3)
_SEG_BAD_IN = np.ones((2, 3, 4), bool)  # every class count is global: every gradient is nan
_SEG_MASK = np.ones((2, 4), bool)
_SEG_MASK[0, 1] = False
_CASES["soft_dice_loss_index_too_large"] = Case(
    lambda x, t, **kw: jaxloss.soft_dice_loss(x, t, "multiclass", **kw), (_SEG_X, _SEG_T),
    (_SEG_X, _SEG_BAD_T), np.ones(3, bool), _SEG_BAD_IN,
    r"soft_dice_loss: `y_true` holds class index 3", _SEG_MASK)
_CASES["lovasz_softmax_loss_index_too_large"] = Case(  # a scalar under every reduction
    lambda x, t, reduction, **kw: jaxloss.lovasz_softmax_loss(x, t, **kw), (_SEG_X, _SEG_T),
    (_SEG_X, _SEG_BAD_T), np.array(True), _SEG_BAD_IN,
    r"lovasz_softmax_loss: `y_true` holds class index 3", _SEG_MASK)


def _loss(case: Case, reduction: str, where=None):
  kw = {"reduction": reduction}
  if where is not None:
    kw["where"] = where

  def f(x, *rest):
    return case.fn(x, *rest, **kw)
  return f


@functools.cache
def _compiled(name: str):
  """The case's programs, compiled once for its valid and its invalid input (same shapes).

  ``evaluate``: the 'none' and 'mean' values and their gradients w.r.t. args[0];
  ``checked``: the 'mean' loss under checkify.
  """
  case = _CASES[name]
  none, mean = _loss(case, "none"), _loss(case, "mean")

  def evaluate(*a):
    out, vjp = jax.vjp(lambda x: none(x, *a[1:]), a[0])
    (g_none,) = vjp(jnp.ones_like(out))
    m, g_mean = jax.value_and_grad(lambda x: mean(x, *a[1:]))(a[0])
    return out, g_none, m, g_mean
  return jax.jit(evaluate), jax.jit(checkify.checkify(mean))


class NanContractTest(parameterized.TestCase):

  @parameterized.named_parameters(*((k, k) for k in _CASES))
  def test_invalid_input_is_nan_and_reported(self, name: str):
    case = _CASES[name]
    evaluate, checked = _compiled(name)
    out, g_none, mean, g_mean = map(np.asarray, evaluate(*case.invalid))
    # Value: nan at the offending entries only; every reduction nan.
    np.testing.assert_array_equal(np.isnan(out), case.bad_out)
    self.assertTrue(np.isnan(mean))
    # Gradient: nan at the offending inputs; the other samples' are untouched ('none').
    np.testing.assert_array_equal(np.isnan(g_none), case.bad_in)
    self.assertTrue(np.all(np.isnan(g_mean[case.bad_in])))
    # checkify names the function and the argument.
    err, _ = checked(*case.invalid)
    self.assertIsNotNone(err.get())
    self.assertRegex(err.get(), case.message)

  @parameterized.named_parameters(*((k, k) for k in _CASES))
  def test_valid_input_is_finite_and_not_reported(self, name: str):
    case = _CASES[name]
    evaluate, checked = _compiled(name)
    err, value = checked(*case.valid)
    self.assertIsNone(err.get())
    self.assertTrue(np.isfinite(value))
    out, g_none, mean, g_mean = map(np.asarray, evaluate(*case.valid))
    self.assertTrue(np.all(np.isfinite(out)) and np.isfinite(mean))
    self.assertTrue(np.all(np.isfinite(g_none)) and np.all(np.isfinite(g_mean)))
    np.testing.assert_allclose(mean, value, rtol=1e-6)

  @parameterized.named_parameters(*((k, c) for k, c in _CASES.items() if c.mask is not None))
  def test_masked_invalid_sample_is_neither_reported_nor_poisoned(self, case: Case):
    f = _loss(case, "mean", where=jnp.asarray(case.mask))
    err, value = jax.jit(checkify.checkify(f))(*case.invalid)
    self.assertIsNone(err.get())
    grad = jax.jit(jax.grad(f))(*case.invalid)
    self.assertTrue(np.isfinite(value))
    self.assertTrue(np.all(np.isfinite(np.asarray(grad))))

  def test_vmap_and_checkify_together(self):
    # A population axis: only the copy with the invalid target is nan.
    t = jnp.stack([_GOOD_T, jnp.array([C, 1, 3])])
    out = jax.jit(jax.vmap(jaxloss.cross_entropy, (None, 0)))(_X, t)
    np.testing.assert_array_equal(np.isnan(np.asarray(out)), [False, True])

  def test_bfloat16_is_nan_too(self):
    x = _X.astype(jnp.bfloat16)
    out = jaxloss.cross_entropy(x, jnp.array([C, 1, 3]), reduction="none")
    self.assertEqual(out.dtype, jnp.bfloat16)
    np.testing.assert_array_equal(np.isnan(np.asarray(out, np.float32)), _ROW0)

  def test_zero_infinity_keeps_the_nan(self):
    lp, t, il, tl = _ctc([[1, 2], [3, 4]], il=[7, 6])
    out = jaxloss.ctc_loss(lp, t, il, tl, reduction="none", zero_infinity=True)
    np.testing.assert_array_equal(np.isnan(np.asarray(out)), _CTC0)


class ChecksWithoutEffectsTest(parameterized.TestCase):
  """The checks cost a jitted caller nothing: no effect, so jax.jit keeps its fast path.

  And checkify still reports them through every transformation a training step uses.
  """

  _BAD_T = jnp.array([C, 1, 3])

  def test_a_checked_loss_has_no_effects(self):
    for case in _CASES.values():
      jaxpr = jax.make_jaxpr(_loss(case, "mean"))(*case.invalid)
      self.assertEqual(jaxpr.effects, set(), msg=str(case.fn))

  def test_the_check_is_in_the_jaxpr_and_compiles_to_nothing(self):
    f = lambda x, t: jaxloss.cross_entropy(x, t)
    self.assertIn("jaxloss_value_check", str(jax.make_jaxpr(f)(_X, self._BAD_T)))
    self.assertNotIn("jaxloss_value_check", jax.jit(f).lower(_X, self._BAD_T).as_text())

  @parameterized.named_parameters(
      ("jit", lambda f: jax.jit(f)),
      ("grad", lambda f: jax.grad(f)),
      ("value_and_grad_jit", lambda f: jax.jit(jax.value_and_grad(f))),
      # A population axis over the targets: one copy's target is invalid.
      ("vmap", lambda f: (lambda x, t: jax.vmap(f, in_axes=(None, 0))(
          x, jnp.stack([_GOOD_T, t])))),
      ("vmap_grad", lambda f: (lambda x, t: jax.vmap(jax.grad(f), in_axes=(None, 0))(
          x, jnp.stack([_GOOD_T, t])))),
      ("cond", lambda f: (lambda x, t: jax.lax.cond(True, f, lambda x, t: 0.0, x, t))),
      ("scan", lambda f: (lambda x, t: jax.lax.scan(lambda c, _: (c + f(x, t), None), 0.0,
                                                    None, length=2)[0])),
      ("remat_grad", lambda f: jax.grad(jax.checkpoint(f))),
      ("fori_loop", lambda f: (lambda x, t: jax.lax.fori_loop(0, 2, lambda i, c: c + f(x, t),
                                                              0.0))),
  )
  def test_checkify_reports_through(self, transform):
    g = transform(lambda x, t: jaxloss.cross_entropy(x, t))
    checked = jax.jit(checkify.checkify(g))
    err, _ = checked(_X, self._BAD_T)
    self.assertRegex(err.get() or "", r"cross_entropy: `target` holds class index 4")
    err, _ = checked(_X, _GOOD_T)
    self.assertIsNone(err.get())

  def test_effectful_fallback_still_reports(self):
    # JAXLOSS_EFFECTFUL_CHECKS=1: checkify.debug_check itself (an effect, slow dispatch).
    import subprocess  # pylint: disable=import-outside-toplevel
    import sys  # pylint: disable=import-outside-toplevel
    code = ("import jax, jax.numpy as jnp, jaxloss\n"
            "from jax.experimental import checkify\n"
            "f = lambda x, t: jaxloss.cross_entropy(x, t)\n"
            "x, t = jnp.zeros((3, 4)), jnp.array([4, 1, 3])\n"
            "print(len(jax.make_jaxpr(f)(x, t).effects))\n"
            "print(jax.jit(checkify.checkify(f))(x, t)[0].get())\n")
    env = dict(os.environ, JAXLOSS_EFFECTFUL_CHECKS="1", JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout.splitlines()
    self.assertEqual(out[0], "1")
    self.assertIn("cross_entropy: `target` holds class index 4", out[1])


# ----------------------------------------------------------------------------
# Masked and ignored rows never reach a shared weight's gradient
# ----------------------------------------------------------------------------

D = 3
_FEATURES = jax.random.normal(jax.random.key(2), (N + 1, D))
_WEIGHT = jax.random.normal(jax.random.key(3), (C, D))
_TARGET = jnp.array([0, 2, 1, -100])          # row 3 ignored
_WHERE = jnp.array([True, True, False, True])  # row 2 masked
_KEPT = np.array([0, 1])


def _through_cosine_logits(loss, norms=False):
  def f(x, w, t, where=None):
    if norms:
      cos, x_norm, _ = jaxloss.cosine_logits(x, w, return_norms=True)
      return loss(cos, t, x_norm, where)
    return loss(jaxloss.cosine_logits(x, w), t, None, where)
  return f


_SHARED = {
    "large_margin_softmax": lambda x, w, t, where=None: jaxloss.large_margin_softmax(
        x, w, t, m=3, where=where),
    "large_margin_softmax_dc_lambda": lambda x, w, t, where=None: jaxloss.large_margin_softmax(
        x, w.T, t, weight_layout="dc", lambda_=2.0, label_smoothing=0.1, where=where),
    "cosface": _through_cosine_logits(lambda c, t, _, where: jaxloss.cosface(
        c, t, 16.0, where=where)),
    "arcface": _through_cosine_logits(lambda c, t, _, where: jaxloss.arcface(
        c, t, 16.0, where=where)),
    "sphereface_feature_norm_scale": _through_cosine_logits(
        lambda c, t, xn, where: jaxloss.sphereface(c, t, xn, where=where), norms=True),
    "combined_margin": _through_cosine_logits(lambda c, t, _, where: jaxloss.combined_margin(
        c, t, 16.0, weight=jnp.arange(1.0, C + 1.0), where=where)),
    "amlfs_loss": _through_cosine_logits(lambda c, t, _, where: jaxloss.amlfs_loss(
        c, t, _THETA, scale=8.0, where=where)),
    "cross_entropy_of_cosines": _through_cosine_logits(lambda c, t, _, where: (
        jaxloss.cross_entropy(8.0 * c, t, where=where))),
    "softmax_focal_of_cosines": _through_cosine_logits(lambda c, t, _, where: (
        jaxloss.softmax_focal_loss(8.0 * c, t, where=where))),
}


class SharedWeightMaskTest(parameterized.TestCase):

  @parameterized.named_parameters(*_SHARED.items())
  def test_masked_and_ignored_rows_do_not_reach_the_weight(self, loss):
    grad = jax.jit(jax.value_and_grad(lambda x, w, t, m: loss(x, w, t, where=m), (0, 1)))
    # The same loss on the kept rows only: the gradient must be exactly this.
    ref_value, (ref_gx, ref_gw) = grad(_FEATURES[_KEPT], _WEIGHT, _TARGET[_KEPT],
                                       jnp.ones(len(_KEPT), bool))
    for poison in (jnp.nan, jnp.inf, -jnp.inf):
      x = _FEATURES.at[2].set(poison).at[3].set(poison)
      value, (gx, gw) = grad(x, _WEIGHT, _TARGET, _WHERE)
      np.testing.assert_allclose(value, ref_value, rtol=1e-6)
      np.testing.assert_allclose(gw, ref_gw, rtol=1e-5, atol=1e-7)
      np.testing.assert_allclose(gx[_KEPT], ref_gx, rtol=1e-5, atol=1e-7)
      np.testing.assert_array_equal(np.asarray(gx[2:]), 0.0)

  def test_cosine_logits_gradient_unchanged_for_finite_rows(self):
    def f(x, w):
      cos, xn, wn = jaxloss.cosine_logits(x, w, return_norms=True)
      return jnp.sum(jnp.sin(cos) * xn + wn)

    def plain(x, w):  # the same formula, plain autodiff
      xn = jnp.linalg.norm(x, axis=1, keepdims=True)
      wn = jnp.linalg.norm(w, axis=1, keepdims=True)
      cos = (x / xn) @ (w / wn).T
      return jnp.sum(jnp.sin(cos) * xn + wn.T)
    got = jax.grad(f, (0, 1))(_FEATURES, _WEIGHT)
    want = jax.grad(plain, (0, 1))(_FEATURES, _WEIGHT)
    for g, r in zip(got, want, strict=True):
      np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-6)


if __name__ == "__main__":
  absltest.main()
