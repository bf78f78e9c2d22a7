"""jaxloss.segmentation beyond optax parity (tests/test_optax_parity.py): masks, jit, errors."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl.testing import absltest

import jaxloss
from tests.parity import rand


def _seg(rng, shape=(2, 4, 3), classes=3):
  logits = rand(rng, shape + (classes,), np.float64)
  targets = np.eye(classes)[rng.integers(0, classes, shape)]
  return logits, targets


def _dice_by_hand(probs, targets, smooth=1.0):
  inter = np.sum(probs * targets, axis=(1, 2))
  total = np.sum(probs, axis=(1, 2)) + np.sum(targets, axis=(1, 2))
  return np.mean(1 - (inter + smooth) / (0.5 * total + smooth), axis=-1)


class SegmentationTest(chex.TestCase):

  def test_dice_formula(self):
    logits, targets = _seg(np.random.default_rng(0))
    chex.assert_trees_all_close(jaxloss.dice_loss(logits, targets),
                                _dice_by_hand(np.asarray(jax.nn.softmax(logits)), targets),
                                rtol=1e-12)

  @chex.variants(with_jit=True, without_jit=True)
  def test_probabilities_jit_and_grad(self):
    # optax's apply_softmax=False check is eager-only; here it jits and differentiates.
    rng = np.random.default_rng(1)
    logits, targets = _seg(rng)
    probs = np.asarray(jax.nn.softmax(logits))
    fn = self.variant(lambda p: jnp.sum(jaxloss.dice_loss(p, targets, apply_softmax=False)))
    g = jax.grad(fn)(probs)
    expected = jax.grad(lambda p: jnp.sum(_dice_jnp(p, targets)))(probs)
    chex.assert_trees_all_close(g, expected, rtol=1e-12)
    value = jaxloss.dice_loss(probs, targets, apply_softmax=False)
    chex.assert_trees_all_close(value, optax.losses.dice_loss(probs, targets,
                                                              apply_softmax=False), rtol=1e-12)

  def test_binary_probabilities(self):
    # optax's check rejects binary probabilities (a one-class "sum" is not 1); not here.
    rng = np.random.default_rng(2)
    p = rng.random((3, 5))
    t = (rng.random((3, 5)) < 0.5).astype(np.float64)
    inter, total = np.sum(p * t, 1), np.sum(p, 1) + np.sum(t, 1)
    chex.assert_trees_all_close(jaxloss.binary_dice_loss(p, t, apply_sigmoid=False),
                                1 - (inter + 1) / (0.5 * total + 1), rtol=1e-12)
    with self.assertRaises(ValueError):
      optax.losses.binary_dice_loss(p, t, apply_sigmoid=False)

  def test_where_drops_pixels(self):
    rng = np.random.default_rng(3)
    logits, targets = _seg(rng, (2, 6, 1))
    keep = np.array([True, True, False, True, False, True])[None, :, None]
    keep = np.broadcast_to(keep, (2, 6, 1))
    bad = np.where(keep[..., None], logits, np.nan)
    kept = logits[:, keep[0, :, 0]], targets[:, keep[0, :, 0]]
    for fn in (jaxloss.dice_loss, jaxloss.multiclass_generalized_dice_loss):
      chex.assert_trees_all_close(fn(bad, targets, where=keep), fn(*kept), rtol=1e-12)
      g = jax.grad(lambda x, fn=fn: jnp.sum(fn(x, targets, where=keep)))(jnp.asarray(bad))
      self.assertTrue(np.all(np.asarray(g)[~keep] == 0.0))
      self.assertTrue(np.all(np.isfinite(np.asarray(g))))
    xb, tb = logits[..., 0, 0], targets[..., 0, 0]
    mask = keep[..., 0]
    chex.assert_trees_all_close(jaxloss.binary_dice_loss(np.where(mask, xb, np.inf), tb,
                                                         where=mask),
                                jaxloss.binary_dice_loss(xb[:, mask[0]], tb[:, mask[0]]),
                                rtol=1e-12)

  def test_vmap_matches_loop(self):
    rng = np.random.default_rng(4)
    logits, targets = _seg(rng, (3, 2, 4))
    for fn in (jaxloss.dice_loss, jaxloss.multiclass_generalized_dice_loss):
      batched = jax.vmap(fn)(logits, targets)
      looped = jnp.stack([fn(logits[i], targets[i]) for i in range(3)])
      chex.assert_trees_all_close(batched, looped, rtol=1e-12)

  def test_errors(self):
    x = jnp.ones((2, 3, 4))
    with self.assertRaisesRegex(ValueError, r"dice_loss: `reduction` must be one of"):
      jaxloss.dice_loss(x, x, reduction="batchmean")
    with self.assertRaisesRegex(ValueError, r"`targets` must have the same shape"):
      jaxloss.dice_loss(x, jnp.ones((2, 3, 5)))
    with self.assertRaisesRegex(ValueError, r"`class_weights` must have shape \(4,\)"):
      jaxloss.dice_loss(x, x, class_weights=jnp.ones(3))
    with self.assertRaisesRegex(ValueError, r"`axis`=3 is out of range"):
      jaxloss.dice_loss(x, x, axis=3)
    with self.assertRaisesRegex(ValueError, r"`targets` must have the same shape"):
      jaxloss.multiclass_generalized_dice_loss(x, jnp.ones((2, 3)))


def _dice_jnp(probs, targets, smooth=1.0):
  inter = jnp.sum(probs * targets, axis=(1, 2))
  total = jnp.sum(probs, axis=(1, 2)) + jnp.sum(targets, axis=(1, 2))
  return jnp.mean(1 - (inter + smooth) / (0.5 * total + smooth), axis=-1)


if __name__ == "__main__":
  absltest.main()
