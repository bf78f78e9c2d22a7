"""jaxloss.fenchel_young beyond optax parity (tests/test_optax_parity.py): masks, vmap, math."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized
from jax.scipy.special import logsumexp

import jaxloss
from jaxloss.fenchel_young import sparsemax
from tests.parity import rand


class SparsemaxTest(chex.TestCase):

  def test_sparsemax_is_the_simplex_projection(self):
    rng = np.random.default_rng(0)
    s = rand(rng, (20, 6), np.float64, -3, 3)
    p = np.asarray(sparsemax(jnp.asarray(s)))
    chex.assert_trees_all_close(p.sum(-1), np.ones(20), rtol=1e-12)
    self.assertTrue(np.all(p >= 0))
    # KKT: on the support s - p is one constant (tau); off it s <= tau.
    for row_s, row_p in zip(s, p, strict=True):
      tau = (row_s - row_p)[row_p > 0]
      chex.assert_trees_all_close(tau, np.full_like(tau, tau[0]), rtol=1e-12)
      self.assertTrue(np.all(row_s[row_p == 0] <= tau[0] + 1e-12))

  @chex.variants(with_jit=True, without_jit=True)
  def test_multiclass_gradient_is_sparsemax_minus_onehot(self):
    rng = np.random.default_rng(1)
    s = jnp.asarray(rand(rng, (4, 3, 5), np.float64, -2, 2))
    y = jnp.asarray(rng.integers(0, 5, (4, 3)))
    g = self.variant(jax.grad(lambda a: jnp.sum(jaxloss.multiclass_sparsemax_loss(a, y))))(s)
    chex.assert_trees_all_close(g, sparsemax(s) - jax.nn.one_hot(y, 5, dtype=s.dtype),
                                rtol=1e-12)
    # axis=1 is the same loss on the transposed scores
    moved = jaxloss.multiclass_sparsemax_loss(jnp.moveaxis(s, -1, 1), y, axis=1)
    chex.assert_trees_all_close(moved, jaxloss.multiclass_sparsemax_loss(s, y), rtol=1e-12)

  def test_multiclass_zero_iff_prediction_is_the_label(self):
    s = jnp.array([[3.0, 0.5, -1.0], [0.2, 0.1, 0.0]])
    loss = jaxloss.multiclass_sparsemax_loss(s, jnp.array([0, 0]))
    self.assertEqual(float(loss[0]), 0.0)
    self.assertGreater(float(loss[1]), 0.0)
    # second derivatives exist (through sparsemax in the custom JVP)
    h = jax.hessian(lambda a: jaxloss.multiclass_sparsemax_loss(a, jnp.array(0)))(s[1])
    self.assertTrue(np.all(np.isfinite(np.asarray(h))))

  def test_binary_gradient_is_sparse_sigmoid_minus_label(self):
    x = jnp.linspace(-3.0, 3.0, 13)
    y = (jnp.arange(13) % 2).astype(jnp.int32)
    g = jax.grad(lambda a: jnp.sum(jaxloss.sparsemax_loss(a, y)))(x)
    chex.assert_trees_all_close(g, jax.nn.sparse_sigmoid(x) - y, atol=1e-6)

  @parameterized.named_parameters(
      ("binary", jaxloss.sparsemax_loss,
       lambda r: (rand(r, (6, 3), np.float64), r.integers(0, 2, (6, 3))), (6, 1)),
      ("multiclass", jaxloss.multiclass_sparsemax_loss,
       lambda r: (rand(r, (6, 3), np.float64), r.integers(0, 3, 6)), (6,)))
  def test_where_mask(self, fn, make, mask_shape):
    rng = np.random.default_rng(2)
    x, y = make(rng)
    keep = np.array([True, False, True, True, False, True]).reshape(mask_shape)
    rows = keep.reshape(6)
    x_inf = np.where(rows[:, None], x, np.inf)
    for reduction in ("mean", "sum"):
      chex.assert_trees_all_close(fn(x_inf, y, reduction=reduction, where=keep),
                                  fn(x[rows], y[rows], reduction=reduction), rtol=1e-12)
    self.assertTrue(np.all(np.asarray(fn(x_inf, y, where=keep))[~rows] == 0.0))
    g = jax.grad(lambda a: fn(a, y, reduction="sum", where=keep))(jnp.asarray(x_inf))
    self.assertTrue(np.all(np.asarray(g)[~rows] == 0.0))
    self.assertTrue(np.all(np.isfinite(np.asarray(g))))

  def test_vmap_matches_loop(self):
    rng = np.random.default_rng(3)
    s = rand(rng, (3, 4, 5), np.float64)
    y = rng.integers(0, 5, (3, 4))
    b = rng.integers(0, 2, (3, 4, 5))
    for fn, lab in ((jaxloss.multiclass_sparsemax_loss, y), (jaxloss.sparsemax_loss, b)):
      batched = jax.vmap(lambda a, c, fn=fn: fn(a, c, reduction="mean"))(s, lab)
      looped = jnp.stack([fn(s[i], lab[i], reduction="mean") for i in range(3)])
      chex.assert_trees_all_close(batched, looped, rtol=1e-12)

  def test_fenchel_young_logsumexp_is_cross_entropy(self):
    rng = np.random.default_rng(4)
    z = rand(rng, (2, 3, 6), np.float64)
    y = rng.integers(0, 6, (2, 3))
    fy = jaxloss.make_fenchel_young_loss(logsumexp)
    chex.assert_trees_all_close(fy(z, jax.nn.one_hot(y, 6, dtype=z.dtype)),
                                jaxloss.cross_entropy(np.moveaxis(z, -1, 1), y, reduction="none"),
                                rtol=1e-12)
    # extra arguments reach max_fun (optax 0.2.8 drops keywords and rejects positionals)
    scaled = jaxloss.make_fenchel_young_loss(lambda s, t=2.0: t * logsumexp(s / t))
    onehot = jax.nn.one_hot(y, 6, dtype=z.dtype)
    chex.assert_trees_all_close(scaled(z, onehot, t=1.0), fy(z, onehot), rtol=1e-12)
    chex.assert_trees_all_close(scaled(z, onehot, 1.0), fy(z, onehot), rtol=1e-12)
    self.assertFalse(np.allclose(scaled(z, onehot), fy(z, onehot)))

  def test_errors(self):
    with self.assertRaisesRegex(ValueError, "`max_fun` must be callable"):
      jaxloss.make_fenchel_young_loss(None)
    with self.assertRaisesRegex(ValueError, r"`logits` must be a floating-point"):
      jaxloss.sparsemax_loss(jnp.ones(3, jnp.int32), jnp.ones(3))
    with self.assertRaisesRegex(ValueError, r"`labels` must have shape \(2,\)"):
      jaxloss.multiclass_sparsemax_loss(jnp.ones((2, 3)), jnp.zeros(3, jnp.int32))
    with self.assertRaisesRegex(ValueError, r"sparsemax_loss: `reduction` must be one of"):
      jaxloss.sparsemax_loss(jnp.ones(3), jnp.ones(3), reduction="avg")


if __name__ == "__main__":
  absltest.main()
