"""jaxloss.angular against float64 NumPy references of the papers' formulas and
pytorch-metric-learning."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import torch
from absl.testing import absltest, parameterized
from jax.experimental import checkify
from pytorch_metric_learning import losses as pml

import jaxloss
from tests.parity import ParityTestCase, num_grad

N, C, D = 6, 5, 4


# ----------------------------------------------------------------------------
# float64 NumPy references, written from the papers' formulas
# ----------------------------------------------------------------------------


def np_cross_entropy(logits, y, weight=None, ignore_index=-100, reduction="mean",
                     label_smoothing=0.0):
  """torch's cross_entropy with class indices, in float64."""
  logits = np.asarray(logits, np.float64)
  c = logits.shape[1]
  mx = logits.max(1, keepdims=True)
  logp = logits - mx - np.log(np.exp(logits - mx).sum(1, keepdims=True))
  w = np.ones(c) if weight is None else np.asarray(weight, np.float64)
  counted = y != ignore_index
  ys = np.where(counted, y, 0)
  nll = -logp[np.arange(len(y)), ys] * w[ys]
  smooth = -(logp * w).sum(1)
  eps = label_smoothing
  loss = np.where(counted, (1 - eps) * nll + eps / c * smooth, 0.0)
  if reduction == "none":
    return loss
  if reduction == "sum":
    return loss.sum()
  return loss.sum() / np.where(counted, w[ys], 0.0).sum()


def np_margin_loss(cos, y, s, target_fn, **ce_kwargs):
  """cross-entropy of s*cos with the target logit replaced by s_y * target_fn(cos_y)."""
  cos = np.asarray(cos, np.float64)
  s = np.broadcast_to(np.asarray(s, np.float64), cos.shape)
  logits = s * cos
  rows = np.arange(len(y))
  ok = y >= 0
  yy = np.where(ok, y, 0)
  new = s[rows, yy] * target_fn(cos[rows, yy])
  logits[rows[ok], yy[ok]] = new[ok]
  return np_cross_entropy(logits, y, **ce_kwargs)


def np_cosface(m):
  return lambda x: x - m


def np_arcface(m, easy_margin=False):
  def f(x):
    phi = np.cos(np.arccos(np.clip(x, -1, 1)) + m)
    if easy_margin:
      return np.where(x > 0, phi, x)
    return np.where(x > np.cos(np.pi - m), phi, x - np.sin(np.pi - m) * m)
  return f


def np_psi(m1, m2=0.0, x_fixed_branch=None):
  """(-1)^k cos(m1 theta + m2) - 2k, k = floor((m1 theta + m2) / pi) clipped to the last piece."""
  kmax = math.ceil((m1 * np.pi + m2) / np.pi - 1e-12) - 1

  def f(x):
    xb = x if x_fixed_branch is None else x_fixed_branch
    theta = np.arccos(np.clip(xb, -1, 1))
    k = np.clip(np.floor((m1 * theta + m2) / np.pi), 0, kmax)
    return (-1.0) ** k * np.cos(m1 * np.arccos(np.clip(x, -1, 1)) + m2) - 2 * k
  return f


def np_sphere(m, lam=0.0):
  return lambda x: (lam * x + np_psi(m)(x)) / (1 + lam)



def random_cosines(seed, n=N, c=C, lo=-0.95, hi=0.95):
  return np.random.default_rng(seed).uniform(lo, hi, (n, c))


def targets(seed, n=N, c=C):
  return np.random.default_rng(seed + 100).integers(0, c, n)


# jaxloss function, reference transform, kwargs
FAMILY = {
    "cosface": (jaxloss.cosface, lambda kw: np_cosface(kw.get("m", 0.35)), {}),
    "cosface_s30_m0.2": (jaxloss.cosface, lambda kw: np_cosface(kw["m"]),
                         {"scale": 30.0, "m": 0.2}),
    "arcface": (jaxloss.arcface, lambda kw: np_arcface(kw.get("m", 0.5)), {}),
    "arcface_m0.3_s10": (jaxloss.arcface, lambda kw: np_arcface(kw["m"]),
                         {"scale": 10.0, "m": 0.3}),
    "arcface_easy": (jaxloss.arcface, lambda kw: np_arcface(0.5, True), {"easy_margin": True}),
    "sphereface_m4": (jaxloss.sphereface, lambda kw: np_sphere(4), {"scale": 8.0}),
    "sphereface_m3_lambda": (jaxloss.sphereface, lambda kw: np_sphere(3, 5.0),
                             {"scale": 8.0, "m": 3, "lambda_": 5.0}),
    "combined": (jaxloss.combined_margin, lambda kw: (lambda x: np_psi(1.0, 0.3)(x) - 0.2), {}),
    "combined_general": (jaxloss.combined_margin,
                         lambda kw: (lambda x: np_psi(1.35, 0.2)(x) - 0.1),
                         {"scale": 6.0, "m1": 1.35, "m2": 0.2, "m3": 0.1}),
}
DEFAULT_S = {"cosface": 64.0, "arcface": 64.0, "combined_margin": 64.0}


def _ref(name, cos, y, **ce_kwargs):
  fn, make, kw = FAMILY[name]
  s = kw.get("scale", DEFAULT_S.get(fn.__name__))
  return np_margin_loss(cos, y, s, make(kw), **ce_kwargs)


class ReferenceTest(chex.TestCase):
  """Values and gradients against the NumPy references of the formulas."""

  @parameterized.named_parameters(*[(k, k) for k in FAMILY])
  def test_value_and_gradient(self, name):
    fn, _, kw = FAMILY[name]
    cos, y = random_cosines(1), targets(1)
    for reduction in ("none", "mean", "sum"):
      got = fn(cos, y, reduction=reduction, **kw)
      np.testing.assert_allclose(got, _ref(name, cos, y, reduction=reduction), rtol=1e-12,
                                 atol=1e-12)
    grad = jax.grad(lambda c: fn(c, y, **kw))(jnp.asarray(cos))
    expected = num_grad(lambda c: _ref(name, c, y), cos)
    np.testing.assert_allclose(grad, expected, rtol=1e-6, atol=1e-6 * np.abs(expected).max())

  @parameterized.named_parameters(("weight", {"weight": np.array([0.5, 1.0, 2.0, 0.3, 1.5])}),
                                  ("ignore", {"ignore_index": 2}),
                                  ("smoothing", {"label_smoothing": 0.1}),
                                  ("all", {"weight": np.array([0.5, 1.0, 2.0, 0.3, 1.5]),
                                           "ignore_index": 1, "label_smoothing": 0.2}))
  def test_cross_entropy_options(self, opts):
    cos, y = random_cosines(2), targets(2)
    for name in ("cosface", "sphereface_m4"):  # the options are the shared driver's
      fn, _, kw = FAMILY[name]
      for reduction in ("none", "mean", "sum"):
        got = fn(cos, y, reduction=reduction, **kw, **opts)
        np.testing.assert_allclose(got, _ref(name, cos, y, reduction=reduction, **opts),
                                   rtol=1e-12, atol=1e-12, err_msg=name)

  def test_large_margin_softmax_reference(self):
    rng = np.random.default_rng(3)
    x, w, y = rng.normal(size=(N, D)), rng.normal(size=(C, D)), targets(3)

    def ref(x, w, m, lam, s):
      xn = np.linalg.norm(x, axis=1, keepdims=True)
      wn = np.linalg.norm(w, axis=1)[None]
      cos = (x / xn) @ (w / wn.T).T
      return np_margin_loss(cos, y, s * xn * wn, np_sphere(m, lam))
    for m, lam, s in ((3, 2.0, 1.0), (4, 0.0, 0.5)):
      def fn(a, b):
        return jaxloss.large_margin_softmax(a, b, y, m=m, scale=s, lambda_=lam)
      np.testing.assert_allclose(fn(x, w), ref(x, w, m, lam, s), rtol=1e-12)
      gx, gw = jax.grad(fn, (0, 1))(x, w)
      np.testing.assert_allclose(gx, num_grad(lambda a: ref(a, w, m, lam, s), x), rtol=1e-6,
                                 atol=1e-8)
      np.testing.assert_allclose(gw, num_grad(lambda b: ref(x, b, m, lam, s), w), rtol=1e-6,
                                 atol=1e-8)
    # m = 1 without annealing is the softmax cross-entropy of the linear layer.
    np.testing.assert_allclose(jaxloss.large_margin_softmax(x, w, y, m=1),
                               np_cross_entropy(x @ w.T, y), rtol=1e-12)
    # The 'dc' layout is the transposed matrix.
    np.testing.assert_allclose(jaxloss.large_margin_softmax(x, w.T, y, weight_layout="dc"),
                               jaxloss.large_margin_softmax(x, w, y), rtol=1e-14)

  def test_cosine_logits(self):
    rng = np.random.default_rng(4)
    x, w = rng.normal(size=(N, D)), rng.normal(size=(C, D))
    x[0] = 0.0  # normalize's eps clamp: cosine 0, gradient finite
    cos, xn, wn = jaxloss.cosine_logits(x, w, return_norms=True)
    xhat = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    what = w / np.linalg.norm(w, axis=1, keepdims=True)
    np.testing.assert_allclose(cos, xhat @ what.T, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(xn[:, 0], np.linalg.norm(x, axis=1))
    np.testing.assert_allclose(wn[0], np.linalg.norm(w, axis=1))
    np.testing.assert_allclose(jaxloss.cosine_logits(x, w.T, weight_layout="dc"), cos)
    np.testing.assert_allclose(jaxloss.cosine_logits(x[1], w), cos[1])
    g = jax.grad(lambda a: jnp.sum(jaxloss.cosine_logits(a, w) ** 2))(x)
    self.assertTrue(np.all(np.isfinite(g)))

  def test_special_cases_of_combined_margin(self):
    cos, y = random_cosines(5), targets(5)
    np.testing.assert_allclose(jaxloss.combined_margin(cos, y, 30.0, 1.0, 0.0, 0.35),
                               jaxloss.cosface(cos, y, 30.0, 0.35), rtol=1e-14)
    np.testing.assert_allclose(jaxloss.combined_margin(cos, y, 30.0, 4.0, 0.0, 0.0),
                               jaxloss.sphereface(cos, y, 30.0, 4), rtol=1e-13)
    # theta + m <= pi everywhere here (cos > -0.8 > cos(pi - 0.5)): ArcFace itself.
    cos = random_cosines(6, lo=-0.8)
    np.testing.assert_allclose(jaxloss.combined_margin(cos, y, 30.0, 1.0, 0.5, 0.0),
                               jaxloss.arcface(cos, y, 30.0, 0.5), rtol=1e-13)

  def test_margin_lambda_schedule(self):
    np.testing.assert_allclose(jaxloss.margin_lambda(1.0), 1000 / 1.12, rtol=1e-6)
    np.testing.assert_allclose(jaxloss.margin_lambda(10_000.0), 5.0)
    np.testing.assert_allclose(
        jaxloss.margin_lambda(np.float64(5000), gamma=2e-5, power=45, lambda_min=0.0),
        1000 * (1 + 2e-5 * 5000) ** -45, rtol=1e-12)
    steps = jnp.arange(1, 2000, 37)
    lam = jax.jit(jax.vmap(jaxloss.margin_lambda))(steps)
    self.assertTrue(np.all(np.diff(np.asarray(lam)) <= 0) and np.all(np.asarray(lam) >= 5))


class EdgeTest(chex.TestCase):
  """cos = +-1, theta + m > pi, large logits, bf16."""

  def _edge_cosines(self):
    cos = random_cosines(7)
    cos[0, 0], cos[1, 1], cos[2, 2] = 1.0, -1.0, -0.99   # targets at +-1, and past pi - m
    cos[3, 0] = 1.0                                       # a non-target at +1
    y = np.array([0, 1, 2, 3, 4, 0])
    return cos, y

  @parameterized.named_parameters(*[(k, k) for k in FAMILY])
  def test_finite_at_unit_cosines(self, name):
    fn, _, kw = FAMILY[name]
    cos, y = self._edge_cosines()
    val, grad = jax.value_and_grad(lambda c: fn(c, y, **kw))(cos)
    self.assertTrue(np.isfinite(float(val)) and np.all(np.isfinite(grad)), name)
    # Away from the clipped points the gradient matches the reference.
    grad = np.asarray(jax.grad(lambda c: fn(c, y, **kw))(jnp.asarray(cos)))
    expected = num_grad(lambda c: _ref(name, c, y), cos)
    mask = np.ones_like(cos, bool)
    mask[0, 0] = mask[1, 1] = mask[3, 0] = False
    np.testing.assert_allclose(grad[mask], expected[mask], rtol=1e-6,
                               atol=1e-6 * np.abs(expected).max())

  def test_finite_at_unit_cosines_bf16(self):
    cos, y = self._edge_cosines()

    @jax.jit
    def each(c):   # bf16 in, computed in float32, bf16 out
      return [jax.value_and_grad(lambda c: fn(c, y, **kw))(c) for fn, _, kw in FAMILY.values()]
    for name, (val, grad) in zip(FAMILY, each(jnp.asarray(cos, jnp.bfloat16)), strict=False):
      self.assertEqual(val.dtype, jnp.bfloat16)
      self.assertEqual(grad.dtype, jnp.bfloat16)
      self.assertTrue(np.isfinite(float(val)), name)
      self.assertTrue(np.all(np.isfinite(np.asarray(grad, np.float32))), name)

  def test_sphereface_exact_gradient_at_unit_cosines(self):
    # d/dx T_m(x) is m^2 at +1 (piece k=0); at -1 the last piece k=m-1 gives
    # (-1)^(m-1) * (-1)^(m+1) m^2 = m^2 as well (psi increases with the cosine).
    cos, y = random_cosines(18), targets(18)
    rows = np.arange(N)
    x0 = np.array([1.0, -1.0, 1.0, -1.0, 0.3, -0.6])
    cos[rows, y] = x0
    for m in (2, 3, 4):
      g = jax.grad(lambda c: jaxloss.sphereface(c, y, 1.0, m, reduction="sum"))(cos)
      z = cos.copy()
      z[rows, y] = np_psi(m)(x0)
      p = np.exp(z - z.max(1, keepdims=True))
      p /= p.sum(1, keepdims=True)
      onehot = np.eye(C)[y]
      dpsi = np.where(np.abs(x0) == 1, m * m, num_grad(lambda v: np_psi(m)(v).sum(), x0))
      expected = p - onehot
      expected[rows, y] *= dpsi
      np.testing.assert_allclose(g, expected, rtol=1e-8, atol=1e-12)

  def test_arcface_gradient_at_one_is_the_nearest_interior_one(self):
    y = targets(17)
    f = jax.jit(jax.grad(lambda c: jaxloss.arcface(c, y, 4.0, 0.5)))
    for dtype in (np.float64, np.float32):
      cos = random_cosines(17).astype(dtype)
      cos[0, y[0]] = 1.0
      below = cos.copy()
      below[0, y[0]] = np.nextafter(dtype(1), dtype(0))
      np.testing.assert_allclose(f(cos), f(below), rtol=1e-3)

  def test_arcface_past_pi_minus_m_uses_the_fallback(self):
    m, s = 0.5, 64.0
    th = math.cos(math.pi - m)
    cos, y = random_cosines(19), targets(19)
    rows = np.arange(N)
    cos[rows, y] = [th - 0.05, th + 0.05, -0.999, th - 1e-3, 0.2, -0.5]
    np.testing.assert_allclose(np_arcface(m)(cos[rows[[0, 2, 3]], y[[0, 2, 3]]]),
                               cos[rows[[0, 2, 3]], y[[0, 2, 3]]] - m * math.sin(m))
    got = jaxloss.arcface(cos, y, s, m, reduction="none")
    np.testing.assert_allclose(got, _ref_arc(cos, y, s, m, reduction="none"), rtol=1e-12)
    g = jax.grad(lambda c: jaxloss.arcface(c, y, s, m, reduction="sum"))(cos)
    np.testing.assert_allclose(
        g, num_grad(lambda c: _ref_arc(c, y, s, m, reduction="sum"), cos), rtol=1e-6, atol=1e-7)

  def test_large_logits(self):
    cos, y = random_cosines(8), targets(8)
    cos[0, y[0]] = 1.0
    cos[1, y[1]] = -1.0

    def all_losses(c):  # a nan or inf anywhere shows in the sum and its gradient
      return sum(fn(c, y, **dict(kw, scale=1e4)) for fn, _, kw in FAMILY.values())
    val, grad = jax.jit(jax.value_and_grad(all_losses))(jnp.asarray(cos, jnp.float32))
    self.assertTrue(np.isfinite(float(val)) and np.all(np.isfinite(grad)))
    for fn, make, kw in FAMILY.values():
      np.testing.assert_allclose(fn(cos, y, **dict(kw, scale=1e4)),
                                 np_margin_loss(cos, y, 1e4, make(kw)), rtol=1e-10)
    rng = np.random.default_rng(9)
    x, w = 1e4 * rng.normal(size=(N, D)), rng.normal(size=(C, D))
    val, (gx, gw) = jax.jit(jax.value_and_grad(jaxloss.large_margin_softmax, (0, 1)),
                            static_argnums=3)(
        jnp.asarray(x, jnp.float32), jnp.asarray(w, jnp.float32), y, 4)
    self.assertTrue(np.isfinite(float(val)) and np.all(np.isfinite(gx)) and np.all(np.isfinite(gw)))

  def test_features_aligned_with_their_class_weight(self):
    rng = np.random.default_rng(10)
    w = rng.normal(size=(C, D))
    x = rng.normal(size=(N, D))
    x[0] = 3.0 * w[2]
    x[1] = -2.0 * w[1]
    y = np.array([2, 1, 0, 1, 2, 3])

    def all_losses(a, b):
      cos = jaxloss.cosine_logits(a, b)
      return (jaxloss.arcface(cos, y) + jaxloss.sphereface(cos, y, 10.0)
              + jaxloss.combined_margin(cos, y, m1=1.35) + jaxloss.cosface(cos, y))
    gx, gw = jax.jit(jax.grad(all_losses, (0, 1)))(jnp.asarray(x, jnp.float32),
                                                   jnp.asarray(w, jnp.float32))
    self.assertTrue(np.all(np.isfinite(gx)) and np.all(np.isfinite(gw)))

  @parameterized.named_parameters(("cosface", "cosface"), ("arcface", "arcface"),
                                  ("sphereface", "sphereface_m4"))
  def test_bf16_close_to_float32(self, name):
    fn, _, kw = FAMILY[name]
    cos, y = random_cosines(11), targets(11)
    f = jax.jit(lambda c: fn(c, y, **kw))
    c16 = jnp.asarray(cos, jnp.bfloat16)
    out16 = f(c16)
    self.assertEqual(out16.dtype, jnp.bfloat16)
    np.testing.assert_allclose(float(out16), float(f(c16.astype(jnp.float32))), rtol=1e-2)


class PMLParityTest(ParityTestCase):
  """Against pytorch-metric-learning 2.9, giving it our weight matrix (its layout is (D, C))."""

  @staticmethod
  def _pml_fn(cls, y, **kw):
    def torch_fn(features, w_dc):
      loss = cls(num_classes=w_dc.shape[1], embedding_size=w_dc.shape[0], **kw)
      del loss._parameters["W"]   # use our matrix (a differentiable input) as its W
      loss.W = w_dc
      return loss(features, torch.as_tensor(y))
    return torch_fn

  def _data(self, dtype, wide_angles=False):
    rng = np.random.default_rng(12)
    x = rng.normal(size=(N, D))
    w = rng.normal(size=(D, C))
    y = rng.integers(0, C, N)
    if wide_angles:  # targets nearly opposite their class weight: theta + m > pi
      x[:3] = -w[:, y[:3]].T + 0.05 * rng.normal(size=(3, D))
    return x.astype(dtype), w.astype(dtype), y

  def _fns(self, name, y):
    if name == "cosface":
      def jfn(a, b):
        return jaxloss.cosface(jaxloss.cosine_logits(a, b, weight_layout="dc"), y)
      return jfn, self._pml_fn(pml.CosFaceLoss, y)
    if name == "arcface":
      # pml's margin is in degrees; 28.6 degrees is its default.
      def jfn(a, b):
        return jaxloss.arcface(jaxloss.cosine_logits(a, b, weight_layout="dc"), y,
                                               m=math.radians(28.6))
      return jfn, self._pml_fn(pml.ArcFaceLoss, y)
    if name == "sphereface":
      def jfn(a, b):
        cos, xn, _ = jaxloss.cosine_logits(a, b, weight_layout="dc", return_norms=True)
        return jaxloss.sphereface(cos, y, scale=xn, m=4)
      return jfn, self._pml_fn(pml.SphereFaceLoss, y)
    def jfn(a, b):
      return jaxloss.large_margin_softmax(a, b, y, m=3, scale=1.5, weight_layout="dc")
    return jfn, self._pml_fn(pml.LargeMarginSoftmaxLoss, y, margin=3, scale=1.5)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(("cosface", "cosface"), ("arcface", "arcface"),
                                  ("sphereface", "sphereface"), ("lsoftmax", "lsoftmax"))
  def test_parity_float64(self, name):
    x, w, y = self._data(np.float64, wide_angles=name == "arcface")
    jfn, tfn = self._fns(name, y)
    self.assert_parity(jfn, tfn, [x, w], grad_argnums=(0, 1))

  @chex.variants(with_jit=True)
  def test_parity_float32(self):
    x, w, y = self._data(np.float32, wide_angles=True)
    fns = [self._fns(name, y) for name in ("arcface", "sphereface", "lsoftmax")]
    self.assert_parity(lambda a, b: sum(f(a, b) for f, _ in fns),
                       lambda a, b: sum(t(a, b) for _, t in fns), [x, w],
                       grad_argnums=(0, 1), rtol=1e-4)

  def test_arcface_data_reaches_the_fallback(self):
    x, w, y = self._data(np.float64, wide_angles=True)
    cos = np.asarray(jaxloss.cosine_logits(x, w, weight_layout="dc"))[np.arange(N), y]
    self.assertTrue(np.any(np.arccos(cos) > np.pi - math.radians(28.6)))


class BehaviourTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_where_mask(self):
    cos, y = random_cosines(13), targets(13)
    keep = np.array([True, False, True, True, False, True])
    bad = cos.copy()
    bad[~keep] = np.nan
    names = ("arcface", "combined_general")

    @self.variant
    def value_and_grad(c):
      def losses(c):
        return jnp.stack([FAMILY[k][0](c, y, where=jnp.asarray(keep), **FAMILY[k][2])
                          for k in names])
      return losses(c), jax.jacrev(losses)(c)
    vals, grads = value_and_grad(bad)
    for name, val in zip(names, vals, strict=False):
      np.testing.assert_allclose(val, _ref(name, cos[keep], y[keep]), rtol=1e-12)
    self.assertTrue(np.all(np.asarray(grads)[:, ~keep] == 0) and np.all(np.isfinite(grads)))

  def test_ignored_rows_get_zero_gradient_even_if_nan(self):
    cos, y = random_cosines(14), targets(14)
    y[1] = -100
    cos[1] = np.nan
    g = jax.grad(lambda c: jaxloss.arcface(c, y))(jnp.asarray(cos))
    self.assertTrue(np.all(np.asarray(g)[1] == 0) and np.all(np.isfinite(g)))

  def test_vmap_and_unbatched(self):
    cos = random_cosines(15, n=2 * N).reshape(2, N, C)
    y = targets(15, n=2 * N).reshape(2, N)

    def losses(c, t):
      return jnp.stack([jaxloss.cosface(c, t), jaxloss.arcface(c, t),
                        jaxloss.sphereface(c, t, 8.0)])

    @jax.jit
    def batched(c, t):
      per_row = jax.vmap(lambda ci, ti: jaxloss.arcface(ci, ti, reduction="none"))
      return jax.vmap(losses)(c, t), per_row(c[0], t[0])
    over_batches, over_rows = batched(cos, y)
    np.testing.assert_allclose(over_batches, [losses(cos[i], y[i]) for i in range(2)],
                               rtol=1e-12)
    # Unbatched (C,) with a scalar target: the per-sample loss of that row.
    np.testing.assert_allclose(over_rows, jaxloss.arcface(cos[0], y[0], reduction="none"),
                               rtol=1e-12)

  def test_per_sample_scale(self):
    cos, y = random_cosines(16), targets(16)
    s = np.linspace(5.0, 30.0, N)[:, None]
    np.testing.assert_allclose(jaxloss.cosface(cos, y, s, reduction="none"),
                               np_margin_loss(cos, y, s, np_cosface(0.35), reduction="none"),
                               rtol=1e-12)
    # A traced scale and margin (annealing inside jit).
    f = jax.jit(lambda c, s, m: jaxloss.arcface(c, y, s, m))
    np.testing.assert_allclose(f(cos, 30.0, 0.4), _ref_arc(cos, y, 30.0, 0.4), rtol=1e-12)


def _ref_arc(cos, y, s, m, **kw):
  return np_margin_loss(cos, y, s, np_arcface(m), **kw)


class ErrorTest(absltest.TestCase):

  def test_trace_time_errors(self):
    cos, y = jnp.zeros((3, 4)), jnp.zeros(3, jnp.int32)
    cases = [
        (lambda: jaxloss.cosface(jnp.zeros((2, 3, 4)), y), r"cosface: `cosine` must have shape"),
        (lambda: jaxloss.arcface(cos, jnp.zeros(4, jnp.int32)),
         r"arcface: `target` must have shape \(3,\)"),
        (lambda: jaxloss.arcface(cos, y.astype(float)), r"arcface: `target` must be an integer"),
        (lambda: jaxloss.cosface(cos.astype(int), y), r"cosface: `cosine` must be a floating"),
        (lambda: jaxloss.cosface(cos, y, scale=jnp.ones(3)),
         r"cosface: `scale` of shape \(3,\) must be broadcastable"),
        (lambda: jaxloss.cosface(cos, y, 30.0, s=30.0),
         r"cosface: pass the logit scale once, as `scale`"),
        (lambda: jaxloss.sphereface(cos, y), r"sphereface: `scale` is required"),
        (lambda: jaxloss.arcface(cos, y, m=4.0), r"arcface: `m` must lie in \[0, pi\)"),
        (lambda: jaxloss.sphereface(cos, y, 1.0, m=2.5), r"sphereface: `m` must be an integer"),
        (lambda: jaxloss.sphereface(cos, y, 1.0, m=0), r"sphereface: `m` must be a positive"),
        (lambda: jaxloss.sphereface(cos, y, 1.0, lambda_=-1.0),
         r"sphereface: `lambda_` must be non-negative"),
        (lambda: jaxloss.combined_margin(cos, y, m1=0.0),
         r"combined_margin: `m1` must be positive"),
        (lambda: jaxloss.combined_margin(cos, y, m2=-0.1),
         r"combined_margin: `m2` must be non-negative"),
        (lambda: jaxloss.cosface(cos, y, reduction="avg"), r"cosface: `reduction` must be one of"),
        (lambda: jaxloss.cosface(cos, y, weight=jnp.ones(3)),
         r"cosface: `weight` must have shape \(4,\)"),
        (lambda: jaxloss.cosine_logits(jnp.ones((3, 4)), jnp.ones((5, 3))),
         r"cosine_logits: `weight` \(the weight matrix\) must have layout \(C, D\) with D = 4"),
        (lambda: jaxloss.large_margin_softmax(jnp.ones((3, 4)), jnp.ones((5, 3)), y),
         r"large_margin_softmax: `weight_matrix` \(the weight matrix\) must have layout "
         r"\(C, D\) with D = 4"),
        (lambda: jaxloss.large_margin_softmax(jnp.ones((3, 4)), jnp.ones((5,)), y),
         r"large_margin_softmax: `weight_matrix` \(the weight matrix\) must be 2-D"),
        (lambda: jaxloss.cosface(cos.T, y), r"cosface: `target` must have shape \(4,\)"),
        (lambda: jaxloss.cosface(cos, y, axis=0),
         r"cosface: `target` must have shape \(4,\).*the class axis is 0, from axis=0; for "
         r"class-last logits pass axis=-1"),
        (lambda: jaxloss.cosface(cos, y, axis=2), r"cosface: `axis`=2 is out of range"),
        (lambda: jaxloss.cosine_logits(jnp.ones((3, 4)), jnp.ones((5, 4)), weight_layout="dc"),
         r"layout \(D, C\)"),
        (lambda: jaxloss.cosine_logits(jnp.ones((3, 4)), jnp.ones((5, 4)), weight_layout="xy"),
         r"`weight_layout` must be one of"),
        (lambda: jaxloss.large_margin_softmax(jnp.ones((3, 4)), jnp.ones((5, 4)), y, m=0),
         r"large_margin_softmax: `m` must be a positive"),
        (lambda: jaxloss.cosface(jnp.zeros(4), y), r"cosface: `target` must be a scalar"),
        (lambda: jaxloss.arcface(cos, y, label_smoothing=1.5),
         r"arcface: `label_smoothing` must lie in \[0, 1\]"),
    ]
    for fn, msg in cases:
      with self.assertRaisesRegex(ValueError, msg):
        fn()
    with self.assertRaisesRegex(ValueError, "cannot be|must"):
      jax.jit(lambda c: jaxloss.cosface(c, y)).lower(jnp.zeros((3, 4, 1)))

  def test_scale_and_its_deprecated_name_s(self):
    # `scale` is the public name (positional slot 3, or keyword); `s` warns and still works.
    cos = jnp.tanh(jax.random.normal(jax.random.key(0), (3, 4)))
    y = jnp.array([0, 3, 1])
    for fn in (jaxloss.cosface, jaxloss.arcface, jaxloss.sphereface, jaxloss.combined_margin):
      by_position = fn(cos, y, 12.0)
      chex.assert_trees_all_equal(fn(cos, y, scale=12.0), by_position)
      with self.assertWarnsRegex(DeprecationWarning, "`s` is deprecated"):
        chex.assert_trees_all_equal(fn(cos, y, s=12.0), by_position)
    x, w = jnp.ones((3, 2)) + jnp.eye(3, 2), jnp.eye(4, 2) + 0.5
    chex.assert_trees_all_equal(jaxloss.large_margin_softmax(x, w, y, 2, 3.0),
                                jaxloss.large_margin_softmax(x, w, y, scale=3.0))
    chex.assert_trees_all_equal(jaxloss.cosface(cos, y), jaxloss.cosface(cos, y, 64.0))

  def test_checkify_reports(self):
    checked = jax.jit(checkify.checkify(lambda c, t: jaxloss.arcface(c, t)))
    cos = np.full((3, 4), 0.1)
    err, _ = checked(cos, np.array([0, 1, 4]))
    with self.assertRaisesRegex(Exception, r"arcface: `target` holds class index 4"):
      err.throw()
    cos[1, 2] = 1.5
    err, _ = checked(cos, np.array([0, 1, 2]))
    with self.assertRaisesRegex(Exception, r"arcface: every element of `cosine` must be a cosine"):
      err.throw()
    cos[1, 2] = 1.0 + 1e-6   # rounding is tolerated
    err, _ = checked(cos, np.array([0, 1, 2]))
    err.throw()


if __name__ == "__main__":
  absltest.main()


class ShardMapTest(chex.TestCase):
  """cosine_logits' custom VJP where features are replicated and weights vary per copy."""

  def test_replicated_features_and_per_copy_weights_under_shard_map(self):
    from jax.sharding import Mesh  # pylint: disable=import-outside-toplevel
    from jax.sharding import PartitionSpec as P
    mesh = Mesh(np.array(jax.devices()[:1]), ("pop",))
    x = jax.random.normal(jax.random.key(0), (6, 4), jnp.float32)
    y = jnp.array([0, 1, 2, 0, 1, 2])
    weights = jax.random.normal(jax.random.key(1), (3, 3, 4), jnp.float32)

    def grad_of_copy(w):
      def loss(w):
        cos, xn, wn = jaxloss.cosine_logits(x, w, return_norms=True)
        return jaxloss.cross_entropy(cos * xn * wn, y)
      return jax.grad(loss)(w)

    sharded = jax.jit(jax.shard_map(jax.vmap(grad_of_copy), mesh=mesh, in_specs=P("pop"),
                                    out_specs=P("pop")))(weights)
    chex.assert_trees_all_close(sharded, jax.vmap(grad_of_copy)(weights), rtol=1e-5,
                                atol=1e-7)

  def test_the_hand_written_task_of_the_search_docs_runs_on_the_engine(self):
    # docs/search_api.md: features from the batch (the same for every copy under common
    # random numbers), the cosine head's weights per copy.
    import optax  # pylint: disable=import-outside-toplevel

    from jaxloss import search  # pylint: disable=import-outside-toplevel

    def init(key):
      w = jax.random.normal(key, (8, 3)) / jnp.sqrt(8.0)
      return {"w": w, "opt": optax.sgd(0.1, momentum=0.9).init(w)}

    def train_step(state, batch, theta, key):
      x, y = batch
      x = x + 0.01 * jax.random.normal(key, x.shape)
      f = lambda w: jaxloss.amlfs_loss(  # noqa: E731
          jaxloss.cosine_logits(x, w, weight_layout="dc"), y, theta, scale=16.0)
      value, grad = jax.value_and_grad(f)(state["w"])
      updates, opt = optax.sgd(0.1, momentum=0.9).update(grad, state["opt"])
      return {"w": state["w"] + updates, "opt": opt}, {"loss": value}

    def evaluate(state, batch):
      x, y = batch
      return search.classification_metrics(x @ state["w"], y)

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 8)).astype(np.float32)
    y = np.argmax(x[:, :3], axis=1).astype(np.int32)
    config = search.SearchConfig(initial_mu=jaxloss.identity_theta(2), population_size=2,
                                 epochs=2, batch_size=50, seed=0, progress=False,
                                 common_random_numbers=True)
    result = search.run(search.Task(init=init, train_step=train_step, evaluate=evaluate),
                        config, (x[:200], y[:200]), (x[200:], y[200:]))
    self.assertEqual(len(result.records), 2)
    self.assertGreater(result.best_reward, 0.5)
