"""Parity of jaxloss.embedding against torch.nn.functional, plus masks and errors."""


import chex
import jax
import jax.numpy as jnp
import numpy as np
import torch.nn.functional as F
from absl.testing import absltest, parameterized

import jaxloss
from tests.parity import DTYPES, ParityTestCase, rand, reduction_cases


def jax_cosine_distance(x, y):
  """``1 - cosine_similarity`` written in JAX, as torch computes it."""
  nx = jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-8)
  ny = jnp.maximum(jnp.linalg.norm(y, axis=-1, keepdims=True), 1e-8)
  return 1 - jnp.sum((x / nx) * (y / ny), axis=-1)


def torch_cosine_distance(x, y):
  return 1 - F.cosine_similarity(x, y, dim=-1)


DISTANCES = {
    "cosine": (jax_cosine_distance, torch_cosine_distance),
    "l1": (lambda x, y: jnp.sum(jnp.abs(x - y), axis=-1),
           lambda x, y: (x - y).abs().sum(dim=-1)),
}


# ----------------------------------------------------------------------------
# Parity sweeps
# ----------------------------------------------------------------------------

COSINE = (
    ("4x5_m0", dict(shapes=((4, 5), (4, 5)), tshape=(4,), margin=0.0)),
    ("4x5_bcast_m0.3_int_labels_with_zeros",
     dict(shapes=((4, 5), (1, 5)), tshape=(4,), margin=0.3, int_target=True, zeros=True)),
    ("5_unbatched_m-0.2", dict(shapes=((5,), (5,)), tshape=(), margin=-0.2)),
)

TRIPLET = (
    ("4x5_p1_swap_m0.5", dict(shapes=((4, 5),) * 3, kw=dict(p=1, swap=True, margin=0.5))),
    ("4x5_p3_eps0.1_m2", dict(shapes=((4, 5),) * 3, kw=dict(p=3, eps=0.1, margin=2.0))),
    ("4x5_pinf_swap", dict(shapes=((4, 5),) * 3, kw=dict(p=float("inf"), swap=True))),
    ("4x5_p1.5_bcast_m3", dict(shapes=((4, 5), (1, 5), (4, 5)), kw=dict(p=1.5, margin=3.0))),
    ("2x3x4_p0.5_swap", dict(shapes=((2, 3, 4),) * 3, kw=dict(p=0.5, swap=True, margin=4.0))),
    ("5_unbatched_p2_swap", dict(shapes=((5,),) * 3, kw=dict(swap=True))),
)

TRIPLET_DISTANCE = (
    ("4x5_default", dict(shapes=((4, 5),) * 3, kw={})),
    ("4x5_cosine_swap", dict(shapes=((4, 5),) * 3, distance="cosine", kw=dict(swap=True))),
    ("4x5_l1_m0.5", dict(shapes=((4, 5),) * 3, distance="l1", kw=dict(margin=0.5))),
    ("5_unbatched_default_swap_m2", dict(shapes=((5,),) * 3, kw=dict(swap=True, margin=2.0))),
)

PAIRWISE = (
    ("p2", dict(shapes=((4, 5), (4, 5)), kw={})),
    ("p1_bcast_rank_keepdim", dict(shapes=((4, 5), (5,)), kw=dict(p=1.0, keepdim=True))),
    ("p3_bcast_rank", dict(shapes=((5,), (2, 5)), kw=dict(p=3.0))),
    ("pinf_eps0.1", dict(shapes=((4, 5), (4, 5)), kw=dict(p=float("inf"), eps=0.1))),
    ("p0.5", dict(shapes=((4, 5), (4, 5)), kw=dict(p=0.5))),
    ("p-1", dict(shapes=((4, 5), (4, 1)), kw=dict(p=-1.0))),
    ("p0", dict(shapes=((4, 5), (4, 5)), kw=dict(p=0.0))),
    ("scalars_keepdim", dict(shapes=((), ()), kw=dict(keepdim=True))),
)


class EmbeddingParityTest(ParityTestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(*reduction_cases(COSINE))
  def test_cosine_embedding_loss(self, cfg, reduction, dtype):
    rng = np.random.default_rng(0)
    s1, s2 = cfg["shapes"]
    values = (-1, 0, 1) if cfg.get("zeros") else (-1, 1)
    t = rng.choice(values, size=cfg["tshape"]).astype(
        np.int64 if cfg.get("int_target") else dtype)
    self.assert_parity(jaxloss.cosine_embedding_loss, F.cosine_embedding_loss,
                       [rand(rng, s1, dtype), rand(rng, s2, dtype), t],
                       dict(margin=cfg["margin"], reduction=reduction), grad_argnums=(0, 1))

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(*reduction_cases(TRIPLET))
  def test_triplet_margin_loss(self, cfg, reduction, dtype):
    rng = np.random.default_rng(1)
    args = [rand(rng, s, dtype) for s in cfg["shapes"]]
    self.assert_parity(jaxloss.triplet_margin_loss, F.triplet_margin_loss, args,
                       dict(cfg["kw"], reduction=reduction), grad_argnums=(0, 1, 2))

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(*reduction_cases(TRIPLET_DISTANCE))
  def test_triplet_margin_with_distance_loss(self, cfg, reduction, dtype):
    rng = np.random.default_rng(2)
    args = [rand(rng, s, dtype) for s in cfg["shapes"]]
    kw, tkw = dict(cfg["kw"], reduction=reduction), None
    if "distance" in cfg:
      jax_distance, torch_distance = DISTANCES[cfg["distance"]]
      kw["distance_function"] = jax_distance
      tkw = dict(distance_function=torch_distance)
    self.assert_parity(jaxloss.triplet_margin_with_distance_loss,
                       F.triplet_margin_with_distance_loss, args, kw, torch_kwargs=tkw,
                       grad_argnums=(0, 1, 2))

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(
      *[dict(testcase_name=f"{name}_{DTYPES[i % 2].__name__}", cfg=cfg, dtype=DTYPES[i % 2])
        for i, (name, cfg) in enumerate(PAIRWISE)])
  def test_pairwise_distance(self, cfg, dtype):
    rng = np.random.default_rng(3)
    args = [rand(rng, s, dtype) for s in cfg["shapes"]]
    self.assert_parity(jaxloss.pairwise_distance, F.pairwise_distance, args, cfg["kw"],
                       grad_argnums=(0, 1))


class EmbeddingKinkTest(ParityTestCase):
  """Subgradients at exact kinks, ties and zero norms, where random inputs never land."""

  @chex.variants(with_jit=True, without_jit=True)
  def test_cosine_zero_vectors_and_hinge_at_zero(self):
    # Zero vectors: cos = 0 through torch's eps on the squared norms; for y = -1
    # and margin 0 the hinge sits exactly at its kink and passes the (huge) gradient.
    x1 = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [1.0, 2.0, -1.0], [1.0, 0.0, 0.0]])
    x2 = np.array([[1.0, 2.0, 0.5], [0.3, -1.0, 2.0], [0.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    y = np.array([-1.0, 1.0, -1.0, -1.0])
    self.assert_parity(jaxloss.cosine_embedding_loss, F.cosine_embedding_loss, [x1, x2, y],
                       dict(reduction="none"), grad_argnums=(0, 1))

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(("p1", 1.0), ("p2", 2.0), ("p3", 3.0), ("p1.5", 1.5),
                                  ("p0.5", 0.5), ("pinf", float("inf")), ("p0", 0.0),
                                  ("p-1", -1.0))
  def test_pairwise_distance_at_zero_differences_and_ties(self, p):
    eps = 0.25  # exactly representable, so that x1 - x2 + eps can be exactly 0
    # Row 0: x1 - x2 + eps == 0 (a zero norm); row 1: one zero entry;
    # row 2: d = (2, -2, 0.75), a tie of the largest magnitudes (the inf-norm
    # shares the gradient).
    x1 = np.array([[0.0, 0.0, 0.0], [0.0, 1.0, 2.0], [1.0, -2.0, 0.5]])
    x2 = np.array([[0.25, 0.25, 0.25], [0.25, 0.0, 0.5], [-0.75, 0.25, 0.0]])
    self.assert_parity(jaxloss.pairwise_distance, F.pairwise_distance, [x1, x2],
                       dict(p=p, eps=eps), grad_argnums=(0, 1))

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(("plain", False), ("swap", True))
  def test_triplet_hinge_kink_and_swap_tie(self, swap):
    # Row 0: margin + d(a, p) - d(a, n) == 0 exactly (the gradient passes);
    # row 1: d(a, n) == d(p, n) (torch.minimum shares the gradient equally).
    a = np.array([[0.0, 0.0], [0.0, 0.0]])
    pos = np.array([[1.0, 0.0], [2.0, 0.0]])
    neg = np.array([[2.0, 0.0], [1.0, 0.0]])
    kw = dict(margin=1.0, eps=0.0, swap=swap, reduction="none")
    self.assert_parity(jaxloss.triplet_margin_loss, F.triplet_margin_loss, [a, pos, neg], kw,
                       grad_argnums=(0, 1, 2))
    self.assert_parity(
        jaxloss.triplet_margin_with_distance_loss, F.triplet_margin_with_distance_loss,
        [a, pos, neg],
        dict(margin=1.0, swap=swap, reduction="none",
             distance_function=lambda x, y: jaxloss.pairwise_distance(x, y, eps=0.0)),
        torch_kwargs=dict(distance_function=lambda x, y: F.pairwise_distance(x, y, eps=0.0)),
        grad_argnums=(0, 1, 2))


# ----------------------------------------------------------------------------
# Behaviour beyond torch: where masks, vmap, precision
# ----------------------------------------------------------------------------


def _triplet(rng, n=6):
  return [rand(rng, (n, 4), np.float64) for _ in range(3)]


def _loss_cases(exclude=()):
  """(name, fn, make(rng) -> args, kwargs) for the three losses, batch of 6."""
  def cosine(rng):
    return [rand(rng, (6, 4), np.float64), rand(rng, (6, 4), np.float64),
            rng.choice((-1.0, 1.0), size=6)]
  cases = (
      ("cosine", jaxloss.cosine_embedding_loss, cosine, dict(margin=0.1)),
      ("triplet_p1_swap", jaxloss.triplet_margin_loss, _triplet, dict(p=1, swap=True)),
      ("triplet_pinf", jaxloss.triplet_margin_loss, _triplet, dict(p=float("inf"), margin=2.0)),
      ("triplet_distance_default", jaxloss.triplet_margin_with_distance_loss, _triplet,
       dict(margin=3.0)),
      ("triplet_distance_cosine_swap", jaxloss.triplet_margin_with_distance_loss, _triplet,
       dict(distance_function=jax_cosine_distance, swap=True, margin=1.5)),
  )
  return tuple(case for case in cases if case[0] not in exclude)


class EmbeddingBehaviourTest(chex.TestCase):

  @parameterized.named_parameters(*_loss_cases())
  def test_where_mask_drops_samples(self, fn, make, kw):
    args = make(np.random.default_rng(4))
    keep = np.array([True, False, True, True, False, True])
    where = jnp.asarray(keep)
    for reduction in ("mean", "sum"):
      masked = fn(*args, reduction=reduction, where=where, **kw)
      subset = fn(*[a[keep] for a in args], reduction=reduction, **kw)
      chex.assert_trees_all_close(masked, subset, rtol=1e-12)
    none = fn(*args, reduction="none", where=where, **kw)
    chex.assert_trees_all_close(none[~keep], 0.0)
    chex.assert_trees_all_close(none[keep], fn(*[a[keep] for a in args], reduction="none", **kw),
                                rtol=1e-12)
    # inf/nan in masked rows must not leak into the value or any gradient.
    poisoned = [np.array(a) for a in args]
    poisoned[0][~keep] = np.inf
    poisoned[1][1] = np.nan
    value, grads = jax.value_and_grad(
        lambda a, b: fn(a, b, *poisoned[2:], where=where, **kw), argnums=(0, 1))(
            jnp.asarray(poisoned[0]), jnp.asarray(poisoned[1]))
    self.assertTrue(np.isfinite(value))
    for g in grads:
      g = np.asarray(g)
      self.assertTrue(np.all(g[~keep] == 0.0))
      self.assertTrue(np.all(np.isfinite(g)))
    self.assertTrue(np.any(np.asarray(grads[0])[keep] != 0.0))

  @parameterized.named_parameters(*_loss_cases(exclude=("triplet_pinf",)))
  def test_vmap_matches_loop(self, fn, make, kw):
    rng = np.random.default_rng(5)
    batches = [make(rng) for _ in range(3)]
    args = [np.stack([b[i] for b in batches]) for i in range(len(batches[0]))]
    batched = jax.vmap(lambda *a: fn(*a, reduction="none", **kw))(*args)
    looped = jnp.stack([fn(*[a[i] for a in args], reduction="none", **kw) for i in range(3)])
    chex.assert_trees_all_close(batched, looped, rtol=1e-12)

  def test_vmap_pairwise_distance_matches_loop(self):
    x1, x2 = rand(np.random.default_rng(6), (2, 3, 4), np.float64)
    batched = jax.vmap(lambda a, b: jaxloss.pairwise_distance(a, b, p=3.0))(x1, x2)
    chex.assert_trees_all_close(
        batched, jnp.stack([jaxloss.pairwise_distance(x1[i], x2[i], p=3.0) for i in range(3)]))

  @parameterized.named_parameters(
      *_loss_cases(exclude=("triplet_pinf", "triplet_distance_cosine_swap")))
  def test_half_precision_computes_in_float32(self, fn, make, kw):
    args = make(np.random.default_rng(7))
    half = [a.astype(jnp.bfloat16) for a in args]
    out = fn(*half, **kw)
    self.assertEqual(out.dtype, jnp.bfloat16)
    ref = fn(*[np.asarray(a, np.float32) for a in half], **kw)
    self.assertEqual(ref.dtype, jnp.float32)
    self.assertEqual(float(out), float(ref.astype(jnp.bfloat16)))
    g = jax.grad(lambda a: fn(a, *half[1:], **kw).astype(jnp.float32))(half[0])
    self.assertEqual(g.dtype, jnp.bfloat16)

  def test_pairwise_distance_half_precision(self):
    x1, x2 = (rand(np.random.default_rng(8), (3, 4), np.float32)).astype(jnp.bfloat16), \
        jnp.zeros((3, 4), jnp.bfloat16)
    out = jaxloss.pairwise_distance(x1, x2)
    self.assertEqual(out.dtype, jnp.bfloat16)
    chex.assert_trees_all_close(
        out, jaxloss.pairwise_distance(np.asarray(x1, np.float32), np.zeros((3, 4), np.float32))
        .astype(jnp.bfloat16))

  def test_default_distance_is_pairwise_distance(self):
    a, p, n = _triplet(np.random.default_rng(9))
    for swap in (False, True):
      chex.assert_trees_all_close(
          jaxloss.triplet_margin_with_distance_loss(a, p, n, swap=swap, reduction="none"),
          jaxloss.triplet_margin_loss(a, p, n, swap=swap, reduction="none"), rtol=1e-14)

  def test_traced_margin(self):
    a, p, n = _triplet(np.random.default_rng(10))
    traced = jax.jit(lambda m: jaxloss.triplet_margin_loss(a, p, n, margin=m))(2.5)
    chex.assert_trees_all_close(traced, jaxloss.triplet_margin_loss(a, p, n, margin=2.5))
    g = jax.grad(lambda m: jaxloss.triplet_margin_loss(a, p, n, margin=m, reduction="sum"))(2.5)
    active = np.asarray(jaxloss.triplet_margin_loss(a, p, n, margin=2.5, reduction="none")) > 0
    self.assertEqual(float(g), float(active.sum()))


class EmbeddingErrorTest(parameterized.TestCase):

  @parameterized.named_parameters(
      ("cosine", jaxloss.cosine_embedding_loss, (jnp.ones((2, 3)),) * 2 + (jnp.ones(2),)),
      ("triplet", jaxloss.triplet_margin_loss, (jnp.ones((2, 3)),) * 3))
  def test_reduction_and_legacy_arguments(self, fn, args):
    name = fn.__name__
    with self.assertRaisesRegex(ValueError, rf"{name}: `reduction` must be one of"):
      fn(*args, reduction="avg")
    with self.assertRaisesRegex(ValueError, rf"{name}: the deprecated `size_average`"):
      fn(*args, size_average=True)
    with self.assertRaisesRegex(ValueError, rf"{name}: the deprecated `size_average`"):
      fn(*args, reduce=False)
    with self.assertRaisesRegex(ValueError, rf"{name}: `(input1|anchor)` must be a floating"):
      fn(*((args[0].astype(jnp.int32),) + args[1:]))

  def test_cosine_shape_errors(self):
    fn = jaxloss.cosine_embedding_loss
    with self.assertRaisesRegex(ValueError, r"`target` must be 0-D or 1-D .*got shape \(2, 1\)"):
      fn(jnp.ones((2, 3)), jnp.ones((2, 3)), jnp.ones((2, 1)))
    with self.assertRaisesRegex(ValueError, r"`input1` must be \(N, D\) for a 1-D `target`, "
                                            r"got shape \(3,\)"):
      fn(jnp.ones(3), jnp.ones(3), jnp.ones(2))
    with self.assertRaisesRegex(ValueError, r"`input2` must be \(D,\) for a 0-D `target`, "
                                            r"got shape \(2, 3\)"):
      fn(jnp.ones(3), jnp.ones((2, 3)), jnp.ones(()))
    with self.assertRaisesRegex(ValueError, r"`input1` of shape \(2, 3\) and `input2` of "
                                            r"shape \(2, 4\) cannot be broadcast together"):
      fn(jnp.ones((2, 3)), jnp.ones((2, 4)), jnp.ones(2))
    with self.assertRaisesRegex(ValueError, r"`target` must have shape \(2,\) .*got \(3,\)"):
      fn(jnp.ones((2, 3)), jnp.ones((2, 3)), jnp.ones(3))
    with self.assertRaisesRegex(ValueError, r"`target` must be a floating-point or integer"):
      fn(jnp.ones((2, 3)), jnp.ones((2, 3)), jnp.ones(2, bool))
    with self.assertRaisesRegex(ValueError, r"`where` of shape \(3,\)"):
      fn(jnp.ones((2, 3)), jnp.ones((2, 3)), jnp.ones(2), where=jnp.ones(3, bool))

  @parameterized.named_parameters(
      ("triplet", jaxloss.triplet_margin_loss),
      ("triplet_distance", jaxloss.triplet_margin_with_distance_loss))
  def test_triplet_errors(self, fn):
    name = fn.__name__
    x = jnp.ones((2, 3))
    for margin in (0.0, -1.0):
      with self.assertRaisesRegex(ValueError, rf"{name}: `margin` must be greater than 0"):
        fn(x, x, x, margin=margin)
    with self.assertRaisesRegex(ValueError, rf"{name}: the inputs must have the same number "
                                            r"of dimensions, got `anchor` \(2, 3\), "
                                            r"`positive` \(3,\)"):
      fn(x, jnp.ones(3), x)
    with self.assertRaisesRegex(ValueError,
                                r"`negative` of shape \(2, 4\) cannot be broadcast together"):
      fn(x, x, jnp.ones((2, 4)))
    with self.assertRaisesRegex(ValueError, r"`reduction` must be one of"):
      fn(x, x, x, reduction="batchmean")

  def test_triplet_distance_specific_errors(self):
    x = jnp.ones((2, 3))
    with self.assertRaises(TypeError):  # distance_function is keyword-only, as in torch
      jaxloss.triplet_margin_with_distance_loss(x, x, x, jax_cosine_distance)
    with self.assertRaisesRegex(ValueError, r"`distance_function` must return the per-sample "
                                            r"shape \(2,\), got \(\)"):
      jaxloss.triplet_margin_with_distance_loss(
          x, x, x, distance_function=lambda u, v: jnp.sum((u - v) ** 2),
          where=jnp.ones(2, bool))

  def test_pairwise_distance_errors(self):
    with self.assertRaisesRegex(ValueError, r"pairwise_distance: `x2` must be a floating"):
      jaxloss.pairwise_distance(jnp.ones(3), jnp.ones(3, jnp.int32))
    with self.assertRaisesRegex(ValueError, r"pairwise_distance: `x1` of shape \(2, 3\) and `x2` "
                                            r"of shape \(3, 3\) cannot be broadcast together"):
      jaxloss.pairwise_distance(jnp.ones((2, 3)), jnp.ones((3, 3)))
    with self.assertRaisesRegex(ValueError, r"`p` must be a static Python float"):
      jax.jit(lambda p: jaxloss.pairwise_distance(jnp.ones(3), jnp.zeros(3), p=p))(2.0)

  def test_errors_raise_at_trace_time_under_jit(self):
    with self.assertRaisesRegex(ValueError, "same number of dimensions"):
      jax.jit(jaxloss.triplet_margin_loss).lower(jnp.ones((2, 3)), jnp.ones(3), jnp.ones(3))
    with self.assertRaisesRegex(ValueError, "multi-target is not supported"):
      jax.jit(jaxloss.cosine_embedding_loss).lower(jnp.ones((2, 3)), jnp.ones((2, 3)),
                                                   jnp.ones((2, 2)))


if __name__ == "__main__":
  absltest.main()
