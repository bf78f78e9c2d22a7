"""Parity of jaxloss.adaptive (AdaptiveLogSoftmaxWithLoss) with torch 2.13, given the same
weights."""

import doctest
import subprocess
import sys
import warnings

import chex
import jax
import jax.numpy as jnp
import numpy as np
import torch
from absl.testing import absltest, parameterized
from jax.experimental import checkify

from jaxloss import adaptive
from tests.parity import DTYPES, ParityTestCase

D, N_CLASSES = 8, 20
# name -> (cutoffs, div_value, head_bias, unbatched)
CONFIGS = (
    ("two_clusters", ((5, 12), 2.0, False, False)),
    ("two_clusters_head_bias", ((5, 12), 2.0, True, False)),
    ("one_cluster_div4", ((7,), 4.0, True, False)),
    # div_value=4: the second cluster projects to 8 // 16 = 0 features (uniform cluster)
    ("zero_width_cluster", ((3, 9), 4.0, False, False)),
    ("unbatched", ((5, 12), 2.0, True, True)),
)


def _torch_module(cutoffs, div_value, head_bias, dtype, seed=0):
  torch.manual_seed(seed)
  warnings.filterwarnings("ignore", "Initializing zero-element tensors", UserWarning)
  return torch.nn.AdaptiveLogSoftmaxWithLoss(
      D, N_CLASSES, list(cutoffs), div_value=div_value, head_bias=head_bias,
      dtype=torch.float32 if dtype == np.float32 else torch.float64)


def _names(n_clusters, head_bias):
  return (["head.weight"] + (["head.bias"] if head_bias else [])
          + [f"tail.{i}.{j}.weight" for i in range(n_clusters) for j in (0, 1)])


def _case(cfg, dtype, seed=0):
  cutoffs, div_value, head_bias, unbatched = cfg
  module = _torch_module(cutoffs, div_value, head_bias, dtype, seed)
  params = [module.state_dict()[k].numpy() for k in _names(len(cutoffs), head_bias)]
  rng = np.random.default_rng(seed)
  x = rng.uniform(-2.0, 2.0, size=(D,) if unbatched else (9, D)).astype(dtype)
  if unbatched:
    target = np.array(N_CLASSES - 1, np.int64)
  else:  # every cluster, both ends of each, and the head
    target = np.array([0, cutoffs[0] - 1, cutoffs[0], N_CLASSES - 1, 1, cutoffs[-1],
                       N_CLASSES - 2, 2, cutoffs[0]], np.int64)
  return module, params, x, target


def _split(params, n_clusters, head_bias):
  head_weight, rest = params[0], list(params[1:])
  head_b = rest.pop(0) if head_bias else None
  tail = [(rest[2 * i], rest[2 * i + 1]) for i in range(n_clusters)]
  return head_weight, head_b, tail


def _jax_fn(cfg, what):
  cutoffs, _, head_bias, _ = cfg

  def fn(x, target, *params):
    hw, hb, tail = _split(params, len(cutoffs), head_bias)
    if what == "log_prob":
      return adaptive.adaptive_log_prob(x, hw, tail, cutoffs, head_bias=hb)
    out = adaptive.adaptive_log_softmax_with_loss(x, target, hw, tail, cutoffs, head_bias=hb,
                                                  chunk_size=3)
    return getattr(out, what)
  return fn


def _torch_fn(module, cfg, what):
  names = _names(len(cfg[0]), cfg[2])

  def fn(x, target, *params):
    state = dict(zip(names, params))
    if what == "log_prob":
      return _call_method(module, state, "log_prob", x)
    return getattr(torch.func.functional_call(module, state, (x, target)), what)
  return fn


def _call_method(module, state, method, *args):
  """``module.<method>(*args)`` with the parameters in ``state`` (differentiable)."""
  state = {f"module.{k}": v for k, v in state.items()}
  return torch.func.functional_call(_Method(module, method), state, args, strict=True)


class _Method(torch.nn.Module):
  """Exposes one method of a module as ``forward``, for ``torch.func.functional_call``."""

  def __init__(self, module, method):
    super().__init__()
    self.module, self.method = module, method

  def forward(self, *args):
    return getattr(self.module, self.method)(*args)


def _parity_cases():
  """Each config's ``output`` in both dtypes; ``loss`` and ``log_prob`` one dtype each, rotating."""
  for i, (name, cfg) in enumerate(CONFIGS):
    cases = [("output", DTYPES[0]), ("output", DTYPES[1]), ("loss", DTYPES[i % 2])]
    if not cfg[3]:  # torch's log_prob takes (N, in_features) only
      cases.append(("log_prob", DTYPES[(i + 1) % 2]))
    for what, dtype in cases:
      yield dict(testcase_name=f"{name}_{what}_{dtype.__name__}", cfg=cfg, what=what,
                 dtype=dtype)


class AdaptiveParityTest(ParityTestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(*_parity_cases())
  def test_matches_torch_module(self, cfg, what, dtype):
    module, params, x, target = _case(cfg, dtype)
    grads = (0,) + tuple(range(2, 2 + len(params)))
    self.assert_parity(_jax_fn(cfg, what), _torch_fn(module, cfg, what),
                       [x, target] + params, grad_argnums=grads)


class AdaptiveBehaviourTest(parameterized.TestCase):

  @parameterized.named_parameters(("two_clusters", CONFIGS[1][1]), ("zero_width", CONFIGS[3][1]))
  def test_flax_module_with_torch_weights(self, cfg):
    cutoffs, div_value, head_bias, _ = cfg
    module, _, x, target = _case(cfg, np.float64, seed=1)
    asm = adaptive.AdaptiveLogSoftmaxWithLoss(D, N_CLASSES, cutoffs, div_value=div_value,
                                              head_bias=head_bias, param_dtype=jnp.float64)
    variables = {"params": {k: v.numpy() for k, v in module.state_dict().items()}}
    init = asm.init(jax.random.key(0), x, target)
    chex.assert_trees_all_equal_shapes_and_dtypes(init, variables)
    out = jax.jit(asm.apply)(variables, x, target)
    expected = module(torch.tensor(x), torch.tensor(target))
    chex.assert_trees_all_close(out.output, expected.output.detach().numpy(), rtol=1e-12)
    chex.assert_trees_all_close(out.loss, expected.loss.detach().numpy(), rtol=1e-12)
    logp = asm.apply(variables, x, method="log_prob")
    chex.assert_trees_all_close(logp, module.log_prob(torch.tensor(x)).detach().numpy(),
                                rtol=1e-12, atol=1e-12)
    for scale in (0.1, 1.0, 10.0):  # head argmax in and out of the shortlist
      got = asm.apply(variables, scale * x, method="predict")
      np.testing.assert_array_equal(got, module.predict(torch.tensor(scale * x)).numpy())

  def test_flax_init_matches_torch_distribution(self):
    asm = adaptive.AdaptiveLogSoftmaxWithLoss(64, N_CLASSES, (5, 12), head_bias=True)
    params = asm.init(jax.random.key(0), jnp.ones((1, 64)), jnp.zeros((1,), jnp.int32))
    params = params["params"]
    bound = 1 / 8.0  # 1 / sqrt(in_features)
    for name in ("head.weight", "head.bias", "tail.0.0.weight"):
      self.assertLessEqual(float(jnp.max(jnp.abs(params[name]))), bound)
      self.assertGreater(float(jnp.max(jnp.abs(params[name]))), 0.8 * bound)
    # torch's sizes: hidden in_features // div_value**i, cluster sizes 12 - 5 and 20 - 12
    self.assertEqual(params["tail.0.0.weight"].shape, (16, 64))
    self.assertEqual(params["tail.0.1.weight"].shape, (7, 16))
    self.assertEqual(params["tail.1.0.weight"].shape, (4, 64))
    self.assertEqual(params["tail.1.1.weight"].shape, (8, 4))

  def test_gradient_matches_log_prob(self):
    cfg = CONFIGS[1][1]
    _, params, x, target = _case(cfg, np.float64)
    hw, hb, tail = _split(params, 2, True)
    loss = lambda x, hw: adaptive.adaptive_log_softmax_with_loss(
        x, target, hw, tail, cfg[0], head_bias=hb, chunk_size=2).loss
    ref = lambda x, hw: -jnp.mean(jnp.take_along_axis(adaptive.adaptive_log_prob(
        x, hw, tail, cfg[0], head_bias=hb), target[:, None], axis=1))
    chex.assert_trees_all_close(jax.grad(loss, (0, 1))(x, hw), jax.grad(ref, (0, 1))(x, hw),
                                rtol=1e-12)
    # vmap over a batch of inputs
    xs = np.stack([x, 2 * x, -x])
    got = jax.vmap(lambda x: loss(x, hw))(xs)
    chex.assert_trees_all_close(got, jnp.stack([loss(x, hw), loss(2 * x, hw), loss(-x, hw)]),
                                rtol=1e-12)

  def test_out_of_range_target_is_nan_and_reported(self):
    cfg = CONFIGS[0][1]
    _, params, x, target = _case(cfg, np.float64)
    hw, _, tail = _split(params, 2, False)
    target = target.copy()
    target[3] = N_CLASSES
    fn = lambda t: adaptive.adaptive_log_softmax_with_loss(x, t, hw, tail, cfg[0])
    out = fn(target)
    self.assertTrue(np.isnan(out.output[3]) and np.isnan(out.loss))
    self.assertTrue(np.all(np.isfinite(np.delete(np.asarray(out.output), 3))))
    err, _ = jax.jit(checkify.checkify(fn))(target)
    with self.assertRaisesRegex(Exception, f"class index {N_CLASSES} outside"):
      err.throw()

  def test_errors(self):
    _, params, x, target = _case(CONFIGS[0][1], np.float64)
    hw, _, tail = _split(params, 2, False)
    fn = adaptive.adaptive_log_softmax_with_loss
    with self.assertRaisesRegex(ValueError, "`cutoffs` should be a sequence of unique"):
      adaptive.AdaptiveLogSoftmaxWithLoss(D, N_CLASSES, (12, 5)).init(
          jax.random.key(0), x, target)
    with self.assertRaisesRegex(ValueError, "length larger than 0"):
      adaptive.check_cutoffs("f", [], 10)
    with self.assertRaisesRegex(ValueError, r"`target` must have shape \(9,\)"):
      fn(x, target[:3], hw, tail, (5, 12))
    with self.assertRaisesRegex(ValueError, r"one \(projection, output\) pair per cutoff"):
      fn(x, target, hw, tail[:1], (5, 12))
    with self.assertRaisesRegex(ValueError, r"`head_weight` must have shape \(7, 8\)"):
      fn(x, target, hw[:5], tail, (5, 12))
    # A head_weight with the wrong in_features is reported as head_weight (it used to be
    # reported as the tail projection that disagreed with it).
    with self.assertRaisesRegex(ValueError, r"adaptive_log_softmax_with_loss: `head_weight` "
                                r"must have shape \(7, 8\) \(.*`input`'s last axis\), got "
                                r"\(7, 7\)"):
      fn(x, target, hw[:, :7], tail, (5, 12))
    with self.assertRaisesRegex(ValueError, r"adaptive_log_prob: `head_weight` must have shape "
                                r"\(7, 8\)"):
      adaptive.adaptive_log_prob(x, hw[:, :7], tail, (5, 12))
    with self.assertRaisesRegex(ValueError, r"`input` must be 2-D"):
      adaptive.adaptive_log_prob(x[0], hw, tail, (5, 12))

  def test_import_jaxloss_does_not_import_flax(self):
    code = ("import sys, jaxloss, jaxloss.adaptive, jaxloss.nn; "
            "print([m for m in ('flax', 'optax', 'chex') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    self.assertEqual(out.stdout.strip(), "[]")

  def test_docstring_examples(self):
    finder, runner = doctest.DocTestFinder(), doctest.DocTestRunner()
    tests = finder.find(adaptive) + finder.find(adaptive.AdaptiveLogSoftmaxWithLoss,
                                                "AdaptiveLogSoftmaxWithLoss", globs={})
    for test in tests:
      runner.run(test)
    self.assertGreater(runner.tries, 0)
    self.assertEqual(runner.failures, 0)


if __name__ == "__main__":
  absltest.main()
