"""Parity of jaxloss.linear_cross_entropy against torch 2.13, plus chunking, transforms, errors."""

import doctest

import chex
import jax
import jax.numpy as jnp
import numpy as np
import torch
import torch.nn.functional as F
from absl.testing import absltest, parameterized
from jax.experimental import checkify

import jaxloss
from jaxloss import linear
from tests.parity import ParityTestCase, rand, reduction_cases

N, D, V = 6, 4, 11  # chunk_size 4: three chunks, the last ragged (it overlaps the second)

# name -> options. `ignore`: 'some' (targets at -100 with the default ignore_index=None),
# 'all', or 'class' (ignore_index=1, a valid class, present among the targets).
CONFIGS = (
    ("plain", {}),
    ("bias", {"bias": True}),
    ("weighted", {"weight": True}),
    ("bias_weighted_ignored", {"bias": True, "weight": True, "ignore": "some"}),
    ("weighted_ignore_class", {"weight": True, "ignore": "class", "chunk": 1}),
    ("all_ignored", {"bias": True, "ignore": "all"}),
    ("ls0.1", {"ls": 0.1, "chunk": None}),
    ("ls0.3_bias_weighted_ignored", {"ls": 0.3, "bias": True, "weight": True,
                                     "ignore": "some"}),
    ("probs", {"probs": True}),
    ("probs_bias_weighted", {"probs": True, "bias": True, "weight": True, "chunk": 3}),
    ("probs_ls0.2_weighted_unnormalised", {"probs": "uniform", "ls": 0.2, "weight": True}),
    ("unbatched", {"unbatched": True, "bias": True, "weight": True, "ls": 0.1}),
    ("unbatched_probs", {"unbatched": True, "probs": True, "bias": True}),
    ("kdim", {"out": (3,), "bias": True, "weight": True, "ignore": "some"}),
    ("kdim_probs_ls0.1", {"out": (2,), "probs": True, "ls": 0.1}),
)


def _lce(x, w, target, b, cw, **kw):
  return jaxloss.linear_cross_entropy(x, w, target, linear_bias=b, weight=cw, **kw)


def _torch_lce(x, w, target, b, cw, chunk_size=None, **kw):
  del chunk_size
  return F.linear_cross_entropy(x, w, target, linear_bias=b, weight=cw, **kw)


def _inputs(cfg, dtype, seed=0):
  """(args, kwargs, grad_argnums) for ``_lce``'s positional layout."""
  rng = np.random.default_rng(seed)
  out = tuple(cfg.get("out", ()))
  batch = () if cfg.get("unbatched") else (N,)
  x = rand(rng, batch + (D,), dtype, -1.5, 1.5)
  w = rand(rng, (V,) + out + (D,), dtype, -1.5, 1.5)
  b = rand(rng, (V,) + out, dtype) if cfg.get("bias") else None
  cw = rand(rng, (V,), dtype, 0.2, 2.0) if cfg.get("weight") else None
  kw = {"chunk_size": cfg.get("chunk", 4)}
  if "ls" in cfg:
    kw["label_smoothing"] = cfg["ls"]
  grads = [0, 1] + ([3] if b is not None else [])
  if cfg.get("probs"):
    shape = batch + (V,) + out
    if cfg["probs"] == "uniform":  # soft targets need not sum to one in torch
      t = rand(rng, shape, dtype, 0.0, 1.0)
    else:
      p = rng.dirichlet(np.ones(V), size=batch + out)
      t = np.moveaxis(p, -1, len(batch)).astype(dtype)
    grads += [2] + ([4] if cw is not None else [])
  else:
    t = np.array(rng.integers(0, V, size=batch + out), np.int64)
    ignore = cfg.get("ignore")
    if ignore == "all":
      t[...] = -100
    elif ignore == "some":
      t.flat[0] = -100
    elif ignore == "class":
      t.flat[0], t.flat[-1] = 1, 0
      kw["ignore_index"] = 1
  return [x, w, t, b, cw], kw, tuple(grads)


class LinearCrossEntropyParityTest(ParityTestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(*reduction_cases(CONFIGS))
  def test_linear_cross_entropy(self, cfg, reduction, dtype):
    args, kw, grads = _inputs(cfg, dtype)
    self.assert_parity(_lce, _torch_lce, args, dict(kw, reduction=reduction),
                       grad_argnums=grads)


def _jit(**kw):
  return jax.jit(lambda x, w, t, b=None, cw=None: _lce(x, w, t, b, cw, **kw))


def _reference(x, w, t, b=None, cw=None, **kw):
  """cross_entropy of the materialised logits."""
  kw = dict(kw)
  kw.pop("chunk_size", None)
  ignore = kw.pop("ignore_index", None)
  logits = x @ w.T + (0.0 if b is None else b)
  return jaxloss.cross_entropy(logits, t, cw, ignore_index=-100 if ignore is None else ignore,
                               **kw)


class LinearCrossEntropyBehaviourTest(parameterized.TestCase):

  def setUp(self):
    super().setUp()
    args, _, _ = _inputs({"bias": True, "weight": True, "ignore": "some"}, np.float64, seed=3)
    self.x, self.w, self.t, self.b, self.cw = args

  @parameterized.parameters(1, 2, 4, 5, 10, 11, 64)
  def test_every_chunk_size_gives_the_same_value_and_gradient(self, chunk):
    loss = lambda *a: _lce(*a, label_smoothing=0.1, chunk_size=chunk)
    ref = lambda x, w, t, b, cw: _reference(x, w, t, b, cw, label_smoothing=0.1)
    argnums = (0, 1, 3, 4)
    got = jax.jit(jax.value_and_grad(loss, argnums))(self.x, self.w, self.t, self.b, self.cw)
    want = jax.jit(jax.value_and_grad(ref, argnums))(self.x, self.w, self.t, self.b, self.cw)
    chex.assert_trees_all_close(got, want, rtol=1e-12, atol=1e-14)

  def test_where_mask_equals_dropping_samples_and_zero_gradients(self):
    where = np.array([True, False, True, True, False, True])
    kw = dict(label_smoothing=0.2, chunk_size=4)
    for reduction in ("mean", "sum"):
      masked = _jit(reduction=reduction, where=where, **kw)(self.x, self.w, self.t, self.b,
                                                            self.cw)
      dropped = _jit(reduction=reduction, **kw)(self.x[where], self.w, self.t[where], self.b,
                                                self.cw)
      chex.assert_trees_all_close(masked, dropped, rtol=1e-12)
    bad = self.x.copy()
    bad[1], bad[4, 0] = np.inf, np.nan
    grad_fn = jax.jit(jax.grad(lambda x, w: _lce(x, w, self.t, self.b, self.cw, where=where,
                                                 **kw), (0, 1)))
    gx, gw = grad_fn(bad, self.w)
    np.testing.assert_array_equal(gx[~where], 0.0)
    self.assertTrue(np.all(np.isfinite(gx)) and np.all(np.isfinite(gw)))
    gx_ok, gw_ok = grad_fn(self.x, self.w)
    chex.assert_trees_all_close((gx, gw), (gx_ok, gw_ok), rtol=1e-12)
    # probability targets
    q = np.random.default_rng(1).dirichlet(np.ones(V), N)
    masked = _jit(where=where, chunk_size=3)(self.x, self.w, q, self.b)
    chex.assert_trees_all_close(masked, _jit(chunk_size=3)(self.x[where], self.w, q[where],
                                                           self.b), rtol=1e-12)

  def test_ignored_rows_get_zero_gradient_even_if_not_finite(self):
    bad = self.x.copy()
    bad[0] = np.inf  # target -100
    loss = lambda x: _lce(x, self.w, self.t, self.b, self.cw, chunk_size=4)
    chex.assert_trees_all_close(loss(bad), loss(self.x), rtol=1e-12)
    g = jax.grad(loss)(bad)
    np.testing.assert_array_equal(g[0], 0.0)
    chex.assert_trees_all_close(g, jax.grad(loss)(self.x), rtol=1e-12)

  def test_vmap_matches_loop(self):
    rng = np.random.default_rng(4)
    xs = rand(rng, (3, N, D), np.float64)
    ts = rng.integers(0, V, (3, N))
    loss = lambda x, t, w, b: _lce(x, w, t, b, self.cw, label_smoothing=0.1, chunk_size=4)
    vg = jax.value_and_grad(loss, (0, 2, 3))
    batched = jax.jit(jax.vmap(vg, (0, 0, None, None)))(xs, ts, self.w, self.b)
    for i in range(3):
      single = jax.jit(vg)(xs[i], ts[i], self.w, self.b)
      chex.assert_trees_all_close(jax.tree.map(lambda a, i=i: a[i], batched), single,
                                  rtol=1e-12)
    # vmap over the weights too (e.g. a population of heads)
    ws = rand(rng, (3, V, D), np.float64)
    out = jax.jit(jax.vmap(lambda w: loss(self.x, self.t, w, self.b)))(ws)
    for i in range(3):
      chex.assert_trees_all_close(out[i], _reference(self.x, ws[i], self.t, self.b, self.cw,
                                                     label_smoothing=0.1), rtol=1e-12)

  def test_second_order_reverse_mode_is_exact(self):
    loss = lambda x, w: _lce(x, w, self.t, self.b, self.cw, label_smoothing=0.1, chunk_size=4)
    ref = lambda x, w: _reference(x, w, self.t, self.b, self.cw, label_smoothing=0.1)
    v = np.random.default_rng(5).normal(size=self.x.shape)
    hvp = lambda f: jax.jit(jax.grad(lambda x, w: jnp.vdot(jax.grad(f)(x, w), v), (0, 1)))
    chex.assert_trees_all_close(hvp(loss)(self.x, self.w), hvp(ref)(self.x, self.w),
                                rtol=1e-10)
    hess = jax.jit(jax.jacrev(jax.jacrev(loss)))(self.x, self.w)
    chex.assert_trees_all_close(hess, jax.hessian(ref)(self.x, self.w), rtol=1e-10, atol=1e-13)

  def test_jax_hessian_equals_the_naive_forms(self):
    # README and the module docstring used to say that jax.hessian raises: it is
    # jacfwd(jacrev(f)), and the forward mode runs over the custom VJP's backward pass.
    loss = lambda x, w: _lce(x, w, self.t, self.b, self.cw, label_smoothing=0.1, chunk_size=4)
    ref = lambda x, w: _reference(x, w, self.t, self.b, self.cw, label_smoothing=0.1)
    hess = jax.jit(jax.hessian(loss, (0, 1)))(self.x, self.w)
    chex.assert_trees_all_close(hess, jax.hessian(ref, (0, 1))(self.x, self.w), rtol=1e-10,
                                atol=1e-13)

  def test_torch_options_are_accepted_and_change_nothing(self):
    want = _lce(self.x, self.w, self.t, self.b, self.cw, chunk_size=4)
    for options in (torch.nn.LinearCrossEntropyOptions(),
                    torch.nn.LinearCrossEntropyOptions(batch_chunk_size=2, chunking_method=None,
                                                       acc_policy="accurate"),
                    {"chunking_method": "aspect_ratio:2"}):
      got = _lce(self.x, self.w, self.t, self.b, self.cw, chunk_size=4, options=options)
      chex.assert_trees_all_close(got, want, rtol=1e-14)
    module = jaxloss.nn.LinearCrossEntropyLoss(options=torch.nn.LinearCrossEntropyOptions())
    chex.assert_trees_all_close(module(self.x, self.w, self.t), _lce(self.x, self.w, self.t,
                                                                     None, None), rtol=1e-12)

  def test_forward_mode_raises(self):
    loss = lambda x: _lce(x, self.w, self.t, None, None, chunk_size=4)
    with self.assertRaisesRegex(TypeError, "custom_vjp"):
      jax.jvp(loss, (self.x,), (self.x,))

  def test_bfloat16_accumulates_in_float32(self):
    rng = np.random.default_rng(6)
    x32, w32 = rand(rng, (64, 16), np.float32), rand(rng, (300, 16), np.float32)
    t = rng.integers(0, 300, 64)
    x, w = jnp.asarray(x32, jnp.bfloat16), jnp.asarray(w32, jnp.bfloat16)
    out = _jit(chunk_size=128, label_smoothing=0.1)(x, w, t)
    self.assertEqual(out.dtype, jnp.bfloat16)
    # the reference: the same bf16 operands, products and softmax in float32
    ref = _reference(x.astype(jnp.float32), w.astype(jnp.float32), t, label_smoothing=0.1)
    self.assertLess(abs(float(out) - float(ref)), 1e-2 * abs(float(ref)))
    gx, gw = jax.jit(jax.grad(lambda x, w: _lce(x, w, t, None, None, chunk_size=128).astype(
        jnp.float32), (0, 1)))(x, w)
    self.assertEqual((gx.dtype, gw.dtype), (jnp.bfloat16, jnp.bfloat16))
    rx, rw = jax.grad(lambda x, w: _reference(x, w, t), (0, 1))(x.astype(jnp.float32),
                                                              w.astype(jnp.float32))
    for g, r in ((gx, rx), (gw, rw)):
      err = np.max(np.abs(np.asarray(g, np.float32) - r)) / np.max(np.abs(r))
      self.assertLess(err, 2e-2)

  def test_compiled_memory_is_a_chunk_not_the_logits(self):
    n, d, c, chunk = 512, 32, 16384, 512
    spec = lambda *s, dt=jnp.float32: jax.ShapeDtypeStruct(s, dt)
    loss = lambda x, w, t: jaxloss.linear_cross_entropy(x, w, t, chunk_size=chunk)
    compiled = jax.jit(jax.value_and_grad(loss, (0, 1))).lower(
        spec(n, d), spec(c, d), spec(n, dt=jnp.int32)).compile()
    mem = compiled.memory_analysis()
    if mem is None:
      self.skipTest("no memory analysis on this backend")
    logits = n * c * 4
    self.assertLess(mem.temp_size_in_bytes, logits / 4)

  def test_out_of_range_target_is_nan_and_reported(self):
    t = self.t.copy()
    t[2] = V
    fn = lambda x, t: _lce(x, self.w, t, None, None, chunk_size=4)
    self.assertTrue(np.isnan(fn(self.x, t)))
    g = np.asarray(jax.grad(fn)(self.x, t))  # reduced: every gradient but the ignored rows'
    counted = t != -100
    self.assertTrue(np.all(np.isnan(g[counted])) and np.all(g[~counted] == 0.0))
    gw = jax.grad(lambda w: _lce(self.x, w, t, None, None, chunk_size=4))(self.w)
    self.assertTrue(np.all(np.isnan(gw)))
    per_sample = lambda x: _lce(x, self.w, t, None, None, chunk_size=4, reduction="none")
    self.assertTrue(np.all(np.isnan(jax.grad(lambda x: per_sample(x)[2])(self.x)[2])))
    none = per_sample(self.x)
    self.assertTrue(np.isnan(none[2]) and np.all(np.isfinite(np.delete(np.asarray(none), 2))))
    err, _ = jax.jit(checkify.checkify(fn))(self.x, t)
    with self.assertRaisesRegex(Exception, f"class index {V} outside"):
      err.throw()

  def test_all_ignored_and_empty(self):
    t = np.full((N,), -100)
    self.assertTrue(np.isnan(_lce(self.x, self.w, t, None, self.cw)))
    g = jax.grad(lambda x: _lce(x, self.w, t, None, None, reduction="sum"))(self.x)
    np.testing.assert_array_equal(g, 0.0)
    for reduction in ("none", "mean", "sum"):
      out = _lce(np.zeros((0, D)), self.w, np.zeros((0,), np.int64), None, None,
                 reduction=reduction)
      want = F.linear_cross_entropy(torch.zeros(0, D), torch.tensor(self.w),
                                    torch.zeros(0, dtype=torch.int64), reduction=reduction)
      self.assertEqual(out.shape, tuple(want.shape))
      chex.assert_trees_all_close(out, want.numpy())

  def test_default_chunk_size(self):
    self.assertEqual(linear.default_chunk_size(8192, 131072), 2048)
    self.assertEqual(linear.default_chunk_size(32768, 131072), 512)
    self.assertEqual(linear.default_chunk_size(10 ** 6, 131072), 128)
    self.assertEqual(linear.default_chunk_size(4, 1000), 1000)

  def test_errors(self):
    x, w, t = self.x, self.w, self.t
    q = np.full((N, V), 1.0 / V)
    cases = (
        (dict(input=x[None]), r"`input` must have shape \(in_features,\) or \(N, in_features\)"),
        (dict(linear_weight=w[:, :2]), r"`linear_weight` must have in_features=4"),
        (dict(linear_weight=w[0]), r"`linear_weight` must have shape \(C, in_features\)"),
        (dict(linear_bias=np.zeros(V + 1)), r"`linear_bias` must have shape \(11,\)"),
        (dict(target=q, ignore_index=-100), r"`ignore_index` cannot be specified"),
        (dict(target=t[:3]), r"`target` must have shape \(6,\)"),
        (dict(weight=np.ones(3)), r"`weight` must have shape \(11,\)"),
        (dict(options=object()), r"`options` must be None or torch's "
                                 r"LinearCrossEntropyOptions"),
        (dict(options={"chunk_size": 3}), r"`options` has fields \['chunk_size'\]"),
        # K-dimensional heads: the errors name this function and its own arguments.
        (dict(linear_weight=w[:, None], target=t[:3]),
         r"`target` must have shape \(6, 1\) \(class indices for logits of shape "
         r"\(6, 11, 1\)"),
        (dict(linear_weight=w[:, None], target=t[:, None].astype(float)),
         r"a floating-point `target` holds class probabilities and must have the logits' "
         r"shape \(6, 11, 1\)"),
        (dict(linear_weight=w[:, None], target=t[:, None], weight=np.ones(3)),
         r"`weight` must have shape \(11,\)"),
        (dict(linear_weight=w[:, None], target=t[:, None], where=np.ones(4, bool)),
         r"`where` of shape \(4,\) must be broadcastable to the shape of the per-sample loss"),
        (dict(chunk_size=0), r"`chunk_size` must be a positive int"),
        (dict(label_smoothing=1.5), r"`label_smoothing` must lie in \[0, 1\]"),
        (dict(reduction="batchmean"), r"`reduction` must be one of"),
        (dict(input=x[0], linear_weight=w[:, None]),
         r"a K-dimensional `linear_weight` .* requires batched `input`"),
    )
    for override, message in cases:
      kw = {"input": x, "linear_weight": w, "target": t, **override}
      with self.subTest(message), self.assertRaisesRegex(ValueError, "linear_cross_entropy: "
                                                                      + message):
        jaxloss.linear_cross_entropy(kw.pop("input"), kw.pop("linear_weight"),
                                     kw.pop("target"), **kw)

  def test_docstring_example(self):
    result = doctest.testmod(linear, optionflags=doctest.ELLIPSIS)
    self.assertGreater(result.attempted, 0)
    self.assertEqual(result.failed, 0)


if __name__ == "__main__":
  absltest.main()
