"""Parity of jaxloss.likelihood against torch.nn.functional, plus masks, checks and errors."""

import warnings

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

KL_REDUCTIONS = ("none", "batchmean", "sum", "mean")


def _torch_grads(fn, args, argnums):
  targs = [torch.tensor(a, requires_grad=i in argnums) if isinstance(a, np.ndarray) else a
           for i, a in enumerate(args)]
  out = fn(*targs)
  grads = torch.autograd.grad(out.sum(), [targs[i] for i in argnums])
  return out.detach().numpy(), [g.numpy() for g in grads]


KL_OPTIONS = (("prob", {"log_target": False}), ("log", {"log_target": True}))
POISSON_OPTIONS = (("log", {}), ("log_full", {"full": True}), ("rate", {"log_input": False}),
                   ("rate_full_eps", {"log_input": False, "full": True, "eps": 0.1}))
GAUSSIAN_OPTIONS = (
    ("var_same", {"var": "same"}),
    ("var_fewer_dims_full", {"var": "fewer", "full": True, "min_ndim": 1}),
    ("var_trailing1_eps", {"var": "trailing1", "eps": 0.3, "min_ndim": 1}),
    ("var_leading1_target_bcast", {"var": "leading1", "target": "bcast", "min_ndim": 2}),
    ("var_float_full", {"var": 0.7, "full": True}),
)


def _var_shape(shape, kind):
  return {"same": shape, "fewer": shape[:-1], "trailing1": shape[:-1] + (1,),
          "leading1": (1,) + shape[1:]}[kind]


class LikelihoodParityTest(ParityTestCase):

  @chex.variants(with_jit=True)
  @parameterized.named_parameters(*rotating_cases(KL_OPTIONS, KL_REDUCTIONS))
  def test_kl_div(self, **case):
    self._check_kl_div(**case)

  @chex.variants(without_jit=True)
  @parameterized.named_parameters(*rotating_cases(KL_OPTIONS, KL_REDUCTIONS, eager_subset=True))
  def test_kl_div_eager(self, **case):
    self._check_kl_div(**case)

  def _check_kl_div(self, shape, reduction, dtype, opt):
    rng = np.random.default_rng(0)
    x = rand(rng, shape, dtype, -3.0, 0.0)
    low, high = (-3.0, 0.5) if opt["log_target"] else (0.01, 1.0)
    t = rand(rng, shape, dtype, low, high)
    with warnings.catch_warnings():
      warnings.simplefilter("ignore")  # 'mean' warns in both (tested below)
      self.assert_parity(jaxloss.kl_div, F.kl_div, [x, t], dict(opt, reduction=reduction),
                         grad_argnums=(0, 1))

  @chex.variants(with_jit=True)
  @parameterized.named_parameters(*rotating_cases(POISSON_OPTIONS))
  def test_poisson_nll_loss(self, **case):
    self._check_poisson_nll_loss(**case)

  @chex.variants(without_jit=True)
  @parameterized.named_parameters(*rotating_cases(POISSON_OPTIONS, eager_subset=True))
  def test_poisson_nll_loss_eager(self, **case):
    self._check_poisson_nll_loss(**case)

  def _check_poisson_nll_loss(self, shape, reduction, dtype, opt):
    rng = np.random.default_rng(1)
    if opt.get("log_input", True):
      x = rand(rng, shape, dtype, -2.0, 2.0)
    else:
      x = rand(rng, shape, dtype, 0.05, 3.0)
    t = rand(rng, shape, dtype, 0.01, 4.0)  # both sides of the Stirling threshold 1
    self.assert_parity(jaxloss.poisson_nll_loss, F.poisson_nll_loss, [x, t],
                       dict(opt, reduction=reduction), grad_argnums=(0, 1))

  @chex.variants(with_jit=True)
  @parameterized.named_parameters(*rotating_cases(GAUSSIAN_OPTIONS))
  def test_gaussian_nll_loss(self, **case):
    self._check_gaussian_nll_loss(**case)

  @chex.variants(without_jit=True)
  @parameterized.named_parameters(*rotating_cases(GAUSSIAN_OPTIONS, eager_subset=True))
  def test_gaussian_nll_loss_eager(self, **case):
    self._check_gaussian_nll_loss(**case)

  def _check_gaussian_nll_loss(self, shape, reduction, dtype, opt):
    rng = np.random.default_rng(2)
    x = rand(rng, shape, dtype)
    t_shape = (1,) + shape[1:] if opt.get("target") == "bcast" else shape
    t = rand(rng, t_shape, dtype)
    kw = {k: opt[k] for k in ("full", "eps") if k in opt}
    if isinstance(opt["var"], float):
      var, argnums = opt["var"], (0, 1)
    else:  # values below 0.3 exercise the straight-through clamp of the `eps` option
      var, argnums = rand(rng, _var_shape(shape, opt["var"]), dtype, 0.05, 2.0), (0, 1, 2)
    self.assert_parity(jaxloss.gaussian_nll_loss, F.gaussian_nll_loss, [x, t, var],
                       dict(kw, reduction=reduction), grad_argnums=argnums)

  @chex.variants(with_jit=True)
  @parameterized.named_parameters(
      ("input_rows_batchmean", (3,), (2, 3), "batchmean"),
      ("target_row_batchmean", (2, 3), (3,), "batchmean"),
      ("target_row_none", (2, 3), (1, 3), "none"))
  def test_kl_div_broadcasts_like_torch(self, x_shape, t_shape, reduction):
    # torch's 'batchmean' divides by input.shape[0] even when target broadcasts input.
    rng = np.random.default_rng(5)
    x, t = rand(rng, x_shape, np.float64, -2, 0), rand(rng, t_shape, np.float64, 0.1, 1)
    self.assert_parity(jaxloss.kl_div, F.kl_div, [x, t], dict(reduction=reduction),
                       grad_argnums=(0, 1))


class LikelihoodEdgeCaseTest(parameterized.TestCase):
  """Values and gradients where torch's formulas have special cases, vs torch itself."""

  def _assert_matches_torch(self, jfn, tfn, args, argnums):
    tout, tgrads = _torch_grads(tfn, args, argnums)
    jf = jax.jit(lambda *a: jnp.sum(jfn(*a)))
    out = jax.jit(jfn)(*args)
    grads = jax.jit(jax.grad(jf, argnums))(*args)
    np.testing.assert_allclose(out, tout, rtol=1e-12)
    for g, tg in zip(grads, tgrads, strict=False):
      np.testing.assert_allclose(g, tg, rtol=1e-12, atol=1e-300)  # nan where torch's is
    return out, grads

  def test_kl_div_zero_targets_use_xlogy(self):
    x = np.array([-1.0, -2.0, -np.inf, -0.5, 0.0])
    t = np.array([0.2, 0.0, 0.0, 1e-300, 1.0])
    def fn(a, b):
      return jaxloss.kl_div(a, b, reduction="none")
    out, (gx, gt) = self._assert_matches_torch(
        fn, lambda a, b: F.kl_div(a, b, reduction="none"), [x, t], (0, 1))
    self.assertEqual(float(out[1]), 0.0)  # 0 log 0 = 0
    self.assertTrue(np.isnan(out[2]))  # 0 * -inf, as torch
    self.assertTrue(np.isnan(gt[1]))  # torch's d/dt xlogy(t, t) = log t + t / t at 0
    self.assertEqual(float(gx[1]), 0.0)

  def test_kl_div_log_target_extremes(self):
    x = np.array([-1.0, -2.0, -np.inf, -1.0])
    t = np.array([0.0, -1e4, -np.inf, 1.0])
    def fn(a, b):
      return jaxloss.kl_div(a, b, reduction="none", log_target=True)
    self._assert_matches_torch(
        fn, lambda a, b: F.kl_div(a, b, reduction="none", log_target=True), [x, t], (0, 1))

  @parameterized.named_parameters(("log_input", True), ("rate", False))
  def test_poisson_full_counts_with_zeros(self, log_input):
    x = np.array([-1.0, 0.5, 2.0, 1.0, 0.3, 3.0]) if log_input else np.array(
        [0.0, 0.5, 2.0, 1.0, 0.3, 3.0])
    t = np.array([0.0, 1.0, 0.5, 3.0, 1.5, 7.0])
    kw = dict(reduction="none", full=True, log_input=log_input)
    out, (gx, gt) = self._assert_matches_torch(
        lambda a, b: jaxloss.poisson_nll_loss(a, b, **kw),
        lambda a, b: F.poisson_nll_loss(a, b, **kw), [x, t], (0, 1))
    # The Stirling term applies only where target > 1.
    lam = np.exp(x) if log_input else x
    plain = lam - t * (x if log_input else np.log(x + 1e-8))
    stirling = np.where(t > 1, t * np.log(np.maximum(t, 1)) - t
                        + 0.5 * np.log(2 * np.pi * np.maximum(t, 1)), 0)
    np.testing.assert_allclose(out, plain + stirling, rtol=1e-12)
    self.assertTrue(np.isnan(gt[0]) and np.all(np.isfinite(gt[1:])))  # as torch

  def test_gaussian_var_clamp_is_straight_through(self):
    x, t = np.array([0.0, 1.0, 2.0, 3.0]), np.array([0.5, 0.5, 1.0, 1.0])
    var = np.array([1e-8, 2.0, 0.0, 0.5])
    def fn(a, b, v):
      return jaxloss.gaussian_nll_loss(a, b, v, reduction="none")
    out, (_, _, gv) = self._assert_matches_torch(
        fn, lambda a, b, v: F.gaussian_nll_loss(a, b, v, reduction="none"), [x, t, var],
        (0, 1, 2))
    clamped = np.maximum(var, 1e-6)
    np.testing.assert_allclose(out, 0.5 * (np.log(clamped) + (x - t) ** 2 / clamped))
    np.testing.assert_allclose(gv, 0.5 * (1 / clamped - (x - t) ** 2 / clamped**2))
    self.assertNotEqual(float(gv[0]), 0.0)  # not the zero slope of a differentiable clamp

  def test_gaussian_nan_var_passes_like_torch(self):
    x, t, v = np.array([0.0, 1.0]), np.array([1.0, 0.0]), np.array([np.nan, 1.0])
    self._assert_matches_torch(
        lambda a, b, c: jaxloss.gaussian_nll_loss(a, b, c, reduction="none"),
        lambda a, b, c: F.gaussian_nll_loss(a, b, c, reduction="none"), [x, t, v], (0, 1, 2))
    err, _ = checkify.checkify(jaxloss.gaussian_nll_loss)(x, t, v)
    self.assertIsNone(err.get())

  def test_gaussian_scalar_array_var_matches_float_var(self):
    # Beyond torch (which accepts a 0-d var only for 1-D input): a 0-d array is a scalar.
    rng = np.random.default_rng(6)
    x, t = rand(rng, (4, 3), np.float64), rand(rng, (4, 3), np.float64)
    tout, _ = _torch_grads(lambda a, b: F.gaussian_nll_loss(a, b, 0.7), [x, t], (0,))
    f = jax.jit(jax.value_and_grad(jaxloss.gaussian_nll_loss, 2))
    out, gv = f(x, t, jnp.asarray(0.7))
    np.testing.assert_allclose(out, tout, rtol=1e-12)
    gv_full = jax.grad(jaxloss.gaussian_nll_loss, 2)(x, t, jnp.full((4, 3), 0.7))
    np.testing.assert_allclose(gv, jnp.sum(gv_full), rtol=1e-12)


class LikelihoodBehaviourTest(chex.TestCase):

  def _data(self, kind, shape, seed=2):
    rng = np.random.default_rng(seed)
    if kind == "kl":
      return rand(rng, shape, np.float64, -3, 0), rand(rng, shape, np.float64, 0.01, 1)
    if kind == "poisson":
      return rand(rng, shape, np.float64, -1, 1), rand(rng, shape, np.float64, 0.0, 4)
    return rand(rng, shape, np.float64), rand(rng, shape, np.float64)

  def _fn(self, kind, **kw):
    if kind == "kl":
      return lambda x, t, **k: jaxloss.kl_div(x, t, log_target=False, **kw, **k)
    if kind == "poisson":
      return lambda x, t, **k: jaxloss.poisson_nll_loss(x, t, full=True, **kw, **k)
    var = np.linspace(0.5, 2.0, 3)[None, :]  # (1, C): homoscedastic over the rows
    return lambda x, t, **k: jaxloss.gaussian_nll_loss(x, t, var.astype(x.dtype), full=True,
                                                       **kw, **k)

  @parameterized.named_parameters(
      ("kl_sum", "kl", "sum"), ("kl_batchmean", "kl", "batchmean"),
      ("poisson_mean", "poisson", "mean"), ("poisson_sum", "poisson", "sum"),
      ("gaussian_mean", "gaussian", "mean"), ("gaussian_sum", "gaussian", "sum"))
  def test_where_mask_drops_rows(self, kind, reduction):
    x, t = self._data(kind, (6, 3))
    fn = self._fn(kind, reduction=reduction)
    keep = np.array([True, False, True, True, False, True])
    where = jnp.asarray(keep)[:, None]
    masked = jax.jit(lambda a, b: fn(a, b, where=where))
    chex.assert_trees_all_close(masked(x, t), fn(x[keep], t[keep]), rtol=1e-12)
    g = jax.jit(jax.grad(masked, (0, 1)))(x, t)
    for gi in g:
      self.assertTrue(np.all(np.asarray(gi)[~keep] == 0.0))
      self.assertTrue(np.any(np.asarray(gi)[keep] != 0.0))
    none = self._fn(kind, reduction="none")(x, t, where=where)
    chex.assert_trees_all_close(none[~keep], 0.0)

  def test_where_elementwise_mean_denominators(self):
    x, t = self._data("kl", (3, 4))
    where = np.array([[True, False, False, False], [False] * 4, [True, True, False, True]])
    full = jaxloss.kl_div(x, t, reduction="none")
    total = np.sum(np.where(where, full, 0.0))
    chex.assert_trees_all_close(jaxloss.kl_div(x, t, reduction="batchmean", where=where),
                                total / 2)  # rows 0 and 2 keep elements, row 1 none
    with warnings.catch_warnings():
      warnings.simplefilter("ignore")
      chex.assert_trees_all_close(jaxloss.kl_div(x, t, reduction="mean", where=where),
                                  total / 4)
    chex.assert_trees_all_close(
        jaxloss.kl_div(x, t, reduction="batchmean", where=np.ones((3, 4), bool)),
        jaxloss.kl_div(x, t, reduction="batchmean"))

  @parameterized.named_parameters(("kl", "kl"), ("poisson", "poisson"), ("gaussian", "gaussian"))
  def test_where_zero_gradient_even_for_nonfinite_masked_inputs(self, kind):
    where = jnp.array([True, False, True, False])
    x = jnp.array([-0.5, jnp.inf, -1.0, jnp.nan])
    t = jnp.array([0.5, 0.0, 2.0, -jnp.inf]) if kind != "kl" else jnp.array([0.5, 0, 0.2, -1])
    if kind == "gaussian":
      var = jnp.array([1.0, 0.0, 2.0, -1.0])  # zero (-> eps) and negative var masked
      def fn(a, b, v):
        return jaxloss.gaussian_nll_loss(a, b, v, full=True, where=where)
      args, argnums = (x, t, var), (0, 1, 2)
      err, _ = checkify.checkify(fn)(*args)
      self.assertIsNone(err.get())  # a negative var at a masked position is not reported
    else:
      fn = self._fn(kind, reduction="sum")
      fn = (lambda f: lambda a, b: f(a, b, where=where))(fn)
      args, argnums = (x, t), (0, 1)
    value = jax.jit(fn)(*args)
    self.assertTrue(np.isfinite(float(value)))
    for g in jax.jit(jax.grad(fn, argnums))(*args):
      self.assertTrue(np.all(np.isfinite(np.asarray(g))))
      self.assertTrue(np.all(np.asarray(g)[~np.asarray(where)] == 0.0))

  def test_kl_div_mean_warns_like_torch(self):
    x, t = jnp.zeros((2, 3)), jnp.full((2, 3), 1 / 3)
    with self.assertWarnsRegex(UserWarning, "'batchmean' divides only by the batch size"):
      jaxloss.kl_div(x, t)  # the default reduction is 'mean', as in torch
    with warnings.catch_warnings():
      warnings.simplefilter("error")
      for reduction in ("none", "sum", "batchmean"):
        jaxloss.kl_div(x, t, reduction=reduction)

  def test_kl_div_batchmean_of_scalar_is_sum(self):
    x, t = np.array(-1.0), np.array(0.3)
    out = jaxloss.kl_div(x, t, reduction="batchmean")
    ref = F.kl_div(torch.tensor(x), torch.tensor(t), reduction="batchmean")
    np.testing.assert_allclose(out, ref.numpy(), rtol=1e-12)
    np.testing.assert_allclose(out, jaxloss.kl_div(x, t, reduction="sum"), rtol=1e-12)

  def test_gaussian_negative_var_checkify(self):
    x = jnp.zeros((2, 3))
    f = jax.jit(checkify.checkify(jaxloss.gaussian_nll_loss))
    err, _ = f(x, x, jnp.array([[1.0, -0.5, 2.0], [1.0, 1.0, 1.0]]))
    self.assertRegex(err.get(), r"gaussian_nll_loss: `var` has negative entry/entries; "
                                r"found -0\.5")
    with self.assertRaises(checkify.JaxRuntimeError):
      err.throw()
    err, _ = f(x, x, jnp.array([[1.0, 0.0, 2.0], [1.0, 1.0, 1.0]]))
    self.assertIsNone(err.get())
    with self.assertRaisesRegex(ValueError, r"`var` has negative entry/entries, got -0\.5"):
      jaxloss.gaussian_nll_loss(x, x, -0.5)

  @parameterized.named_parameters(
      ("kl_bf16", "kl", jnp.bfloat16), ("poisson_f16", "poisson", jnp.float16),
      ("gaussian_bf16", "gaussian", jnp.bfloat16), ("gaussian_f16", "gaussian", jnp.float16))
  def test_half_inputs_compute_in_float32(self, kind, dtype):
    x, t = self._data(kind, (256, 3))
    fn = jax.jit(self._fn(kind, reduction="sum"))
    xh, th = jnp.asarray(x, dtype), jnp.asarray(t, dtype)
    out = fn(xh, th)
    self.assertEqual(out.dtype, dtype)
    exact = float(fn(np.asarray(xh, np.float64), np.asarray(th, np.float64)))
    self.assertLess(abs(float(out) - exact) / abs(exact), 1e-2)
    g = jax.jit(jax.grad(lambda a, b: fn(a, b).astype(jnp.float32), (0, 1)))(xh, th)
    self.assertEqual(g[0].dtype, dtype)
    self.assertEqual(g[1].dtype, dtype)

  def test_vmap_matches_loop(self):
    rng = np.random.default_rng(3)
    x, t = rand(rng, (4, 5, 3), np.float64, -2, 0), rand(rng, (4, 5, 3), np.float64, 0.1, 2)
    var, where = rand(rng, (4, 5), np.float64, 0.1, 2), rng.uniform(size=(4, 5, 3)) > 0.3
    fns = (lambda a, b, v, m: jaxloss.kl_div(a, b, reduction="batchmean", where=m),
           lambda a, b, v, m: jaxloss.poisson_nll_loss(a, b, full=True, where=m),
           lambda a, b, v, m: jaxloss.gaussian_nll_loss(a, b, v, where=m))
    for fn in fns:
      value_and_grad = jax.jit(jax.value_and_grad(fn, (0, 1, 2)))
      batched = jax.jit(jax.vmap(jax.value_and_grad(fn, (0, 1, 2))))(x, t, var, where)
      looped = [value_and_grad(x[i], t[i], var[i], where[i]) for i in range(4)]
      looped = jax.tree.map(lambda *leaves: jnp.stack(leaves), *looped)
      chex.assert_trees_all_close(batched, looped, rtol=1e-12)


class LikelihoodErrorTest(parameterized.TestCase):

  def test_unknown_reductions(self):
    x = jnp.ones(3)
    with self.assertRaisesRegex(ValueError, r"kl_div: `reduction` must be one of \('none', "
                                            r"'batchmean', 'sum', 'mean'\), got 'avg'"):
      jaxloss.kl_div(x, x, reduction="avg")
    for fn in (jaxloss.poisson_nll_loss, lambda a, b, **k: jaxloss.gaussian_nll_loss(a, b, x, **k)):
      for bad in ("batchmean", "avg"):
        with self.assertRaisesRegex(ValueError, r"_nll_loss: `reduction` must be one of "
                                                r"\('none', 'mean', 'sum'\)"):
          fn(x, x, reduction=bad)

  def test_legacy_arguments(self):
    x = jnp.ones(3)
    with self.assertRaisesRegex(ValueError, "kl_div: the deprecated `size_average`"):
      jaxloss.kl_div(x, x, False)
    with self.assertRaisesRegex(ValueError, "poisson_nll_loss: the deprecated `size_average`"):
      jaxloss.poisson_nll_loss(x, x, True, False, True)
    with self.assertRaisesRegex(ValueError, "poisson_nll_loss: the deprecated"):
      jaxloss.poisson_nll_loss(x, x, reduce=False)

  def test_dtype_errors(self):
    x, i = jnp.ones(3), jnp.ones(3, jnp.int32)
    for fn, args in ((jaxloss.kl_div, (i, x)), (jaxloss.poisson_nll_loss, (x, i)),
                     (jaxloss.gaussian_nll_loss, (x, x, i))):
      with self.assertRaisesRegex(ValueError, "must be a floating-point array, got dtype int32"):
        fn(*args, reduction="sum")
    with self.assertRaisesRegex(ValueError, "`var` must be a floating-point array or a Python"):
      jaxloss.gaussian_nll_loss(x, x, True)

  def test_shape_errors_at_trace_time(self):
    with self.assertRaisesRegex(ValueError, r"kl_div: `input` of shape \(3,\) and `target` of "
                                            r"shape \(4,\) cannot be broadcast together"):
      jax.jit(jaxloss.kl_div, static_argnames="reduction").lower(
          jnp.ones(3), jnp.ones(4), reduction="sum")
    with self.assertRaisesRegex(ValueError, r"poisson_nll_loss: `input` of shape \(2, 3\) and "
                                            r"`target` of shape \(2, 4\) cannot be broadcast"):
      jaxloss.poisson_nll_loss(jnp.ones((2, 3)), jnp.ones((2, 4)))
    with self.assertRaisesRegex(ValueError, r"`where` of shape \(2,\) must be broadcastable"):
      jaxloss.poisson_nll_loss(jnp.ones(3), jnp.ones(3), where=jnp.ones(2, bool))

  @parameterized.named_parameters(
      ("wrong_length", (2, 3, 4), (2, 3, 5)), ("two_ones", (2, 3, 4), (1, 3, 1)),
      ("fewer_dims_not_trailing", (2, 3, 4), (3, 4)), ("extra_dim", (2, 2), (2, 2, 1)),
      ("input_singleton", (2, 1, 4), (2, 3, 4)))
  def test_gaussian_var_shape_errors(self, x_shape, var_shape):
    # Exactly the shapes torch rejects with "var is of incorrect size".
    with self.assertRaises(ValueError):
      F.gaussian_nll_loss(torch.ones(x_shape), torch.ones(x_shape), torch.ones(var_shape))
    x_text, var_text = (", ".join(map(str, s)) for s in (x_shape, var_shape))
    with self.assertRaisesRegex(
        ValueError, rf"gaussian_nll_loss: `var` must have the shape of `input` \({x_text}\)"
                    rf".*got \({var_text}\)"):
      jax.jit(jaxloss.gaussian_nll_loss).lower(
          jnp.ones(x_shape), jnp.ones(x_shape), jnp.ones(var_shape))


if __name__ == "__main__":
  absltest.main()
