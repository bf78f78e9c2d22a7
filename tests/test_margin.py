"""Parity of jaxloss.margin against torch.nn.functional, plus masks, checks and errors."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import torch
import torch.nn.functional as F
from absl.testing import absltest, parameterized
from jax.experimental import checkify

import jaxloss
from tests.parity import ParityTestCase, rand, reduction_cases


def _signs(rng, shape, dtype, zeros=False):
  values = (-1, 0, 1) if zeros else (-1, 1)
  return rng.choice(values, size=shape).astype(dtype)


def _with_weight(fn):
  """Passes the array after ``target`` as ``weight=`` (the harness converts positionals)."""
  def call(input, target, weight, **kw):
    return fn(input, target, weight=weight, **kw)
  return call


# ----------------------------------------------------------------------------
# Parity sweeps
# ----------------------------------------------------------------------------

SOFT_MARGIN = (
    ("4x5", dict(shape=(4, 5), tshape=(4, 5))),
    ("3x4_bcast_int_target", dict(shape=(3, 4), tshape=(4,), int_target=True)),
)

MARGIN_RANKING = (
    ("3x4_m0.5", dict(shapes=((3, 4), (3, 4), (3, 4)), margin=0.5)),
    ("bcast_m-0.3", dict(shapes=((3, 1), (1, 4), (3, 4)), margin=-0.3)),
)

HINGE = (
    ("3x4_m0.5_zero_labels", dict(shape=(3, 4), tshape=(3, 4), margin=0.5, zeros=True)),
    ("3x4_bcast_int_m2", dict(shape=(3, 4), tshape=(4,), margin=2.0, int_target=True)),
)

MULTILABEL_SOFT = (
    ("4x5_weight_c", dict(shape=(4, 5), wshape=(5,))),
    ("2x3x4_weight_full_soft", dict(shape=(2, 3, 4), wshape=(2, 3, 4), soft=True)),
    ("5_unbatched_int", dict(shape=(5,), int_target=True)),
)

MULTILABEL_MARGIN_TARGETS = {
    "4x5": np.array([[3, 0, -1, 1, 2], [1, 1, -1, -1, 0], [-1, 2, 3, 0, 0], [0, 1, 2, 3, 4]]),
    "5_unbatched": np.array([4, 2, -1, 0, 0]),
}

MULTI_MARGIN = (
    ("4x5_p1_m-0.2", dict(shape=(4, 5), tshape=(4,), p=1, margin=-0.2)),
    ("4x5_p2_m0.7_weight", dict(shape=(4, 5), tshape=(4,), p=2, margin=0.7, weight=True)),
    ("5_unbatched_scalar_target_p2_weight", dict(shape=(5,), tshape=(), p=2, margin=1.5,
                                                 weight=True)),
    ("5_unbatched_1d_target_p1", dict(shape=(5,), tshape=(1,), p=1, margin=2.0)),
)


class MarginParityTest(ParityTestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(*reduction_cases(SOFT_MARGIN))
  def test_soft_margin_loss(self, cfg, reduction, dtype):
    rng = np.random.default_rng(0)
    x = rand(rng, cfg["shape"], dtype, -3, 3)
    t = _signs(rng, cfg["tshape"], np.int64 if cfg.get("int_target") else dtype)
    # torch refuses to differentiate w.r.t. target; compare the input's gradient.
    self.assert_parity(jaxloss.soft_margin_loss, F.soft_margin_loss, [x, t],
                       dict(reduction=reduction))

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(*reduction_cases(MARGIN_RANKING))
  def test_margin_ranking_loss(self, cfg, reduction, dtype):
    rng = np.random.default_rng(1)
    s1, s2, st = cfg["shapes"]
    args = [rand(rng, s1, dtype), rand(rng, s2, dtype), _signs(rng, st, dtype)]
    self.assert_parity(jaxloss.margin_ranking_loss, F.margin_ranking_loss, args,
                       dict(margin=cfg["margin"], reduction=reduction),
                       grad_argnums=(0, 1, 2))

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(*reduction_cases(HINGE))
  def test_hinge_embedding_loss(self, cfg, reduction, dtype):
    rng = np.random.default_rng(2)
    x = rand(rng, cfg["shape"], dtype, -1, 3)
    t = _signs(rng, cfg["tshape"], np.int64 if cfg.get("int_target") else dtype,
               cfg.get("zeros", False))
    grads = (0,) if cfg.get("int_target") else (0, 1)  # the target's gradient is 0
    self.assert_parity(jaxloss.hinge_embedding_loss, F.hinge_embedding_loss, [x, t],
                       dict(margin=cfg["margin"], reduction=reduction), grad_argnums=grads)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(*reduction_cases(MULTILABEL_SOFT))
  def test_multilabel_soft_margin_loss(self, cfg, reduction, dtype):
    rng = np.random.default_rng(3)
    shape = cfg["shape"]
    x = rand(rng, shape, dtype, -3, 3)
    if cfg.get("soft"):
      t = rand(rng, shape, dtype, 0, 1)
    else:
      t = rng.integers(0, 2, size=shape).astype(np.int64 if cfg.get("int_target") else dtype)
    grads = (0,) if cfg.get("int_target") else (0, 1)
    kw = dict(reduction=reduction)
    if "wshape" not in cfg:
      self.assert_parity(jaxloss.multilabel_soft_margin_loss, F.multilabel_soft_margin_loss,
                         [x, t], kw, grad_argnums=grads)
      return
    w = rand(rng, cfg["wshape"], dtype, 0.1, 2)
    self.assert_parity(_with_weight(jaxloss.multilabel_soft_margin_loss),
                       _with_weight(F.multilabel_soft_margin_loss), [x, t, w], kw,
                       grad_argnums=grads + (2,))

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(
      *reduction_cases(tuple((k, k) for k in MULTILABEL_MARGIN_TARGETS)))
  def test_multilabel_margin_loss(self, cfg, reduction, dtype):
    rng = np.random.default_rng(4)
    t = MULTILABEL_MARGIN_TARGETS[cfg]
    x = rand(rng, t.shape, dtype)
    self.assert_parity(jaxloss.multilabel_margin_loss, F.multilabel_margin_loss, [x, t],
                       dict(reduction=reduction))

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(*reduction_cases(MULTI_MARGIN))
  def test_multi_margin_loss(self, cfg, reduction, dtype):
    rng = np.random.default_rng(5)
    shape = cfg["shape"]
    x = rand(rng, shape, dtype)
    t = rng.integers(0, shape[-1], size=cfg["tshape"]).astype(np.int64)
    kw = dict(p=cfg["p"], margin=cfg["margin"], reduction=reduction)
    if not cfg.get("weight"):
      self.assert_parity(jaxloss.multi_margin_loss, F.multi_margin_loss, [x, t], kw)
      return
    w = rand(rng, (shape[-1],), dtype, 0.1, 2)
    # torch refuses to differentiate w.r.t. weight; compare the input's gradient.
    self.assert_parity(_with_weight(jaxloss.multi_margin_loss),
                       _with_weight(F.multi_margin_loss), [x, t, w], kw)


class MarginKinkTest(ParityTestCase):
  """Subgradients at exact kinks and ties, where random inputs never land."""

  @chex.variants(with_jit=True, without_jit=True)
  def test_margin_ranking_gradient_passes_at_the_kink(self):
    x1 = np.array([1.0, 0.0, 2.0, 0.5])
    x2 = np.array([1.0, 1.0, 1.0, 0.0])
    y = np.array([1.0, -1.0, 1.0, 1.0])
    for margin in (0.0, 0.5, 1.0):
      self.assert_parity(jaxloss.margin_ranking_loss, F.margin_ranking_loss, [x1, x2, y],
                         dict(margin=margin, reduction="none"), grad_argnums=(0, 1, 2))

  @chex.variants(with_jit=True, without_jit=True)
  def test_hinge_embedding_gradient_passes_at_the_kink(self):
    x = np.array([1.0, 0.5, 1.0, 2.0, 1.0])
    y = np.array([-1.0, -1.0, 1.0, 0.0, 0.0])
    self.assert_parity(jaxloss.hinge_embedding_loss, F.hinge_embedding_loss, [x, y],
                       dict(reduction="none"), grad_argnums=(0, 1))

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(("p1", 1), ("p2", 2))
  def test_multi_margin_zero_gradient_at_z_equal_zero(self, p):
    x = np.array([[1.0, 0.0, 0.5, 1.0], [0.25, 0.25, -0.75, 0.0]])
    t = np.array([0, 1])
    self.assert_parity(jaxloss.multi_margin_loss, F.multi_margin_loss, [x, t],
                       dict(p=p, reduction="none"))

  @chex.variants(with_jit=True, without_jit=True)
  def test_multilabel_margin_zero_gradient_at_z_equal_zero(self):
    x = np.array([[1.0, 0.0, 0.5, 2.0], [0.5, -0.5, 0.5, 0.0]])
    t = np.array([[0, -1, 1, 1], [1, 0, -1, 2]])
    self.assert_parity(jaxloss.multilabel_margin_loss, F.multilabel_margin_loss, [x, t],
                       dict(reduction="none"))


# ----------------------------------------------------------------------------
# Behaviour beyond torch: where masks, vmap, precision, checks
# ----------------------------------------------------------------------------


def _per_sample_cases():
  """(name, fn, make(rng) -> (args, kwargs)) for the per-sample losses, batch of 6."""
  def mlsm(rng):
    return [rand(rng, (6, 4), np.float64), rng.integers(0, 2, (6, 4)).astype(np.float64)], \
        dict(weight=rand(rng, (4,), np.float64, 0.5, 2))
  def mlm(rng):
    return [rand(rng, (6, 4), np.float64),
            np.array([[0, 2, -1, 0], [1, -1, 0, 0], [3, 2, 1, -1], [0, 1, 2, 3], [2, -1, -1, -1],
                      [1, 3, -1, 2]])], {}
  def mm(rng):
    return [rand(rng, (6, 4), np.float64), rng.integers(0, 4, (6,))], \
        dict(p=2, margin=1.5, weight=rand(rng, (4,), np.float64, 0.5, 2))
  return (("multilabel_soft_margin", jaxloss.multilabel_soft_margin_loss, mlsm),
          ("multilabel_margin", jaxloss.multilabel_margin_loss, mlm),
          ("multi_margin", jaxloss.multi_margin_loss, mm))


def _elementwise_cases():
  """(name, fn, make(rng) -> (args, kwargs)) for the element-wise losses, shape (6, 3)."""
  def soft(rng):
    return [rand(rng, (6, 3), np.float64), _signs(rng, (6, 3), np.float64)], {}
  def ranking(rng):
    return [rand(rng, (6, 3), np.float64), rand(rng, (6, 3), np.float64),
            _signs(rng, (6, 3), np.float64)], dict(margin=0.5)
  def hinge(rng):
    return [rand(rng, (6, 3), np.float64, 0, 2), _signs(rng, (6, 3), np.float64)], \
        dict(margin=1.5)
  return (("soft_margin", jaxloss.soft_margin_loss, soft),
          ("margin_ranking", jaxloss.margin_ranking_loss, ranking),
          ("hinge_embedding", jaxloss.hinge_embedding_loss, hinge))


class MarginBehaviourTest(chex.TestCase):

  @parameterized.named_parameters(*_per_sample_cases())
  def test_where_mask_drops_samples(self, fn, make):
    args, kw = make(np.random.default_rng(6))
    keep = np.array([True, False, True, True, False, True])
    for reduction in ("mean", "sum"):
      masked = fn(*args, reduction=reduction, where=jnp.asarray(keep), **kw)
      subset = fn(*[a[keep] for a in args], reduction=reduction, **kw)
      chex.assert_trees_all_close(masked, subset, rtol=1e-12)
    none = fn(*args, reduction="none", where=jnp.asarray(keep), **kw)
    chex.assert_trees_all_close(none[~keep], 0.0)
    chex.assert_trees_all_close(none[keep], fn(*[a[keep] for a in args], reduction="none", **kw))
    # inf/nan in masked rows must not leak into the value or the gradient.
    x = np.array(args[0])
    x[~keep] = np.inf
    x[1, 0] = np.nan
    value, g = jax.value_and_grad(
        lambda a: fn(a, *args[1:], where=jnp.asarray(keep), **kw))(jnp.asarray(x))
    self.assertTrue(np.isfinite(value))
    g = np.asarray(g)
    self.assertTrue(np.all(g[~keep] == 0.0))
    self.assertTrue(np.all(np.isfinite(g)))
    self.assertTrue(np.any(g[keep] != 0.0))

  @parameterized.named_parameters(*_elementwise_cases())
  def test_where_mask_drops_elements(self, fn, make):
    args, kw = make(np.random.default_rng(7))
    keep = np.random.default_rng(8).random((6, 3)) < 0.6
    for reduction in ("mean", "sum"):
      masked = fn(*args, reduction=reduction, where=jnp.asarray(keep), **kw)
      subset = fn(*[a[keep] for a in args], reduction=reduction, **kw)
      chex.assert_trees_all_close(masked, subset, rtol=1e-12)
    chex.assert_trees_all_close(
        fn(*args, reduction="none", where=jnp.asarray(keep), **kw)[~keep], 0.0)
    x = np.array(args[0])
    x[~keep] = -np.inf
    grads = jax.grad(lambda *a: fn(*a, where=jnp.asarray(keep), **kw),
                     argnums=tuple(range(len(args))))(jnp.asarray(x), *args[1:])
    for g in grads:
      self.assertTrue(np.all(np.asarray(g)[~keep] == 0.0))
      self.assertTrue(np.all(np.isfinite(np.asarray(g))))

  def test_where_row_mask_broadcasts_for_elementwise_losses(self):
    rng = np.random.default_rng(9)
    x, t = rand(rng, (4, 3), np.float64), _signs(rng, (4, 3), np.float64)
    keep = np.array([True, False, False, True])
    chex.assert_trees_all_close(
        jaxloss.soft_margin_loss(x, t, where=jnp.asarray(keep)[:, None]),
        jaxloss.soft_margin_loss(x[keep], t[keep]))

  @parameterized.named_parameters(*(_per_sample_cases() + _elementwise_cases()))
  def test_vmap_matches_loop(self, fn, make):
    rng = np.random.default_rng(10)
    batches = [make(rng) for _ in range(3)]
    args = [np.stack([b[0][i] for b in batches]) for i in range(len(batches[0][0]))]
    kw = {k: v for k, v in batches[0][1].items() if k != "weight"}
    batched = jax.vmap(lambda *a: fn(*a, reduction="sum", **kw))(*args)
    looped = jnp.stack([fn(*[a[i] for a in args], reduction="sum", **kw) for i in range(3)])
    chex.assert_trees_all_close(batched, looped, rtol=1e-12)

  @parameterized.named_parameters(*(_per_sample_cases() + _elementwise_cases()))
  def test_half_precision_computes_in_float32(self, fn, make):
    args, kw = make(np.random.default_rng(11))
    half = [a.astype(jnp.bfloat16) if a.dtype == np.float64 else a for a in args]
    kw_half = {k: (v.astype(jnp.bfloat16) if isinstance(v, np.ndarray) else v)
               for k, v in kw.items()}
    out = fn(*half, **kw_half)
    self.assertEqual(out.dtype, jnp.bfloat16)
    # Same numbers as float32 on the bf16-rounded inputs, up to the final rounding.
    ref = fn(*[np.asarray(a, np.float32) if a.dtype == jnp.bfloat16 else a for a in half],
             **{k: (np.asarray(v, np.float32) if isinstance(v, np.ndarray) else v)
                for k, v in kw_half.items()})
    self.assertEqual(ref.dtype, jnp.float32)
    self.assertEqual(float(out), float(ref.astype(jnp.bfloat16)))
    g = jax.grad(lambda a: fn(a, *half[1:], **kw_half).astype(jnp.float32))(half[0])
    self.assertEqual(g.dtype, jnp.bfloat16)

  def test_soft_margin_is_stable_where_torch_overflows(self):
    x = np.array([-800.0, 800.0, -100.0])
    y = np.array([1.0, -1.0, 1.0])
    tout = F.soft_margin_loss(torch.tensor(x), torch.tensor(y), reduction="none")
    self.assertTrue(np.isinf(tout[0].item()))  # torch: log(1 + exp(800)) = inf
    out = jaxloss.soft_margin_loss(x, y, reduction="none")
    chex.assert_trees_all_close(out, np.array([800.0, 800.0, 100.0]))
    g = jax.grad(lambda a: jaxloss.soft_margin_loss(a, y, reduction="sum"))(jnp.asarray(x))
    chex.assert_trees_all_close(g, -y)
    # The finite float32 case agrees with torch's literal formula.
    x32 = np.array([-80.0, 30.0], np.float32)
    y32 = np.array([1.0, 1.0], np.float32)
    chex.assert_trees_all_close(
        jaxloss.soft_margin_loss(x32, y32, reduction="none"),
        F.soft_margin_loss(torch.tensor(x32), torch.tensor(y32), reduction="none").numpy(),
        rtol=1e-6)

  def test_gradients_torch_refuses_are_the_exact_ones(self):
    rng = np.random.default_rng(12)
    # soft_margin_loss w.r.t. target: d/dy log(1 + exp(-y x)) = -x sigmoid(-y x).
    x, y = rand(rng, (5,), np.float64), rand(rng, (5,), np.float64)
    g = jax.grad(lambda t: jaxloss.soft_margin_loss(x, t, reduction="sum"))(jnp.asarray(y))
    chex.assert_trees_all_close(g, -x / (1 + np.exp(x * y)), rtol=1e-12)
    # multi_margin_loss w.r.t. weight: the unweighted per-sample losses of each class, / N.
    x, t = rand(rng, (6, 3), np.float64), np.array([0, 1, 2, 0, 0, 2])
    w = np.array([0.5, 1.0, 2.0])
    g = jax.grad(lambda v: jaxloss.multi_margin_loss(x, t, weight=v))(jnp.asarray(w))
    per_sample = np.asarray(jaxloss.multi_margin_loss(x, t, reduction="none"))
    expected = np.array([per_sample[t == c].sum() for c in range(3)]) / 6
    chex.assert_trees_all_close(g, expected, rtol=1e-12)


  def test_empty_batch(self):
    # torch leaves an empty batch's output uninitialised; here the sum is 0, the
    # mean 0 / 0 = nan (a mean over no sample), and the checks do not trip.
    for fn, args in ((jaxloss.multi_margin_loss, (jnp.zeros((0, 3)), jnp.zeros(0, jnp.int32))),
                     (jaxloss.multilabel_margin_loss,
                      (jnp.zeros((0, 3)), jnp.zeros((0, 3), jnp.int32)))):
      self.assertEqual(float(fn(*args, reduction="sum")), 0.0)
      self.assertEqual(fn(*args, reduction="none").shape, (0,))
      self.assertTrue(np.isnan(float(fn(*args))))
      err, _ = checkify.checkify(fn)(*args)
      err.throw()


class MarginCheckifyTest(absltest.TestCase):

  def test_multi_margin_target_out_of_range_is_reported(self):
    x = jnp.zeros((3, 4))
    checked = jax.jit(checkify.checkify(jaxloss.multi_margin_loss))
    err, _ = checked(x, jnp.array([0, 3, 1]))
    err.throw()  # valid: no error
    for bad in (4, -1):
      err, _ = checked(x, jnp.array([0, bad, 1]))
      with self.assertRaisesRegex(checkify.JaxRuntimeError,
                                  rf"multi_margin_loss: `target` holds class index {bad} "):
        err.throw()

  def test_multilabel_margin_target_out_of_range_is_reported(self):
    x = jnp.zeros((2, 4))
    checked = jax.jit(checkify.checkify(jaxloss.multilabel_margin_loss))
    err, _ = checked(x, jnp.array([[0, 3, -1, 0], [-1, 0, 0, 0]]))
    err.throw()
    # torch checks the whole target, also the entries after the first -1.
    for bad in ([[0, -1, 4, 0], [0, 0, 0, 0]], [[0, -2, 1, 0], [0, 0, 0, 0]]):
      err, _ = checked(x, jnp.array(bad))
      with self.assertRaisesRegex(checkify.JaxRuntimeError,
                                  r"multilabel_margin_loss: `target` holds -?\d, outside"):
        err.throw()
      with self.assertRaises(RuntimeError):  # torch agrees that these are errors
        F.multilabel_margin_loss(torch.zeros(2, 4), torch.tensor(bad))


class MarginErrorTest(parameterized.TestCase):

  @parameterized.named_parameters(
      ("soft_margin", jaxloss.soft_margin_loss, (jnp.ones(3), jnp.ones(3))),
      ("margin_ranking", jaxloss.margin_ranking_loss, (jnp.ones(3), jnp.ones(3), jnp.ones(3))),
      ("hinge", jaxloss.hinge_embedding_loss, (jnp.ones(3), jnp.ones(3))),
      ("multilabel_soft", jaxloss.multilabel_soft_margin_loss, (jnp.ones((2, 3)),) * 2),
      ("multilabel_margin", jaxloss.multilabel_margin_loss,
       (jnp.ones((2, 3)), jnp.zeros((2, 3), jnp.int32))),
      ("multi_margin", jaxloss.multi_margin_loss, (jnp.ones((2, 3)), jnp.zeros(2, jnp.int32))))
  def test_reduction_and_legacy_arguments(self, fn, args):
    name = fn.__name__
    with self.assertRaisesRegex(ValueError, rf"{name}: `reduction` must be one of"):
      fn(*args, reduction="avg")
    with self.assertRaisesRegex(ValueError, rf"{name}: the deprecated `size_average`"):
      fn(*args, size_average=False)
    with self.assertRaisesRegex(ValueError, rf"{name}: the deprecated `size_average`"):
      fn(*args, reduce=True)
    with self.assertRaisesRegex(ValueError, rf"{name}: `input1?` must be a floating-point"):
      fn(*[a.astype(jnp.int32) if i == 0 else a for i, a in enumerate(args)])

  def test_multi_margin_errors(self):
    x, t = jnp.ones((2, 3)), jnp.zeros(2, jnp.int32)
    for p in (0, 3, 1.5, True):
      with self.assertRaisesRegex(ValueError, r"only `p` == 1 and `p` == 2 are supported"):
        jaxloss.multi_margin_loss(x, t, p=p)
    with self.assertRaisesRegex(ValueError, r"`target` must be an integer array"):
      jaxloss.multi_margin_loss(x, t.astype(jnp.float32))
    with self.assertRaisesRegex(ValueError, r"`target` must have shape \(2,\) .*got \(3,\)"):
      jaxloss.multi_margin_loss(x, jnp.zeros(3, jnp.int32))
    with self.assertRaisesRegex(ValueError, r"`target` must have shape \(2,\) .*got \(2, 1\)"):
      jaxloss.multi_margin_loss(x, jnp.zeros((2, 1), jnp.int32))
    with self.assertRaisesRegex(ValueError, r"`weight` must have shape \(3,\) .*got \(4,\)"):
      jaxloss.multi_margin_loss(x, t, weight=jnp.ones(4))
    with self.assertRaisesRegex(ValueError, r"`weight` must have shape \(3,\) .*got \(1, 3\)"):
      jaxloss.multi_margin_loss(x, t, weight=jnp.ones((1, 3)))
    with self.assertRaisesRegex(ValueError, r"`input` must be a non-empty vector .*\(2, 3, 4\)"):
      jaxloss.multi_margin_loss(jnp.ones((2, 3, 4)), t)
    with self.assertRaisesRegex(ValueError, r"`input` must be a non-empty .*\(2, 0\)"):
      jaxloss.multi_margin_loss(jnp.ones((2, 0)), t)
    with self.assertRaisesRegex(ValueError, r"`where` of shape \(3,\)"):
      jaxloss.multi_margin_loss(x, t, where=jnp.ones(3, bool))

  def test_multilabel_margin_errors(self):
    x = jnp.ones((2, 3))
    with self.assertRaisesRegex(ValueError, r"`target` must have shape \(2, 3\) .*got \(3,\)"):
      jaxloss.multilabel_margin_loss(x, jnp.zeros(3, jnp.int32))
    with self.assertRaisesRegex(ValueError, r"`target` must have shape \(C,\) .*got \(1, 3\)"):
      jaxloss.multilabel_margin_loss(jnp.ones(3), jnp.zeros((1, 3), jnp.int32))
    with self.assertRaisesRegex(ValueError, r"`target` must be an integer array"):
      jaxloss.multilabel_margin_loss(x, jnp.zeros((2, 3)))

  def test_elementwise_shape_errors(self):
    with self.assertRaisesRegex(
        ValueError, r"soft_margin_loss: `target` must be broadcastable to the shape of "
                    r"`input` \(3,\), got \(3, 1\)"):
      jaxloss.soft_margin_loss(jnp.ones(3), jnp.ones((3, 1)))
    with self.assertRaisesRegex(ValueError, r"margin_ranking_loss: .* same number of dim"):
      jaxloss.margin_ranking_loss(jnp.ones((2, 3)), jnp.ones(3), jnp.ones((2, 3)))
    with self.assertRaisesRegex(
        ValueError, r"margin_ranking_loss: `input1` of shape \(3,\), `input2` of shape \(4,\) "
                    r"and `target` of shape \(3,\) cannot be broadcast together"):
      jaxloss.margin_ranking_loss(jnp.ones(3), jnp.ones(4), jnp.ones(3))
    with self.assertRaisesRegex(ValueError, r"hinge_embedding_loss: `input` of shape \(3,\) and "
                                            r"`target` of shape \(4,\) cannot be broadcast"):
      jaxloss.hinge_embedding_loss(jnp.ones(3), jnp.ones(4))
    with self.assertRaisesRegex(ValueError, r"multilabel_soft_margin_loss: `weight` must be "
                                            r"broadcastable .*\(2, 3\), got \(2,\)"):
      jaxloss.multilabel_soft_margin_loss(jnp.ones((2, 3)), jnp.ones((2, 3)), jnp.ones(2))
    with self.assertRaisesRegex(ValueError, r"`target` must be a floating-point or integer"):
      jaxloss.hinge_embedding_loss(jnp.ones(3), jnp.ones(3, bool))
    with self.assertRaisesRegex(ValueError, r"`where` must be a boolean array"):
      jaxloss.soft_margin_loss(jnp.ones(3), jnp.ones(3), where=jnp.ones(3))

  def test_errors_raise_at_trace_time_under_jit(self):
    with self.assertRaisesRegex(ValueError, "`target` must have shape"):
      jax.jit(jaxloss.multi_margin_loss).lower(jnp.ones((2, 3)), jnp.zeros(3, jnp.int32))
    with self.assertRaisesRegex(ValueError, "must be broadcastable"):
      jax.jit(jaxloss.soft_margin_loss).lower(jnp.ones(3), jnp.ones(4))


if __name__ == "__main__":
  absltest.main()
