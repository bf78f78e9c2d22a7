"""Parity of jaxloss.regression against torch.nn.functional, plus masks and errors."""

import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import torch
import torch.nn.functional as F
from absl.testing import absltest, parameterized

import jaxloss
from tests.parity import DTYPES, ParityTestCase, rand

SHAPES = ((7,), (4, 5), (2, 3, 4))
REDUCTIONS = ("none", "mean", "sum")


def _cases(options):
  """Every combination of shape, reduction, dtype and the given options."""
  for shape, reduction, dtype, opt in itertools.product(SHAPES, REDUCTIONS, DTYPES, options):
    name = f"{'x'.join(map(str, shape))}_{reduction}_{dtype.__name__}_{opt[0]}"
    yield dict(testcase_name=name, shape=shape, reduction=reduction, dtype=dtype, opt=opt[1])


WEIGHTED = (("plain", {}), ("weighted", {"weight": True}))


class RegressionParityTest(ParityTestCase):

  def _args(self, shape, dtype, opt, seed=0):
    rng = np.random.default_rng(seed)
    args = [rand(rng, shape, dtype), rand(rng, shape, dtype)]
    kwargs = {}
    if opt.get("weight"):
      kwargs["weight"] = rand(rng, shape, dtype, 0.1, 2.0)
    return args, kwargs

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(*_cases(WEIGHTED))
  def test_l1_loss(self, shape, reduction, dtype, opt):
    args, kw = self._args(shape, dtype, opt)
    self._check(jaxloss.l1_loss, F.l1_loss, args, kw, reduction)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(*_cases(WEIGHTED))
  def test_mse_loss(self, shape, reduction, dtype, opt):
    args, kw = self._args(shape, dtype, opt)
    self._check(jaxloss.mse_loss, F.mse_loss, args, kw, reduction)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(*_cases(
      (("d1", {}), ("d0.3_weighted", {"delta": 0.3, "weight": True}), ("d2.5", {"delta": 2.5}))))
  def test_huber_loss(self, shape, reduction, dtype, opt):
    args, kw = self._args(shape, dtype, opt)
    if "delta" in opt:
      kw["delta"] = opt["delta"]
    self._check(jaxloss.huber_loss, F.huber_loss, args, kw, reduction)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(*_cases(
      (("b1", {}), ("b0", {"beta": 0.0}), ("b0.4", {"beta": 0.4}), ("b3", {"beta": 3.0}))))
  def test_smooth_l1_loss(self, shape, reduction, dtype, opt):
    args, kw = self._args(shape, dtype, opt)
    kw.update(opt)
    self._check(jaxloss.smooth_l1_loss, F.smooth_l1_loss, args, kw, reduction)

  def _check(self, jfn, tfn, args, kw, reduction):
    # The weight is an array argument for both; pass it positionally via kwargs
    # so that the harness converts it, and differentiate w.r.t. input and target.
    weight = kw.pop("weight", None)
    if weight is None:
      self.assert_parity(jfn, tfn, args, dict(kw, reduction=reduction), grad_argnums=(0, 1))
      return
    def jax_fn(i, t, w, **k):
      return jfn(i, t, weight=w, **k)
    def torch_fn(i, t, w, **k):
      return tfn(i, t, weight=w, **k)
    self.assert_parity(jax_fn, torch_fn, args + [weight], dict(kw, reduction=reduction),
                       grad_argnums=(0, 1, 2))

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(("l1", jaxloss.l1_loss), ("mse", jaxloss.mse_loss),
                                  ("smooth_l1", jaxloss.smooth_l1_loss))
  def test_broadcast_target_warns_and_matches(self, fn):
    rng = np.random.default_rng(1)
    x, t = rand(rng, (4, 3), np.float64), rand(rng, (3,), np.float64)
    tfn = getattr(F, fn.__name__)
    with self.assertWarnsRegex(UserWarning, "different to the `input` size"):
      self.assert_parity(fn, tfn, [x, t], {}, grad_argnums=(0, 1))

  @parameterized.named_parameters(
      ("l1", jaxloss.l1_loss, {}), ("smooth_l1", jaxloss.smooth_l1_loss, {}),
      ("smooth_l1_beta0", jaxloss.smooth_l1_loss, {"beta": 0.0}),
      ("mse", jaxloss.mse_loss, {}), ("huber", jaxloss.huber_loss, {}))
  def test_gradient_at_zero_difference_matches_torch(self, fn, kw):
    x = np.array([0.5, 1.0, -2.0])
    t = np.array([0.5, 0.0, -2.0])
    tfn = getattr(F, fn.__name__)
    tx = torch.tensor(x, requires_grad=True)
    tfn(tx, torch.tensor(t), **kw).backward()
    chex.assert_trees_all_close(
        jax.grad(lambda a: fn(a, jnp.asarray(t), **kw))(jnp.asarray(x)), tx.grad.numpy())


class RegressionBehaviourTest(chex.TestCase):

  @parameterized.named_parameters(("l1", jaxloss.l1_loss), ("mse", jaxloss.mse_loss),
                                  ("huber", jaxloss.huber_loss),
                                  ("smooth_l1", jaxloss.smooth_l1_loss))
  def test_where_mask_drops_elements(self, fn):
    rng = np.random.default_rng(2)
    x, t = rand(rng, (6, 3), np.float64), rand(rng, (6, 3), np.float64)
    keep = np.array([True, False, True, True, False, True])
    where = jnp.asarray(keep)[:, None]
    for reduction in ("mean", "sum"):
      masked = fn(x, t, reduction=reduction, where=where)
      chex.assert_trees_all_close(masked, fn(x[keep], t[keep], reduction=reduction))
    chex.assert_trees_all_close(fn(x, t, reduction="none", where=where)[~keep], 0.0)
    g = jax.grad(lambda a: fn(a, t, where=where))(jnp.asarray(x))
    self.assertTrue(np.all(np.asarray(g)[~keep] == 0.0))
    self.assertTrue(np.all(np.asarray(g)[keep] != 0.0))

  def test_where_zero_gradient_even_for_inf_inputs(self):
    x = jnp.array([1.0, jnp.inf, 2.0])
    where = jnp.array([True, False, True])
    g = jax.grad(lambda a: jaxloss.mse_loss(a, jnp.zeros(3), where=where))(x)
    chex.assert_trees_all_close(g, jnp.array([1.0, 0.0, 2.0]))

  def test_weighted_mean_denominators_follow_torch(self):
    x, t, w = jnp.array([1.0, 3.0]), jnp.zeros(2), jnp.array([1.0, 3.0])
    self.assertAlmostEqual(float(jaxloss.l1_loss(x, t, weight=w)), (1 + 9) / 4)
    self.assertAlmostEqual(float(jaxloss.huber_loss(x, t, weight=w, delta=10.0)),
                           (0.5 + 3 * 4.5) / 2)

  @parameterized.named_parameters(("bf16", jnp.bfloat16), ("f16", jnp.float16))
  def test_half_inputs_accumulate_in_float32(self, dtype):
    x = jnp.linspace(-1, 1, 4096).astype(dtype)
    t = jnp.zeros_like(x)
    out = jaxloss.mse_loss(x, t)
    self.assertEqual(out.dtype, dtype)
    exact = jnp.mean(jnp.square(x.astype(jnp.float64)))
    self.assertLess(abs(float(out) - float(exact)) / float(exact), 1e-2)
    g = jax.grad(lambda a: jaxloss.mse_loss(a, t).astype(jnp.float32))(x)
    self.assertEqual(g.dtype, dtype)

  def test_vmap_matches_loop(self):
    rng = np.random.default_rng(3)
    x, t = rand(rng, (5, 4, 3), np.float64), rand(rng, (5, 4, 3), np.float64)
    for fn in (jaxloss.l1_loss, jaxloss.mse_loss, jaxloss.huber_loss, jaxloss.smooth_l1_loss):
      batched = jax.vmap(fn)(x, t)
      looped = jnp.stack([fn(x[i], t[i]) for i in range(5)])
      chex.assert_trees_all_close(batched, looped, rtol=1e-12)


class RegressionErrorTest(absltest.TestCase):

  def test_unknown_reduction(self):
    with self.assertRaisesRegex(ValueError, r"l1_loss: `reduction` must be one of"):
      jaxloss.l1_loss(jnp.ones(3), jnp.ones(3), reduction="avg")

  def test_legacy_arguments(self):
    with self.assertRaisesRegex(ValueError, "size_average"):
      jaxloss.mse_loss(jnp.ones(3), jnp.ones(3), False)

  def test_bad_shapes(self):
    with self.assertRaisesRegex(ValueError, r"`target` of shape \(4,\) cannot be broadcast"):
      jaxloss.mse_loss(jnp.ones(3), jnp.ones(4))
    with self.assertRaisesRegex(ValueError, r"`weight` must have shape \(3,\)"):
      jaxloss.l1_loss(jnp.ones(3), jnp.ones(3), weight=jnp.ones(4))
    with self.assertRaisesRegex(ValueError, r"`where` of shape \(2,\)"):
      jaxloss.l1_loss(jnp.ones(3), jnp.ones(3), where=jnp.ones(2, bool))

  def test_bad_dtypes_and_values(self):
    with self.assertRaisesRegex(ValueError, "`input` must be a floating-point array"):
      jaxloss.l1_loss(jnp.ones(3, jnp.int32), jnp.ones(3))
    with self.assertRaisesRegex(ValueError, "`delta` must be positive"):
      jaxloss.huber_loss(jnp.ones(3), jnp.ones(3), delta=0.0)
    with self.assertRaisesRegex(ValueError, "`beta` must be non-negative"):
      jaxloss.smooth_l1_loss(jnp.ones(3), jnp.ones(3), beta=-1.0)

  def test_errors_raise_at_trace_time_under_jit(self):
    with self.assertRaisesRegex(ValueError, "cannot be broadcast"):
      jax.jit(jaxloss.mse_loss).lower(jnp.ones(3), jnp.ones(4))


if __name__ == "__main__":
  absltest.main()
