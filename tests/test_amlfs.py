"""jaxloss.amlfs against a float64 NumPy reference of the AM-LFS loss (paper eqs. 4, 16, 17)."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized
from jax.experimental import checkify

import jaxloss
from tests.parity import num_grad

N, C, M = 6, 5, 6
DELTA = 0.01


def np_piecewise(u, a, b, lo, hi):
  m = len(a)
  i = np.clip(np.floor((u - lo) / (hi - lo) * m), 0, m - 1).astype(int)
  return a[i] * u + b[i]


def np_amlfs(cos, y, theta, scale, weight=None, ignore_index=-100, reduction="mean",
             where=None, delta=DELTA):
  """-log(max(tau(p), delta p)), p the softmax of s cos with s_y t(cos_y) at the target; with
  a label-smoothing coordinate eps (theta of 4 M + 1): (1 - eps) times that plus
  eps / C * sum_j weight_j (-log p_j), torch's weighting."""
  cos = np.asarray(cos, np.float64)
  theta = np.asarray(theta, np.float64)
  eps = np.clip(theta[-1], 0.0, 1.0) if len(theta) % 4 else 0.0
  a_t, b_t, a_tau, b_tau = theta[:len(theta) - len(theta) % 4].reshape(4, -1)
  s = np.broadcast_to(np.asarray(scale, np.float64), cos.shape)
  counted = y != ignore_index
  if where is not None:
    counted = counted & where
  ys = np.where(counted, y, 0)
  rows = np.arange(len(y))
  logits = s * cos
  logits[rows, ys] = s[rows, ys] * np_piecewise(cos[rows, ys], a_t, b_t, -1.0, 1.0)
  mx = logits.max(1, keepdims=True)
  log_probs = logits - mx - np.log(np.exp(logits - mx).sum(1, keepdims=True))
  logp = log_probs[rows, ys]
  p = np.exp(logp)
  tau = np_piecewise(p, a_tau, b_tau, 0.0, 1.0)
  loss = -np.log(np.maximum(tau, delta * p))
  w = np.ones(cos.shape[1]) if weight is None else np.asarray(weight, np.float64)
  loss = (1 - eps) * loss * w[ys] - eps / cos.shape[1] * (log_probs * w).sum(1)
  loss = np.where(counted, loss, 0.0)
  if reduction == "none":
    return loss
  if reduction == "sum":
    return loss.sum()
  return loss.sum() / np.where(counted, w[ys], 0.0).sum()


def np_cross_entropy(logits, y):
  mx = logits.max(1, keepdims=True)
  logp = logits - mx - np.log(np.exp(logits - mx).sum(1, keepdims=True))
  return -logp[np.arange(len(y)), y].mean()



def random_cosines(seed, lo=-0.95, hi=0.95):
  return np.random.default_rng(seed).uniform(lo, hi, (N, C))


def targets(seed):
  return np.random.default_rng(seed + 100).integers(0, C, N)


def sampled_theta(seed, sigma=0.2):
  identity = np.asarray(jaxloss.identity_theta(M, jnp.float64))
  return identity + sigma * np.random.default_rng(seed + 200).normal(size=4 * M)


class ReferenceTest(chex.TestCase):

  @parameterized.named_parameters(("identity", 0, 0.0, 3.0), ("sampled", 1, 0.2, 3.0),
                                  ("wide", 2, 0.5, 5.0), ("scale_per_sample", 3, 0.3, None))
  def test_values_and_gradients(self, seed, sigma, scale):
    cos, y = random_cosines(seed), targets(seed)
    theta = sampled_theta(seed, sigma)
    if scale is None:
      scale = np.linspace(1.0, 6.0, N)[:, None]
    for reduction in ("none", "mean", "sum"):
      np.testing.assert_allclose(
          jaxloss.amlfs_loss(cos, y, theta, scale=scale, reduction=reduction),
          np_amlfs(cos, y, theta, scale, reduction=reduction), rtol=1e-12, atol=1e-14)
    def f(c, th, s):
      return jaxloss.amlfs_loss(c, y, th, scale=s)
    gc, gt, gs = jax.grad(f, (0, 1, 2))(cos, theta, np.asarray(scale, np.float64))
    for got, ref in ((gc, num_grad(lambda c: np_amlfs(c, y, theta, scale), cos)),
                     (gt, num_grad(lambda th: np_amlfs(cos, y, th, scale), theta)),
                     (gs, num_grad(lambda s: np_amlfs(cos, y, theta, s), scale))):
      np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-7 * np.abs(ref).max())

  def test_weight_ignore_and_where(self):
    cos, y = random_cosines(4), targets(4)
    theta = sampled_theta(4)
    w = np.array([0.5, 1.0, 2.0, 0.3, 1.5])
    y[2] = 1
    keep = np.array([True, True, True, False, True, True])
    bad = cos.copy()
    bad[~keep] = np.nan
    kw = dict(weight=w, ignore_index=1, where=keep)
    for reduction in ("none", "mean", "sum"):
      got = jaxloss.amlfs_loss(bad, y, theta, scale=4.0, reduction=reduction, **kw)
      np.testing.assert_allclose(got, np_amlfs(cos, y, theta, 4.0, reduction=reduction, **kw),
                                 rtol=1e-12)
    g = jax.grad(lambda c: jaxloss.amlfs_loss(c, y, theta, scale=4.0, **kw))(bad)
    dropped = ~keep | (y == 1)
    self.assertTrue(np.all(np.asarray(g)[dropped] == 0) and np.all(np.isfinite(g)))
    # Every sample ignored: 0 / 0, as torch's cross_entropy.
    self.assertTrue(np.isnan(jaxloss.amlfs_loss(cos, np.full(N, -100), theta, scale=4.0)))


class SpecialThetaTest(chex.TestCase):

  def test_identity_theta_is_cross_entropy(self):
    rng = np.random.default_rng(5)
    cos = rng.uniform(-1, 1, (N, C)).astype(np.float32)
    cos[0, 0], cos[1, 1] = 1.0, -1.0
    y = targets(5)
    y[:2] = [0, 1]
    theta = jaxloss.identity_theta()
    self.assertEqual(theta.shape, (24,))

    @jax.jit
    def both(c, scale):
      def f(c):
        return jaxloss.amlfs_loss(c, y, theta, scale=scale, reduction="none")
      def ce(c):
        return jaxloss.cross_entropy(scale * c, y, reduction="none")
      def grad(h):
        return jax.grad(lambda c: jnp.sum(h(c)))(c)
      return f(c), ce(c), grad(f), grad(ce)
    for scale in (1.0, 30.0, 1e4):   # 1e4: very confident right and wrong (p underflows)
      loss, ce, g, g_ce = both(cos, np.float32(scale))
      np.testing.assert_allclose(loss, ce, rtol=1e-6, atol=1e-6)
      np.testing.assert_allclose(g, g_ce, rtol=1e-5, atol=1e-5 * scale)
    self.assertGreater(float(jnp.max(loss)), 1e3)   # the wrong answers are really wrong

  def test_scale_as_norms_gives_the_linear_layer(self):
    rng = np.random.default_rng(6)
    x, w, y = rng.normal(size=(N, 3)), rng.normal(size=(C, 3)), targets(6)
    cos, xn, wn = jaxloss.cosine_logits(x, w, return_norms=True)
    np.testing.assert_allclose(
        jaxloss.amlfs_loss(cos, y, jaxloss.identity_theta(dtype=jnp.float64), scale=xn * wn),
        np_cross_entropy(x @ w.T, y), rtol=1e-12)

  def test_cosface_theta_is_cosface(self):
    cos, y = random_cosines(7).astype(np.float32), targets(7)

    @jax.jit
    def both(c, s):
      def f(c):
        return jaxloss.amlfs_loss(c, y, jaxloss.cosface_theta(0.35), scale=s)
      def g(c):
        return jaxloss.cosface(c, y, s, 0.35)
      return f(c), g(c), jax.grad(f)(c), jax.grad(g)(c)
    for s in (np.full((N, 1), 64.0, np.float32), np.linspace(10, 40, N, dtype=np.float32)[:, None]):
      loss, ref, g, g_ref = both(cos, s)
      np.testing.assert_allclose(loss, ref, rtol=1e-6)
      np.testing.assert_allclose(g, g_ref, rtol=1e-5, atol=1e-6)

  def test_theta_helpers_and_curves(self):
    m = 0.5
    arc = jaxloss.arcface_theta(m, dtype=jnp.float64)
    curves = jaxloss.amlfs_curves(arc, num_points=6 * 50 + 1)
    x, t = np.asarray(curves["x"]), np.asarray(curves["t"])
    knots = np.linspace(-1, 1, M + 1)
    on_knots = np.isin(np.round(x, 12), np.round(knots, 12))
    exact = np.cos(np.arccos(x) + m)
    np.testing.assert_allclose(t[on_knots][1:], exact[on_knots][1:], atol=1e-12)
    # A chord fit: close except near x = +-1, where cos(arccos x + m) has infinite slopes.
    self.assertLess(np.max(np.abs(t - exact)), 0.15)
    self.assertLess(np.max(np.abs(t - exact)[np.abs(x) <= 0.6]), 0.02)
    np.testing.assert_allclose(curves["tau"], curves["p"])
    ident = jaxloss.amlfs_curves(jaxloss.identity_theta(4), num_points=9)
    np.testing.assert_allclose(ident["t"], ident["x"])
    cosf = jaxloss.amlfs_curves(jaxloss.cosface_theta(0.35, 3))
    np.testing.assert_allclose(cosf["t"], cosf["x"] - 0.35, atol=1e-6)
    # fit_theta reproduces a function at the interval ends; transforms extrapolate linearly.
    theta = jaxloss.fit_theta(lambda u: u ** 3, lambda p: np.sqrt(p), 5, jnp.float64)
    t_fn, tau_fn = jaxloss.amlfs_transforms(theta)
    u = np.linspace(-1, 1, 6)[:-1]
    np.testing.assert_allclose(t_fn(u), u ** 3, atol=1e-12)
    np.testing.assert_allclose(tau_fn(np.linspace(0, 1, 6)[1:]), np.sqrt(np.linspace(0, 1, 6)[1:]))
    a_t, b_t = np.asarray(theta)[:10].reshape(2, 5)
    np.testing.assert_allclose(t_fn(1.001), a_t[4] * 1.001 + b_t[4])   # the last chord
    np.testing.assert_allclose(t_fn(-1.001), a_t[0] * -1.001 + b_t[0])  # the first chord
    rng = np.random.default_rng(8)
    theta = sampled_theta(8)
    t_fn, tau_fn = jaxloss.amlfs_transforms(theta)
    u, p = rng.uniform(-1, 1, 50), rng.uniform(0, 1, 50)
    np.testing.assert_allclose(t_fn(u), np_piecewise(u, theta[:M], theta[M:2 * M], -1, 1))
    np.testing.assert_allclose(tau_fn(p), np_piecewise(p, theta[2 * M:3 * M], theta[3 * M:], 0, 1))


class GuardTest(chex.TestCase):

  def test_non_positive_tau_falls_back_to_shifted_cross_entropy(self):
    cos, y = random_cosines(9), targets(9)
    theta = np.array(jaxloss.identity_theta(M, jnp.float64))
    theta[3 * M] = -0.5        # tau(p) = p - 0.5 on [0, 1/6): negative there
    theta[3 * M + 1] = -0.27   # tau(p) = p - 0.27 on [1/6, 2/6): negative, then positive
    scale = 1.0                # p from 0.07 to 0.3: the first two intervals
    p = np.exp(-np_amlfs(cos, y, jaxloss.identity_theta(M, jnp.float64), scale,
                         reduction="none"))
    tau = np_piecewise(p, theta[2 * M:3 * M], theta[3 * M:], 0, 1)
    guarded = tau <= DELTA * p
    self.assertTrue(3 <= guarded.sum() < N)
    loss = jaxloss.amlfs_loss(cos, y, theta, scale=scale, reduction="none")
    ce = jaxloss.cross_entropy(scale * cos, y, reduction="none")
    np.testing.assert_allclose(np.asarray(loss)[guarded],
                               np.asarray(ce)[guarded] - math.log(DELTA), rtol=1e-12)
    # Where the guard is active the gradient is exactly the cross-entropy gradient.
    g = jax.jacrev(lambda c: jaxloss.amlfs_loss(c, y, theta, scale=scale, reduction="none"))(cos)
    g_ce = jax.jacrev(lambda c: jaxloss.cross_entropy(scale * c, y, reduction="none"))(cos)
    np.testing.assert_allclose(np.asarray(g)[guarded], np.asarray(g_ce)[guarded], rtol=1e-12)
    # A tau that is identically zero on an interval, and p exactly at a zero of tau.
    theta[2 * M] = theta[3 * M] = 0.0
    val, grad = jax.value_and_grad(lambda c: jaxloss.amlfs_loss(c, y, theta, scale=scale))(cos)
    self.assertTrue(np.isfinite(float(val)) and np.all(np.isfinite(grad)))

  def test_gradient_bound(self):
    # |d loss / d logits| <= |a_tau| / delta * |d CE / d logits|: check on the target logit.
    cos, y = random_cosines(10), targets(10)
    theta = np.array(jaxloss.identity_theta(M, jnp.float64))
    p = np.exp(-np_amlfs(cos, y, theta, 1.0, reduction="none"))
    for delta in (0.01, 0.1):
      th = theta.copy()
      th[3 * M:] = -(1 - 1.001 * delta) * p.min()   # tau = delta p * 1.001 at the smallest p
      g = jax.grad(lambda c: jaxloss.amlfs_loss(c, y, th, scale=1.0, reduction="sum",
                                                tau_min_ratio=delta))(cos)
      g_ce = jax.grad(lambda c: jaxloss.cross_entropy(c, y, reduction="sum"))(cos)
      self.assertTrue(np.all(np.abs(g) <= np.abs(g_ce) / delta * (1 + 1e-9)))
      self.assertTrue(np.any(np.abs(g) > 0.9 / delta * np.abs(g_ce)))   # and nearly reached


class NumericsTest(chex.TestCase):

  def test_ten_thousand_sampled_thetas(self):
    key = jax.random.key(0)
    thetas = jaxloss.identity_theta() + 0.2 * jax.random.normal(key, (10_000, 4 * M))
    cos = random_cosines(11).astype(np.float32)
    cos[0, 0], cos[1, 1], cos[2, 2] = 1.0, -1.0, 1.0   # targets at +-1 ...
    cos[3, 0] = 1.0                                     # ... and a non-target at 1
    y = np.array([0, 1, 2, 3, 4, 0])

    @jax.jit
    def run(thetas, cos, scale):
      def f(th, c):
        return jaxloss.amlfs_loss(c, y, th, scale=scale)
      return jax.vmap(jax.value_and_grad(f, (0, 1)), (0, None))(thetas, cos)
    for scale in (1e4, 30.0):
      for c in (cos, cos.astype(jnp.bfloat16).astype(np.float32)):
        val, (g_theta, g_cos) = run(thetas, c, np.float32(scale))
        self.assertTrue(np.all(np.isfinite(val)), scale)
        self.assertTrue(np.all(np.isfinite(g_theta)) and np.all(np.isfinite(g_cos)), scale)
    val_bf16_cos = val   # scale 30, bf16-rounded cosines
    # bf16 inputs: computed in float32, result in bf16.
    vals = jax.jit(jax.vmap(lambda th: jaxloss.amlfs_loss(
        jnp.asarray(cos, jnp.bfloat16), y, th, scale=30.0)))(thetas)
    self.assertEqual(vals.dtype, jnp.bfloat16)
    self.assertTrue(np.all(np.isfinite(np.asarray(vals, np.float32))))
    np.testing.assert_allclose(np.asarray(vals, np.float32), val_bf16_cos, rtol=1e-2)

  def test_vmap_matches_loop(self):
    thetas = np.stack([sampled_theta(s) for s in range(3)])
    cos = np.stack([random_cosines(s) for s in range(3)])
    y = targets(12)

    @jax.jit
    def run(thetas, cos):
      def f(th, c):
        return jaxloss.amlfs_loss(c, y, th, scale=3.0)
      # the last: unbatched (C,) cosines with a scalar target
      single = jaxloss.amlfs_loss(cos[0, 0], y[0], thetas[0], scale=3.0, reduction="none")
      return jax.vmap(f, (0, None))(thetas, cos[0]), jax.vmap(f)(thetas, cos), single
    over_theta, both, single = run(thetas, cos)
    for i in range(3):
      np.testing.assert_allclose(over_theta[i], np_amlfs(cos[0], y, thetas[i], 3.0), rtol=1e-12)
      np.testing.assert_allclose(both[i], np_amlfs(cos[i], y, thetas[i], 3.0), rtol=1e-12)
    self.assertEqual(single.shape, ())
    np.testing.assert_allclose(single, np_amlfs(cos[0], y, thetas[0], 3.0, reduction="none")[0],
                               rtol=1e-12)


class LabelSmoothingTest(chex.TestCase):
  """theta of 4 M + 1 numbers: the last is a label-smoothing coordinate."""

  @parameterized.product(eps=(0.0, 0.1, 0.55, 1.0), weighted=(False, True),
                         reduction=("mean", "sum", "none"))
  def test_identity_is_torch_cross_entropy_with_that_smoothing(self, eps, weighted, reduction):
    import torch  # pylint: disable=import-outside-toplevel
    cos = random_cosines(3)
    y = np.array([0, 4, -100, 2, 2, 1])
    weight = np.random.default_rng(5).uniform(0.5, 2.0, C) if weighted else None
    theta = jaxloss.identity_theta(M, jnp.float64, label_smoothing=eps)
    self.assertEqual(theta.shape, (4 * M + 1,))
    expected = torch.nn.functional.cross_entropy(
        torch.tensor(4.0 * cos), torch.tensor(y), reduction=reduction, label_smoothing=eps,
        weight=None if weight is None else torch.tensor(weight)).numpy()
    # float64 (tests/conftest.py enables x64).
    got = jaxloss.amlfs_loss(jnp.asarray(cos), y, theta, scale=4.0, weight=weight,
                             reduction=reduction)
    also = jaxloss.cross_entropy(4.0 * jnp.asarray(cos), y, weight=weight,
                                 reduction=reduction, label_smoothing=eps)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(got, also, rtol=1e-12, atol=1e-14)
    # float32 against the float64 reference.
    got32 = jaxloss.amlfs_loss(jnp.asarray(cos, jnp.float32), y,
                               jaxloss.identity_theta(M, label_smoothing=eps), scale=4.0,
                               weight=weight, reduction=reduction)
    np.testing.assert_allclose(got32, expected, rtol=2e-6, atol=1e-6)

  def test_sampled_theta_with_smoothing_matches_the_reference(self):
    cos, y = random_cosines(4), targets(4)
    weight = np.random.default_rng(6).uniform(0.5, 2.0, C)
    for seed, eps in ((0, 0.2), (1, 0.05)):
      theta = np.concatenate([sampled_theta(seed, 0.1), [eps]])
      for reduction in ("mean", "none"):
        got = jaxloss.amlfs_loss(jnp.asarray(cos), y, jnp.asarray(theta), scale=3.0,
                                 weight=weight, reduction=reduction)
        np.testing.assert_allclose(
            got, np_amlfs(cos, y, theta, 3.0, weight=weight, reduction=reduction),
            rtol=1e-12)
      # Gradients in theta (smoothing included) and in the cosines: central differences.
      f = lambda t, c: jaxloss.amlfs_loss(c, y, t, scale=3.0, weight=weight)  # noqa: E731
      g_theta, g_cos = jax.grad(f, argnums=(0, 1))(jnp.asarray(theta), jnp.asarray(cos))
      np.testing.assert_allclose(
          g_theta, num_grad(lambda t: np_amlfs(cos, y, t, 3.0, weight=weight), theta),
          rtol=1e-6, atol=1e-8)
      np.testing.assert_allclose(
          g_cos, num_grad(lambda c: np_amlfs(c, y, theta, 3.0, weight=weight), cos),
          rtol=1e-6, atol=1e-8)

  def test_the_coordinate_is_clipped_to_torch_domain(self):
    cos, y = jnp.asarray(random_cosines(5), jnp.float32), targets(5)
    loss = lambda eps: jaxloss.amlfs_loss(  # noqa: E731
        cos, y, jaxloss.identity_theta(M, label_smoothing=0.0).at[-1].set(eps), scale=5.0)
    chex.assert_trees_all_close(loss(-0.3), jaxloss.cross_entropy(5.0 * cos, y), rtol=1e-6)
    chex.assert_trees_all_close(loss(1.7), jaxloss.cross_entropy(5.0 * cos, y,
                                                                 label_smoothing=1.0),
                                rtol=1e-6)
    self.assertEqual(float(jax.grad(loss)(-0.3)), 0.0)
    self.assertGreater(abs(float(jax.grad(loss)(0.3))), 0.0)

  def test_population_of_smoothings_under_vmap_and_jit(self):
    cos, y = jnp.asarray(random_cosines(6), jnp.float32), targets(6)
    eps = jnp.array([0.0, 0.1, 0.2], jnp.float32)
    thetas = jax.vmap(lambda e: jaxloss.identity_theta(M, label_smoothing=0.0).at[-1].set(e))(eps)
    got = jax.jit(jax.vmap(lambda t: jaxloss.amlfs_loss(cos, y, t, scale=5.0)))(thetas)
    want = [jaxloss.cross_entropy(5.0 * cos, y, label_smoothing=float(e)) for e in eps]
    chex.assert_trees_all_close(got, jnp.stack(want), rtol=1e-6)

  def test_transforms_ignore_the_coordinate_and_fit_theta_takes_it(self):
    base = jaxloss.fit_theta(None, lambda p: p ** 1.5, M)
    with_ls = jaxloss.fit_theta(None, lambda p: p ** 1.5, M, label_smoothing=0.2)
    chex.assert_trees_all_equal(with_ls[:-1], base)
    self.assertAlmostEqual(float(with_ls[-1]), 0.2, places=7)
    curves, curves_ls = jaxloss.amlfs_curves(base), jaxloss.amlfs_curves(with_ls)
    chex.assert_trees_all_equal(curves, curves_ls)


class ErrorTest(absltest.TestCase):

  def test_trace_time_errors(self):
    cos, y, th = jnp.zeros((3, 4)), jnp.zeros(3, jnp.int32), jaxloss.identity_theta()
    cases = [
        (lambda: jaxloss.amlfs_loss(cos, y, jnp.ones(6), scale=1.0),
         r"amlfs_loss: `theta` must be a 1-D vector of 4 \* M"),
        (lambda: jaxloss.identity_theta(label_smoothing=1.5),
         r"`label_smoothing` must lie in \[0, 1\]"),
        (lambda: jaxloss.amlfs_loss(cos, y, jnp.ones((4, 6)), scale=1.0), r"got shape \(4, 6\)"),
        (lambda: jaxloss.amlfs_loss(cos, y, th, scale=jnp.ones(3)),
         r"amlfs_loss: `scale` of shape \(3,\) must be broadcastable"),
        (lambda: jaxloss.amlfs_loss(cos, y, th, scale=1.0, tau_min_ratio=0.0),
         r"`tau_min_ratio` must lie in \(0, 1\)"),
        (lambda: jaxloss.amlfs_loss(cos, y, th, scale=1.0, weight=jnp.ones(3)),
         r"amlfs_loss: `weight` must have shape \(4,\)"),
        (lambda: jaxloss.amlfs_loss(cos, jnp.zeros(2, jnp.int32), th, scale=1.0),
         r"amlfs_loss: `target` must have shape \(3,\)"),
        (lambda: jaxloss.amlfs_loss(jnp.zeros((2, 3, 4)), y, th, scale=1.0),
         r"amlfs_loss: `cosine` must have shape"),
        (lambda: jaxloss.amlfs_loss(cos, y, th, scale=1.0, reduction="avg"),
         r"amlfs_loss: `reduction`"),
        (lambda: jaxloss.identity_theta(0),
         r"identity_theta: `num_intervals` must be a positive int"),
    ]
    for fn, msg in cases:
      with self.assertRaisesRegex(ValueError, msg):
        fn()
    with self.assertRaisesRegex(ValueError, "amlfs_loss: `scale` is required"):  # on purpose
      jaxloss.amlfs_loss(cos, y, th)
    with self.assertRaisesRegex(ValueError, "amlfs_loss: pass the logit scale once"):
      jaxloss.amlfs_loss(cos, y, th, scale=2.0, s=2.0)

  def test_s_is_the_deprecated_name_of_scale(self):
    cos = jnp.tanh(jax.random.normal(jax.random.key(0), (3, 4)))
    y, th = jnp.array([0, 3, 1]), jaxloss.cosface_theta(0.2)
    with self.assertWarnsRegex(DeprecationWarning, "`s` is deprecated"):
      value = jaxloss.amlfs_loss(cos, y, th, s=7.0)
    chex.assert_trees_all_equal(value, jaxloss.amlfs_loss(cos, y, th, scale=7.0))

  def test_checkify_reports(self):
    checked = jax.jit(checkify.checkify(
        lambda c, t: jaxloss.amlfs_loss(c, t, jaxloss.identity_theta(), scale=10.0)))
    err, _ = checked(jnp.zeros((3, 4)), jnp.array([0, 7, 1]))
    with self.assertRaisesRegex(Exception, "amlfs_loss: `target` holds class index 7"):
      err.throw()
    err, _ = checked(jnp.full((3, 4), -1.2), jnp.array([0, 1, 1]))
    with self.assertRaisesRegex(Exception, "amlfs_loss: every element of `cosine`"):
      err.throw()


if __name__ == "__main__":
  absltest.main()
