"""Parity of jaxloss.binary against torch.nn.functional, plus masks, checks and errors."""


import chex
import jax
import jax.numpy as jnp
import numpy as np
import torch
import torch.nn.functional as F
from absl.testing import absltest, parameterized
from jax.experimental import checkify

import jaxloss
from tests.parity import ParityTestCase, rand, rotating_cases


def _weight_shape(shape, kind):
  """``'full'``: ``input``'s shape; ``'last'``: its last dimension (broadcast)."""
  return shape if kind == "full" else shape[-1:]


BCE_OPTIONS = (("plain", {}), ("weight", {"weight": "full"}), ("weight_bcast", {"weight": "last"}))
BCEL_OPTIONS = (("plain", {}), ("weight", {"weight": "full"}), ("pos_weight", {"pos": True}),
                ("both_bcast", {"weight": "last", "pos": True}))


class BinaryParityTest(ParityTestCase):

  def _weights(self, rng, shape, dtype, opt):
    kw = {}
    if opt.get("weight"):
      kw["weight"] = rand(rng, _weight_shape(shape, opt["weight"]), dtype, 0.1, 2.0)
    if opt.get("pos"):
      kw["pos_weight"] = rand(rng, shape[-1:], dtype, 0.2, 3.0)
    return kw

  @chex.variants(with_jit=True)
  @parameterized.named_parameters(*rotating_cases(BCE_OPTIONS))
  def test_binary_cross_entropy(self, **case):
    self._check_bce(**case)

  @chex.variants(without_jit=True)
  @parameterized.named_parameters(*rotating_cases(BCE_OPTIONS, eager_subset=True))
  def test_binary_cross_entropy_eager(self, **case):
    self._check_bce(**case)

  @chex.variants(with_jit=True)
  @parameterized.named_parameters(*rotating_cases(BCEL_OPTIONS))
  def test_binary_cross_entropy_with_logits(self, **case):
    self._check_bcel(**case)

  @chex.variants(without_jit=True)
  @parameterized.named_parameters(*rotating_cases(BCEL_OPTIONS, eager_subset=True))
  def test_binary_cross_entropy_with_logits_eager(self, **case):
    self._check_bcel(**case)

  def _check_bce(self, shape, reduction, dtype, opt):
    rng = np.random.default_rng(0)
    x, t = rand(rng, shape, dtype, 0.02, 0.98), rand(rng, shape, dtype, 0.0, 1.0)
    w = self._weights(rng, shape, dtype, opt).get("weight")
    # torch refuses a gradient w.r.t. `weight`: differentiate input and target.
    self.assert_parity(jaxloss.binary_cross_entropy, F.binary_cross_entropy, [x, t, w],
                       dict(reduction=reduction), grad_argnums=(0, 1))

  def _check_bcel(self, shape, reduction, dtype, opt):
    rng = np.random.default_rng(1)
    x, t = rand(rng, shape, dtype, -4.0, 4.0), rand(rng, shape, dtype, 0.0, 1.0)
    kw = self._weights(rng, shape, dtype, opt)
    def jax_fn(i, y, w, p, **k):
      return jaxloss.binary_cross_entropy_with_logits(i, y, w, reduction=reduction, pos_weight=p)
    def torch_fn(i, y, w, p, **k):
      return F.binary_cross_entropy_with_logits(i, y, w, reduction=reduction, pos_weight=p)
    self.assert_parity(jax_fn, torch_fn, [x, t, kw.get("weight"), kw.get("pos_weight")],
                       grad_argnums=(0, 1))

  @parameterized.named_parameters(("float32", np.float32), ("float64", np.float64))
  def test_bce_clamps_and_torch_gradients_at_the_edges(self, dtype):
    tiny = 1e-50 if dtype == np.float64 else 1e-30
    x = np.array([0.0, tiny, 1e-9, 0.5, 1 - 1e-7, 1.0, 0.0, 1.0, 0.0, 1.0], dtype)
    t = np.array([0.3, 0.3, 0.0, 0.3, 0.3, 0.3, 0.0, 1.0, 1.0, 0.0], dtype)
    tx, tt = torch.tensor(x, requires_grad=True), torch.tensor(t, requires_grad=True)
    tout = F.binary_cross_entropy(tx, tt, reduction="none")
    tgx, tgt = torch.autograd.grad(tout.sum(), [tx, tt])
    f = jax.jit(lambda a, b: jaxloss.binary_cross_entropy(a, b, reduction="none"))
    out = f(x, t)
    gx, gt = jax.jit(jax.grad(lambda a, b: jnp.sum(f(a, b)), (0, 1)))(x, t)
    rtol = 1e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out, tout.detach().numpy(), rtol=rtol)
    # Input gradient: (x - y) / max(x (1 - x), 1e-12): finite, huge at the edges.
    np.testing.assert_allclose(gx, tgx.numpy(), rtol=rtol)
    # Target gradient: -logit(x), unclamped, +-inf at 0 and 1.
    np.testing.assert_allclose(gt, tgt.numpy(), rtol=rtol)
    self.assertTrue(np.isinf(np.asarray(gt)[0]) and np.all(np.isfinite(np.asarray(gx))))
    # Only the input differentiated: no nan from the infinite target slope.
    gx_only = jax.jit(jax.grad(lambda a: jnp.sum(f(a, t))))(x)
    self.assertTrue(np.all(np.isfinite(np.asarray(gx_only))))
    np.testing.assert_allclose(float(out[0]), 30.0, rtol=1e-6)  # log(0) clamped at -100

  @parameterized.named_parameters(("float32", np.float32), ("float64", np.float64))
  def test_bce_with_logits_extreme_logits(self, dtype):
    x = np.array([-1e4, -50.0, 0.0, 50.0, 1e4, 1e4], dtype)
    t = np.array([0.3, 1.0, 0.5, 0.0, 0.7, 1.0], dtype)
    p = np.array([2.5], dtype)
    for pos_weight in (None, p):
      def torch_fn(i, y):
        return F.binary_cross_entropy_with_logits(
            i, y, reduction="none", pos_weight=None if pos_weight is None else torch.tensor(p))
      tx, tt = torch.tensor(x, requires_grad=True), torch.tensor(t, requires_grad=True)
      tout = torch_fn(tx, tt)
      tg = torch.autograd.grad(tout.sum(), [tx, tt])
      f = jax.jit(lambda a, b: jaxloss.binary_cross_entropy_with_logits(
          a, b, reduction="none", pos_weight=pos_weight))
      out = f(x, t)
      g = jax.jit(jax.grad(lambda a, b: jnp.sum(f(a, b)), (0, 1)))(x, t)
      self.assertTrue(np.all(np.isfinite(np.asarray(out))))
      np.testing.assert_allclose(out, tout.detach().numpy(), rtol=1e-6)
      for a, b in zip(g, tg, strict=False):
        self.assertTrue(np.all(np.isfinite(np.asarray(a))))
        np.testing.assert_allclose(a, b.numpy(), rtol=1e-6, atol=1e-6)

  @chex.variants(with_jit=True)
  @parameterized.named_parameters(("bce_mean", "bce", "mean"), ("logits_none", "logits", "none"),
                                  ("logits_sum", "logits", "sum"))
  def test_weight_gradients_beyond_torch(self, kind, reduction):
    # torch raises for a weight that requires grad; ours is the exact derivative,
    # checked against torch's own differentiable composition of the same loss.
    rng = np.random.default_rng(4)
    shape = (4, 3)
    x = rand(rng, shape, np.float64, 0.05, 0.95) if kind == "bce" else rand(rng, shape, np.float64)
    t, w = rand(rng, shape, np.float64, 0, 1), rand(rng, (3,), np.float64, 0.1, 2)
    p = rand(rng, (3,), np.float64, 0.2, 3)

    def reduce(loss):
      return {"none": loss, "mean": loss.mean(), "sum": loss.sum()}[reduction]

    if kind == "bce":
      def jax_fn(i, y, ww):
        return jaxloss.binary_cross_entropy(i, y, ww, reduction=reduction)
      def torch_fn(i, y, ww):
        return reduce(F.binary_cross_entropy(i, y, reduction="none") * ww)
      self.assert_parity(jax_fn, torch_fn, [x, t, w], grad_argnums=(0, 1, 2))
    else:
      def jax_fn(i, y, ww, pp):
        return jaxloss.binary_cross_entropy_with_logits(
                i, y, ww, reduction=reduction, pos_weight=pp)
      def torch_fn(i, y, ww, pp):
        return reduce(
                ((1 - y) * i - (1 + (pp - 1) * y) * F.logsigmoid(i)) * ww)
      self.assert_parity(jax_fn, torch_fn, [x, t, w, p], grad_argnums=(0, 1, 2, 3))


class BinaryBehaviourTest(chex.TestCase):

  def _data(self, kind, shape=(6, 3), seed=2):
    rng = np.random.default_rng(seed)
    if kind == "bce":
      x = rand(rng, shape, np.float64, 0.05, 0.95)
    else:
      x = rand(rng, shape, np.float64, -3, 3)
    return x, rand(rng, shape, np.float64, 0, 1)

  @parameterized.named_parameters(("bce", "bce"), ("logits", "logits"))
  def test_where_mask_drops_elements(self, kind):
    fn = jaxloss.binary_cross_entropy if kind == "bce" else jaxloss.binary_cross_entropy_with_logits
    fn = jax.jit(fn, static_argnames="reduction")
    x, t = self._data(kind)
    w = np.linspace(0.5, 2.0, 3)
    keep = np.array([True, False, True, True, False, True])
    where = jnp.asarray(keep)[:, None]
    for reduction in ("mean", "sum"):
      masked = fn(x, t, w, reduction=reduction, where=where)
      chex.assert_trees_all_close(masked, fn(x[keep], t[keep], w, reduction=reduction))
    chex.assert_trees_all_close(fn(x, t, reduction="none", where=where)[~keep], 0.0)
    gx, gt, gw = jax.grad(lambda a, b, c: fn(a, b, c, where=where), (0, 1, 2))(x, t, w)
    self.assertTrue(np.all(np.asarray(gx)[~keep] == 0.0) and np.all(np.asarray(gt)[~keep] == 0))
    self.assertTrue(np.all(np.asarray(gx)[keep] != 0.0))
    ref_w = jax.grad(lambda c: fn(x[keep], t[keep], c, reduction="sum"))(w) / keep.sum() / 3
    chex.assert_trees_all_close(gw, ref_w)

  def test_where_zero_gradient_even_for_nonfinite_masked_inputs(self):
    where = jnp.array([True, False, True, False])
    # BCE: nan and out-of-range probabilities at masked positions.
    x = jnp.array([0.3, jnp.nan, 0.6, 7.0])
    t = jnp.array([1.0, jnp.nan, 0.0, -3.0])
    f = jax.jit(lambda a, b: jaxloss.binary_cross_entropy(a, b, reduction="sum", where=where))
    gx, gt = jax.jit(jax.grad(f, (0, 1)))(x, t)
    chex.assert_trees_all_close(f(x, t), -np.log(0.3) - np.log(0.4))
    chex.assert_trees_all_close(gx, jnp.array([-1 / 0.3, 0.0, 1 / 0.4, 0.0]))
    self.assertTrue(np.all(np.isfinite(np.asarray(gt))) and float(gt[1]) == float(gt[3]) == 0)
    err, _ = checkify.checkify(f)(x, t)
    self.assertIsNone(err.get())  # masked elements are not checked either
    # Logits: inf logits, inf weights and pos_weights at masked positions.
    x = jnp.array([0.5, jnp.inf, -1.0, -jnp.inf])
    w = jnp.array([1.0, jnp.inf, 2.0, jnp.nan])
    g = jax.jit(jax.grad(lambda a, c, p: jaxloss.binary_cross_entropy_with_logits(
        a, jnp.ones(4), c, pos_weight=p, where=where), (0, 1, 2)))(x, w, w)
    for gi in g:
      self.assertTrue(np.all(np.isfinite(np.asarray(gi))))
      self.assertTrue(np.all(np.asarray(gi)[~np.asarray(where)] == 0.0))

  def test_checkify_reports_out_of_range_probabilities(self):
    f = jax.jit(checkify.checkify(jaxloss.binary_cross_entropy))
    ok = jnp.array([0.0, 0.5, 1.0])
    err, _ = f(ok, ok)
    self.assertIsNone(err.get())
    err, _ = f(jnp.array([0.2, 1.5, 0.3]), ok)
    self.assertRegex(err.get(), r"binary_cross_entropy: every element of `input` must lie in "
                                r"\[0, 1\]; found 1\.5")
    err, _ = f(ok, jnp.array([0.2, -0.5, 0.3]))
    self.assertRegex(err.get(), r"`target` must lie in \[0, 1\]; found -0\.5")
    err, _ = f(jnp.array([0.2, jnp.nan, 0.3]), ok)
    self.assertRegex(err.get(), r"`input` must lie in \[0, 1\]; found nan")
    with self.assertRaises(checkify.JaxRuntimeError):
      err.throw()
    # Unchecked without checkify, like every jaxloss value check.
    self.assertTrue(np.isfinite(float(jaxloss.binary_cross_entropy(jnp.array([0.5]),
                                                                   jnp.array([0.5])))))

  @parameterized.named_parameters(
      ("bce_bf16", "bce", jnp.bfloat16), ("bce_f16", "bce", jnp.float16),
      ("logits_bf16", "logits", jnp.bfloat16), ("logits_f16", "logits", jnp.float16))
  def test_half_inputs_compute_in_float32(self, kind, dtype):
    fn = jaxloss.binary_cross_entropy if kind == "bce" else jaxloss.binary_cross_entropy_with_logits
    fn = jax.jit(fn)
    x, t = self._data(kind, (512,))
    xh, th = jnp.asarray(x, dtype), jnp.asarray(t, dtype)
    out = fn(xh, th)
    self.assertEqual(out.dtype, dtype)
    exact = fn(np.asarray(xh, np.float64), np.asarray(th, np.float64))
    self.assertLess(abs(float(out) - float(exact)) / abs(float(exact)), 1e-2)
    g = jax.jit(jax.grad(lambda a: fn(a, th).astype(jnp.float32)))(xh)
    self.assertEqual(g.dtype, dtype)
    self.assertTrue(np.all(np.isfinite(np.asarray(g, np.float32))))

  def test_vmap_matches_loop(self):
    rng = np.random.default_rng(3)
    p, t = rand(rng, (5, 4, 3), np.float64, 0.05, 0.95), rand(rng, (5, 4, 3), np.float64, 0, 1)
    pw, where = rand(rng, (3,), np.float64, 0.5, 2), rng.uniform(size=(5, 4, 3)) > 0.3
    fns = (lambda a, b, m: jaxloss.binary_cross_entropy(a, b, where=m),
           lambda a, b, m: jaxloss.binary_cross_entropy_with_logits(a, b, pos_weight=pw, where=m))
    for fn in fns:
      value_and_grad = jax.jit(jax.value_and_grad(fn))
      batched = jax.jit(jax.vmap(jax.value_and_grad(fn)))(p, t, where)
      looped = [value_and_grad(p[i], t[i], where[i]) for i in range(5)]
      looped = jax.tree.map(lambda *leaves: jnp.stack(leaves), *looped)
      chex.assert_trees_all_close(batched, looped, rtol=1e-12)

  def test_second_derivative_of_bce_is_finite_and_exact(self):
    x, t = jnp.array([0.3, 0.6]), jnp.array([0.2, 1.0])
    h = jax.jit(jax.hessian(lambda a: jaxloss.binary_cross_entropy(a, t, reduction="sum")))(x)
    # d/dx [(x - t) / (x (1 - x))] = (x^2 - 2 t x + t) / (x (1 - x))^2
    expected = (x**2 - 2 * t * x + t) / (x * (1 - x)) ** 2
    chex.assert_trees_all_close(jnp.diag(h), expected, rtol=1e-10)


class BinaryErrorTest(parameterized.TestCase):

  @parameterized.named_parameters(
      ("bce", jaxloss.binary_cross_entropy), ("logits", jaxloss.binary_cross_entropy_with_logits))
  def test_shape_mismatch_raises_at_trace_time(self, fn):
    name = fn.__name__
    with self.assertRaisesRegex(
        ValueError, rf"{name}: `target` must have the same shape as `input` \(2, 3\), got \(3,\)"):
      jax.jit(fn).lower(jnp.full((2, 3), 0.5), jnp.full((3,), 0.5))
    with self.assertRaisesRegex(
        ValueError, rf"{name}: `weight` must be broadcastable to the shape of `input` \(2, 3\)"
                    r".*got \(4, 2, 3\)"):
      fn(jnp.full((2, 3), 0.5), jnp.full((2, 3), 0.5), jnp.ones((4, 2, 3)))
    with self.assertRaisesRegex(ValueError, r"`weight` .* got \(2,\)"):
      fn(jnp.full((2, 3), 0.5), jnp.full((2, 3), 0.5), jnp.ones((2,)))
    with self.assertRaisesRegex(ValueError, r"`where` of shape \(2,\)"):
      fn(jnp.full((2, 3), 0.5), jnp.full((2, 3), 0.5), where=jnp.ones((2,), bool))

  def test_pos_weight_shape(self):
    fn = jaxloss.binary_cross_entropy_with_logits
    with self.assertRaisesRegex(
        ValueError, r"`pos_weight` must be broadcastable to the shape of `input` \(2, 3\) "
                    r"\(it broadcasts along the trailing dimensions.*got \(2,\)"):
      fn(jnp.zeros((2, 3)), jnp.ones((2, 3)), pos_weight=jnp.ones(2))
    with self.assertRaisesRegex(ValueError, r"`pos_weight`.*got \(4, 2, 3\)"):
      fn(jnp.zeros((2, 3)), jnp.ones((2, 3)), pos_weight=jnp.ones((4, 2, 3)))
    # (C, 1) weights the classes of (N, C, L) input, as torch's (C, 1, 1) does for images.
    x, t, p = np.zeros((2, 3, 4)), np.ones((2, 3, 4)), np.array([[1.0], [2.0], [3.0]])
    chex.assert_trees_all_close(
        fn(x, t, pos_weight=p, reduction="none"),
        F.binary_cross_entropy_with_logits(torch.tensor(x), torch.tensor(t),
                                           pos_weight=torch.tensor(p), reduction="none").numpy())

  @parameterized.named_parameters(
      ("bce", jaxloss.binary_cross_entropy), ("logits", jaxloss.binary_cross_entropy_with_logits))
  def test_reduction_dtype_and_legacy_errors(self, fn):
    x = jnp.full((3,), 0.5)
    for bad in ("avg", "batchmean", None):
      with self.assertRaisesRegex(ValueError, rf"{fn.__name__}: `reduction` must be one of"):
        fn(x, x, reduction=bad)
    with self.assertRaisesRegex(ValueError, "`target` must be a floating-point array"):
      fn(x, jnp.array([0, 1, 1]))
    with self.assertRaisesRegex(ValueError, "`input` must be a floating-point array"):
      fn(jnp.array([0, 1, 1]), x)
    with self.assertRaisesRegex(ValueError, "`weight` must be a floating-point array"):
      fn(x, x, jnp.array([1, 2, 3]))
    with self.assertRaisesRegex(ValueError, "size_average"):
      fn(x, x, None, True)
    with self.assertRaisesRegex(ValueError, "size_average"):
      fn(x, x, reduce=False)


if __name__ == "__main__":
  absltest.main()
