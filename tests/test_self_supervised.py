"""jaxloss.self_supervised beyond optax parity (tests/test_optax_parity.py): the metric-learning
losses against pytorch-metric-learning 2.9 (pml), values and gradients."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import torch
from absl.testing import absltest, parameterized
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners
from pytorch_metric_learning.distances import LpDistance
from pytorch_metric_learning.losses import NTXentLoss

import jaxloss
from tests.parity import DTYPES, ParityTestCase, rand


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


def _pml(loss, miner=None):
  def fn(e, labels):
    return loss(e, labels, miner(e, labels)) if miner is not None else loss(e, labels)
  return fn


def _pml_info_nce(temperature):
  def fn(q, k):
    labels = torch.arange(q.shape[0])
    return NTXentLoss(temperature)(q, labels, ref_emb=k, ref_labels=labels.clone())
  return fn


def _clip_loss(temperature):  # CLIP's symmetric loss, as its paper's pseudocode
  def fn(q, k):
    q = torch.nn.functional.normalize(q, dim=-1)
    k = torch.nn.functional.normalize(k, dim=-1)
    logits = q @ k.T / temperature
    labels = torch.arange(q.shape[0])
    return (torch.nn.functional.cross_entropy(logits, labels)
            + torch.nn.functional.cross_entropy(logits.T, labels)) / 2
  return fn


LABELS = np.array([0, 0, 1, 1, 2, 2, 2, 3, 0, 1, 4, 4])
PML_CASES = (
    ("ntxent", lambda e, y, c: jaxloss.ntxent(e, y, 0.2, chunk_size=c),
     _pml(pml_losses.NTXentLoss(0.2))),
    ("supcon", lambda e, y, c: jaxloss.supervised_contrastive_loss(e, y, 0.3, chunk_size=c),
     _pml(pml_losses.SupConLoss(0.3))),
    ("batch_hard", lambda e, y, c: jaxloss.batch_hard_triplet_loss(e, y, 0.3, chunk_size=c),
     _pml(pml_losses.TripletMarginLoss(0.3), pml_miners.BatchHardMiner())),
    ("batch_all", lambda e, y, c: jaxloss.batch_all_triplet_loss(e, y, 0.3, chunk_size=c),
     _pml(pml_losses.TripletMarginLoss(0.3))),
    ("batch_all_miner", lambda e, y, c: jaxloss.batch_all_triplet_loss(e, y, 0.3, chunk_size=c),
     _pml(pml_losses.TripletMarginLoss(0.3),
          pml_miners.TripletMarginMiner(0.3, type_of_triplets="all"))),
    ("batch_hard_raw", lambda e, y, c: jaxloss.batch_hard_triplet_loss(
        e, y, 1.0, normalize=False, chunk_size=c),
     _pml(pml_losses.TripletMarginLoss(1.0, distance=LpDistance(normalize_embeddings=False)),
          pml_miners.BatchHardMiner(distance=LpDistance(normalize_embeddings=False)))),
    ("multi_similarity", lambda e, y, c: jaxloss.multi_similarity_loss(e, y, chunk_size=c),
     _pml(pml_losses.MultiSimilarityLoss())),
    ("multi_similarity_args", lambda e, y, c: jaxloss.multi_similarity_loss(
        e, y, 1.5, 10.0, 0.2, chunk_size=c),
     _pml(pml_losses.MultiSimilarityLoss(alpha=1.5, beta=10.0, base=0.2))),
)


def pml_cases():
  for name, ours, ref in PML_CASES:
    for dtype, chunk in ((np.float32, None), (np.float64, 5)):  # chunked == whole: below
      yield dict(testcase_name=f"{name}_{dtype.__name__}_chunk{chunk}", ours=ours, ref=ref,
                 dtype=dtype, chunk=chunk)


class MetricLearningParityTest(ParityTestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(pml_cases())
  def test_matches_pml(self, ours, ref, dtype, chunk):
    e = rand(np.random.default_rng(0), (len(LABELS), 5), dtype)
    self.assert_parity(lambda x, y: ours(x, y, chunk), ref, (e, LABELS))

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.product(dtype=DTYPES, chunk=(None, 5))
  def test_info_nce_matches_pml_and_clip(self, dtype, chunk):
    rng = np.random.default_rng(1)
    q, k = rand(rng, (9, 4), dtype), rand(rng, (9, 4), dtype)
    self.assert_parity(lambda a, b: jaxloss.info_nce(a, b, 0.1, chunk_size=chunk),
                       _pml_info_nce(0.1), (q, k), grad_argnums=(0, 1))
    self.assert_parity(lambda a, b: jaxloss.info_nce(a, b, 0.1, symmetric=True,
                                                     chunk_size=chunk),
                       _clip_loss(0.1), (q, k), grad_argnums=(0, 1))


class MetricLearningTest(chex.TestCase):

  @parameterized.named_parameters(
      ("info_nce", lambda e, y, t, w: jaxloss.info_nce(e, e[:, ::-1], t, symmetric=True,
                                                        where=w)),
      ("ntxent", lambda e, y, t, w: jaxloss.ntxent(e, y, t, where=w)),
      ("supcon", lambda e, y, t, w: jaxloss.supervised_contrastive_loss(e, y, t, where=w)),
      ("batch_hard", lambda e, y, t, w: jaxloss.batch_hard_triplet_loss(e, y, t, where=w)),
      ("batch_all", lambda e, y, t, w: jaxloss.batch_all_triplet_loss(e, y, t, where=w)),
      ("multi_similarity", lambda e, y, t, w: jaxloss.multi_similarity_loss(
          e, y, 2.0, 50.0, t, where=w)),
  )
  def test_traced_hyperparameter_and_where(self, fn):
    rng = np.random.default_rng(2)
    e = rand(rng, (8, 4), np.float64)
    labels = np.array([0, 1, 0, 1, 1, 2, 0, 2])
    # vmap over the temperature/margin gives each copy the static call's value.
    ts = jnp.array([0.1, 0.3, 0.7])
    batched = jax.vmap(lambda t: fn(e, labels, t, None))(ts)
    looped = jnp.stack([fn(e, labels, float(t), None) for t in ts])
    chex.assert_trees_all_close(batched, looped, rtol=1e-12)
    # where: the loss of the kept samples; exactly-zero gradients at the masked ones.
    keep = np.array([True, True, False, True, True, True, True, False])
    e_bad = np.where(keep[:, None], e, np.nan)
    masked = jax.jit(lambda x: fn(x, labels, 0.3, keep))
    g = jax.grad(masked)(jnp.asarray(e_bad))
    self.assertTrue(np.all(np.asarray(g)[~keep] == 0.0))
    self.assertTrue(np.all(np.isfinite(np.asarray(g))))
    self.assertTrue(np.isfinite(float(masked(e_bad))))

  def test_where_equals_subset(self):
    rng = np.random.default_rng(3)
    e = rand(rng, (8, 4), np.float64)
    labels = np.array([0, 1, 0, 1, 1, 2, 0, 2])
    keep = np.array([True, True, False, True, True, True, True, False])
    for fn in (jaxloss.ntxent, jaxloss.supervised_contrastive_loss,
               jaxloss.batch_hard_triplet_loss, jaxloss.batch_all_triplet_loss,
               jaxloss.multi_similarity_loss):
      chex.assert_trees_all_close(fn(e, labels, where=keep), fn(e[keep], labels[keep]),
                                  rtol=1e-12)
    q, k = e, rand(rng, (8, 4), np.float64)
    chex.assert_trees_all_close(
        jaxloss.info_nce(q, k, symmetric=True, where=keep),
        jaxloss.info_nce(q[keep], k[keep], symmetric=True), rtol=1e-12)

  def test_degenerate_batches_as_pml(self):
    e = rand(np.random.default_rng(4), (4, 3), np.float64)
    t = torch.from_numpy(e)
    for labels in (np.array([0, 1, 2, 3]), np.array([0, 0, 0, 0]), np.array([0, 0, 1, 2])):
      y = torch.from_numpy(labels)
      for ours, ref in (
          (jaxloss.supervised_contrastive_loss, pml_losses.SupConLoss()),
          (jaxloss.batch_hard_triplet_loss,
           _pml(pml_losses.TripletMarginLoss(), pml_miners.BatchHardMiner())),
          (jaxloss.batch_all_triplet_loss, pml_losses.TripletMarginLoss()),
          (jaxloss.multi_similarity_loss, pml_losses.MultiSimilarityLoss())):
        loss, g = jax.value_and_grad(ours)(jnp.asarray(e), labels)
        self.assertAlmostEqual(float(loss), float(ref(t, y)), places=12, msg=str(labels))
        self.assertTrue(np.all(np.isfinite(np.asarray(g))))

  def test_chunked_equals_whole(self):
    rng = np.random.default_rng(6)
    e, k = rand(rng, (11, 4), np.float32), rand(rng, (11, 4), np.float32)
    labels = np.array([0, 1, 0, 1, 1, 2, 0, 2, 3, 3, 0])
    for fn in (jaxloss.ntxent, jaxloss.supervised_contrastive_loss,
               jaxloss.batch_hard_triplet_loss, jaxloss.batch_all_triplet_loss,
               jaxloss.multi_similarity_loss,
               lambda x, _, chunk_size=None: jaxloss.info_nce(x, k, symmetric=True,
                                                              chunk_size=chunk_size)):
      whole = jax.value_and_grad(fn)(e, labels)
      for chunk in (4,):
        chex.assert_trees_all_close(jax.value_and_grad(
            lambda x, y, c=chunk, f=fn: f(x, y, chunk_size=c))(e, labels), whole, rtol=1e-5,
            atol=1e-6)

  def test_ntxent_gradient_without_negatives_is_finite(self):
    e = jnp.asarray(rand(np.random.default_rng(5), (4, 3), np.float64))
    g = jax.grad(jaxloss.ntxent)(e, jnp.array([0, 0, 1, 1]).at[2:].set(0))
    self.assertTrue(np.all(np.isfinite(np.asarray(g))))

  def test_chunking_is_rematerialized(self):
    # The chunked program never holds the full B x B matrix: compare the peak of the
    # compiled programs' temporaries.
    e = jnp.ones((512, 8))
    labels = jnp.arange(512) % 8

    def temp_bytes(chunk):
      f = jax.jit(jax.grad(lambda x: jaxloss.ntxent(x, labels, chunk_size=chunk)))
      stats = f.lower(e).compile().memory_analysis()
      return None if stats is None else stats.temp_size_in_bytes
    full, chunked = temp_bytes(None), temp_bytes(32)
    if full is None:
      self.skipTest("no memory analysis on this backend")
    self.assertLess(chunked, full / 4)

  def test_metric_errors(self):
    with self.assertRaisesRegex(ValueError, r"info_nce: `key` must have the same shape"):
      jaxloss.info_nce(jnp.ones((4, 2)), jnp.ones((3, 2)))
    with self.assertRaisesRegex(ValueError, r"supervised_contrastive_loss: `labels` must have"):
      jaxloss.supervised_contrastive_loss(jnp.ones((4, 2)), jnp.zeros(3))
    with self.assertRaisesRegex(ValueError, r"batch_hard_triplet_loss: `margin` must be a "
                                r"scalar"):
      jaxloss.batch_hard_triplet_loss(jnp.ones((4, 2)), jnp.zeros(4), jnp.ones(2))
    with self.assertRaisesRegex(ValueError, r"multi_similarity_loss: `chunk_size` must be a "
                                r"positive int"):
      jaxloss.multi_similarity_loss(jnp.ones((4, 2)), jnp.zeros(4), chunk_size=0)
    with self.assertRaisesRegex(ValueError, r"ntxent: `where` must be a boolean"):
      jaxloss.ntxent(jnp.ones((4, 2)), jnp.zeros(4), where=jnp.ones(4))


if __name__ == "__main__":
  absltest.main()
