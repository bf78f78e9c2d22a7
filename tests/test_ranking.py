"""jaxloss.ranking beyond optax parity (tests/test_optax_parity.py)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl.testing import absltest

import jaxloss
from tests.parity import rand


class RankingSoftmaxTest(chex.TestCase):

  def test_formula(self):
    rng = np.random.default_rng(0)
    s = rand(rng, (3, 5), np.float64)
    y = rng.integers(0, 3, (3, 5)).astype(np.float64)
    logp = s - np.log(np.exp(s).sum(-1, keepdims=True))
    per_list = -(y * logp).sum(-1)
    chex.assert_trees_all_close(jaxloss.ranking_softmax_loss(s, y, reduce_fn=None), per_list,
                                rtol=1e-12)
    chex.assert_trees_all_close(jaxloss.ranking_softmax_loss(s, y), per_list.mean(), rtol=1e-12)

  @chex.variants(with_jit=True, without_jit=True)
  def test_where_drops_items_with_zero_gradients(self):
    rng = np.random.default_rng(1)
    s = rand(rng, (2, 5), np.float64)
    y = rng.integers(0, 3, (2, 5)).astype(np.float64)
    w = rand(rng, (2, 5), np.float64, 0.5, 2.0)
    keep = np.array([[True, False, True, True, False], [True, True, True, True, True]])
    s_bad = np.where(keep, s, np.nan)
    fn = self.variant(lambda a, b, c: jaxloss.ranking_softmax_loss(a, b, weights=c, where=keep,
                                                                   reduce_fn=jnp.sum))
    expected = (jaxloss.ranking_softmax_loss(s[0, keep[0]], y[0, keep[0]], weights=w[0, keep[0]],
                                             reduce_fn=jnp.sum)
                + jaxloss.ranking_softmax_loss(s[1], y[1], weights=w[1], reduce_fn=jnp.sum))
    self.assertAlmostEqual(float(fn(s_bad, y, w)), float(expected), places=12)
    grads = jax.grad(fn, argnums=(0, 1, 2))(jnp.asarray(s_bad), y, w)
    for g in grads:  # optax's gradient w.r.t. the weights is nan at invalid items
      self.assertTrue(np.all(np.asarray(g)[~keep] == 0.0))
      self.assertTrue(np.all(np.isfinite(np.asarray(g))))
    theirs = jax.grad(lambda c: optax.losses.ranking_softmax_loss(s, y, weights=c, where=keep))(w)
    ours = jax.grad(lambda c: jaxloss.ranking_softmax_loss(s, y, weights=c, where=keep))(w)
    chex.assert_trees_all_close(np.asarray(ours)[keep], np.asarray(theirs)[keep], rtol=1e-12)
    self.assertTrue(np.all(np.isnan(np.asarray(theirs)[~keep])))

  def test_all_invalid_mean_is_zero(self):
    s, y = jnp.ones((2, 3)), jnp.ones((2, 3))
    where = jnp.zeros((2, 3), bool)
    self.assertEqual(float(jaxloss.ranking_softmax_loss(s, y, where=where)), 0.0)
    g = jax.grad(lambda a: jaxloss.ranking_softmax_loss(a, y, where=where))(s)
    self.assertTrue(np.all(np.asarray(g) == 0.0))

  def test_custom_reduce_fn(self):
    s, y = jnp.array([[2.0, 1.0, 3.0], [0.0, 1.0, 0.5]]), jnp.array([[1.0, 0, 0], [0, 1.0, 0]])
    per_list = jaxloss.ranking_softmax_loss(s, y, reduce_fn=None)
    self.assertAlmostEqual(float(jaxloss.ranking_softmax_loss(s, y, reduce_fn=jnp.max)),
                           float(jnp.max(per_list)), places=6)

  def test_vmap_matches_loop(self):
    rng = np.random.default_rng(2)
    s = rand(rng, (3, 4, 5), np.float64)
    y = rng.integers(0, 2, (3, 4, 5)).astype(np.float64)
    batched = jax.vmap(jaxloss.ranking_softmax_loss)(s, y)
    looped = jnp.stack([jaxloss.ranking_softmax_loss(s[i], y[i]) for i in range(3)])
    chex.assert_trees_all_close(batched, looped, rtol=1e-12)

  def test_errors(self):
    with self.assertRaisesRegex(ValueError, r"`labels` must have the same shape"):
      jaxloss.ranking_softmax_loss(jnp.ones((2, 3)), jnp.ones((2, 4)))
    with self.assertRaisesRegex(ValueError, r"`reduce_fn` must be callable"):
      jaxloss.ranking_softmax_loss(jnp.ones(3), jnp.ones(3), reduce_fn="mean")
    with self.assertRaisesRegex(ValueError, r"`where` must be a boolean"):
      jaxloss.ranking_softmax_loss(jnp.ones(3), jnp.ones(3), where=jnp.ones(3))


if __name__ == "__main__":
  absltest.main()
