"""jaxloss.focal against float64 references of the focal-loss formulas and torchvision's."""

import chex
import jax
import jax.numpy as jnp
import mpmath
import numpy as np
import torch
from absl.testing import absltest, parameterized
from jax.experimental import checkify

import jaxloss
from tests.parity import ParityTestCase, num_grad

N, C = 6, 5


def np_softmax_focal(x, y, gamma, alpha=None, reduction="mean", ignore_index=-100):
  """-alpha_y (1 - p_y)^gamma log p_y (class axis 1), float64."""
  x = np.moveaxis(np.asarray(x, np.float64), 1, -1).reshape(-1, x.shape[1])
  y = np.asarray(y).reshape(-1)
  mx = x.max(1, keepdims=True)
  logp = x - mx - np.log(np.exp(x - mx).sum(1, keepdims=True))
  counted = y != ignore_index
  ys = np.where(counted, y, 0)
  lp = logp[np.arange(len(y)), ys]
  loss = -(1 - np.exp(lp)) ** gamma * lp
  if alpha is not None:
    alpha = np.asarray(alpha, np.float64)
    loss = loss * (alpha if alpha.ndim == 0 else alpha[ys])
  loss = np.where(counted, loss, 0.0)
  if reduction == "none":
    return loss
  return loss.sum() if reduction == "sum" else loss.sum() / counted.sum()


def tv_sigmoid_focal_loss(inputs, targets, alpha=0.25, gamma=2.0, reduction="none"):
  """torchvision.ops.sigmoid_focal_loss's formula (torchvision 0.2x source), for NumPy or torch."""
  if isinstance(inputs, torch.Tensor):
    p = torch.sigmoid(inputs)
    ce_loss = torch.nn.functional.binary_cross_entropy_with_logits(inputs, targets,
                                                                   reduction="none")
  else:
    inputs, targets = np.asarray(inputs, np.float64), np.asarray(targets, np.float64)
    p = 1 / (1 + np.exp(-inputs))
    ce_loss = np.maximum(inputs, 0) - inputs * targets + np.log1p(np.exp(-np.abs(inputs)))
  p_t = p * targets + (1 - p) * (1 - targets)
  loss = ce_loss * ((1 - p_t) ** gamma)
  if alpha >= 0:
    alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
    loss = alpha_t * loss
  if reduction == "mean":
    loss = loss.mean()
  elif reduction == "sum":
    loss = loss.sum()
  return loss


def mp_sigmoid_focal_grad(x, t, alpha, gamma):
  """d/dx of the torchvision formula in 50-digit arithmetic."""
  with mpmath.workdps(50):
    def loss(v):
      p = 1 / (1 + mpmath.exp(-v))
      ce = -(t * mpmath.log(p) + (1 - t) * mpmath.log(1 - p))
      p_t = p * t + (1 - p) * (1 - t)
      return (alpha * t + (1 - alpha) * (1 - t)) * ce * (1 - p_t) ** gamma
    return float(mpmath.diff(loss, mpmath.mpf(x)))



def data(seed, shape=(N, C)):
  rng = np.random.default_rng(seed)
  x = rng.normal(scale=2.0, size=shape)
  y = rng.integers(0, shape[1], (shape[0],) + shape[2:])
  return x, y


ALPHAS = {"none": None, "scalar": 0.25, "per_class": np.array([0.1, 0.5, 1.0, 2.0, 0.7])}


class SoftmaxFocalTest(chex.TestCase):

  @parameterized.named_parameters(
      *[(f"g{g}_{a}", g, a) for g in (0.0, 0.5, 2.0) for a in ALPHAS])
  def test_reference_values_and_gradients(self, gamma, alpha):
    x, y = data(1)
    alpha = ALPHAS[alpha]
    for reduction in ("none", "mean", "sum"):
      np.testing.assert_allclose(
          jaxloss.softmax_focal_loss(x, y, gamma, alpha, reduction),
          np_softmax_focal(x, y, gamma, alpha, reduction), rtol=1e-12, atol=1e-14)
    g = jax.grad(lambda v: jaxloss.softmax_focal_loss(v, y, gamma, alpha))(x)
    np.testing.assert_allclose(g, num_grad(lambda v: np_softmax_focal(v, y, gamma, alpha), x),
                               rtol=1e-6, atol=1e-9)

  def test_gamma_zero_is_cross_entropy(self):
    x, y = data(2)
    y[2] = -100
    w = ALPHAS["per_class"]

    @jax.jit
    def pairs(x):
      out = [(jaxloss.softmax_focal_loss(x, y, 0.0, reduction=r),
              jaxloss.cross_entropy(x, y, reduction=r)) for r in ("none", "mean", "sum")]
      # with per-class alpha: 'mean' divides by the count, not by sum(alpha)
      out += [(jaxloss.softmax_focal_loss(x, y, 0.0, w, reduction=r),
               jaxloss.cross_entropy(x, y, weight=w, reduction=r)) for r in ("none", "sum")]
      out.append((jax.grad(lambda v: jaxloss.softmax_focal_loss(v, y, 0.0))(x),
                  jax.grad(lambda v: jaxloss.cross_entropy(v, y))(x)))
      return out
    for focal, ce in pairs(x):
      np.testing.assert_allclose(focal, ce, rtol=1e-14)

  def test_k_dimensional_and_unbatched(self):
    xk, yk = data(3, (2, C, 3))
    x, y = data(4)

    @jax.jit
    def losses(xk, yk, x0, y0):
      return (jaxloss.softmax_focal_loss(xk, yk, 2.0, reduction="none"),
              jaxloss.softmax_focal_loss(xk, yk, 1.5),
              jaxloss.softmax_focal_loss(x0, y0, reduction="none"))
    per_position, mean, single = losses(xk, yk, x[0], y[0])
    np.testing.assert_allclose(per_position,
                               np_softmax_focal(xk, yk, 2.0, reduction="none").reshape(2, 3),
                               rtol=1e-12)
    np.testing.assert_allclose(mean, np_softmax_focal(xk, yk, 1.5), rtol=1e-12)
    self.assertEqual(single.shape, ())
    np.testing.assert_allclose(single, np_softmax_focal(x[:1], y[:1], 2.0), rtol=1e-12)

  def test_extreme_logits_and_small_gamma(self):
    # Confident right (p = 1 exactly in floating point), confident wrong (p ~ e^-2e4).
    x = np.array([[1e4, 0.0, -1e4, 1.0, 2.0]] * 2 + [[0.5, -0.5, 0.0, 1.0, 2.0]] * 4)
    y = np.array([0, 2, 0, 1, 2, 3])

    @jax.jit
    def values_and_grads(v):
      out = []
      for gamma in (0.5, 2.0):
        def f(v):
          return jaxloss.softmax_focal_loss(v, y, gamma, reduction="none")
        out.append((f(v), jax.grad(lambda v: jnp.sum(f(v)))(v)))
      return out
    for dtype in (jnp.float32, jnp.float64):
      results = values_and_grads(jnp.asarray(x, dtype))
      for gamma, (loss, g) in zip((0.5, 2.0), results, strict=True):
        self.assertTrue(np.all(np.isfinite(loss)) and np.all(np.isfinite(g)), (dtype, gamma))
        # Row 0: no loss, no gradient. Row 1: loss 2e4, the gradient softmax - onehot.
        np.testing.assert_allclose(loss[:2], [0.0, 2e4], rtol=1e-6, atol=1e-30)
        np.testing.assert_allclose(g[0], 0.0, atol=1e-30)
        np.testing.assert_allclose(g[1], [1.0, 0, -1.0, 0, 0], atol=1e-6)
        np.testing.assert_allclose(g[2:], num_grad(
            lambda v: np_softmax_focal(v, y[2:], gamma, reduction="sum"), x[2:]), rtol=1e-4,
            atol=1e-6)

  def test_near_one_probability_gradient_is_accurate(self):
    # p = 1 - 1e-12: (1-p) from 1 - p would be all rounding; the log-sum-exp is exact.
    x = np.zeros((N, C))
    x[:, 0] = np.log((C - 1) * (1 - 1e-12) / 1e-12)
    y = np.zeros(N, int)
    g = jax.grad(lambda v: jaxloss.softmax_focal_loss(v, y, 0.5, reduction="sum"))(x)
    # d/dz_0 of -(1-p)^g log p with 1-p = q: q^g (g log p + ... ) -> analytic:
    q = 1e-12
    p = 1 - q
    dl_dp = 0.5 * q ** -0.5 * np.log(p) - q ** 0.5 / p
    np.testing.assert_allclose(g[:, 0], dl_dp * p * q, rtol=1e-4)

  def test_bf16_where_and_vmap(self):
    x, y = data(5)
    keep = np.array([True, False, True, True, False, True])
    bad = x.copy()
    bad[~keep] = np.inf
    alpha = ALPHAS["per_class"]
    xs, ys = data(6, (4, C))

    @jax.jit
    def run(x16, bad, xs):
      def masked(v):
        return jaxloss.softmax_focal_loss(v, y, 0.5, alpha, where=keep)
      batched = jax.vmap(lambda a, b: jaxloss.softmax_focal_loss(a, b, reduction="none"))
      return (jaxloss.softmax_focal_loss(x16, y), jax.value_and_grad(masked)(bad),
              batched(xs, ys))
    out16, (val, g), batched = run(jnp.asarray(x, jnp.bfloat16), bad, xs)
    self.assertEqual(out16.dtype, jnp.bfloat16)
    np.testing.assert_allclose(float(out16), np_softmax_focal(x, y, 2.0), rtol=2e-2)
    np.testing.assert_allclose(val, np_softmax_focal(x[keep], y[keep], 0.5, alpha), rtol=1e-12)
    self.assertTrue(np.all(np.asarray(g)[~keep] == 0) and np.all(np.isfinite(g)))
    np.testing.assert_allclose(batched, np_softmax_focal(xs, ys, 2.0, reduction="none"),
                               rtol=1e-12)


class SigmoidFocalParityTest(ParityTestCase):
  """Against torchvision's formula written in torch (values and VJPs incl. the targets)."""

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(
      ("default_f64", {}, np.float64), ("default_f32", {}, np.float32),
      ("g0.5_a0.7_mean_f64", {"gamma": 0.5, "alpha": 0.7, "reduction": "mean"}, np.float64),
      ("g3_noalpha_sum_f64", {"gamma": 3.0, "alpha": -1.0, "reduction": "sum"}, np.float64))
  def test_parity(self, kwargs, dtype):
    rng = np.random.default_rng(7)
    x = rng.normal(scale=3.0, size=(N, C)).astype(dtype)
    t = rng.uniform(size=(N, C)).astype(dtype)
    t[0] = [0.0, 1.0, 1.0, 0.0, 1.0]   # hard targets too
    self.assert_parity(jaxloss.sigmoid_focal_loss, tv_sigmoid_focal_loss, [x, t], kwargs,
                       grad_argnums=(0, 1))


class SigmoidFocalTest(chex.TestCase):

  def test_numpy_reference_and_gradient(self):
    rng = np.random.default_rng(8)
    x = rng.normal(scale=3.0, size=(N, C))
    t = (rng.uniform(size=(N, C)) > 0.5).astype(float)
    for gamma, alpha in ((2.0, 0.25), (0.5, -1.0), (1.0, 0.9)):
      for reduction in ("none", "mean", "sum"):
        np.testing.assert_allclose(
            jaxloss.sigmoid_focal_loss(x, t, alpha, gamma, reduction),
            tv_sigmoid_focal_loss(x, t, alpha, gamma, reduction), rtol=1e-12, atol=1e-15)
      g = jax.grad(lambda v: jaxloss.sigmoid_focal_loss(v, t, alpha, gamma, "sum"))(x)
      expected = num_grad(lambda v: tv_sigmoid_focal_loss(v, t, alpha, gamma, "sum"), x)
      np.testing.assert_allclose(g, expected, rtol=1e-6, atol=1e-7 * np.abs(expected).max())

  def test_gamma_zero_is_bce_with_logits(self):
    rng = np.random.default_rng(9)
    x, t = rng.normal(size=(N, C)), rng.uniform(size=(N, C))
    for reduction in ("none", "mean", "sum"):
      np.testing.assert_allclose(
          jaxloss.sigmoid_focal_loss(x, t, -1.0, 0.0, reduction),
          jaxloss.binary_cross_entropy_with_logits(x, t, reduction=reduction), rtol=1e-14)

  def test_extreme_logits_and_small_gamma(self):
    x = np.array([1e4, -1e4, 1e4, -1e4, 30.0, -30.0])
    t = np.array([1.0, 1.0, 0.0, 0.0, 1.0, 0.0])

    @jax.jit
    def values_and_grads(v):
      def f(v, g):
        return jaxloss.sigmoid_focal_loss(v, t, 0.25, g)
      return [(f(v, g), jax.grad(lambda v: jnp.sum(f(v, g)))(v)) for g in (0.5, 2.0)]
    for dtype in (jnp.float32, jnp.float64):
      for loss, g in values_and_grads(jnp.asarray(x, dtype)):
        self.assertTrue(np.all(np.isfinite(loss)) and np.all(np.isfinite(g)), dtype)
        # Right and confident: 0 loss, 0 gradient; wrong and confident: alpha_t |x|, slope alpha_t.
        np.testing.assert_allclose(np.asarray(loss)[[0, 3]], 0.0, atol=1e-30)
        np.testing.assert_allclose(np.asarray(loss)[[1, 2]], [0.25e4, 0.75e4], rtol=1e-6)
        np.testing.assert_allclose(g[:4], [0.0, -0.25, 0.75, 0.0], atol=1e-6)
    # |x| = 30, right: 1 - p_t = 9.4e-14, which 1 - p cannot resolve in float64 (the
    # torchvision formula is off by ~1e-3 here); compare with a 50-digit reference.
    np.testing.assert_allclose(g[4:], [mp_sigmoid_focal_grad(v, u, 0.25, 2.0)
                                       for v, u in zip(x[4:], t[4:], strict=False)], rtol=1e-12)
    g = jax.grad(lambda v: jaxloss.sigmoid_focal_loss(v, t[4:], 0.25, 0.5, "sum"))(x[4:])
    np.testing.assert_allclose(g, [mp_sigmoid_focal_grad(v, u, 0.25, 0.5)
                                   for v, u in zip(x[4:], t[4:], strict=False)], rtol=1e-12)

  def test_where_bf16_and_vmap(self):
    rng = np.random.default_rng(10)
    x, t = rng.normal(size=(N, C)), (rng.uniform(size=(N, C)) > 0.5).astype(float)
    keep = rng.uniform(size=(N, C)) > 0.3
    bad = np.where(keep, x, np.nan)
    def f(v):
      return jaxloss.sigmoid_focal_loss(v, t, reduction="mean", where=keep)
    val, g = jax.value_and_grad(f)(bad)
    np.testing.assert_allclose(val, tv_sigmoid_focal_loss(x[keep], t[keep], reduction="mean"),
                               rtol=1e-12)
    self.assertTrue(np.all(np.asarray(g)[~keep] == 0) and np.all(np.isfinite(g)))
    out = jax.jit(jaxloss.sigmoid_focal_loss)(jnp.asarray(x, jnp.bfloat16),
                                              jnp.asarray(t, jnp.bfloat16))
    self.assertEqual(out.dtype, jnp.bfloat16)
    np.testing.assert_allclose(np.asarray(out, np.float64), tv_sigmoid_focal_loss(x, t),
                               rtol=2e-2, atol=1e-3)
    batched = jax.vmap(jaxloss.sigmoid_focal_loss)(x, t)
    np.testing.assert_allclose(batched, tv_sigmoid_focal_loss(x, t), rtol=1e-12)


class ErrorTest(absltest.TestCase):

  def test_trace_time_errors(self):
    x, y = jnp.zeros((3, 4)), jnp.zeros(3, jnp.int32)
    cases = [
        (lambda: jaxloss.softmax_focal_loss(x, y, reduction="avg"),
         "softmax_focal_loss: `reduction`"),
        (lambda: jaxloss.softmax_focal_loss(x, y, gamma=-1.0),
         "softmax_focal_loss: `gamma` must be non-negative"),
        (lambda: jaxloss.softmax_focal_loss(x, y, alpha=jnp.ones(3)),
         r"softmax_focal_loss: `alpha` must have shape \(4,\)"),
        (lambda: jaxloss.softmax_focal_loss(x, jnp.zeros(4, jnp.int32)),
         r"softmax_focal_loss: `target` must have shape \(3,\)"),
        (lambda: jaxloss.softmax_focal_loss(x, y.astype(float)),
         "softmax_focal_loss: `target` must be an integer"),
        (lambda: jaxloss.softmax_focal_loss(jnp.zeros(()), y),
         "softmax_focal_loss: `input` must have shape"),
        (lambda: jaxloss.sigmoid_focal_loss(x, jnp.zeros((3, 5))),
         r"sigmoid_focal_loss: `targets` must have the same shape"),
        (lambda: jaxloss.sigmoid_focal_loss(x, x, reduction="avg"),
         "sigmoid_focal_loss: `reduction`"),
        (lambda: jaxloss.sigmoid_focal_loss(x, x, gamma=-0.5), "sigmoid_focal_loss: `gamma`"),
    ]
    for fn, msg in cases:
      with self.assertRaisesRegex(ValueError, msg):
        fn()

  def test_checkify_reports(self):
    err, _ = jax.jit(checkify.checkify(jaxloss.softmax_focal_loss))(
        jnp.zeros((3, 4)), jnp.array([0, 5, 1]))
    with self.assertRaisesRegex(Exception, "softmax_focal_loss: `target` holds class index 5"):
      err.throw()
    err, _ = jax.jit(checkify.checkify(jaxloss.sigmoid_focal_loss))(
        jnp.zeros(3), jnp.array([0.0, 1.5, 1.0]))
    with self.assertRaisesRegex(Exception, r"sigmoid_focal_loss: every element of `targets`"):
      err.throw()


if __name__ == "__main__":
  absltest.main()
