"""Parity of jaxloss.ctc_loss with torch.nn.functional.ctc_loss, plus behaviour and errors."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch
import torch.nn.functional as F
from absl.testing import absltest, parameterized
from jax.experimental import checkify

import jaxloss
from jaxloss import ctc as ctc_module
from tests.parity import ParityTestCase

T, C, S = 8, 6, 4
BLANKS = {"first": 0, "middle": 2, "last": C - 1}


def _labels(rng, shape, blank):
  """Random labels in [0, C) other than ``blank``."""
  choices = np.array([c for c in range(C) if c != blank])
  return rng.choice(choices, size=shape)


def _batch(rng, blank, impossible=False):
  """Five samples covering a repeat, short inputs, an empty target, a tight fit.

  With ``impossible``, two samples cannot be aligned: a repeated label needing a
  blank in between that does not fit, and a non-empty target with no frames.
  """
  labels = _labels(rng, (5, S), blank)
  labels[0, 1] = labels[0, 0]  # a repeat: needs a blank in between
  labels[3, :3] = [c for c in range(C) if c != blank][:3]  # distinct: il == tl fits
  input_lengths = np.array([T, T - 2, 5, 3, 0])
  target_lengths = np.array([S, 2, 0, 3, 0])
  if impossible:
    labels[3, 1] = labels[3, 0]  # 3 labels with a repeat need 4 frames, 3 given
    target_lengths[4] = 1  # no frames for one label
  return labels, input_lengths, target_lengths


def _concatenate(labels, target_lengths):
  return np.concatenate([labels[i, :n] for i, n in enumerate(target_lengths)])


def _logits_fns():
  """The loss applied to ``log_softmax(logits)``, in JAX and in torch."""
  def jax_fn(x, *args, **kw):
    return jaxloss.ctc_loss(jax.nn.log_softmax(x, axis=-1), *args, **kw)

  def torch_fn(x, *args, **kw):
    return F.ctc_loss(x.log_softmax(-1), *args, **kw)
  return jax_fn, torch_fn


# (layout, blank position, reduction, zero_infinity, impossible samples, inputs, dtype):
# every layout, blank position and reduction, zero_infinity with and without
# infinite losses, raw (unnormalised) log_probs and log_softmax(logits), in both
# dtypes. Each case runs once per dtype listed; both jit and no-jit.
_CASES = (
    ("padded", "first", "none", False, False, "raw", np.float64),
    ("padded", "middle", "mean", False, False, "logits", np.float32),
    ("padded", "last", "sum", False, False, "raw", np.float64),
    ("concatenated", "first", "none", False, False, "logits", np.float64),
    ("concatenated", "middle", "mean", False, False, "raw", np.float32),
    ("unbatched", "first", "none", False, False, "raw", np.float32),
    ("unbatched_2d", "middle", "mean", False, False, "logits", np.float64),
    ("padded", "middle", "none", True, False, "logits", np.float64),  # nothing to zero
    ("padded", "first", "none", False, True, "raw", np.float64),  # inf, NaN gradients
    ("padded", "middle", "mean", False, True, "logits", np.float32),
    ("padded", "last", "sum", True, True, "raw", np.float32),  # zeroed
    ("concatenated", "first", "mean", True, True, "logits", np.float64),
)


def _cases():
  for seed, (layout, blank_name, reduction, zero_inf, impossible, inputs, dtype) in enumerate(
      _CASES):
    name = (f"{layout}_blank_{blank_name}_{reduction}_{inputs}"
            f"{'_zero_inf' if zero_inf else ''}{'_impossible' if impossible else ''}"
            f"_{dtype.__name__}")
    yield dict(testcase_name=name, layout=layout, blank=BLANKS[blank_name],
               reduction=reduction, zero_infinity=zero_inf, impossible=impossible,
               inputs=inputs, dtype=dtype, seed=seed)


class CtcParityTest(ParityTestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(*_cases())
  def test_ctc_loss(self, layout, blank, reduction, zero_infinity, impossible, inputs, dtype,
                    seed):
    rng = np.random.default_rng(seed)
    labels, input_lengths, target_lengths = _batch(rng, blank, impossible)
    if layout == "concatenated":
      targets = _concatenate(labels, target_lengths)
    elif layout == "unbatched":  # torch needs len(targets) == target_length here
      targets, input_lengths, target_lengths = labels[0], input_lengths[:1], target_lengths[:1]
    elif layout == "unbatched_2d":  # (1, S) with a shorter target
      targets, input_lengths, target_lengths = labels[1:2], input_lengths[1], target_lengths[1]
    else:
      targets = labels
    shape = (T, C) if layout.startswith("unbatched") else (T, len(labels), C)
    x = rng.normal(size=shape).astype(dtype)
    if layout == "unbatched":
      input_lengths, target_lengths = input_lengths.reshape(()), target_lengths.reshape(())
    args = [x, np.asarray(targets, np.int64), np.asarray(input_lengths, np.int64),
            np.asarray(target_lengths, np.int64)]
    kwargs = dict(blank=blank, reduction=reduction, zero_infinity=zero_infinity)
    jax_fn, torch_fn = (jaxloss.ctc_loss, F.ctc_loss) if inputs == "raw" else _logits_fns()
    self.assert_parity(jax_fn, torch_fn, args, kwargs)

  @chex.variants(with_jit=True)
  def test_empty_targets(self):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(T, 3, C))
    for targets in (np.zeros((3, 0), np.int64), np.zeros((0,), np.int64)):
      args = [x, targets, np.array([T, 4, 0]), np.zeros(3, np.int64)]
      self.assert_parity(jaxloss.ctc_loss, F.ctc_loss, args, dict(reduction="none"))

  @chex.variants(with_jit=True)
  def test_minus_inf_log_probs_give_torch_nan_gradients(self):
    # torch computes exp(lcab + nll - lp): NaN wherever lp == -inf (a class made
    # impossible), even though the loss is finite.
    rng = np.random.default_rng(6)
    logits = rng.normal(size=(T, 2, C))
    logits[:, :, C - 1] = -np.inf
    targets = np.array([[1, 2], [2, 2]])
    args = [np.asarray(jax.nn.log_softmax(logits, -1)), targets, np.array([T, 6]),
            np.array([2, 2])]
    self.assert_parity(jaxloss.ctc_loss, F.ctc_loss, args, dict(reduction="sum"))
    g = jax.grad(lambda a: jaxloss.ctc_loss(a, *args[1:], reduction="sum"))(args[0])
    self.assertTrue(np.all(np.isnan(g[:T, 0, C - 1])))
    self.assertTrue(np.all(np.isfinite(g[:, :, :C - 1])))


class CtcGradientTest(chex.TestCase):
  """torch's gradient vs the mathematical one (plain autodiff of the forward)."""

  def _setup(self, seed=0, blank=2):
    rng = np.random.default_rng(seed)
    labels, input_lengths, target_lengths = _batch(rng, blank)
    logits = jnp.asarray(rng.normal(size=(T, len(labels), C)))
    return logits, (jnp.asarray(labels), jnp.asarray(input_lengths),
                    jnp.asarray(target_lengths), blank)

  def test_through_log_softmax_equals_autodiff_and_torch(self):
    logits, args = self._setup()
    reduction = "mean"

    def loss(per_sample, x):
      return ctc_module._ctc_loss(per_sample, jax.nn.log_softmax(x, -1), *args, reduction,
                                  False, None, None)

    ours = jax.grad(lambda x: loss(ctc_module._ctc_nll, x))(logits)
    autodiff = jax.grad(lambda x: loss(ctc_module._ctc_nll_autodiff, x))(logits)
    chex.assert_trees_all_close(ours, autodiff, rtol=1e-10, atol=1e-12)
    tx = torch.tensor(np.asarray(logits), requires_grad=True)
    torch_args = [torch.tensor(np.asarray(a)) for a in args[:3]]
    F.ctc_loss(tx.log_softmax(-1), *torch_args, blank=args[3], reduction=reduction).backward()
    chex.assert_trees_all_close(ours, tx.grad.numpy(), rtol=1e-10, atol=1e-12)

  def test_raw_gradient_is_autodiff_plus_exp_log_probs(self):
    # On log_probs themselves torch's gradient is g * (exp(lp) - posterior) for
    # t < input_length: the true derivative (-g * posterior) plus g * exp(lp).
    lp, args = self._setup(seed=1)
    cot = jnp.asarray(np.random.default_rng(2).normal(size=lp.shape[1]))

    def vjp(per_sample):
      _, pullback = jax.vjp(
          lambda a: ctc_module._ctc_loss(per_sample, a, *args, "none", False, None, None), lp)
      return pullback(cot)[0]

    live = (jnp.arange(T)[:, None] < args[1][None, :])[:, :, None]
    expected = vjp(ctc_module._ctc_nll_autodiff) + jnp.where(live, cot[None, :, None] * jnp.exp(lp),
                                                              0.0)
    chex.assert_trees_all_close(vjp(ctc_module._ctc_nll), expected, rtol=1e-10, atol=1e-12)


class CtcBehaviourTest(chex.TestCase):

  def test_matches_optax(self):
    # optax.ctc_loss takes logits (B, T, K) and paddings; same numbers and
    # logit gradients (optax approximates log 0 by -1e5, invisible here).
    rng = np.random.default_rng(7)
    n = 4
    logits = jnp.asarray(rng.normal(size=(n, T, C)), jnp.float32)
    labels = jnp.asarray(_labels(rng, (n, S), 0))
    labels = labels.at[0, 1].set(labels[0, 0])
    input_lengths, target_lengths = jnp.array([T, 7, 5, 6]), jnp.array([S, 3, 1, 0])
    logit_pad = (jnp.arange(T)[None] >= input_lengths[:, None]).astype(jnp.float32)
    label_pad = (jnp.arange(S)[None] >= target_lengths[:, None]).astype(jnp.float32)

    def ours(x):
      log_probs = jnp.transpose(jax.nn.log_softmax(x), (1, 0, 2))
      return jaxloss.ctc_loss(log_probs, labels, input_lengths, target_lengths, reduction="none")

    def theirs(x):
      return optax.ctc_loss(x, logit_pad, labels, label_pad)

    def value_and_grad(fn):
      return jax.jit(jax.value_and_grad(lambda x: jnp.sum(fn(x) * jnp.arange(1.0, n + 1))))

    value, grad = value_and_grad(ours)(logits)
    optax_value, optax_grad = value_and_grad(theirs)(logits)
    chex.assert_trees_all_close(value, optax_value, rtol=1e-5)
    chex.assert_trees_all_close(grad, optax_grad, atol=1e-5)

  def test_where_leaves_samples_out(self):
    rng = np.random.default_rng(8)
    labels, il, tl = _batch(rng, 0, impossible=True)  # samples 3, 4 are infinite
    x = jnp.asarray(rng.normal(size=(T, 5, C)))
    keep = np.array([True, False, True, False, False])
    args = (jnp.asarray(labels), jnp.asarray(il), jnp.asarray(tl))

    def subset(reduction):
      return jaxloss.ctc_loss(x[:, keep], *(a[keep] for a in args), reduction=reduction)

    none = jaxloss.ctc_loss(x, *args, reduction="none", where=jnp.asarray(keep))
    chex.assert_trees_all_close(none[keep], subset("none"))
    chex.assert_trees_all_close(none[~keep], 0.0)
    value, g = jax.value_and_grad(
        lambda a: jaxloss.ctc_loss(a, *args, where=jnp.asarray(keep)))(x)
    chex.assert_trees_all_close(value, subset("mean"))
    self.assertTrue(np.all(np.asarray(g)[:, ~keep] == 0.0))  # not NaN for the infinite ones
    chex.assert_tree_all_finite(g)
    self.assertTrue(np.all(np.asarray(g)[:il[0], 0] != 0.0))

  def test_repeated_labels_need_a_blank(self):
    lp = jax.nn.log_softmax(jnp.zeros((3, C)))  # uniform: every path has prob C^-T
    repeat, distinct = jnp.array([1, 1]), jnp.array([1, 2])
    self.assertEqual(float(jaxloss.ctc_loss(lp[:2], repeat, 2, 2, reduction="none")), np.inf)
    # (1, 2) in 2 frames: the single path 1 2; (1, 1) in 3 frames: only 1 blank 1.
    self.assertAlmostEqual(float(jaxloss.ctc_loss(lp[:2], distinct, 2, 2, reduction="none")),
                           2 * np.log(C), places=10)
    self.assertAlmostEqual(float(jaxloss.ctc_loss(lp, repeat, 3, 2, reduction="none")),
                           3 * np.log(C), places=10)

  def test_vmap_matches_loop(self):
    rng = np.random.default_rng(10)
    batches = [_batch(rng, 1) for _ in range(3)]
    labels, il, tl = (jnp.asarray(np.stack(a)) for a in zip(*batches, strict=False))
    x = jnp.asarray(rng.normal(size=(3, T, 5, C)))

    def fn(a, b, c, d):
      return jaxloss.ctc_loss(a, b, c, d, blank=1, reduction="mean")

    batched = jax.vmap(jax.value_and_grad(fn))(x, labels, il, tl)
    looped = [jax.value_and_grad(fn)(x[i], labels[i], il[i], tl[i]) for i in range(3)]
    chex.assert_trees_all_close(batched, jax.tree.map(lambda *a: jnp.stack(a), *looped),
                                rtol=1e-12)

  def test_bfloat16_computes_in_float32(self):
    rng = np.random.default_rng(11)
    labels, il, tl = _batch(rng, 0)
    x = jnp.asarray(rng.normal(size=(T, 5, C)), jnp.bfloat16)
    fn = lambda a: jaxloss.ctc_loss(a, labels, il, tl, reduction="sum")  # noqa: E731
    out, g = jax.value_and_grad(fn)(x)
    self.assertEqual(out.dtype, jnp.bfloat16)
    self.assertEqual(g.dtype, jnp.bfloat16)
    chex.assert_tree_all_finite(g)
    # Computed in float32 from the same inputs, rounded once at the end.
    exact, exact_g = jax.value_and_grad(fn)(x.astype(jnp.float32))
    self.assertEqual(out, exact.astype(jnp.bfloat16))
    chex.assert_trees_all_equal(g, exact_g.astype(jnp.bfloat16))

  def test_lengths_as_lists_and_tuples(self):
    rng = np.random.default_rng(12)
    labels, il, tl = _batch(rng, 0)
    x = jnp.asarray(rng.normal(size=(T, 5, C)))
    expected = jaxloss.ctc_loss(x, labels, jnp.asarray(il), jnp.asarray(tl))
    chex.assert_trees_all_close(
        jaxloss.ctc_loss(x, labels, tuple(il.tolist()), list(tl.tolist())), expected)

  def test_narrow_integer_targets_with_a_large_blank(self):
    # uint8 labels, blank 299: the blank must not be squeezed into the labels' dtype.
    rng = np.random.default_rng(15)
    lp = np.asarray(jax.nn.log_softmax(rng.normal(size=(6, 2, 300))))
    targets = np.array([[1, 250], [7, 7]], np.uint8)
    ours = jaxloss.ctc_loss(lp, targets, [6, 6], [2, 2], blank=299, reduction="none")
    expected = F.ctc_loss(torch.tensor(lp), torch.tensor(targets.astype(np.int64)), [6, 6],
                          [2, 2], blank=299, reduction="none")
    chex.assert_trees_all_close(ours, expected.numpy(), rtol=1e-12)

  def test_max_target_length(self):
    rng = np.random.default_rng(13)
    labels, il, tl = _batch(rng, 0)
    x = jnp.asarray(rng.normal(size=(T, 5, C)))
    concatenated = _concatenate(labels, tl)
    expected = jaxloss.ctc_loss(x, labels, il, tl, reduction="none")
    for bound in (None, S):
      chex.assert_trees_all_close(
          jaxloss.ctc_loss(x, concatenated, il, tl, reduction="none", max_target_length=bound),
          expected)

  def test_unbatched_shapes(self):
    x = jax.nn.log_softmax(jnp.asarray(np.random.default_rng(14).normal(size=(T, C))))
    scalar = jaxloss.ctc_loss(x, jnp.array([1, 2, 3]), T, 2, reduction="none")
    vector = jaxloss.ctc_loss(x, jnp.array([1, 2, 3]), jnp.array([T]), jnp.array([2]),
                              reduction="none")
    self.assertEqual(scalar.shape, ())
    self.assertEqual(vector.shape, ())
    chex.assert_trees_all_close(scalar, vector)


def _checked(blank):
  return jax.jit(checkify.checkify(
      lambda a, b, c, d: jaxloss.ctc_loss(a, b, c, d, blank=blank)))


_CHECKED = {blank: _checked(blank) for blank in (0, 2)}  # compiled once per shape


class CtcCheckifyTest(parameterized.TestCase):

  def _run(self, targets, il, tl, blank=0):
    x = jnp.zeros((T, 2, C))
    err, _ = _CHECKED[blank](x, jnp.asarray(targets), jnp.asarray(il), jnp.asarray(tl))
    return err.get()

  def test_valid_inputs_report_nothing(self):
    # Labels beyond target_lengths (padding) are ignored, as in torch.
    self.assertIsNone(self._run([[1, 2, -1], [3, 0, 99]], [T, 4], [2, 1]))

  @parameterized.named_parameters(
      ("label_is_blank", [[1, 0, 2], [1, 2, 3]], [T, T], [3, 3], 0, "label 0"),
      ("label_is_middle_blank", [[1, 2, 3], [1, 2, 3]], [T, T], [3, 3], 2, "blank=2"),
      ("label_too_large", [[1, 2, 3], [1, C, 3]], [T, T], [3, 3], 0, f"label {C}"),
      ("label_negative", [[1, -3, 3], [1, 2, 3]], [T, T], [3, 3], 0, "label -3"),
      ("input_too_long", [[1, 2, 3], [1, 2, 3]], [T + 1, T], [3, 3], 0,
       r"`input_lengths` must lie in \[0, 8\]"),
      ("input_negative", [[1, 2, 3], [1, 2, 3]], [T, -1], [3, 3], 0, "got -1"),
      ("target_too_long", [[1, 2, 3], [1, 2, 3]], [T, T], [3, 4], 0,
       r"`target_lengths` must lie in \[0, 3\]"),
      ("target_negative", [[1, 2, 3], [1, 2, 3]], [T, T], [-2, 3], 0, "got -2"),
      ("concatenated_length", [1, 2, 3, 4], [T, T], [2, 1], 0, "sum\\(target_lengths\\) = 3"),
  )
  def test_reported(self, targets, il, tl, blank, message):
    err = self._run(targets, il, tl, blank)
    self.assertIsNotNone(err)
    self.assertRegex(err, "ctc_loss")
    self.assertRegex(err, message)


class CtcErrorTest(parameterized.TestCase):

  def setUp(self):
    super().setUp()
    self.x = jnp.zeros((T, 2, C))
    self.targets = jnp.ones((2, S), jnp.int32)
    self.lengths = jnp.array([T, T]), jnp.array([2, 2])

  @parameterized.named_parameters(
      ("log_probs_ndim", dict(log_probs=jnp.zeros((T, 2, C, 1))),
       r"ctc_loss: `log_probs` must be 2-D or 3-D, got shape \(8, 2, 6, 1\)"),
      ("log_probs_int", dict(log_probs=jnp.zeros((T, 2, C), jnp.int32)),
       "`log_probs` must be a floating-point array"),
      ("targets_ndim", dict(targets=jnp.ones((2, S, 1), jnp.int32)),
       r"`targets` must be 1-D or 2-D, got shape \(2, 4, 1\)"),
      ("targets_batch", dict(targets=jnp.ones((3, S), jnp.int32)),
       r"`targets` must have shape \(2, S\) .* got \(3, 4\)"),
      ("targets_float", dict(targets=jnp.ones((2, S))), "`targets` must be an integer array"),
      ("input_lengths_shape", dict(input_lengths=jnp.array([T, T, T])),
       r"`input_lengths` must have shape \(2,\) \(one length per sample\), got \(3,\)"),
      ("target_lengths_shape", dict(target_lengths=jnp.array(2)),
       r"`target_lengths` must have shape \(2,\) .*got \(\)"),
      ("lengths_float", dict(input_lengths=jnp.array([8.0, 8.0])),
       "`input_lengths` must be an integer array"),
      ("blank_too_large", dict(blank=C), r"`blank` must lie in \[0, 6\) .* got 6"),
      ("blank_negative", dict(blank=-1), r"`blank` must lie in \[0, 6\) .* got -1"),
      ("blank_float", dict(blank=0.5), "`blank` must be an integer"),
      ("reduction", dict(reduction="batchmean"), "`reduction` must be one of"),
      ("where_shape", dict(where=jnp.ones(3, bool)), r"`where` of shape \(3,\)"),
      ("max_target_length", dict(max_target_length=-1), "`max_target_length` must be"),
  )
  def test_raises_at_trace_time(self, override, message):
    kwargs = dict(log_probs=self.x, targets=self.targets, input_lengths=self.lengths[0],
                  target_lengths=self.lengths[1])
    kwargs.update(override)
    arrays = {k: v for k, v in kwargs.items() if isinstance(v, jax.Array)}
    static = {k: v for k, v in kwargs.items() if k not in arrays}
    with self.assertRaisesRegex(ValueError, message):
      jax.jit(lambda a: jaxloss.ctc_loss(**a, **static)).lower(arrays)

  def test_unbatched_shapes_checked(self):
    with self.assertRaisesRegex(ValueError, r"`targets` must have shape \(S,\) or \(1, S\)"):
      jaxloss.ctc_loss(jnp.zeros((T, C)), jnp.ones((2, S), jnp.int32), T, 2)
    with self.assertRaisesRegex(ValueError, r"`input_lengths` must have shape \(\) or \(1,\)"):
      jaxloss.ctc_loss(jnp.zeros((T, C)), jnp.ones(S, jnp.int32), jnp.array([T, T]), 2)


class CtcNeverNegativeTest(absltest.TestCase):
  """A rounding-negative loss (optax#1771: float32 gives -8e-8, torch -0.0) is +0.0."""

  # log_softmax of these logits, target [2]: the path probability rounds above 1 in
  # float32, so the unclamped float32 loss is -2.7e-8 (the true loss is ~1e-17).
  LOGITS = np.array([[[-38.35, -33.46, 24.56]], [[58.59, 34.02, 41.16]],
                     [[40.55, -21.96, 15.36]]], np.float32)
  ARGS = (jnp.array([[2]]), jnp.array([3]), jnp.array([1]))

  def test_float32_loss_is_zero_not_negative_with_torchs_gradient(self):
    lp = jax.nn.log_softmax(jnp.asarray(self.LOGITS), -1)
    for reduction in ("none", "sum", "mean"):
      value, grad = jax.value_and_grad(
          lambda a, r=reduction: jnp.sum(jaxloss.ctc_loss(a, *self.ARGS, reduction=r)))(lp)
      self.assertEqual(float(value), 0.0)
      self.assertFalse(np.signbit(float(value)))  # +0.0: log(loss) is -inf, not nan
      t_lp = torch.tensor(np.asarray(lp), requires_grad=True)
      t_loss = F.ctc_loss(t_lp, *(torch.tensor(np.asarray(a)) for a in self.ARGS),
                          reduction=reduction).sum()
      t_loss.backward()
      self.assertLessEqual(abs(t_loss.item()), 1e-7)
      np.testing.assert_allclose(np.asarray(grad), t_lp.grad.numpy(), rtol=1e-5, atol=1e-6)

  def test_unnormalised_log_probs_keep_a_negative_loss(self):
    # Raw log_probs (torch accepts them) can give a truly negative loss: it is kept.
    lp = jnp.full((3, 1, 3), 0.5, jnp.float32)
    loss = jaxloss.ctc_loss(lp, *self.ARGS, reduction="sum")
    t_loss = F.ctc_loss(torch.full((3, 1, 3), 0.5), *(torch.tensor(np.asarray(a))
                                                        for a in self.ARGS), reduction="sum")
    self.assertLess(float(loss), 0.0)
    np.testing.assert_allclose(float(loss), t_loss.item(), rtol=1e-6)


if __name__ == "__main__":
  absltest.main()
