"""Parity of jaxloss.cosine_similarity with torch.nn.functional.cosine_similarity."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import torch.nn.functional as F
from absl.testing import absltest, parameterized

import jaxloss
from tests.parity import DTYPES, ParityTestCase, rand


def _cases():
  configs = (("2d_dim1", (4, 3), (4, 3), 1, 1e-8), ("3d_dim0", (3, 2, 4), (3, 2, 4), 0, 1e-8),
             ("broadcast", (4, 1, 3), (5, 3), -1, 1e-8), ("clamped", (5, 3), (5, 3), 1, 1.5))
  for i, (name, s1, s2, dim, eps) in enumerate(configs):
    for dtype in DTYPES:
      yield dict(testcase_name=f"{name}_{dtype.__name__}", s1=s1, s2=s2, dim=dim, eps=eps,
                 dtype=dtype, seed=i)


class CosineSimilarityParityTest(ParityTestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(*_cases())
  def test_parity(self, s1, s2, dim, eps, dtype, seed):
    rng = np.random.default_rng(seed)
    args = [rand(rng, s1, dtype), rand(rng, s2, dtype)]
    self.assert_parity(jaxloss.cosine_similarity, F.cosine_similarity, args,
                       dict(dim=dim, eps=eps), grad_argnums=(0, 1))

  def test_zero_vector_gradient_matches_torch(self):
    x1, x2 = np.zeros((1, 3)), np.ones((1, 3))
    self.assert_parity_eager(x1, x2)

  def assert_parity_eager(self, x1, x2):
    import torch  # noqa: PLC0415
    t1 = torch.tensor(x1, requires_grad=True)
    t2 = torch.tensor(x2, requires_grad=True)
    F.cosine_similarity(t1, t2).sum().backward()
    g1, g2 = jax.grad(lambda a, b: jnp.sum(jaxloss.cosine_similarity(a, b)), (0, 1))(x1, x2)
    chex.assert_trees_all_close(g1, t1.grad.numpy())
    chex.assert_trees_all_close(g2, t2.grad.numpy())

  def test_where_masks_entries(self):
    rng = np.random.default_rng(7)
    a, b = rand(rng, (4, 5), np.float64), rand(rng, (4, 5), np.float64)
    keep = np.array([True, True, False, True, False])
    a_bad = np.where(keep, a, np.nan)
    chex.assert_trees_all_close(jaxloss.cosine_similarity(a_bad, b, where=keep),
                                jaxloss.cosine_similarity(a[:, keep], b[:, keep]), rtol=1e-12)
    g = jax.grad(lambda x: jnp.sum(jaxloss.cosine_similarity(x, b, where=keep)))(a_bad)
    self.assertTrue(np.all(np.asarray(g)[:, ~keep] == 0.0))
    self.assertTrue(np.all(np.isfinite(np.asarray(g))))

  def test_vmap_and_errors(self):
    rng = np.random.default_rng(8)
    a, b = rand(rng, (3, 4, 5), np.float64), rand(rng, (3, 4, 5), np.float64)
    chex.assert_trees_all_close(jax.vmap(jaxloss.cosine_similarity)(a, b),
                                jnp.stack([jaxloss.cosine_similarity(a[i], b[i])
                                           for i in range(3)]), rtol=1e-12)
    with self.assertRaisesRegex(ValueError, r"`dim`=2 is out of range"):
      jaxloss.cosine_similarity(jnp.ones((2, 3)), jnp.ones((2, 3)), dim=2)
    with self.assertRaisesRegex(ValueError, r"`x2` of shape \(4,\) cannot be broadcast"):
      jaxloss.cosine_similarity(jnp.ones((2, 3)), jnp.ones(4))


if __name__ == "__main__":
  absltest.main()
