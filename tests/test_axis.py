"""Issue 22: the keyword ``axis`` (JAX's layout), ``where`` of the logits' shape and traced
options.

* ``axis`` on moved inputs equals torch on torch's layout (values and VJPs, float32 and
  float64) for the torch losses, and jaxloss's own default-axis call for the others.
* A target-shape error says when another ``axis`` would fit.
* ``where`` of the logits' shape removes classes from the softmax (optax's ``where``).
* Numeric options traced under ``jax.vmap`` give each copy the static call's value, and a
  Python-float option does not recompile per value.
"""

from __future__ import annotations

import types

import chex
import jax
import jax.numpy as jnp
import numpy as np
import torch
import torch.nn.functional as F
from absl.testing import absltest, parameterized

import jaxloss
from jaxloss import classification
from tests.parity import ParityTestCase, rand

_RNG = np.random.default_rng(22)


def _classes(shape, num_classes, ignore=False):
  t = _RNG.integers(0, num_classes, size=shape)
  if ignore:
    t.flat[0] = -100
  return t


# (name, jax loss with axis, torch loss on torch's layout, args builder, kwargs, grad_argnums).
# Each builder returns the arguments in the moved (jax) layout; the torch wrapper moves
# them back.
def _ce_last(dtype):
  return [rand(_RNG, (2, 3, 5), dtype), _classes((2, 3), 5, ignore=True)]


def _ce_middle(dtype):  # (N, d1, C, d2), axis=2
  return [rand(_RNG, (2, 3, 4, 2), dtype), _classes((2, 3, 2), 4)]


def _ce_probs(dtype):
  return [rand(_RNG, (2, 3, 4), dtype), _RNG.dirichlet(np.ones(4), size=(2, 3)).astype(dtype)]


def _cn(axis):
  return lambda x: torch.movedim(x, axis, 1)


_TORCH_CASES = (
    ("cross_entropy_last_weight_smoothing",
     lambda x, t, w, **kw: jaxloss.cross_entropy(x, t, w, axis=-1, **kw),
     lambda x, t, w, **kw: F.cross_entropy(_cn(-1)(x), t, w, **kw),
     lambda d: _ce_last(d) + [rand(_RNG, (5,), d, 0.5, 2.0)],
     dict(label_smoothing=0.2), (0,)),  # torch refuses weight's gradient
    ("cross_entropy_middle_axis_none",
     lambda x, t, **kw: jaxloss.cross_entropy(x, t, axis=2, **kw),
     lambda x, t, **kw: F.cross_entropy(_cn(2)(x), t, **kw),
     _ce_middle, dict(reduction="none"), (0,)),
    ("cross_entropy_probabilities_last",
     lambda x, q, **kw: jaxloss.cross_entropy(x, q, axis=-1, **kw),
     lambda x, q, **kw: F.cross_entropy(_cn(-1)(x), _cn(-1)(q), **kw),
     _ce_probs, dict(label_smoothing=0.1, reduction="sum"), (0, 1)),
    ("nll_loss_last",
     lambda x, t, **kw: jaxloss.nll_loss(x, t, axis=-1, **kw),
     lambda x, t, **kw: F.nll_loss(_cn(-1)(x), t, **kw),
     _ce_last, dict(), (0,)),
    ("multi_margin_loss_axis0",
     lambda x, t, w, **kw: jaxloss.multi_margin_loss(x, t, weight=w, axis=0, **kw),
     lambda x, t, w, **kw: F.multi_margin_loss(x.T, t, weight=w, **kw),
     lambda d: [rand(_RNG, (5, 4), d), _classes((4,), 5), rand(_RNG, (5,), d, 0.5, 2.0)],
     dict(p=2, margin=0.7, reduction="none"), (0,)),
    ("multilabel_margin_loss_axis0",
     lambda x, t, **kw: jaxloss.multilabel_margin_loss(x, t, axis=0, **kw),
     lambda x, t, **kw: F.multilabel_margin_loss(x.T, t.T, **kw),
     lambda d: [rand(_RNG, (5, 3), d), np.array([[3, 1, -1], [0, 4, 2], [-1, -1, 0],
                                                 [1, 0, 1], [2, 0, 3]])],
     dict(), (0,)),
    ("multilabel_soft_margin_loss_axis1",
     lambda x, t, w, **kw: jaxloss.multilabel_soft_margin_loss(x, t, w, axis=1, **kw),
     lambda x, t, w, **kw: F.multilabel_soft_margin_loss(
         *(torch.movedim(a, 1, -1) for a in (x, t, w)), **kw),
     lambda d: [rand(_RNG, (2, 4, 3), d), _RNG.uniform(size=(2, 4, 3)).astype(d),
                rand(_RNG, (4,), d, 0.5, 2.0)[None, :, None].repeat(2, 0).repeat(3, 2)],
     dict(reduction="none"), (0, 1)),
)


class AxisTorchParityTest(ParityTestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(
      *((f"{c[0]}_{np.dtype(d).name}", c, d) for c in _TORCH_CASES
        for d in (np.float32, np.float64)))
  def test_axis_equals_torch_on_moved_inputs(self, case, dtype):
    _, jax_fn, torch_fn, build, kwargs, argnums = case
    self.assert_parity(jax_fn, torch_fn, build(dtype), kwargs, grad_argnums=argnums)


# Non-torch losses: axis on moved inputs against jaxloss's own default-axis call.
def _cos(shape):
  return np.tanh(_RNG.normal(size=shape))


_THETA = np.asarray(jaxloss.identity_theta(3)) + 0.05 * _RNG.normal(size=12)
_OWN_CASES = (
    ("softmax_focal_loss", jaxloss.softmax_focal_loss, (2, 5, 3), 1, -1,
     dict(gamma=1.5, alpha=np.linspace(0.5, 1.5, 5), reduction="none")),
    ("cosface", jaxloss.cosface, (4, 5), 1, 0, dict(scale=8.0, m=0.3, label_smoothing=0.1)),
    ("arcface", jaxloss.arcface, (4, 5), 1, 0, dict(scale=8.0, m=0.4, reduction="none")),
    ("sphereface", jaxloss.sphereface, (4, 5), 1, 0, dict(scale=8.0, m=3, lambda_=2.0)),
    ("combined_margin", jaxloss.combined_margin, (4, 5), 1, 0, dict(scale=8.0)),
    ("amlfs_loss", lambda c, t, **kw: jaxloss.amlfs_loss(c, t, _THETA, **kw), (4, 5), 1, 0,
     dict(scale=8.0)),
)


class AxisOwnLayoutTest(parameterized.TestCase):

  @parameterized.named_parameters(
      *((f"{c[0]}_{np.dtype(d).name}", c, d) for c in _OWN_CASES
        for d in (np.float32, np.float64)))
  def test_axis_equals_default_axis_on_moved_inputs(self, case, dtype):
    _, fn, shape, cax, axis, kwargs = case
    x = _cos(shape).astype(dtype)
    t = _classes(shape[:cax] + shape[cax + 1:], shape[cax])
    moved = np.moveaxis(x, cax, axis)
    ref, ref_grad = jax.value_and_grad(lambda a: jnp.sum(fn(a, t, **kwargs)))(x)
    out, grad = jax.jit(jax.value_and_grad(lambda a: jnp.sum(fn(a, t, axis=axis, **kwargs))))(
        moved)
    tol = 1e-6 if dtype == np.float32 else 1e-12
    chex.assert_trees_all_close(out, ref, rtol=tol, atol=tol)
    chex.assert_trees_all_close(grad, np.moveaxis(np.asarray(ref_grad), cax, axis), rtol=tol,
                                atol=tol)

  def test_nn_wrappers_take_axis(self):
    x, t = rand(_RNG, (2, 5, 3), np.float32), _classes((2, 3), 5)   # torch's (N, C, d)
    moved = np.moveaxis(x, 1, -1)
    chex.assert_trees_all_close(jaxloss.nn.CrossEntropyLoss(label_smoothing=0.1, axis=-1)(
        moved, t), jaxloss.cross_entropy(x, t, label_smoothing=0.1), rtol=1e-6)
    chex.assert_trees_all_close(jaxloss.nn.SoftmaxFocalLoss(axis=2)(moved, t),
                                jaxloss.softmax_focal_loss(x, t), rtol=1e-6)
    cos, y = _cos((4, 5)), _classes((4,), 5)
    chex.assert_trees_all_close(jaxloss.nn.ArcFaceLoss(scale=8.0, axis=0)(cos.T, y),
                                jaxloss.arcface(cos, y, scale=8.0), rtol=1e-6)
    self.assertNotIn("axis", repr(jaxloss.nn.CrossEntropyLoss()))  # torch's repr by default

  def test_axis_errors_name_axis(self):
    x, t = jnp.zeros((2, 3)), jnp.zeros(2, jnp.int32)
    for bad in (2, -3):
      with self.assertRaisesRegex(ValueError, rf"cross_entropy: `axis`={bad} is out of range "
                                  r"for `input` of shape \(2, 3\)"):
        jaxloss.cross_entropy(x, t, axis=bad)
    for bad in (1.0, True, jnp.array(1)):
      with self.assertRaisesRegex(ValueError, "nll_loss: `axis` must be a static Python int"):
        jaxloss.nll_loss(x, t, axis=bad)


class LayoutHintTest(parameterized.TestCase):

  @parameterized.named_parameters(
      ("cross_entropy", jaxloss.cross_entropy),
      ("nll_loss", jaxloss.nll_loss),
      ("softmax_focal_loss", jaxloss.softmax_focal_loss),
  )
  def test_flax_layout_error_suggests_axis_minus_one(self, fn):
    logits, labels = jnp.zeros((2, 5, 7)), jnp.zeros((2, 5), jnp.int32)
    with self.assertRaisesRegex(
        ValueError, rf"{fn.__name__}: `target` must have shape \(2, 7\).*got \(2, 5\) \(the "
        r"class axis is 1, torch's layout; for class-last logits pass axis=-1\)\."):
      fn(logits, labels)
    self.assertTrue(np.isfinite(fn(logits, labels, axis=-1)))

  def test_wrong_explicit_axis_suggests_the_fitting_one(self):
    with self.assertRaisesRegex(ValueError, r"\(the class axis is 2, from axis=2; for "
                                r"classes on axis 1 pass axis=1\)"):
      jaxloss.cross_entropy(jnp.zeros((2, 7, 5)), jnp.zeros((2, 5), jnp.int32), axis=2)

  def test_no_hint_when_no_axis_fits(self):
    with self.assertRaises(ValueError) as ctx:
      jaxloss.cross_entropy(jnp.zeros((2, 5, 7)), jnp.zeros((3, 5), jnp.int32))
    self.assertNotIn("axis=", str(ctx.exception))


class ClassShapedWhereTest(parameterized.TestCase):
  """``where`` of the logits' shape: as if the masked classes were not there."""

  def setUp(self):
    super().setUp()
    self.x = jnp.asarray(_RNG.normal(size=(3, 4, 6)))            # (N, T, C), axis=-1
    self.keep = jnp.ones((3, 4, 6), bool).at[..., 2].set(False).at[0, 0, 4].set(False)
    self.y = jnp.asarray(_RNG.choice([0, 1, 3, 5], size=(3, 4)))  # never a masked class

  def _reference(self, loss_of_row, x):
    """Per sample: the loss on the kept classes only (a Python loop over the samples)."""
    out = []
    for n in range(3):
      row = []
      for s in range(4):
        kept = np.flatnonzero(np.asarray(self.keep[n, s]))
        row.append(loss_of_row(x[n, s, kept], kept, n, s))
      out.append(jnp.stack(row))
    return jnp.stack(out)

  @parameterized.parameters(0.0, 0.3)
  def test_index_targets(self, eps):
    w = jnp.linspace(0.5, 2.0, 6)

    def row(z, kept, n, s):
      y = int(np.flatnonzero(kept == int(self.y[n, s]))[0])
      return jaxloss.cross_entropy(z, jnp.asarray(y), w[kept], label_smoothing=eps,
                                   reduction="sum")
    f = lambda x: jaxloss.cross_entropy(x, self.y, w, label_smoothing=eps, axis=-1,
                                        where=self.keep, reduction="none")
    chex.assert_trees_all_close(f(self.x), self._reference(row, self.x), rtol=1e-12)
    g = jax.grad(lambda x: jnp.sum(f(x)))(self.x)
    g_ref = jax.grad(lambda x: jnp.sum(self._reference(row, x)))(self.x)
    chex.assert_trees_all_close(g, g_ref, rtol=1e-12, atol=1e-15)
    self.assertTrue(np.all(np.asarray(g)[~np.asarray(self.keep)] == 0))

  def test_probability_targets(self):
    q = jnp.asarray(_RNG.dirichlet(np.ones(6), size=(3, 4)))

    def row(z, kept, n, s):
      return jaxloss.cross_entropy(z, q[n, s, kept], label_smoothing=0.2, reduction="sum")
    out = jaxloss.cross_entropy(self.x, q, label_smoothing=0.2, axis=-1, where=self.keep,
                                reduction="none")
    chex.assert_trees_all_close(out, self._reference(row, self.x), rtol=1e-12)

  def test_masked_classes_get_zero_gradients_even_if_infinite(self):
    x = self.x.at[..., 2].set(jnp.inf)
    loss, g = jax.value_and_grad(
        lambda x: jaxloss.cross_entropy(x, self.y, axis=-1, where=self.keep))(x)
    self.assertTrue(np.isfinite(loss))
    self.assertTrue(np.all(np.isfinite(np.asarray(g))))
    self.assertTrue(np.all(np.asarray(g)[..., 2] == 0))

  def test_sample_without_kept_classes_is_masked_out(self):
    keep = self.keep.at[1, 2].set(False)
    mean = jaxloss.cross_entropy(self.x, self.y, axis=-1, where=keep)
    none = jaxloss.cross_entropy(self.x, self.y, axis=-1, where=keep, reduction="none")
    self.assertEqual(float(none[1, 2]), 0.0)
    chex.assert_trees_all_close(mean, jnp.sum(none) / 11, rtol=1e-12)

  def test_matches_optax_where(self):
    import optax  # noqa: PLC0415
    out = jaxloss.cross_entropy(self.x, self.y, axis=-1, where=self.keep, reduction="none")
    ref = optax.losses.softmax_cross_entropy_with_integer_labels(self.x, self.y,
                                                                 where=self.keep)
    chex.assert_trees_all_close(out, ref, rtol=1e-12)
    per_sample = self.keep[..., 0]
    chex.assert_trees_all_close(
        jaxloss.cross_entropy(self.x, self.y, axis=-1, where=per_sample, reduction="none"),
        jnp.where(per_sample, optax.losses.softmax_cross_entropy_with_integer_labels(
            self.x, self.y), 0.0), rtol=1e-12)


_DATA = dict(x=jnp.asarray(_RNG.normal(size=(4, 5))),
             cos=jnp.asarray(np.tanh(_RNG.normal(size=(4, 5)))),
             y=jnp.asarray(_classes((4,), 5)),
             feats=jnp.asarray(_RNG.normal(size=(4, 3))),
             wmat=jnp.asarray(_RNG.normal(size=(5, 3))))


def _data(x=None):
  """The inputs, with the differentiated ``x`` (logits, or features) replaced if given."""
  data = dict(_DATA)
  if x is not None:
    data["x"] = x
    data["feats"] = x[:, :3]
  return types.SimpleNamespace(**data)


class TracedOptionTest(parameterized.TestCase):
  """A population of option values under vmap: each copy is the static call's value."""

  x = _DATA["x"]
  cos = _DATA["cos"]
  y = _DATA["y"]

  @parameterized.named_parameters(
      ("cross_entropy_label_smoothing",
       lambda s, v: jaxloss.cross_entropy(s.x, s.y, label_smoothing=v), (0.0, 0.1, 0.7)),
      ("cross_entropy_class_last_label_smoothing",
       lambda s, v: jaxloss.cross_entropy(s.x.T[None], s.y[None], label_smoothing=v, axis=1,
                                          reduction="none"), (0.0, 0.3)),
      ("softmax_focal_gamma",
       lambda s, v: jaxloss.softmax_focal_loss(s.x, s.y, gamma=v), (0.0, 0.5, 2.0)),
      ("sigmoid_focal_gamma",
       lambda s, v: jaxloss.sigmoid_focal_loss(s.x, jax.nn.sigmoid(s.cos), gamma=v),
       (0.0, 1.0, 3.0)),
      ("sigmoid_focal_alpha",
       lambda s, v: jaxloss.sigmoid_focal_loss(s.x, jax.nn.sigmoid(s.cos), alpha=v),
       (-1.0, 0.25, 0.9)),
      ("cosface_m", lambda s, v: jaxloss.cosface(s.cos, s.y, scale=8.0, m=v), (0.0, 0.35)),
      ("cosface_label_smoothing",
       lambda s, v: jaxloss.cosface(s.cos, s.y, scale=8.0, label_smoothing=v), (0.0, 0.2)),
      ("arcface_m", lambda s, v: jaxloss.arcface(s.cos, s.y, scale=8.0, m=v), (0.0, 0.5, 3.0)),
      ("sphereface_lambda",
       lambda s, v: jaxloss.sphereface(s.cos, s.y, scale=8.0, lambda_=v), (0.0, 5.0)),
      ("combined_margin_m3",
       lambda s, v: jaxloss.combined_margin(s.cos, s.y, scale=8.0, m3=v), (0.0, 0.2)),
      ("large_margin_softmax_label_smoothing",
       lambda s, v: jaxloss.large_margin_softmax(s.feats, s.wmat, s.y, label_smoothing=v),
       (0.0, 0.3)),
      ("large_margin_softmax_lambda",
       lambda s, v: jaxloss.large_margin_softmax(s.feats, s.wmat, s.y, lambda_=v), (0.0, 3.0)),
      ("multi_margin_margin",
       lambda s, v: jaxloss.multi_margin_loss(s.x, s.y, margin=v), (-0.5, 0.0, 1.0, 2.0)),
  )
  def test_vmap_over_the_option_equals_static_calls(self, loss, values):
    population = jax.jit(jax.vmap(lambda v: loss(_data(), v)))(jnp.asarray(values))
    for i, v in enumerate(values):
      chex.assert_trees_all_close(population[i], loss(_data(), v), rtol=1e-12, atol=1e-14)
    # The gradient through a traced option is the static one, too.
    grad = jax.grad(lambda x, v: jnp.sum(loss(_data(x), v)))
    g = jax.vmap(grad, (None, 0))(self.x, jnp.asarray(values))
    for i, v in enumerate(values):
      chex.assert_trees_all_close(g[i], grad(self.x, v), rtol=1e-10, atol=1e-12)

  def test_python_floats_share_one_compilation(self):
    x, y = jnp.zeros((3, 4)), jnp.array([0, 1, 2])
    jaxloss.cross_entropy(x, y, label_smoothing=0.05)
    before = classification._index_cross_entropy._cache_size()
    for eps in (0.1, 0.2, 0.3):
      jaxloss.cross_entropy(x, y, label_smoothing=eps)
    self.assertEqual(classification._index_cross_entropy._cache_size(), before)

  @parameterized.named_parameters(
      ("multi_margin_loss_margin", lambda: jaxloss.multi_margin_loss(
          jnp.zeros((2, 3)), jnp.array([0, 1]), margin=float("nan")), "`margin` must be"),
      ("sigmoid_focal_loss_alpha", lambda: jaxloss.sigmoid_focal_loss(
          jnp.zeros(3), jnp.ones(3), alpha=float("nan")), "`alpha` must be"),
      ("softmax_focal_loss_gamma", lambda: jaxloss.softmax_focal_loss(
          jnp.zeros((2, 3)), jnp.array([0, 1]), gamma=float("nan")), "`gamma` must be"),
      ("cross_entropy_label_smoothing", lambda: jaxloss.cross_entropy(
          jnp.zeros((2, 3)), jnp.array([0, 1]), label_smoothing=float("nan")),
       "`label_smoothing` must lie"),
  )
  def test_python_nan_option_raises(self, call, message):
    with self.assertRaisesRegex(ValueError, message):
      call()

  def test_traced_nan_option_gives_nan(self):
    nan = jnp.asarray(jnp.nan)
    self.assertTrue(np.isnan(jax.jit(lambda m: jaxloss.multi_margin_loss(self.x, self.y,
                                                                         margin=m))(nan)))
    self.assertTrue(np.isnan(jax.jit(lambda a: jaxloss.sigmoid_focal_loss(
        self.x, jax.nn.sigmoid(self.cos), alpha=a, reduction="sum"))(nan)))


if __name__ == "__main__":
  absltest.main()
