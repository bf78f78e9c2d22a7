"""jaxloss.self_supervised beyond optax parity (tests/test_optax_parity.py)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import torch
from absl.testing import absltest
from pytorch_metric_learning.losses import NTXentLoss

import jaxloss
from tests.parity import rand


class NTXentTest(chex.TestCase):

  def test_matches_pytorch_metric_learning(self):
    rng = np.random.default_rng(0)
    e = rand(rng, (8, 5), np.float64)
    labels = np.array([0, 0, 1, 1, 2, 2, 2, 3])
    expected = NTXentLoss(temperature=0.2)(torch.from_numpy(e), torch.from_numpy(labels))
    self.assertAlmostEqual(float(jaxloss.ntxent(e, labels, 0.2)), float(expected), places=10)

  @chex.variants(with_jit=True, without_jit=True)
  def test_where_drops_samples(self):
    rng = np.random.default_rng(1)
    e = rand(rng, (7, 4), np.float64)
    labels = np.array([0, 1, 0, 1, 1, 2, 0])
    keep = np.array([True, True, False, True, True, False, True])
    e_bad = np.where(keep[:, None], e, np.nan)
    fn = self.variant(lambda x: jaxloss.ntxent(x, labels, 0.5, where=keep))
    self.assertAlmostEqual(float(fn(e_bad)), float(jaxloss.ntxent(e[keep], labels[keep], 0.5)),
                           places=12)
    g = jax.grad(fn)(jnp.asarray(e_bad))
    self.assertTrue(np.all(np.asarray(g)[~keep] == 0.0))
    self.assertTrue(np.all(np.isfinite(np.asarray(g))))

  def test_no_negatives_and_no_positives(self):
    e = jnp.asarray(rand(np.random.default_rng(2), (3, 2), np.float64))
    self.assertEqual(float(jaxloss.ntxent(e, jnp.array([0, 0, 0]))), 0.0)  # log(e^s/e^s)
    self.assertTrue(np.isnan(float(jaxloss.ntxent(e, jnp.array([0, 1, 2])))))  # mean of nothing

  def test_large_similarities_do_not_overflow(self):
    e = jnp.asarray(rand(np.random.default_rng(3), (6, 3), np.float32))
    labels = jnp.array([0, 0, 1, 1, 2, 2])
    loss, g = jax.value_and_grad(jaxloss.ntxent)(e, labels, 1e-3)
    self.assertTrue(np.isfinite(float(loss)))
    self.assertTrue(np.all(np.isfinite(np.asarray(g))))

  def test_vmap_matches_loop(self):
    rng = np.random.default_rng(4)
    e = rand(rng, (3, 6, 4), np.float64)
    labels = np.array([0, 0, 1, 1, 2, 2])
    batched = jax.vmap(lambda x: jaxloss.ntxent(x, labels))(e)
    looped = jnp.stack([jaxloss.ntxent(e[i], labels) for i in range(3)])
    chex.assert_trees_all_close(batched, looped, rtol=1e-12)

  def test_errors(self):
    with self.assertRaisesRegex(ValueError, r"`embeddings` must be 2-D"):
      jaxloss.ntxent(jnp.ones(4), jnp.zeros(4))
    with self.assertRaisesRegex(ValueError, r"`labels` must have shape \(4,\)"):
      jaxloss.ntxent(jnp.ones((4, 2)), jnp.zeros(3))
    with self.assertRaisesRegex(ValueError, r"`temperature` must be a scalar"):
      jaxloss.ntxent(jnp.ones((4, 2)), jnp.zeros(4), jnp.ones(2))


if __name__ == "__main__":
  absltest.main()
